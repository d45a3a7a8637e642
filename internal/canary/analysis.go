package canary

import (
	"errors"
	"fmt"
	"math"
)

// Metric names what a Check bounds.
type Metric string

// The metrics a Check can bound; the package doc defines each.
const (
	ErrorRate  Metric = "error_rate"
	P99Latency Metric = "p99_latency"
	ScoreShift Metric = "score_shift"
)

// Check bounds one metric of the candidate over one interval.
type Check struct {
	Name   string `json:"name"`
	Metric Metric `json:"metric"`
	// Max is the largest passing value (inclusive): a fraction for
	// error_rate, seconds for p99_latency, a PSI for score_shift.
	Max float64 `json:"max"`
	// MinRequests is how many requests the candidate must serve in the
	// interval for the check to judge it; fewer make it inconclusive.
	MinRequests int `json:"min_requests,omitempty"`
}

// Analysis is a canary's checks and the limits that end it.
type Analysis struct {
	Checks []Check `json:"checks"`
	// FailureLimit is the number of failed intervals that rolls back.
	FailureLimit int `json:"failure_limit"`
	// InconclusiveLimit is the number of inconclusive intervals that rolls
	// back as inconclusive.
	InconclusiveLimit int `json:"inconclusive_limit"`
}

// Validate reports every problem with a, so that a pipeline is refused
// before its canary starts rather than judged by a check that cannot pass.
func (a Analysis) Validate() error {
	var errs []error
	if len(a.Checks) == 0 {
		errs = append(errs, errors.New("canary: analysis has no checks"))
	}
	seen := map[string]bool{}
	for i, c := range a.Checks {
		name := c.Name
		if name == "" {
			errs = append(errs, fmt.Errorf("canary: check %d has no name", i))
			name = fmt.Sprintf("#%d", i)
		} else if seen[name] {
			errs = append(errs, fmt.Errorf("canary: check %q given twice", name))
		}
		seen[name] = true
		switch c.Metric {
		case ErrorRate, P99Latency, ScoreShift:
		default:
			errs = append(errs, fmt.Errorf("canary: check %s: metric %q: want %s, %s or %s", name, c.Metric, ErrorRate, P99Latency, ScoreShift))
		}
		// All three metrics are non-negative, so a negative bound fails
		// every interval and NaN would compare false both ways.
		if math.IsNaN(c.Max) || math.IsInf(c.Max, 0) || c.Max < 0 {
			errs = append(errs, fmt.Errorf("canary: check %s: max %v: want a finite number >= 0", name, c.Max))
		}
		if c.MinRequests < 0 {
			errs = append(errs, fmt.Errorf("canary: check %s: min_requests %d is negative", name, c.MinRequests))
		}
	}
	if a.FailureLimit < 0 {
		errs = append(errs, fmt.Errorf("canary: failure_limit %d is negative", a.FailureLimit))
	}
	if a.InconclusiveLimit < 0 {
		errs = append(errs, fmt.Errorf("canary: inconclusive_limit %d is negative", a.InconclusiveLimit))
	}
	return errors.Join(errs...)
}

// Outcome is the verdict on a check or an interval.
type Outcome string

// Outcomes.
const (
	Pass         Outcome = "pass"
	Fail         Outcome = "fail"
	Inconclusive Outcome = "inconclusive"
)

// CheckResult is one check's verdict on one interval. Value and Champion
// are NaN where undefined, and null in JSON.
type CheckResult struct {
	Name   string `json:"name"`
	Metric Metric `json:"metric"`
	// Value is the candidate's.
	Value float64 `json:"value"`
	// Champion is the champion's value of the same metric, the baseline a
	// reader compares Value with; NaN for score_shift, which is already a
	// comparison.
	Champion  float64 `json:"champion"`
	Threshold float64 `json:"threshold"`
	Outcome   Outcome `json:"outcome"`
	// Reason says why a check is inconclusive or failed.
	Reason string `json:"reason,omitempty"`
}

// Result is the verdict on one interval.
type Result struct {
	Checks  []CheckResult `json:"checks"`
	Outcome Outcome       `json:"outcome"`
}

// Evaluate judges the candidate of m by each check of a.
func Evaluate(a Analysis, m Measurement) Result {
	r := Result{Checks: make([]CheckResult, 0, len(a.Checks))}
	fails, inconclusives := 0, 0
	for _, c := range a.Checks {
		cr := evaluate(c, m)
		switch cr.Outcome {
		case Fail:
			fails++
		case Inconclusive:
			inconclusives++
		}
		r.Checks = append(r.Checks, cr)
	}
	switch {
	case fails > 0:
		r.Outcome = Fail
	case inconclusives > 0 || len(a.Checks) == 0:
		// With no checks nothing vouches for the candidate, so an empty
		// analysis must not pass.
		r.Outcome = Inconclusive
	default:
		r.Outcome = Pass
	}
	return r
}

func evaluate(c Check, m Measurement) CheckResult {
	cr := CheckResult{Name: c.Name, Metric: c.Metric, Threshold: c.Max, Value: math.NaN(), Champion: math.NaN()}
	switch c.Metric {
	case ErrorRate:
		cr.Value, cr.Champion = m.Candidate.ErrorRate(), m.Champion.ErrorRate()
	case P99Latency:
		cr.Value, cr.Champion = m.Candidate.P99Latency, m.Champion.P99Latency
	case ScoreShift:
		cr.Value = PSI(m.Candidate.Scores, m.Champion.Scores)
	default:
		cr.Outcome, cr.Reason = Inconclusive, fmt.Sprintf("unknown metric %q", c.Metric)
		return cr
	}
	switch {
	case m.Candidate.Requests < float64(c.MinRequests):
		cr.Outcome = Inconclusive
		cr.Reason = fmt.Sprintf("candidate served %g requests, fewer than min_requests %d", m.Candidate.Requests, c.MinRequests)
	case math.IsNaN(cr.Value):
		cr.Outcome = Inconclusive
		cr.Reason = fmt.Sprintf("no data for %s in this interval", c.Metric)
	case cr.Value <= c.Max:
		cr.Outcome = Pass
	default:
		// Also reached with a NaN Max, which Validate refuses: failing is
		// the safe reading of a bound that cannot be compared.
		cr.Outcome = Fail
		cr.Reason = fmt.Sprintf("%s %g is above max %g", c.Metric, cr.Value, c.Max)
	}
	return cr
}

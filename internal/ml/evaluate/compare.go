package evaluate

import (
	"fmt"
	"math"
	"slices"
)

// Threshold is MLflow's MetricThreshold for one metric. Every field is
// optional; GreaterIsBetter defaults from the metric's name when known.
type Threshold struct {
	// Threshold is an absolute floor (greater is better) or ceiling.
	Threshold *float64 `json:"threshold,omitempty"`
	// MinAbsoluteChange: the candidate must beat the baseline by more than
	// this. A negative value (an extension to MLflow) tolerates a regression
	// of at most that size.
	MinAbsoluteChange *float64 `json:"min_absolute_change,omitempty"`
	// MinRelativeChange: as MinAbsoluteChange, relative to |baseline|.
	MinRelativeChange *float64 `json:"min_relative_change,omitempty"`
	GreaterIsBetter   *bool    `json:"greater_is_better,omitempty"`
}

// Check kinds.
const (
	CheckThreshold   = "threshold"
	CheckAbsolute    = "min_absolute_change"
	CheckRelative    = "min_relative_change"
	CheckMissing     = "missing_metric"
	CheckNoBaseline  = "no_baseline_metric"
	noBaselineNotice = "no baseline model: only absolute thresholds were applied"
)

// Check is the outcome of one threshold on one metric.
type Check struct {
	Metric   string  `json:"metric"`
	Kind     string  `json:"kind"`
	Passed   bool    `json:"passed"`
	Value    float64 `json:"value"`
	Baseline float64 `json:"baseline,omitempty"`
	// Limit is the value the candidate had to reach (or stay under).
	Limit float64 `json:"limit"`
	// Shortfall is how far the value misses Limit, in the metric's units
	// (0 when passed).
	Shortfall float64 `json:"shortfall"`
	Message   string  `json:"message"`
}

// Verdict is the structured result of Compare.
type Verdict struct {
	Passed      bool    `json:"passed"`
	HasBaseline bool    `json:"has_baseline"`
	Note        string  `json:"note,omitempty"`
	Checks      []Check `json:"checks"`
	Failures    []Check `json:"failures,omitempty"`
}

// greaterIsBetter knows the direction of this package's metrics.
var greaterIsBetter = map[string]bool{
	Accuracy: true, Precision: true, Recall: true, F1: true, ROCAUC: true, PRAUC: true,
	LogLoss: false, Brier: false,
}

// Compare checks candidate metrics against thresholds and, when baseline is
// non-nil, against the baseline's metrics. A nil baseline is the first model:
// only absolute thresholds apply and the verdict says so.
func Compare(candidate, baseline map[string]float64, thresholds map[string]Threshold) (*Verdict, error) {
	v := &Verdict{Passed: true, HasBaseline: baseline != nil, Checks: []Check{}}
	if baseline == nil {
		v.Note = noBaselineNotice
	}
	names := make([]string, 0, len(thresholds))
	for name := range thresholds {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		t := thresholds[name]
		higher, ok := greaterIsBetter[name]
		if t.GreaterIsBetter != nil {
			higher, ok = *t.GreaterIsBetter, true
		}
		if !ok {
			return nil, fmt.Errorf("evaluate: threshold for %q: unknown metric, set greater_is_better", name)
		}
		for _, f := range []*float64{t.Threshold, t.MinAbsoluteChange, t.MinRelativeChange} {
			if f != nil && (math.IsNaN(*f) || math.IsInf(*f, 0)) {
				return nil, fmt.Errorf("evaluate: threshold for %q is not finite", name)
			}
		}
		value, have := candidate[name]
		if !have || math.IsNaN(value) {
			v.add(Check{Metric: name, Kind: CheckMissing, Message: fmt.Sprintf("%s: the candidate has no value for this metric", name)})
			continue
		}
		if t.Threshold != nil {
			v.add(absolute(name, value, *t.Threshold, higher))
		}
		if baseline == nil || (t.MinAbsoluteChange == nil && t.MinRelativeChange == nil) {
			continue
		}
		base, have := baseline[name]
		if !have || math.IsNaN(base) {
			v.add(Check{Metric: name, Kind: CheckNoBaseline, Value: value, Passed: true,
				Message: fmt.Sprintf("%s: the baseline has no value for this metric; change thresholds skipped", name)})
			continue
		}
		if t.MinAbsoluteChange != nil {
			v.add(change(name, CheckAbsolute, value, base, *t.MinAbsoluteChange, higher))
		}
		if t.MinRelativeChange != nil {
			v.add(change(name, CheckRelative, value, base, *t.MinRelativeChange*math.Abs(base), higher))
		}
	}
	return v, nil
}

func (v *Verdict) add(c Check) {
	v.Checks = append(v.Checks, c)
	if !c.Passed {
		v.Passed = false
		v.Failures = append(v.Failures, c)
	}
}

func direction(higher bool) (word, cmp string) {
	if higher {
		return "floor", "≥"
	}
	return "ceiling", "≤"
}

// absolute is MLflow's threshold: value ≥ limit (or ≤ when lower is better).
func absolute(name string, value, limit float64, higher bool) Check {
	c := Check{Metric: name, Kind: CheckThreshold, Value: value, Limit: limit}
	c.Passed = value >= limit
	if !higher {
		c.Passed = value <= limit
	}
	word, cmp := direction(higher)
	if c.Passed {
		c.Message = fmt.Sprintf("%s %.4f meets the %s %s %.4f", name, value, word, cmp, limit)
	} else {
		c.Shortfall = math.Abs(value - limit)
		c.Message = fmt.Sprintf("%s %.4f misses the %s %s %.4f by %.4f", name, value, word, cmp, limit, c.Shortfall)
	}
	return c
}

// change is MLflow's min_absolute_change / min_relative_change: the candidate
// must be strictly better than baseline ± delta.
func change(name, kind string, value, base, delta float64, higher bool) Check {
	limit := base + delta
	passed := value > limit
	if !higher {
		limit = base - delta
		passed = value < limit
	}
	c := Check{Metric: name, Kind: kind, Value: value, Baseline: base, Limit: limit, Passed: passed}
	diff := value - base
	what := "an improvement of more than"
	if delta < 0 {
		what = "a regression of less than"
	}
	if passed {
		c.Message = fmt.Sprintf("%s %.4f vs baseline %.4f (change %+.4f) passes: needed %s %.4f", name, value, base, diff, what, math.Abs(delta))
	} else {
		c.Shortfall = math.Abs(value - limit)
		c.Message = fmt.Sprintf("%s %.4f vs baseline %.4f (change %+.4f) fails: needed %s %.4f (%s), short by %.4f",
			name, value, base, diff, what, math.Abs(delta), kind, c.Shortfall)
	}
	return c
}

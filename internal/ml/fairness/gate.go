package fairness

import (
	"fmt"
	"slices"
)

// Limits bound aggregate metrics, e.g.
//
//	max: {demographic_parity_difference: 0.1}
//	min: {demographic_parity_ratio: 0.8}
//
// Features restricts the gate to some features (the intersection is named
// like "race&sex"); empty means every feature in the report.
type Limits struct {
	Max      map[string]float64 `json:"max,omitempty" yaml:"max,omitempty"`
	Min      map[string]float64 `json:"min,omitempty" yaml:"min,omitempty"`
	Features []string           `json:"features,omitempty" yaml:"features,omitempty"`
}

// Violation is one metric of one feature outside its limit.
type Violation struct {
	Feature string  `json:"feature"`
	Metric  string  `json:"metric"`
	Value   Value   `json:"value"`
	Bound   string  `json:"bound"` // "max" or "min"
	Limit   float64 `json:"limit"`
	Message string  `json:"message"`
}

// Verdict is the gate's decision.
type Verdict struct {
	Passed     bool        `json:"passed"`
	Violations []Violation `json:"violations"`
}

// Gate checks the report against the limits. An undefined metric fails its
// limit: a gate that cannot measure must not pass silently. Unknown metric
// or feature names are errors, so a typo in a pipeline cannot disable a
// check.
func (r *Report) Gate(l Limits) (Verdict, error) {
	if len(l.Max) == 0 && len(l.Min) == 0 {
		return Verdict{}, fmt.Errorf("fairness gate: no limits given")
	}
	features := r.Features
	if len(l.Features) > 0 {
		features = nil
		for _, name := range l.Features {
			f, ok := r.Feature(name)
			if !ok {
				return Verdict{}, fmt.Errorf("fairness gate: unknown feature %q", name)
			}
			features = append(features, *f)
		}
	}
	v := Verdict{Passed: true, Violations: []Violation{}}
	for _, bound := range []struct {
		name   string
		limits map[string]float64
	}{{"max", l.Max}, {"min", l.Min}} {
		metrics := make([]string, 0, len(bound.limits))
		for m := range bound.limits {
			metrics = append(metrics, m)
		}
		slices.Sort(metrics)
		for _, metric := range metrics {
			limit := bound.limits[metric]
			for _, f := range features {
				val, ok := f.Aggregates.Get(metric)
				if !ok {
					return Verdict{}, fmt.Errorf("fairness gate: unknown metric %q", metric)
				}
				if msg, bad := check(f.Feature, metric, val, bound.name, limit); bad {
					v.Violations = append(v.Violations, Violation{
						Feature: f.Feature, Metric: metric, Value: val,
						Bound: bound.name, Limit: limit, Message: msg,
					})
				}
			}
		}
	}
	v.Passed = len(v.Violations) == 0
	return v, nil
}

func check(feature, metric string, val Value, bound string, limit float64) (string, bool) {
	if !val.Defined() {
		return fmt.Sprintf("%s for %s is undefined (no group has the rates it needs), so the %s limit %g cannot be verified", metric, feature, bound, limit), true
	}
	x := float64(val)
	switch {
	case bound == "max" && x > limit:
		return fmt.Sprintf("%s for %s is %.4f, above the maximum of %g", metric, feature, x, limit), true
	case bound == "min" && x < limit:
		return fmt.Sprintf("%s for %s is %.4f, below the minimum of %g", metric, feature, x, limit), true
	}
	return "", false
}

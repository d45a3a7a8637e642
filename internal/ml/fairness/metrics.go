package fairness

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Input is what the metrics are computed from. YTrue and YPred hold 0 or 1;
// Weights, when set, are non-negative sample weights. Sensitive maps a
// feature name (e.g. "sex") to each row's group.
type Input struct {
	YTrue     []int
	YPred     []int
	Weights   []float64
	Sensitive map[string][]string
}

// IntersectionSep joins feature names and group values of the intersection
// feature: features "race" and "sex" give feature "race&sex" and groups such
// as "black&female".
const IntersectionSep = "&"

// Options control small-group handling.
type Options struct {
	// MinGroupSize is the row count below which a group is flagged Small.
	MinGroupSize int `json:"min_group_size"`
	// IncludeSmallGroups keeps flagged groups in the aggregates.
	IncludeSmallGroups bool `json:"include_small_groups"`
}

// DefaultOptions flags groups with fewer than 30 rows and leaves them out
// of the aggregates (they stay visible, flagged, in the per-group table).
func DefaultOptions() Options { return Options{MinGroupSize: 30} }

// Metric names accepted by Limits and used in Aggregates.
const (
	DemographicParityDifference = "demographic_parity_difference"
	DemographicParityRatio      = "demographic_parity_ratio"
	EqualizedOddsDifference     = "equalized_odds_difference"
	EqualOpportunityDifference  = "equal_opportunity_difference"
)

// GroupMetrics are the rates of one group. Rates are weighted when weights
// are given; Count is always the number of rows.
type GroupMetrics struct {
	Group         string  `json:"group"`
	Count         int     `json:"count"`
	Weight        float64 `json:"weight"`
	SelectionRate Value   `json:"selection_rate"`
	TPR           Value   `json:"true_positive_rate"`
	FPR           Value   `json:"false_positive_rate"`
	FNR           Value   `json:"false_negative_rate"`
	Precision     Value   `json:"precision"`
	Accuracy      Value   `json:"accuracy"`
	// Small is set when Count < Options.MinGroupSize.
	Small bool `json:"small"`
	// Undefined names the rates that have a zero denominator here.
	Undefined []string `json:"undefined,omitempty"`
}

// Aggregates are the between-groups summaries of one feature.
type Aggregates struct {
	DemographicParityDifference Value `json:"demographic_parity_difference"`
	DemographicParityRatio      Value `json:"demographic_parity_ratio"`
	EqualizedOddsDifference     Value `json:"equalized_odds_difference"`
	EqualOpportunityDifference  Value `json:"equal_opportunity_difference"`
	TPRDifference               Value `json:"true_positive_rate_difference"`
	FPRDifference               Value `json:"false_positive_rate_difference"`
}

// Get returns an aggregate by its metric name.
func (a Aggregates) Get(metric string) (Value, bool) {
	switch metric {
	case DemographicParityDifference:
		return a.DemographicParityDifference, true
	case DemographicParityRatio:
		return a.DemographicParityRatio, true
	case EqualizedOddsDifference:
		return a.EqualizedOddsDifference, true
	case EqualOpportunityDifference:
		return a.EqualOpportunityDifference, true
	}
	return 0, false
}

// FeatureReport holds the groups of one sensitive feature (or of the
// intersection of all of them) and their aggregates.
type FeatureReport struct {
	Feature    string         `json:"feature"`
	Groups     []GroupMetrics `json:"groups"`
	Aggregates Aggregates     `json:"aggregates"`
	// Excluded lists the small groups left out of the aggregates.
	Excluded []string `json:"excluded,omitempty"`
}

// Report is the fairness evaluation of one set of predictions.
type Report struct {
	Rows          int             `json:"rows"`
	Accuracy      Value           `json:"accuracy"`
	SelectionRate Value           `json:"selection_rate"`
	Features      []FeatureReport `json:"features"`
	Options       Options         `json:"options"`
}

// Feature returns the report of the named feature.
func (r *Report) Feature(name string) (*FeatureReport, bool) {
	for i := range r.Features {
		if r.Features[i].Feature == name {
			return &r.Features[i], true
		}
	}
	return nil, false
}

// Evaluate computes per-group metrics and aggregates for every sensitive
// feature, in name order, followed by their intersection when there are two
// or more features.
func Evaluate(in Input, opts Options) (*Report, error) {
	if err := in.validate(); err != nil {
		return nil, fmt.Errorf("fairness: %w", err)
	}
	if opts.MinGroupSize < 0 {
		return nil, fmt.Errorf("fairness: min group size must be non-negative, got %d", opts.MinGroupSize)
	}
	all := make([]int, len(in.YTrue))
	for i := range all {
		all[i] = i
	}
	overall := groupMetrics("all", in, all)
	rep := &Report{Rows: len(in.YTrue), Accuracy: overall.Accuracy, SelectionRate: overall.SelectionRate, Options: opts}
	names, keys, err := featureColumns(in.Sensitive)
	if err != nil {
		return nil, fmt.Errorf("fairness: %w", err)
	}
	for i, name := range names {
		rep.Features = append(rep.Features, evaluateFeature(name, keys[i], in, opts))
	}
	return rep, nil
}

// featureColumns returns the sensitive features in name order plus, when
// there are at least two, their intersection.
func featureColumns(sensitive map[string][]string) ([]string, [][]string, error) {
	names := make([]string, 0, len(sensitive)+1)
	for name := range sensitive {
		names = append(names, name)
	}
	slices.Sort(names)
	cols := make([][]string, 0, len(names)+1)
	for _, name := range names {
		cols = append(cols, sensitive[name])
	}
	if len(names) >= 2 {
		key, err := IntersectionKeys(sensitive, names...)
		if err != nil {
			return nil, nil, err
		}
		names = append(names, strings.Join(names, IntersectionSep))
		cols = append(cols, key)
	}
	return names, cols, nil
}

// IntersectionKeys returns, per row, the intersectional group of the named
// features (values joined by IntersectionSep, in the order given), e.g. to
// fit per-group thresholds on sex&race.
func IntersectionKeys(sensitive map[string][]string, names ...string) ([]string, error) {
	if len(names) == 0 {
		return nil, errors.New("intersection of no features")
	}
	var out []string
	for k, name := range names {
		col, ok := sensitive[name]
		if !ok {
			return nil, fmt.Errorf("unknown sensitive feature %q", name)
		}
		if out == nil {
			out = make([]string, len(col))
		} else if len(col) != len(out) {
			return nil, fmt.Errorf("sensitive feature %q has %d rows, expected %d", name, len(col), len(out))
		}
		for i, v := range col {
			if k == 0 {
				out[i] = v
			} else {
				out[i] += IntersectionSep + v
			}
		}
	}
	return out, nil
}

func (in Input) validate() error {
	n := len(in.YTrue)
	if n == 0 {
		return errors.New("no rows")
	}
	if len(in.YPred) != n {
		return fmt.Errorf("y_pred has %d rows, y_true %d", len(in.YPred), n)
	}
	if err := checkBinary("y_true", in.YTrue); err != nil {
		return err
	}
	if err := checkBinary("y_pred", in.YPred); err != nil {
		return err
	}
	if err := checkWeights(in.Weights, n); err != nil {
		return err
	}
	if len(in.Sensitive) == 0 {
		return errors.New("no sensitive features")
	}
	for name, col := range in.Sensitive {
		if name == "" {
			return errors.New("sensitive feature with an empty name")
		}
		if len(col) != n {
			return fmt.Errorf("sensitive feature %q has %d rows, y_true %d", name, len(col), n)
		}
	}
	return nil
}

func checkBinary(name string, v []int) error {
	for i, x := range v {
		if x != 0 && x != 1 {
			return fmt.Errorf("%s[%d] = %d, want 0 or 1", name, i, x)
		}
	}
	return nil
}

func checkWeights(w []float64, n int) error {
	if w == nil {
		return nil
	}
	if len(w) != n {
		return fmt.Errorf("weights have %d rows, expected %d", len(w), n)
	}
	var total float64
	for i, x := range w {
		if !(x >= 0) || math.IsInf(x, 0) {
			return fmt.Errorf("weight %d is %v, want a finite non-negative number", i, x)
		}
		total += x
	}
	if total == 0 {
		return errors.New("weights sum to zero")
	}
	return nil
}

func weightOf(w []float64, i int) float64 {
	if w == nil {
		return 1
	}
	return w[i]
}

func evaluateFeature(name string, col []string, in Input, opts Options) FeatureReport {
	rows := map[string][]int{}
	for i, g := range col {
		rows[g] = append(rows[g], i)
	}
	groups := make([]string, 0, len(rows))
	for g := range rows {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	fr := FeatureReport{Feature: name}
	var used []GroupMetrics
	for _, g := range groups {
		gm := groupMetrics(g, in, rows[g])
		gm.Small = gm.Count < opts.MinGroupSize
		fr.Groups = append(fr.Groups, gm)
		if gm.Small && !opts.IncludeSmallGroups {
			fr.Excluded = append(fr.Excluded, g)
			continue
		}
		used = append(used, gm)
	}
	fr.Aggregates = aggregate(used)
	return fr
}

func groupMetrics(name string, in Input, rows []int) GroupMetrics {
	var w, sel, pos, neg, tp, fp, correct float64
	for _, i := range rows {
		wi := weightOf(in.Weights, i)
		w += wi
		yt, yp := in.YTrue[i], in.YPred[i]
		if yp == 1 {
			sel += wi
		}
		if yt == 1 {
			pos += wi
			if yp == 1 {
				tp += wi
			}
		} else {
			neg += wi
			if yp == 1 {
				fp += wi
			}
		}
		if yt == yp {
			correct += wi
		}
	}
	gm := GroupMetrics{
		Group:         name,
		Count:         len(rows),
		Weight:        w,
		SelectionRate: ratio(sel, w),
		TPR:           ratio(tp, pos),
		FPR:           ratio(fp, neg),
		FNR:           ratio(pos-tp, pos),
		Precision:     ratio(tp, sel),
		Accuracy:      ratio(correct, w),
	}
	for _, m := range []struct {
		name string
		v    Value
	}{
		{"selection_rate", gm.SelectionRate}, {"true_positive_rate", gm.TPR},
		{"false_positive_rate", gm.FPR}, {"false_negative_rate", gm.FNR},
		{"precision", gm.Precision}, {"accuracy", gm.Accuracy},
	} {
		if !m.v.Defined() {
			gm.Undefined = append(gm.Undefined, m.name)
		}
	}
	return gm
}

// spread returns max and min of the defined values; ok is false when none
// is defined.
func spread(vals []Value) (lo, hi float64, ok bool) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		if v.Defined() {
			lo, hi, ok = math.Min(lo, float64(v)), math.Max(hi, float64(v)), true
		}
	}
	return lo, hi, ok
}

func difference(vals []Value) Value {
	lo, hi, ok := spread(vals)
	if !ok {
		return Undefined()
	}
	return Value(hi - lo)
}

func aggregate(groups []GroupMetrics) Aggregates {
	var sel, tpr, fpr []Value
	for _, g := range groups {
		sel = append(sel, g.SelectionRate)
		tpr = append(tpr, g.TPR)
		fpr = append(fpr, g.FPR)
	}
	a := Aggregates{
		DemographicParityDifference: difference(sel),
		TPRDifference:               difference(tpr),
		FPRDifference:               difference(fpr),
	}
	a.EqualOpportunityDifference = a.TPRDifference
	a.DemographicParityRatio = Undefined()
	if lo, hi, ok := spread(sel); ok && hi > 0 {
		a.DemographicParityRatio = Value(lo / hi)
	}
	a.EqualizedOddsDifference = Undefined()
	if a.TPRDifference.Defined() && a.FPRDifference.Defined() {
		a.EqualizedOddsDifference = Value(math.Max(float64(a.TPRDifference), float64(a.FPRDifference)))
	}
	return a
}

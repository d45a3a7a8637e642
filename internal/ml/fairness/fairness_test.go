package fairness

import (
	"compress/gzip"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Fixtures come from testdata/fairness/gen_fixtures.py (numpy, following
// Fairlearn's definitions); no Python runs at test time.

func fixturePath(name string) string {
	return filepath.Join("..", "..", "..", "testdata", "fairness", name)
}

type refGroup struct {
	Count         int      `json:"count"`
	Weight        float64  `json:"weight"`
	SelectionRate *float64 `json:"selection_rate"`
	TPR           *float64 `json:"true_positive_rate"`
	FPR           *float64 `json:"false_positive_rate"`
	FNR           *float64 `json:"false_negative_rate"`
	Precision     *float64 `json:"precision"`
	Accuracy      *float64 `json:"accuracy"`
}

type refFeature struct {
	Groups     map[string]refGroup `json:"groups"`
	Aggregates map[string]*float64 `json:"aggregates"`
	Excluded   []string            `json:"excluded"`
}

type metricsFixture struct {
	YTrue          []int                            `json:"y_true"`
	YPred          []int                            `json:"y_pred"`
	Weights        []float64                        `json:"weights"`
	Sex            []string                         `json:"sex"`
	Race           []string                         `json:"race"`
	Accuracy       float64                          `json:"accuracy"`
	Expected       map[string]map[string]refFeature `json:"expected"`
	ReweighSex     []float64                        `json:"reweigh_sex"`
	ReweighRaceSex []float64                        `json:"reweigh_race_sex"`
}

func loadMetrics(t *testing.T) metricsFixture {
	t.Helper()
	b, err := os.ReadFile(fixturePath("metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx metricsFixture
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatal(err)
	}
	return fx
}

func (fx metricsFixture) input(weighted bool) Input {
	in := Input{YTrue: fx.YTrue, YPred: fx.YPred, Sensitive: map[string][]string{"sex": fx.Sex, "race": fx.Race}}
	if weighted {
		in.Weights = fx.Weights
	}
	return in
}

const tol = 1e-12

func sameValue(got Value, want *float64) bool {
	if want == nil {
		return !got.Defined()
	}
	return got.Defined() && math.Abs(float64(got)-*want) <= tol
}

func checkAgainst(t *testing.T, rep *Report, want map[string]refFeature) {
	t.Helper()
	if len(rep.Features) != len(want) {
		t.Fatalf("%d features, reference has %d", len(rep.Features), len(want))
	}
	for _, f := range rep.Features {
		ref, ok := want[f.Feature]
		if !ok {
			t.Errorf("unexpected feature %q", f.Feature)
			continue
		}
		if len(f.Groups) != len(ref.Groups) {
			t.Errorf("%s: %d groups, reference %d", f.Feature, len(f.Groups), len(ref.Groups))
		}
		for _, g := range f.Groups {
			rg, ok := ref.Groups[g.Group]
			if !ok {
				t.Errorf("%s: unexpected group %q", f.Feature, g.Group)
				continue
			}
			if g.Count != rg.Count || math.Abs(g.Weight-rg.Weight) > 1e-9 {
				t.Errorf("%s/%s: count %d weight %v, reference %d %v", f.Feature, g.Group, g.Count, g.Weight, rg.Count, rg.Weight)
			}
			for _, m := range []struct {
				name string
				got  Value
				want *float64
			}{
				{"selection_rate", g.SelectionRate, rg.SelectionRate}, {"tpr", g.TPR, rg.TPR},
				{"fpr", g.FPR, rg.FPR}, {"fnr", g.FNR, rg.FNR},
				{"precision", g.Precision, rg.Precision}, {"accuracy", g.Accuracy, rg.Accuracy},
			} {
				if !sameValue(m.got, m.want) {
					t.Errorf("%s/%s %s: %v, reference %v", f.Feature, g.Group, m.name, m.got, deref(m.want))
				}
			}
		}
		for name, want := range ref.Aggregates {
			var got Value
			switch name {
			case "true_positive_rate_difference":
				got = f.Aggregates.TPRDifference
			case "false_positive_rate_difference":
				got = f.Aggregates.FPRDifference
			default:
				var ok bool
				if got, ok = f.Aggregates.Get(name); !ok {
					t.Fatalf("unknown aggregate %q", name)
				}
			}
			if !sameValue(got, want) {
				t.Errorf("%s %s: %v, reference %v", f.Feature, name, got, deref(want))
			}
		}
		if strings.Join(f.Excluded, ",") != strings.Join(ref.Excluded, ",") {
			t.Errorf("%s excluded %v, reference %v", f.Feature, f.Excluded, ref.Excluded)
		}
	}
}

func deref(p *float64) any {
	if p == nil {
		return "undefined"
	}
	return *p
}

func TestEvaluateMatchesNumpyReference(t *testing.T) {
	fx := loadMetrics(t)
	for _, c := range []struct {
		name     string
		weighted bool
		opts     Options
	}{
		{"unweighted_all", false, Options{}},
		{"weighted_all", true, Options{}},
		{"unweighted_min30", false, DefaultOptions()},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep, err := Evaluate(fx.input(c.weighted), c.opts)
			if err != nil {
				t.Fatal(err)
			}
			checkAgainst(t, rep, fx.Expected[c.name])
			if !c.weighted && math.Abs(float64(rep.Accuracy)-fx.Accuracy) > tol {
				t.Errorf("accuracy %v, reference %v", rep.Accuracy, fx.Accuracy)
			}
		})
	}
}

func TestUndefinedRatesAreFlaggedNotZero(t *testing.T) {
	fx := loadMetrics(t)
	rep, err := Evaluate(fx.input(false), Options{})
	if err != nil {
		t.Fatal(err)
	}
	race, ok := rep.Feature("race")
	if !ok {
		t.Fatal("race missing")
	}
	var other *GroupMetrics
	for i := range race.Groups {
		if race.Groups[i].Group == "other" {
			other = &race.Groups[i]
		}
	}
	if other == nil {
		t.Fatal("fixture lacks the positive-free group")
	}
	if other.TPR.Defined() || other.FNR.Defined() {
		t.Errorf("TPR/FNR of a group without positives must be undefined, got %v/%v", other.TPR, other.FNR)
	}
	if strings.Join(other.Undefined, ",") != "true_positive_rate,false_negative_rate" {
		t.Errorf("undefined list %v", other.Undefined)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatalf("report with undefined values must marshal: %v", err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	f, _ := back.Feature("race")
	for _, g := range f.Groups {
		if g.Group == "other" && g.TPR.Defined() {
			t.Error("undefined TPR did not survive a JSON round trip")
		}
	}
}

func TestSmallGroupsFlaggedAndExcludedByDefault(t *testing.T) {
	fx := loadMetrics(t)
	rep, err := Evaluate(fx.input(false), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	race, _ := rep.Feature("race")
	if strings.Join(race.Excluded, ",") != "other" {
		t.Errorf("excluded %v, want [other]", race.Excluded)
	}
	for _, g := range race.Groups {
		if g.Small != (g.Count < 30) {
			t.Errorf("group %s (count %d) small=%v", g.Group, g.Count, g.Small)
		}
	}
	incl, err := Evaluate(fx.input(false), Options{MinGroupSize: 30, IncludeSmallGroups: true})
	if err != nil {
		t.Fatal(err)
	}
	ri, _ := incl.Feature("race")
	if len(ri.Excluded) != 0 {
		t.Errorf("IncludeSmallGroups still excluded %v", ri.Excluded)
	}
	want := fx.Expected["unweighted_all"]["race"].Aggregates[DemographicParityDifference]
	if !sameValue(ri.Aggregates.DemographicParityDifference, want) {
		t.Errorf("with small groups included DP difference %v, want %v", ri.Aggregates.DemographicParityDifference, *want)
	}
}

func TestEvaluateRejectsBadInput(t *testing.T) {
	ok := Input{YTrue: []int{0, 1}, YPred: []int{1, 1}, Sensitive: map[string][]string{"s": {"a", "b"}}}
	if _, err := Evaluate(ok, DefaultOptions()); err != nil {
		t.Fatalf("valid input rejected: %v", err)
	}
	for name, mut := range map[string]func(*Input){
		"empty":          func(in *Input) { in.YTrue, in.YPred, in.Sensitive["s"] = nil, nil, nil },
		"length":         func(in *Input) { in.YPred = []int{1} },
		"non-binary":     func(in *Input) { in.YTrue = []int{0, 2} },
		"weights length": func(in *Input) { in.Weights = []float64{1} },
		"NaN weight":     func(in *Input) { in.Weights = []float64{1, math.NaN()} },
		"negative":       func(in *Input) { in.Weights = []float64{1, -1} },
		"zero weights":   func(in *Input) { in.Weights = []float64{0, 0} },
		"no features":    func(in *Input) { in.Sensitive = nil },
		"feature length": func(in *Input) { in.Sensitive = map[string][]string{"s": {"a"}} },
	} {
		in := Input{YTrue: []int{0, 1}, YPred: []int{1, 1}, Sensitive: map[string][]string{"s": {"a", "b"}}}
		mut(&in)
		if _, err := Evaluate(in, DefaultOptions()); err == nil {
			t.Errorf("%s: expected an error", name)
		}
	}
}

func TestGate(t *testing.T) {
	fx := loadMetrics(t)
	rep, err := Evaluate(fx.input(false), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ref := fx.Expected["unweighted_all"]
	sexDP := *ref["sex"].Aggregates[DemographicParityDifference]

	// A limit just above the worst feature passes; just below the sex
	// value fails for sex (and for any feature above it).
	worst := 0.0
	for _, f := range ref {
		worst = math.Max(worst, *f.Aggregates[DemographicParityDifference])
	}
	v, err := rep.Gate(Limits{Max: map[string]float64{DemographicParityDifference: worst + 1e-9}})
	if err != nil || !v.Passed || len(v.Violations) != 0 {
		t.Fatalf("loose limit: %+v, %v", v, err)
	}
	v, err = rep.Gate(Limits{
		Max:      map[string]float64{DemographicParityDifference: sexDP - 1e-3},
		Min:      map[string]float64{DemographicParityRatio: 0.99},
		Features: []string{"sex"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if v.Passed || len(v.Violations) != 2 {
		t.Fatalf("want 2 violations, got %+v", v)
	}
	dp := v.Violations[0]
	if dp.Feature != "sex" || dp.Metric != DemographicParityDifference || dp.Bound != "max" ||
		math.Abs(float64(dp.Value)-sexDP) > tol || !strings.Contains(dp.Message, "above the maximum") {
		t.Errorf("unexpected violation %+v", dp)
	}
	if r := v.Violations[1]; r.Metric != DemographicParityRatio || r.Bound != "min" || !strings.Contains(r.Message, "below the minimum") {
		t.Errorf("unexpected violation %+v", r)
	}

	if _, err := rep.Gate(Limits{Max: map[string]float64{"demographic_parity_diference": 0.1}}); err == nil {
		t.Error("misspelt metric accepted")
	}
	if _, err := rep.Gate(Limits{Max: map[string]float64{DemographicParityDifference: 0.1}, Features: []string{"age"}}); err == nil {
		t.Error("unknown feature accepted")
	}
	if _, err := rep.Gate(Limits{}); err == nil {
		t.Error("empty limits accepted")
	}
}

func TestGateFailsOnUndefinedMetric(t *testing.T) {
	// No group has a positive label: equal opportunity cannot be measured.
	in := Input{YTrue: []int{0, 0, 0, 0}, YPred: []int{0, 1, 0, 1}, Sensitive: map[string][]string{"g": {"a", "a", "b", "b"}}}
	rep, err := Evaluate(in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := rep.Gate(Limits{Max: map[string]float64{EqualOpportunityDifference: 0.5}})
	if err != nil {
		t.Fatal(err)
	}
	if v.Passed || len(v.Violations) != 1 || !strings.Contains(v.Violations[0].Message, "undefined") {
		t.Errorf("undefined metric must fail the gate: %+v", v)
	}
}

func TestReweighMatchesFormula(t *testing.T) {
	fx := loadMetrics(t)
	for name, c := range map[string]struct {
		groups []string
		want   []float64
	}{
		"sex":      {fx.Sex, fx.ReweighSex},
		"race&sex": {mustKeys(t, fx), fx.ReweighRaceSex},
	} {
		w, err := Reweigh(fx.YTrue, c.groups)
		if err != nil {
			t.Fatal(err)
		}
		for i := range w {
			if math.Abs(w[i]-c.want[i]) > 1e-12 {
				t.Fatalf("%s row %d: weight %v, formula %v", name, i, w[i], c.want[i])
			}
		}
		// The point of the weights: in the weighted data every group that
		// has both labels gets the overall base rate (a group with one label
		// only cannot be rebalanced by weights).
		base := 0.0
		for _, y := range fx.YTrue {
			base += float64(y)
		}
		base /= float64(len(fx.YTrue))
		num, den, pos := map[string]float64{}, map[string]float64{}, map[string]int{}
		for i, g := range c.groups {
			num[g] += w[i] * float64(fx.YTrue[i])
			den[g] += w[i]
			pos[g] += fx.YTrue[i]
		}
		for g := range den {
			if pos[g] == 0 {
				continue
			}
			if math.Abs(num[g]/den[g]-base) > 1e-12 {
				t.Errorf("%s: weighted base rate of %s is %v, overall %v", name, g, num[g]/den[g], base)
			}
		}
	}
	if _, err := Reweigh([]int{0, 1}, []string{"a"}); err == nil {
		t.Error("length mismatch accepted")
	}
	if _, err := Reweigh(nil, nil); err == nil {
		t.Error("empty input accepted")
	}
	if _, err := Reweigh([]int{3}, []string{"a"}); err == nil {
		t.Error("non-binary label accepted")
	}
}

func mustKeys(t *testing.T, fx metricsFixture) []string {
	t.Helper()
	k, err := IntersectionKeys(map[string][]string{"race": fx.Race, "sex": fx.Sex}, "race", "sex")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type scored struct {
	Scores []float64 `json:"scores"`
	YTrue  []int     `json:"y_true"`
	Group  []string  `json:"group"`
}

func loadBiased(t *testing.T) (train, test scored, before map[string]map[string]float64) {
	t.Helper()
	f, err := os.Open(fixturePath("thresholds.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		Train  scored                        `json:"train"`
		Test   scored                        `json:"test"`
		Before map[string]map[string]float64 `json:"before_at_0_5"`
	}
	if err := json.NewDecoder(zr).Decode(&fx); err != nil {
		t.Fatal(err)
	}
	return fx.Train, fx.Test, fx.Before
}

func predictAt(scores []float64, th float64) []int {
	out := make([]int, len(scores))
	for i, s := range scores {
		if s >= th {
			out[i] = 1
		}
	}
	return out
}

func evalScored(t *testing.T, d scored, pred []int) *Report {
	t.Helper()
	rep, err := Evaluate(Input{YTrue: d.YTrue, YPred: pred, Sensitive: map[string][]string{"group": d.Group}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestThresholdsReduceDemographicParityOnHeldOutData(t *testing.T) {
	train, test, before := loadBiased(t)
	policy, err := FitThresholds(train.Scores, train.YTrue, train.Group, nil, ThresholdOptions{Constraint: DemographicParity, Tolerance: 0.02})
	if err != nil {
		t.Fatal(err)
	}
	if !policy.Feasible || policy.Gap > 0.02 {
		t.Errorf("training gap %v (feasible=%v), want <= 0.02", policy.Gap, policy.Feasible)
	}

	// Stored with the model, reloaded, applied to other data.
	b, err := json.Marshal(policy)
	if err != nil {
		t.Fatal(err)
	}
	var loaded ThresholdPolicy
	if err := json.Unmarshal(b, &loaded); err != nil {
		t.Fatal(err)
	}
	pred, err := loaded.Predict(test.Scores, test.Group)
	if err != nil {
		t.Fatal(err)
	}
	beforeRep := evalScored(t, test, predictAt(test.Scores, 0.5))
	afterRep := evalScored(t, test, pred)
	bDP := float64(beforeRep.Features[0].Aggregates.DemographicParityDifference)
	aDP := float64(afterRep.Features[0].Aggregates.DemographicParityDifference)
	if math.Abs(bDP-before["test"]["dp_difference"]) > 1e-12 {
		t.Fatalf("baseline DP %v disagrees with the fixture's %v", bDP, before["test"]["dp_difference"])
	}
	const target = 0.05
	if aDP >= target {
		t.Errorf("held-out DP difference %v after thresholds, want < %v (before: %v)", aDP, target, bDP)
	}
	cost, err := Cost(beforeRep, afterRep)
	if err != nil {
		t.Fatal(err)
	}
	if float64(cost.Features[0].Before.DemographicParityDifference) != bDP || float64(cost.Features[0].After.DemographicParityDifference) != aDP {
		t.Errorf("cost report does not carry the aggregates: %+v", cost.Features[0])
	}
	if math.Abs(float64(cost.AccuracyBefore)-before["test"]["accuracy"]) > 1e-12 {
		t.Errorf("accuracy before %v, fixture %v", cost.AccuracyBefore, before["test"]["accuracy"])
	}
	t.Logf("DP difference %.4f -> %.4f, accuracy %.4f -> %.4f", bDP, aDP, float64(cost.AccuracyBefore), float64(cost.AccuracyAfter))
}

func TestThresholdsReduceEqualizedOdds(t *testing.T) {
	train, test, _ := loadBiased(t)
	policy, err := FitThresholds(train.Scores, train.YTrue, train.Group, nil, ThresholdOptions{Constraint: EqualizedOdds, Tolerance: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	pred, err := policy.Predict(test.Scores, test.Group)
	if err != nil {
		t.Fatal(err)
	}
	bEO := float64(evalScored(t, test, predictAt(test.Scores, 0.5)).Features[0].Aggregates.EqualizedOddsDifference)
	aEO := float64(evalScored(t, test, pred).Features[0].Aggregates.EqualizedOddsDifference)
	if aEO >= 0.1 || aEO >= bEO/2 {
		t.Errorf("held-out equalized odds difference %v after thresholds (before %v)", aEO, bEO)
	}
	t.Logf("EO difference %.4f -> %.4f (training gap %.4f, feasible %v)", bEO, aEO, policy.Gap, policy.Feasible)
}

func TestThresholdPolicyIsDeterministicAndHandlesUnseenGroups(t *testing.T) {
	train, _, _ := loadBiased(t)
	opts := ThresholdOptions{Constraint: DemographicParity}
	p1, err := FitThresholds(train.Scores, train.YTrue, train.Group, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := FitThresholds(train.Scores, train.YTrue, train.Group, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	for g, th := range p1.Thresholds {
		if p2.Thresholds[g] != th {
			t.Errorf("group %s: %v then %v", g, th, p2.Thresholds[g])
		}
	}
	pred, err := p1.Predict([]float64{p1.Fallback, math.Nextafter(p1.Fallback, 0)}, []string{"unseen", "unseen"})
	if err != nil {
		t.Fatal(err)
	}
	if pred[0] != 1 || pred[1] != 0 {
		t.Errorf("unseen group must use the fallback threshold %v, got %v", p1.Fallback, pred)
	}
}

func TestFitThresholdsRejectsBadInput(t *testing.T) {
	s, y, g := []float64{0.1, 0.9}, []int{0, 1}, []string{"a", "b"}
	dp := ThresholdOptions{Constraint: DemographicParity}
	if _, err := FitThresholds(s, y, g, nil, dp); err != nil {
		t.Fatalf("valid input rejected: %v", err)
	}
	for name, c := range map[string]func() error{
		"constraint": func() error {
			_, err := FitThresholds(s, y, g, nil, ThresholdOptions{Constraint: "parity"})
			return err
		},
		"NaN score": func() error {
			_, err := FitThresholds([]float64{math.NaN(), 1}, y, g, nil, dp)
			return err
		},
		"lengths": func() error { _, err := FitThresholds(s, []int{1}, g, nil, dp); return err },
		"groups":  func() error { _, err := FitThresholds(s, y, []string{"a"}, nil, dp); return err },
		"empty":   func() error { _, err := FitThresholds(nil, nil, nil, nil, dp); return err },
		"tolerance": func() error {
			_, err := FitThresholds(s, y, g, nil, ThresholdOptions{Constraint: DemographicParity, Tolerance: 2})
			return err
		},
		"predict unfitted": func() error {
			var p *ThresholdPolicy
			_, err := p.Predict(s, g)
			return err
		},
	} {
		if c() == nil {
			t.Errorf("%s: expected an error", name)
		}
	}
}

package report

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/fairness"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
)

// scored is one trained model's evaluation on the shared test split.
type scored struct {
	scores []float64
	eval   *evaluate.Report
	model  Model
}

type fixtureData struct {
	y         []float64
	sensitive map[string][]string
	cand      scored
	champ     scored
	err       error
}

var (
	fixtureOnce sync.Once
	fixtureVal  fixtureData
)

// trainedModels trains two logistic regressions on builtin:credit-risk once
// per test binary: the candidate on the full training split, the champion
// (the older, weaker model) on a tenth of it with strong regularisation.
func trainedModels(t *testing.T) fixtureData {
	t.Helper()
	fixtureOnce.Do(func() { fixtureVal = buildFixture() })
	if fixtureVal.err != nil {
		t.Fatal(fixtureVal.err)
	}
	return fixtureVal
}

func buildFixture() fixtureData {
	var f fixtureData
	d, err := dataset.Load("builtin:credit-risk?rows=1500&seed=7&bias=0.3")
	if err != nil {
		return fixtureData{err: err}
	}
	train, test, err := d.Split(0.4, 1)
	if err != nil {
		return fixtureData{err: err}
	}
	enc, err := dataset.FitEncoder(train, dataset.EncoderOptions{})
	if err != nil {
		return fixtureData{err: err}
	}
	xTest, err := enc.Transform(test)
	if err != nil {
		return fixtureData{err: err}
	}
	small := make([]int, 0, train.Len()/10)
	for i := 0; i < train.Len(); i += 10 {
		small = append(small, i)
	}
	f.y, f.sensitive = test.Y, test.Sensitive
	for _, m := range []struct {
		out     *scored
		rows    *dataset.Dataset
		c       float64
		name    string
		version string
	}{
		{&f.cand, train, 1, "credit-risk", "7"},
		{&f.champ, train.Subset(small), 0.01, "credit-risk", "6"},
	} {
		x, err := enc.Transform(m.rows)
		if err != nil {
			return fixtureData{err: err}
		}
		net, err := model.Train(context.Background(), x, m.rows.Y, model.Config{Kind: model.LogReg, C: m.c})
		if err != nil {
			return fixtureData{err: err}
		}
		if m.out.scores, err = net.PredictProba(xTest); err != nil {
			return fixtureData{err: err}
		}
		if m.out.eval, err = evaluate.Evaluate(test.Y, m.out.scores, evaluate.Options{}); err != nil {
			return fixtureData{err: err}
		}
		roc, err := ROC(test.Y, m.out.scores, nil)
		if err != nil {
			return fixtureData{err: err}
		}
		m.out.model = NewModel(m.name, m.version, "sha256:"+m.version+"abc", m.out.eval, roc)
	}
	return f
}

func ptr[T any](v T) *T { return &v }

// evidence builds the report input the way the pipeline would: the gate's
// verdict, fairness of the candidate's decisions, and optionally the effect
// of per-group thresholds on sex.
func evidence(t *testing.T, withChampion, mitigate bool) Evidence {
	t.Helper()
	f := trainedModels(t)
	ev := Evidence{
		RunID:     "run-42",
		Pipeline:  "credit-risk",
		Created:   time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC),
		Candidate: f.cand.model,
		Notes:     []string{"income: PSI 0.04 against training data (no drift)"},
	}
	var baseline map[string]float64
	if withChampion {
		champ := f.champ.model
		ev.Champion = &champ
		baseline = f.champ.eval.Metrics
	}
	verdict, err := evaluate.Compare(f.cand.eval.Metrics, baseline, map[string]evaluate.Threshold{
		evaluate.ROCAUC:  {Threshold: ptr(0.6), MinAbsoluteChange: ptr(-0.01)},
		evaluate.LogLoss: {Threshold: ptr(0.2)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ev.Verdict = verdict

	yTrue := make([]int, len(f.y))
	for i, v := range f.y {
		yTrue[i] = int(v)
	}
	fr, err := fairness.Evaluate(fairness.Input{YTrue: yTrue, YPred: predict(f.cand.scores, 0.5), Sensitive: f.sensitive}, fairness.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	limits := fairness.Limits{Max: map[string]float64{fairness.DemographicParityDifference: 0.05}, Features: []string{"sex"}}
	gate, err := fr.Gate(limits)
	if err != nil {
		t.Fatal(err)
	}
	ev.Fairness = &Fairness{Report: fr, Verdict: &gate}
	if !mitigate {
		return ev
	}
	policy, err := fairness.FitThresholds(f.cand.scores, yTrue, f.sensitive["sex"], nil, fairness.ThresholdOptions{Constraint: fairness.DemographicParity})
	if err != nil {
		t.Fatal(err)
	}
	pred, err := policy.Predict(f.cand.scores, f.sensitive["sex"])
	if err != nil {
		t.Fatal(err)
	}
	after, err := fairness.Evaluate(fairness.Input{YTrue: yTrue, YPred: pred, Sensitive: f.sensitive}, fairness.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	afterGate, err := after.Gate(limits)
	if err != nil {
		t.Fatal(err)
	}
	cost, err := fairness.Cost(fr, after)
	if err != nil {
		t.Fatal(err)
	}
	ev.Fairness.Mitigation = "per-group thresholds on sex (demographic parity)"
	ev.Fairness.Mitigated, ev.Fairness.MitigatedVerdict, ev.Fairness.Cost = after, &afterGate, &cost
	return ev
}

func predict(scores []float64, thr float64) []int {
	out := make([]int, len(scores))
	for i, s := range scores {
		if s >= thr {
			out[i] = 1
		}
	}
	return out
}

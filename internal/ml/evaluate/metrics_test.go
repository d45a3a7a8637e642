package evaluate

import (
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/mltest"
)

type refCase struct {
	Name            string    `json:"name"`
	Y               []float64 `json:"y"`
	Scores          []float64 `json:"scores"`
	Weights         []float64 `json:"weights"`
	Accuracy        float64   `json:"accuracy"`
	Precision       float64   `json:"precision"`
	Recall          float64   `json:"recall"`
	F1              float64   `json:"f1"`
	ROCAUC          float64   `json:"roc_auc"`
	PRAUC           float64   `json:"pr_auc"`
	LogLoss         float64   `json:"log_loss"`
	Brier           float64   `json:"brier"`
	CalibrationTrue []float64 `json:"calibration_true"`
	CalibrationPred []float64 `json:"calibration_pred"`
}

func loadCases(t *testing.T) []refCase {
	b, err := os.ReadFile(mltest.Fixture(t, "metrics_reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct{ Cases []refCase }
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	if len(ref.Cases) == 0 {
		t.Fatal("no reference cases")
	}
	return ref.Cases
}

func TestMetricsMatchSklearn(t *testing.T) {
	for _, c := range loadCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			r, err := Evaluate(c.Y, c.Scores, Options{Weights: c.Weights})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]float64{
				Accuracy: c.Accuracy, Precision: c.Precision, Recall: c.Recall, F1: c.F1,
				ROCAUC: c.ROCAUC, PRAUC: c.PRAUC, LogLoss: c.LogLoss, Brier: c.Brier,
			}
			for name, w := range want {
				if got := r.Metrics[name]; math.Abs(got-w) > 1e-9 {
					t.Errorf("%s = %.15g, sklearn %.15g", name, got, w)
				}
			}
			if c.CalibrationTrue == nil {
				return
			}
			var gotTrue, gotPred []float64
			for _, b := range r.Calibration {
				if b.Count > 0 {
					gotTrue = append(gotTrue, b.FractionTrue)
					gotPred = append(gotPred, b.MeanPredicted)
				}
			}
			if len(gotTrue) != len(c.CalibrationTrue) {
				t.Fatalf("%d non-empty calibration bins, sklearn %d", len(gotTrue), len(c.CalibrationTrue))
			}
			for i := range gotTrue {
				if math.Abs(gotTrue[i]-c.CalibrationTrue[i]) > 1e-9 || math.Abs(gotPred[i]-c.CalibrationPred[i]) > 1e-9 {
					t.Errorf("bin %d: (%g, %g), sklearn (%g, %g)", i, gotTrue[i], gotPred[i], c.CalibrationTrue[i], c.CalibrationPred[i])
				}
			}
		})
	}
}

// TestChooseThresholdIsBest compares against a brute-force scan over every
// observed score.
func TestChooseThresholdIsBest(t *testing.T) {
	c := loadCases(t)[3]
	for _, obj := range []Objective{MaxF1, Youden} {
		thr, best, err := ChooseThreshold(c.Y, c.Scores, c.Weights, obj)
		if err != nil {
			t.Fatal(err)
		}
		score := func(th float64) float64 {
			conf := ConfusionAt(c.Y, c.Scores, c.Weights, th)
			if obj == MaxF1 {
				return conf.F1()
			}
			return conf.TP/(conf.TP+conf.FN) - conf.FP/(conf.FP+conf.TN)
		}
		if got := score(thr); math.Abs(got-best) > 1e-12 {
			t.Errorf("%s: reported %v but threshold %v scores %v", obj, best, thr, got)
		}
		for _, s := range c.Scores {
			if score(s) > best+1e-12 {
				t.Errorf("%s: threshold %v scores %v, better than chosen %v (%v)", obj, s, score(s), thr, best)
			}
		}
	}
}

func TestEvaluateRejectsBadInput(t *testing.T) {
	for name, tc := range map[string]struct{ y, s, w []float64 }{
		"length":    {[]float64{0, 1}, []float64{0.5}, nil},
		"label":     {[]float64{0, 2}, []float64{0.1, 0.9}, nil},
		"score":     {[]float64{0, 1}, []float64{0.1, 1.5}, nil},
		"nan":       {[]float64{0, 1}, []float64{0.1, math.NaN()}, nil},
		"one class": {[]float64{1, 1}, []float64{0.1, 0.9}, nil},
		"weights":   {[]float64{0, 1}, []float64{0.1, 0.9}, []float64{1, -1}},
		"empty":     {nil, nil, nil},
	} {
		if _, err := Evaluate(tc.y, tc.s, Options{}); err == nil && name != "weights" {
			t.Errorf("%s: no error", name)
		}
		if _, err := Evaluate(tc.y, tc.s, Options{Weights: tc.w}); err == nil && tc.w != nil {
			t.Errorf("%s: no error with weights", name)
		}
	}
}

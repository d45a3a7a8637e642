package dp

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"gonum.org/v1/gonum/mat"
)

func creditRisk(t *testing.T, rows int) (*mat.Dense, []float64) {
	t.Helper()
	d, err := dataset.Load("builtin:credit-risk?rows=" + strconv.Itoa(rows) + "&seed=3")
	if err != nil {
		t.Fatal(err)
	}
	enc, err := dataset.FitEncoder(d, dataset.EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	x, err := enc.Transform(d)
	if err != nil {
		t.Fatal(err)
	}
	return x, d.Y
}

func auc(t *testing.T, net *model.Network, x *mat.Dense, y []float64) float64 {
	p, err := net.PredictProba(x)
	if err != nil {
		t.Fatal(err)
	}
	a, err := evaluate.ROCAUCScore(y, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestTrainMeetsTargetAndLearns(t *testing.T) {
	x, y := creditRisk(t, 4000)
	for _, kind := range []model.Kind{model.LogReg, model.MLP} {
		net, g, err := Train(context.Background(), x, y, model.Config{Kind: kind, Seed: 2, Hidden: []int{8}}, Options{Epsilon: 3, Epochs: 5, BatchSize: 200})
		if err != nil {
			t.Fatal(err)
		}
		eps, _, _ := Epsilon(g.SamplingRate, g.NoiseMultiplier, g.Steps, g.Delta)
		if g.Epsilon > 3 || eps != g.Epsilon || g.Steps != 5*20 || g.SamplingRate != 0.05 || g.Sampling != "poisson" {
			t.Errorf("%s: guarantee %+v", kind, g)
		}
		if a := auc(t, net, x, y); a < 0.7 {
			t.Errorf("%s: DP model AUC %.3f, want it to have learnt something", kind, a)
		}
	}
}

// With noise that drowns any signal the model cannot learn: the noise is
// really added, on the scale σ·C.
func TestNoiseIsAdded(t *testing.T) {
	x, y := creditRisk(t, 2000)
	net, _, err := Train(context.Background(), x, y, model.Config{Kind: model.LogReg, Seed: 2}, Options{NoiseMultiplier: 1000, Epochs: 3, BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	if a := auc(t, net, x, y); math.Abs(a-0.5) > 0.2 {
		t.Errorf("AUC %.3f under σ=1000, want near chance", a)
	}
}

func TestBudgetExceeded(t *testing.T) {
	_, err := Plan(10000, Options{Epsilon: 1, NoiseMultiplier: 0.8, Epochs: 50, BatchSize: 100})
	if !errors.Is(err, ErrBudget) || !strings.Contains(err.Error(), "epochs fit") {
		t.Fatalf("got %v, want a budget error naming the epochs that fit", err)
	}
	g, err := Plan(10000, Options{NoiseMultiplier: 0.8, Epochs: 1, BatchSize: 100})
	if err != nil || !(g.Epsilon > 0) {
		t.Fatalf("σ alone: %+v, %v", g, err)
	}
	for _, o := range []Options{{}, {Epsilon: 1, Delta: 2}, {Epsilon: 1, Clip: -1}, {Epsilon: 1, BatchSize: 20000}, {Epsilon: math.Inf(1)}} {
		if _, err := Plan(10000, o); err == nil {
			t.Errorf("Plan accepted %+v", o)
		}
	}
}

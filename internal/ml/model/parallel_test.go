package model_test

import (
	"context"
	"math"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/matrix"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"gonum.org/v1/gonum/mat"
)

// The gradient is summed over fixed row blocks (logistic regression) and
// batch parts (MLP) and the blocks are added in order, so the number of
// workers must not change a single bit of the result.
func TestWorkersDoNotChangeTheFit(t *testing.T) {
	x, y := creditRisk(t, 9000) // more than two logistic regression blocks
	for _, cfg := range []model.Config{
		{Kind: model.LogReg},
		{Kind: model.MLP, Seed: 5, Epochs: 2, Hidden: []int{16, 8}, BatchSize: 100},
	} {
		one := must(model.Train(context.Background(), x, y, cfg, model.WithWorkers(1)))
		for _, workers := range []int{2, 3, 8} {
			many := must(model.Train(context.Background(), x, y, cfg, model.WithWorkers(workers)))
			if !sameBits(flat(one), flat(many)) {
				t.Errorf("%s: %d workers give other weights than 1", cfg.Kind, workers)
			}
		}
	}
	w := make([]float64, len(y))
	for i := range w {
		w[i] = float64(1 + i%3)
	}
	one := must(model.Train(context.Background(), x, y, model.Config{Kind: model.LogReg}, model.WithWorkers(1), model.WithSampleWeights(w)))
	two := must(model.Train(context.Background(), x, y, model.Config{Kind: model.LogReg}, model.WithWorkers(2), model.WithSampleWeights(w)))
	if !sameBits(flat(one), flat(two)) {
		t.Error("weighted logistic regression: 2 workers give other weights than 1")
	}
}

// A float32 matrix holds the same data to about 7 significant digits, so
// the fitted weights agree with the float64 fit to well within what
// matters for scoring.
func TestFloat32MatrixTrainsLikeFloat64(t *testing.T) {
	x, y := creditRisk(t, 4000)
	x32, y32 := toF32(x, y)
	for _, cfg := range []model.Config{{Kind: model.LogReg}, {Kind: model.MLP, Seed: 2, Epochs: 3}} {
		a := must(model.Train(context.Background(), x, y, cfg))
		b := must(model.TrainF32(context.Background(), x32, y32, cfg))
		wa, wb := flat(a), flat(b)
		var worst float64
		for i := range wa {
			worst = math.Max(worst, math.Abs(wa[i]-wb[i]))
		}
		if worst > 1e-4 {
			t.Errorf("%s: float32 weights differ from float64 by up to %g", cfg.Kind, worst)
		}
		pa := must(a.PredictProba(x))
		pb := must(b.PredictProbaF32(x32))
		for i := range pa {
			if math.Abs(pa[i]-pb[i]) > 1e-4 {
				t.Fatalf("%s: row %d scores %v (float64) vs %v (float32)", cfg.Kind, i, pa[i], pb[i])
			}
		}
	}
}

func toF32(x *mat.Dense, y []float64) (*matrix.Dense32, []float32) {
	n, d := x.Dims()
	m := matrix.NewDense32(n, d, nil)
	for i := range n {
		for j, v := range x.RawRowView(i) {
			m.Row(i)[j] = float32(v)
		}
	}
	y32 := make([]float32, n)
	for i, v := range y {
		y32[i] = float32(v)
	}
	return m, y32
}

package quantize_test

import (
	"context"
	"math"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/mltest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/quantize"
	"gonum.org/v1/gonum/mat"
)

func rowsOf(x *mat.Dense, n int) *mat.Dense {
	r, _ := x.Dims()
	return x.Slice(0, min(n, r), 0, x.RawMatrix().Cols).(*mat.Dense)
}

func TestAdultAgreement(t *testing.T) {
	a := mltest.LoadAdult(t)
	for _, cfg := range []model.Config{{Kind: model.LogReg}, {Kind: model.MLP, Seed: 1, Epochs: 4, Hidden: []int{32, 16}}} {
		net, err := model.Train(context.Background(), a.XTrain, a.Train.Y, cfg)
		if err != nil {
			t.Fatal(err)
		}
		q, err := quantize.Quantize(net, a.XTrain, quantize.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := quantize.Compare(net, q, a.XTest, a.Test.Y, 0.5)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %+v", cfg.Kind, *r)
		if r.Agreement < 0.99 {
			t.Errorf("%s: agreement %.4f < 0.99", cfg.Kind, r.Agreement)
		}
		if math.Abs(r.AccuracyDelta) > 0.005 {
			t.Errorf("%s: accuracy changed by %.4f", cfg.Kind, r.AccuracyDelta)
		}
		if cfg.Kind == model.MLP && r.Int8Bytes*3 > r.Float32Bytes {
			t.Errorf("%s: int8 %d bytes vs float32 %d: want about 4× smaller", cfg.Kind, r.Int8Bytes, r.Float32Bytes)
		}
	}
}

func creditRisk(t *testing.T) (*mat.Dense, []float64) {
	d, err := dataset.Load("builtin:credit-risk?rows=3000&seed=8")
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

func TestBuiltinAgreementAndRoundTrip(t *testing.T) {
	x, y := creditRisk(t)
	net, err := model.Train(context.Background(), x, y, model.Config{Kind: model.MLP, Seed: 2, Epochs: 5, Hidden: []int{16}})
	if err != nil {
		t.Fatal(err)
	}
	q, err := quantize.Quantize(net, x, quantize.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := quantize.Compare(net, q, x, y, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	if r.Agreement < 0.99 || r.MaxAbsDiff > 0.1 {
		t.Errorf("agreement %.4f, max diff %.4f", r.Agreement, r.MaxAbsDiff)
	}
	back, err := quantize.FromTensors(q.Kind, q.Tensors())
	if err != nil {
		t.Fatal(err)
	}
	p1, _ := q.PredictProba(x)
	p2, _ := back.PredictProba(x)
	for i := range p1 {
		if p1[i] != p2[i] {
			t.Fatalf("row %d: %v vs %v after rebuilding", i, p1[i], p2[i])
		}
	}
	for _, ts := range q.Tensors() {
		for _, v := range ts.Data {
			if ts.DType == model.F32 && float64(float32(v)) != v {
				t.Fatalf("%s holds %v, not exact in float32", ts.Name, v)
			}
		}
	}
}

// The integer path must match a float simulation of the same quantization:
// that pins down the arithmetic (scales, rounding, int32 accumulation).
func TestIntegerPathMatchesSimulation(t *testing.T) {
	x, y := creditRisk(t)
	net, err := model.Train(context.Background(), x, y, model.Config{Kind: model.LogReg})
	if err != nil {
		t.Fatal(err)
	}
	q, err := quantize.Quantize(net, x, quantize.Options{Percentile: 99})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := q.PredictProba(x)
	l := q.Layers[0]
	for r := range 50 {
		var z float64
		for j, v := range x.RawRowView(r) {
			z += math.Max(-127, math.Min(127, math.Round(v/l.InScale[j]))) * float64(l.W[j]) * l.WScale[0]
		}
		want := model.Sigmoid(z + l.B[0])
		if math.Abs(want-p[r]) > 1e-9 {
			t.Fatalf("row %d: int8 path %v, simulation %v", r, p[r], want)
		}
	}
	if _, err := quantize.Quantize(net, mat.NewDense(2, 3, nil), quantize.Options{}); err == nil {
		t.Error("calibration sample of the wrong width accepted")
	}
}

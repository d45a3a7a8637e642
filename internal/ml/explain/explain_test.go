package explain

import (
	"context"
	"math"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
	"gonum.org/v1/gonum/mat"
)

type fixture struct {
	train, test *dataset.Dataset
	enc         *dataset.Encoder
	x, xt       *mat.Dense
}

func setup(t *testing.T) *fixture {
	t.Helper()
	d, err := dataset.Load("builtin:credit-risk?rows=3000&seed=5")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{}
	if f.train, f.test, err = d.Split(0.3, 1); err != nil {
		t.Fatal(err)
	}
	if f.enc, err = dataset.FitEncoder(f.train, dataset.EncoderOptions{}); err != nil {
		t.Fatal(err)
	}
	if f.x, err = f.enc.Transform(f.train); err != nil {
		t.Fatal(err)
	}
	if f.xt, err = f.enc.Transform(f.test); err != nil {
		t.Fatal(err)
	}
	return f
}

func rawLogit(net *model.Network, x []float64) float64 {
	l := net.Layers[0]
	z := l.B[0]
	for j, w := range l.W {
		z += w * x[j]
	}
	return z
}

// The sampled Shapley values of a linear logit equal the exact ones in
// expectation; each sample's contribution of column g is wg·(xg − zg) for a
// random background row z, so the error is bounded through that spread.
func TestShapleyMatchesExactOnLinearModel(t *testing.T) {
	f := setup(t)
	net, err := model.Train(context.Background(), f.x, f.train.Y, model.Config{Kind: model.LogReg})
	if err != nil {
		t.Fatal(err)
	}
	const samples = 4000
	m := &Model{Scorer: net, Encoder: f.enc, Background: f.x, Samples: samples, Seed: 3}
	gs := groups(f.enc)
	bg, _ := f.x.Dims()
	for _, row := range []int{0, 7, 42} {
		x := f.xt.RawRowView(row)
		exact, err := Linear(net, f.enc, f.x, x)
		if err != nil {
			t.Fatal(err)
		}
		var sum float64
		for _, a := range exact {
			sum += a.Value
		}
		if got, want := sum, rawLogit(net, x)-exact[0].Base; math.Abs(got-want) > 1e-9 {
			t.Fatalf("exact attributions sum to %v, want logit difference %v", got, want)
		}
		est, err := m.Shapley(x)
		if err != nil {
			t.Fatal(err)
		}
		for i, g := range gs {
			var mean, ss float64
			vals := make([]float64, bg)
			for r := range bg {
				z := f.x.RawRowView(r)
				for k := g.start; k < g.end; k++ {
					vals[r] += net.Layers[0].W[k] * (x[k] - z[k])
				}
				mean += vals[r] / float64(bg)
			}
			for _, v := range vals {
				ss += (v - mean) * (v - mean)
			}
			se := math.Sqrt(ss/float64(bg)) / math.Sqrt(samples)
			if d := math.Abs(est[i].Value - exact[i].Value); d > 5*se+1e-9 {
				t.Errorf("row %d %s: shapley %.5f, exact %.5f (|diff| %.5f > 5 SE %.5f)", row, g.name, est[i].Value, exact[i].Value, d, 5*se)
			}
		}
	}
}

func TestAttributeRecord(t *testing.T) {
	f := setup(t)
	net, err := model.Train(context.Background(), f.x, f.train.Y, model.Config{Kind: model.MLP, Hidden: []int{8}, Epochs: 3, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	m := &Model{Scorer: net, Net: net, Encoder: f.enc, Background: f.x, Samples: 100, Seed: 1}
	rec := map[string]any{"age": 44.0, "income": "52000", "employment_type": "full_time", "home_ownership": "rent",
		"credit_history_years": 10, "open_accounts": 3, "late_payments": 0, "debt_ratio": 0.3, "loan_amount": 9000,
		"loan_term_months": 36, "purpose": "car"}
	attr, err := Attribute(m, rec)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := encodeRecord(f.enc, rec)
	p, _ := net.PredictProba(mat.NewDense(1, len(x), x))
	sum := attr[0].Base
	for _, a := range attr {
		sum += a.Value
		if a.Method != "sampling_shapley" {
			t.Errorf("method %s", a.Method)
		}
	}
	if math.Abs(sum-logit(p[0])) > 1e-9 {
		t.Errorf("attributions plus base %v, record logit %v", sum, logit(p[0]))
	}
	if _, err := Attribute(m, map[string]any{"age": "old"}); err == nil {
		t.Error("a non-numeric age was accepted")
	}
}

func TestImportanceAndCoefficients(t *testing.T) {
	f := setup(t)
	net, err := model.Train(context.Background(), f.x, f.train.Y, model.Config{Kind: model.LogReg})
	if err != nil {
		t.Fatal(err)
	}
	m, err := scoring.Open(saveGauntlet(t, f, net), scoring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	base, imp, err := ImportanceOf(m, f.test, 5, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, again, _ := ImportanceOf(m, f.test, 5, 1)
	if !(base > 0.6) || len(imp) != len(groups(f.enc)) || imp[0].Mean <= 0 || imp[0].Mean < imp[len(imp)-1].Mean || again[0].Mean != imp[0].Mean {
		t.Fatalf("base %v importance %+v", base, imp)
	}
	t.Logf("top features: %s %.4f±%.4f, %s %.4f±%.4f", imp[0].Feature, imp[0].Mean, imp[0].Std, imp[1].Feature, imp[1].Mean, imp[1].Std)
	cs, err := Coefficients(net, f.enc)
	if err != nil || len(cs) != f.enc.Width() || cs[0].Feature != f.enc.FeatureNames()[0] {
		t.Fatalf("coefficients %v %v", cs, err)
	}
}

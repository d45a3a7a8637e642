package predict

import (
	"math"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/fairness"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
)

// The row encoder must give exactly what the training-side encoder gives,
// or served scores would differ from evaluated ones.
func TestRowEncoderMatchesTransform(t *testing.T) {
	d, err := dataset.Load("builtin:credit-risk?rows=300&seed=3")
	if err != nil {
		t.Fatal(err)
	}
	// Blank some values so imputation and unseen categories are covered.
	d.Numeric["income"][0] = math.NaN()
	d.Categorical["purpose"][1] = ""
	d.Categorical["purpose"][2] = "never-seen"
	for _, opts := range []dataset.EncoderOptions{
		{},
		{IncludeSensitive: true, Unseen: dataset.UnseenOther, MinFrequency: 20},
	} {
		enc, err := dataset.FitEncoder(d, opts)
		if err != nil {
			t.Fatal(err)
		}
		want, err := enc.Transform(d)
		if err != nil {
			t.Fatal(err)
		}
		re := NewRowEncoder(enc)
		if re.Width() != enc.Width() {
			t.Fatalf("width %d, want %d", re.Width(), enc.Width())
		}
		row := make([]float64, re.Width())
		nums := make([]float64, len(enc.Numeric))
		cats := make([][]byte, len(enc.Categorical))
		for r := range d.Len() {
			for i, f := range enc.Numeric {
				nums[i] = d.Numeric[f.Name][r]
			}
			for i, c := range enc.Categorical {
				src := d.Categorical
				if c.Sensitive {
					src = d.Sensitive
				}
				cats[i] = []byte(src[c.Name][r])
			}
			re.Encode(row, nums, cats)
			for j, v := range row {
				if w := want.At(r, j); v != w {
					t.Fatalf("%+v: row %d feature %d: got %v, want %v", opts, r, j, v, w)
				}
			}
		}
	}
}

func TestPolicyOf(t *testing.T) {
	m := &modelfile.Manifest{}
	if p, err := PolicyOf(m); p != nil || err != nil {
		t.Fatalf("no policy: got %v, %v", p, err)
	}
	m.Lineage.Params = map[string]any{PolicyParam: map[string]any{
		"features": []any{"sex"},
		"policy":   map[string]any{"thresholds": map[string]any{"F": 0.4, "M": 0.6}, "fallback": 0.5},
	}}
	p, err := PolicyOf(m)
	if err != nil {
		t.Fatal(err)
	}
	if p.Threshold("F") != 0.4 || p.Threshold("X") != 0.5 {
		t.Fatalf("thresholds: F %v, unseen %v", p.Threshold("F"), p.Threshold("X"))
	}
	m.Lineage.Params[PolicyParam] = Policy{Policy: &fairness.ThresholdPolicy{Thresholds: map[string]float64{}}}
	if _, err := PolicyOf(m); err == nil {
		t.Fatal("a policy without features was accepted")
	}
}

package explain

import (
	"context"
	"math"
	"path/filepath"
	"testing"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxtest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnxmodel"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

// saveGauntlet saves net in Gauntlet's format into a new directory.
func saveGauntlet(t *testing.T, f *fixture, net *model.Network) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "gauntlet")
	mf := &modelfile.Manifest{Kind: net.Kind, Schema: f.train.Schema, Features: f.enc.FeatureNames(), Preprocessing: f.enc, Threshold: 0.5,
		Lineage: modelfile.Lineage{DataDigest: "credit-risk fixture", CreatedAt: time.Unix(0, 0).UTC()}}
	if _, err := modelfile.Save(src, mf, net.Tensors()); err != nil {
		t.Fatal(err)
	}
	return src
}

// openBoth saves net in Gauntlet's format, exports it to ONNX and opens
// both through package scoring.
func openBoth(t *testing.T, f *fixture, net *model.Network) (gauntlet, onnx scoring.Model) {
	t.Helper()
	src := saveGauntlet(t, f, net)
	dst := filepath.Join(t.TempDir(), "onnx")
	a, err := modelfile.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := onnxmodel.Export(a, dst); err != nil {
		t.Fatal(err)
	}
	opts := scoring.Options{ONNXRuntime: onnxtest.LibraryPath(t), Threads: 1}
	var ms [2]scoring.Model
	for i, d := range []string{src, dst} {
		if ms[i], err = scoring.Open(d, opts); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ms[i].Close() })
	}
	return ms[0], ms[1]
}

// Explanations of the same model in both formats agree: importances to
// the ties float32 scores may break differently, attributions to float32
// precision; and the logistic regression is explained exactly in both.
func TestBothFormatsExplainAlike(t *testing.T) {
	onnxtest.Runtime(t)
	f := setup(t)
	logreg, err := model.Train(context.Background(), f.x, f.train.Y, model.Config{Kind: model.LogReg})
	if err != nil {
		t.Fatal(err)
	}
	mlp, err := model.Train(context.Background(), f.x, f.train.Y, model.Config{Kind: model.MLP, Hidden: []int{8}, Epochs: 3, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		net    *model.Network
		method string
	}{{"logreg", logreg, "linear"}, {"mlp", mlp, "sampling_shapley"}} {
		t.Run(c.name, func(t *testing.T) {
			gm, om := openBoth(t, f, c.net)
			if (gm.Linear() != nil) != (c.method == "linear") || (om.Linear() != nil) != (c.method == "linear") {
				t.Fatalf("Linear: Gauntlet %v, ONNX %v", gm.Linear() != nil, om.Linear() != nil)
			}
			gBase, gImp, err := ImportanceOf(gm, f.test, 3, 1)
			if err != nil {
				t.Fatal(err)
			}
			oBase, oImp, err := ImportanceOf(om, f.test, 3, 1)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(oBase-gBase) > 1e-3 || len(oImp) != len(gImp) {
				t.Fatalf("base AUC: ONNX %v, Gauntlet %v", oBase, gBase)
			}
			byName := map[string]Importance{}
			for _, im := range gImp {
				byName[im.Feature] = im
			}
			for _, im := range oImp {
				if g := byName[im.Feature]; math.Abs(im.Mean-g.Mean) > 2e-3 {
					t.Errorf("%s: ONNX importance %v, Gauntlet %v", im.Feature, im.Mean, g.Mean)
				}
			}

			bg := mat.DenseCopyOf(f.x.Slice(0, 200, 0, f.enc.Width()))
			ge, oe := For(gm, bg), For(om, bg)
			ge.Samples, oe.Samples = 200, 200
			for _, row := range []int{0, 5} {
				x := f.xt.RawRowView(row)
				ga, err := ge.AttributeRow(x)
				if err != nil {
					t.Fatal(err)
				}
				oa, err := oe.AttributeRow(x)
				if err != nil {
					t.Fatal(err)
				}
				p, err := om.PredictProba(mat.NewDense(1, len(x), x))
				if err != nil {
					t.Fatal(err)
				}
				sum := oa[0].Base
				for i := range oa {
					if oa[i].Method != c.method || ga[i].Method != c.method || oa[i].Feature != ga[i].Feature {
						t.Fatalf("row %d: ONNX %+v, Gauntlet %+v, want method %s", row, oa[i], ga[i], c.method)
					}
					if math.Abs(oa[i].Value-ga[i].Value) > 1e-4 {
						t.Errorf("row %d %s: ONNX %v, Gauntlet %v", row, oa[i].Feature, oa[i].Value, ga[i].Value)
					}
					sum += oa[i].Value
				}
				if math.Abs(sum-logit(p[0])) > 1e-5 {
					t.Errorf("row %d: ONNX attributions plus base %v, logit of the ONNX score %v", row, sum, logit(p[0]))
				}
			}
		})
	}
}

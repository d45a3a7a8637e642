package scoring_test

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxtest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnxmodel"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

// bothFormats saves a small float MLP in Gauntlet's format and its ONNX
// export, and returns the two directories with the data it was fitted on.
func bothFormats(t *testing.T) (gdir, odir string, d *dataset.Dataset) {
	t.Helper()
	d, err := dataset.Load("builtin:credit-risk?rows=600&seed=5&bias=0.3")
	if err != nil {
		t.Fatal(err)
	}
	enc, err := dataset.FitEncoder(d, dataset.EncoderOptions{Unseen: dataset.UnseenOther})
	if err != nil {
		t.Fatal(err)
	}
	x, err := enc.Transform(d)
	if err != nil {
		t.Fatal(err)
	}
	net, err := model.Train(context.Background(), x, d.Y, model.Config{Kind: model.MLP, Hidden: []int{16, 8}, Epochs: 5, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	gdir, odir = filepath.Join(t.TempDir(), "gauntlet"), filepath.Join(t.TempDir(), "onnx")
	mf := &modelfile.Manifest{Kind: model.MLP, Schema: d.Schema, Features: enc.FeatureNames(), Preprocessing: enc, Threshold: 0.5,
		Metrics: map[string]float64{"roc_auc": 0.7}, Lineage: modelfile.Lineage{DataDigest: d.Digest, CreatedAt: time.Unix(0, 0).UTC()}}
	if _, err := modelfile.Save(gdir, mf, net.Tensors()); err != nil {
		t.Fatal(err)
	}
	a, err := modelfile.Load(gdir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := onnxmodel.Export(a, odir); err != nil {
		t.Fatal(err)
	}
	return gdir, odir, d
}

func open(t *testing.T, dir string, o scoring.Options) scoring.Model {
	t.Helper()
	m, err := scoring.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func fileSize(t *testing.T, info *scoring.Info) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(info.Dir, info.WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// A derived model keeps its parent's format and weights, takes the new
// metrics, lineage and companion files, and scores as its parent does.
func TestDeriveKeepsFormatAndWeights(t *testing.T) {
	onnxtest.Runtime(t)
	opts := scoring.Options{ONNXRuntime: onnxtest.LibraryPath(t), Threads: 1}
	gdir, odir, d := bothFormats(t)
	for _, dir := range []string{gdir, odir} {
		m := open(t, dir, opts)
		want, err := scoring.ScoreDataset(m, d)
		if err != nil {
			t.Fatal(err)
		}
		lin := m.Info().Lineage
		lin.ParentModel = m.Info().Digest
		lin.Params = map[string]any{"fairness_policy": map[string]any{"features": []any{"sex"}}}
		out := filepath.Join(t.TempDir(), "derived")
		digest, err := scoring.Derive(m, out, scoring.Amend{Metrics: map[string]float64{"roc_auc": 0.5}, Lineage: lin,
			Files: map[string][]byte{"holdout.csv": []byte("a\n1\n")}})
		if err != nil {
			t.Fatal(err)
		}
		dm := open(t, out, opts)
		info := dm.Info()
		if info.Format != m.Info().Format || info.Digest != digest || info.Metrics["roc_auc"] != 0.5 ||
			info.Lineage.ParentModel != m.Info().Digest || info.Lineage.Params["fairness_policy"] == nil {
			t.Errorf("%s: derived info %+v", info.Format, info)
		}
		if b, err := os.ReadFile(filepath.Join(out, "holdout.csv")); err != nil || string(b) != "a\n1\n" {
			t.Errorf("%s: companion file %q %v", info.Format, b, err)
		}
		got, err := scoring.ScoreDataset(dm, d)
		if err != nil {
			t.Fatal(err)
		}
		for r := range got {
			if got[r] != want[r] {
				t.Fatalf("%s: row %d scores %v, its parent %v", info.Format, r, got[r], want[r])
			}
		}
		if _, err := scoring.Derive(m, out, scoring.Amend{Lineage: lin}); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("%s: derive over an existing directory: %v", info.Format, err)
		}
		if _, err := scoring.Derive(m, filepath.Join(t.TempDir(), "x"), scoring.Amend{Lineage: lin, Files: map[string][]byte{"../escape": nil}}); err == nil {
			t.Errorf("%s: a companion leaving the directory was written", info.Format)
		}
	}
}

// The int8 copy of either format scores close to its float model before
// it is saved, exactly as the saved copy does after, and is smaller.
func TestQuantizeInt8BothFormats(t *testing.T) {
	onnxtest.Runtime(t)
	opts := scoring.Options{ONNXRuntime: onnxtest.LibraryPath(t), Threads: 1}
	gdir, odir, d := bothFormats(t)
	for _, dir := range []string{gdir, odir} {
		m := open(t, dir, opts)
		x, err := m.Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		pf, err := m.PredictProba(x)
		if err != nil {
			t.Fatal(err)
		}
		q, err := scoring.QuantizeInt8(context.Background(), m, x, scoring.QuantizeOptions{Scoring: opts})
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		format := m.Info().Format
		if qi := q.Info(); qi.Quantization != modelfile.Int8 || qi.Digest != "" || qi.Format != format || qi.Lineage.ParentModel != m.Info().Digest {
			t.Errorf("%s: int8 info %+v", format, qi)
		}
		pq, err := q.PredictProba(x)
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for r := range pf {
			worst = max(worst, math.Abs(pf[r]-pq[r]))
		}
		if worst > 0.05 || worst == 0 {
			t.Errorf("%s: largest |P_float − P_int8| = %v, want in (0, 0.05]", format, worst)
		}
		out := filepath.Join(t.TempDir(), "int8")
		if _, err := scoring.Derive(q, out, scoring.Amend{Metrics: q.Info().Metrics, Lineage: q.Info().Lineage}); err != nil {
			t.Fatal(err)
		}
		saved := open(t, out, opts)
		ps, err := scoring.ScoreDataset(saved, d)
		if err != nil {
			t.Fatal(err)
		}
		for r := range ps {
			if ps[r] != pq[r] {
				t.Fatalf("%s: row %d: saved int8 %v, unsaved %v", format, r, ps[r], pq[r])
			}
		}
		before, after := fileSize(t, m.Info()), fileSize(t, saved.Info())
		t.Logf("%s: %s %d → %d bytes, max |ΔP| %.4f", format, m.Info().WeightsFile, before, after, worst)
		if after >= before {
			t.Errorf("%s: int8 weights %d bytes, float %d", format, after, before)
		}
		if _, err := scoring.QuantizeInt8(context.Background(), saved, x, scoring.QuantizeOptions{Scoring: opts}); err == nil || !strings.Contains(err.Error(), "already quantized") {
			t.Errorf("%s: quantizing an int8 model: %v", format, err)
		}
	}
	om := open(t, odir, opts)
	x, _ := om.Encode(d)
	if _, err := scoring.QuantizeInt8(context.Background(), om, x, scoring.QuantizeOptions{Prune: 0.5, Scoring: opts}); err == nil || !strings.Contains(err.Error(), "pruning applies to Gauntlet's own MLPs") {
		t.Errorf("pruning an ONNX graph: %v", err)
	}
	gm := open(t, gdir, opts)
	q, err := scoring.QuantizeInt8(context.Background(), gm, x, scoring.QuantizeOptions{Prune: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if q.Sparsity < 0.4 || q.Pruning == nil {
		t.Errorf("pruned to 0.5: sparsity %v, pruning %v", q.Sparsity, q.Pruning)
	}
}

// Describe reads a model of either format as Open does, without running
// it, and refuses a tampered one.
func TestDescribe(t *testing.T) {
	onnxtest.Runtime(t)
	opts := scoring.Options{ONNXRuntime: onnxtest.LibraryPath(t), Threads: 1}
	gdir, odir, _ := bothFormats(t)
	for _, dir := range []string{gdir, odir} {
		info, enc, err := scoring.Describe(dir)
		if err != nil {
			t.Fatal(err)
		}
		m := open(t, dir, opts)
		want := *m.Info()
		if want.Format == scoring.ONNX {
			want.Provider = ""
		}
		if info.Format != want.Format || info.Digest != want.Digest || info.Dir != dir || info.Provider != want.Provider ||
			len(info.Signature.Inputs) != len(want.Signature.Inputs) || info.Lineage.DataDigest != want.Lineage.DataDigest {
			t.Errorf("%s: described %+v, opened %+v", dir, info, want)
		}
		if enc.Width() != m.Encoder().Width() {
			t.Errorf("%s: encoder of %d features, opened %d", dir, enc.Width(), m.Encoder().Width())
		}
		mf := filepath.Join(dir, "manifest.json")
		b, err := os.ReadFile(mf)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(mf, []byte(strings.Replace(string(b), "0.5", "0.25", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := scoring.Describe(dir); !errors.Is(err, modelfile.ErrTampered) {
			t.Errorf("%s: tampered manifest: %v", dir, err)
		}
	}
}

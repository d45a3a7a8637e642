package modelfile_test

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
	"github.com/gauntlet-ml/gauntlet/internal/ml/quantize"
	"gonum.org/v1/gonum/mat"
)

type trained struct {
	net      *model.Network
	manifest *modelfile.Manifest
	x        *mat.Dense
}

func train(t *testing.T, kind model.Kind) trained {
	t.Helper()
	d, err := dataset.Load("builtin:credit-risk?rows=1000&seed=4&bias=0.3")
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
	cfg := model.Config{Kind: kind, Epochs: 2, Hidden: []int{8}}
	net, err := model.Train(context.Background(), x, d.Y, cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &modelfile.Manifest{
		Kind:          kind,
		Schema:        d.Schema,
		Features:      enc.FeatureNames(),
		Preprocessing: enc,
		Threshold:     0.5,
		Metrics:       map[string]float64{"roc_auc": 0.8},
		Lineage: modelfile.Lineage{
			DataDigest: d.Digest, DataSource: d.Source, Params: map[string]any{"kind": string(kind)},
			CodeVersion: "test", CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		},
	}
	return trained{net, m, x}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	for _, kind := range []model.Kind{model.LogReg, model.MLP} {
		tr := train(t, kind)
		root := t.TempDir()
		dir := filepath.Join(root, "m1")
		digest, err := modelfile.Save(dir, tr.manifest, tr.net.Tensors())
		if err != nil {
			t.Fatal(err)
		}
		again, err := modelfile.Save(filepath.Join(root, "m2"), tr.manifest, tr.net.Tensors())
		if err != nil {
			t.Fatal(err)
		}
		if len(digest) != 64 || digest != again {
			t.Errorf("digests %q and %q for the same model", digest, again)
		}
		a, err := modelfile.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if a.Digest != digest || a.Manifest.Lineage.DataDigest != tr.manifest.Lineage.DataDigest || a.Manifest.Preprocessing.Unseen != dataset.UnseenOther {
			t.Errorf("loaded %+v", a.Manifest)
		}
		s, err := a.Scorer()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := tr.net.PredictProba(tr.x)
		got, err := s.PredictProba(tr.x)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if math.Float64bits(want[i]) != math.Float64bits(got[i]) {
				t.Fatalf("%s row %d: %v after load, %v before", kind, i, got[i], want[i])
			}
		}
		entries, _ := os.ReadDir(root)
		if len(entries) != 2 {
			t.Errorf("temporary directories left behind: %v", entries)
		}
		if _, err := modelfile.Save(dir, tr.manifest, tr.net.Tensors()); err == nil {
			t.Error("overwrote an existing artifact")
		}
	}
}

func TestInt8ArtifactRoundTrip(t *testing.T) {
	tr := train(t, model.MLP)
	q, err := quantize.Quantize(tr.net, tr.x, quantize.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr.manifest.Quantization = modelfile.Int8
	tr.manifest.Lineage.ParentModel = "sha256:parent"
	dir := filepath.Join(t.TempDir(), "q")
	if _, err := modelfile.Save(dir, tr.manifest, q.Tensors()); err != nil {
		t.Fatal(err)
	}
	a, err := modelfile.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := a.Scorer()
	want, _ := q.PredictProba(tr.x)
	got, _ := s.PredictProba(tr.x)
	for i := range want {
		if want[i] != got[i] {
			t.Fatalf("row %d: %v after load, %v before", i, got[i], want[i])
		}
	}
	// Float tensors must not be accepted as an int8 model, nor the reverse.
	if _, err := modelfile.Save(filepath.Join(t.TempDir(), "bad"), tr.manifest, tr.net.Tensors()); err == nil {
		t.Error("saved float weights under an int8 manifest")
	}
}

func TestLoadRefusesTampering(t *testing.T) {
	tr := train(t, model.LogReg)
	for _, file := range []string{modelfile.WeightsFile, modelfile.ManifestFile} {
		dir := filepath.Join(t.TempDir(), "m")
		if _, err := modelfile.Save(dir, tr.manifest, tr.net.Tensors()); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, file)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-3] ^= 1
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = modelfile.Load(dir)
		if !errors.Is(err, modelfile.ErrTampered) || !strings.Contains(err.Error(), file) {
			t.Errorf("tampered %s: err = %v", file, err)
		}
	}
}

func TestSafetensorsLayout(t *testing.T) {
	ts := []model.Tensor{
		{Name: "b", DType: model.I8, Shape: []int{3}, Data: []float64{-128, 0, 127}},
		{Name: "a", DType: model.F32, Shape: []int{1, 2}, Data: []float64{1.5, -2}},
		{Name: "c", DType: model.F64, Shape: []int{}, Data: []float64{math.Pi}},
	}
	b, err := modelfile.EncodeSafetensors(ts, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	hlen := int(b[0]) | int(b[1])<<8
	if hlen%8 != 0 || len(b) != 8+hlen+8+3+8 {
		t.Fatalf("header %d bytes, file %d bytes", hlen, len(b))
	}
	header := string(b[8 : 8+hlen])
	for _, want := range []string{`"a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}`, `"b":{"dtype":"I8","shape":[3],"data_offsets":[8,11]}`, `"__metadata__":{"k":"v"}`} {
		if !strings.Contains(header, want) {
			t.Errorf("header %s lacks %s", header, want)
		}
	}
	back, meta, err := modelfile.DecodeSafetensors(b)
	if err != nil {
		t.Fatal(err)
	}
	if meta["k"] != "v" || len(back) != 3 || back[1].Data[0] != -128 || back[2].Data[0] != math.Pi || back[0].Data[1] != -2 {
		t.Errorf("decoded %+v %v", back, meta)
	}
	if _, err := modelfile.EncodeSafetensors([]model.Tensor{{Name: "x", DType: model.F32, Shape: []int{1}, Data: []float64{0.1}}}, nil); err == nil {
		t.Error("0.1 silently rounded to float32")
	}
	if _, _, err := modelfile.DecodeSafetensors(append(b, 0)); err == nil {
		t.Error("trailing byte accepted")
	}
}

func TestDecodeManifestRejects(t *testing.T) {
	tr := train(t, model.LogReg)
	dir := filepath.Join(t.TempDir(), "m")
	if _, err := modelfile.Save(dir, tr.manifest, tr.net.Tensors()); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(dir, modelfile.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := modelfile.DecodeManifest(good); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string][2]string{
		"version": {`"format_version": 1`, `"format_version": 2`},
		"kind":    {`"kind": "logreg"`, `"kind": "forest"`},
		"schema":  {`"name": "income",`, `"name": "salary",`},
		"features": {`"features": [
    "age",`, `"features": [
    "years",`},
		"unknown": {`"threshold"`, `"surprise": 1, "threshold"`},
	} {
		bad := strings.Replace(string(good), edit[0], edit[1], 1)
		if bad == string(good) {
			t.Fatalf("%s: edit did not apply", name)
		}
		if _, err := modelfile.DecodeManifest([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

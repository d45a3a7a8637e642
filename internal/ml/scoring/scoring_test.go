package scoring_test

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/mltest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxtest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnxmodel"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

var (
	_ scoring.Model = (*scoring.GauntletModel)(nil)
	_ scoring.Model = (*scoring.ONNXModel)(nil)
)

// TestBothFormatsOneInterface opens the same model in both formats through
// Open and scores the same data set and records through the interface.
func TestBothFormatsOneInterface(t *testing.T) {
	onnxtest.Runtime(t)
	opts := scoring.Options{ONNXRuntime: onnxtest.LibraryPath(t), Threads: 1}
	gdir := filepath.Join(t.TempDir(), "gauntlet")
	d := mltest.SaveLogReg(t, gdir, 9, nil)
	a, err := modelfile.Load(gdir)
	if err != nil {
		t.Fatal(err)
	}
	odir := filepath.Join(t.TempDir(), "onnx")
	if _, err := onnxmodel.Export(a, odir); err != nil {
		t.Fatal(err)
	}
	var scores [2][]float64
	for i, dir := range []string{gdir, odir} {
		m, err := scoring.Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		info := m.Info()
		want := []string{scoring.Gauntlet, scoring.ONNX}[i]
		if info.Format != want || info.Dir != dir || info.Digest == "" || info.Provider == "" {
			t.Errorf("%s: info %+v", dir, info)
		}
		if len(info.Signature.Inputs) != len(m.Encoder().Numeric)+len(m.Encoder().Categorical) {
			t.Errorf("%s: signature %v", dir, info.Signature.Inputs)
		}
		p, err := scoring.ScoreDataset(m, d)
		if err != nil {
			t.Fatal(err)
		}
		recs := mltest.Records(d, 40)
		pr, err := scoring.ScoreRecords(m, recs)
		if err != nil {
			t.Fatal(err)
		}
		for r := range pr {
			if math.Abs(pr[r]-p[r]) > 1e-12 {
				t.Fatalf("%s: record %d scores %v, the data set's row %v", want, r, pr[r], p[r])
			}
		}
		scores[i] = p
		t.Logf("%s: provider %s", want, info.Provider)
	}
	for r := range scores[0] {
		if math.Abs(scores[0][r]-scores[1][r]) > 1e-5 {
			t.Fatalf("row %d: Gauntlet %v, ONNX %v", r, scores[0][r], scores[1][r])
		}
	}
}

func TestRecordsChecked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	d := mltest.SaveLogReg(t, dir, 4, nil)
	m, err := scoring.Open(dir, scoring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sig := m.Info().Signature
	var num, cat string
	for _, f := range sig.Inputs {
		if f.Type == scoring.Double && num == "" {
			num = f.Name
		}
		if f.Type == scoring.String && cat == "" {
			cat = f.Name
		}
	}
	for name, c := range map[string]struct {
		set  func(map[string]any)
		want string
	}{
		"missing":          {func(r map[string]any) { delete(r, num) }, "missing"},
		"string as number": {func(r map[string]any) { r[num] = "42" }, `want a number, got string "42"`},
		"bool as number":   {func(r map[string]any) { r[num] = true }, "want a number, got boolean true"},
		"number as string": {func(r map[string]any) { r[cat] = 3.0 }, "want a string, got float64"},
		"object":           {func(r map[string]any) { r[cat] = map[string]any{} }, "want a string, got an object"},
	} {
		recs := mltest.Records(d, 3)
		c.set(recs[2])
		_, err := scoring.ScoreRecords(m, recs)
		field := num
		if strings.Contains(name, "as string") || name == "object" {
			field = cat
		}
		if !errors.Is(err, scoring.ErrBadRecord) || !strings.Contains(err.Error(), `record 2: field "`+field+`"`) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Nulls are missing values the encoder imputes; extra fields are ignored.
	recs := mltest.Records(d, 2)
	recs[0][num], recs[0][cat], recs[1]["not in the signature"] = nil, nil, "x"
	if _, err := scoring.ScoreRecords(m, recs); err != nil {
		t.Errorf("null and extra fields: %v", err)
	}
}

func TestUnknownFormat(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(`{"format": "pickle"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := scoring.Open(dir, scoring.Options{}); err == nil || !strings.Contains(err.Error(), `unknown model format "pickle"`) {
		t.Errorf("err = %v", err)
	}
}

// Package pytorchtabular_test runs the PyTorch example trainer (CPU, with
// Debian's python3-torch) under the run: contract and checks its model
// through Gauntlet's ONNX path.
package pytorchtabular_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxtest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/ort"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
	"github.com/gauntlet-ml/gauntlet/internal/serving"
)

// writeCSV writes builtin credit-risk rows as a CSV with a header, the
// label as "yes"/"no" and missing values empty.
func writeCSV(t *testing.T, path, src string) *dataset.Dataset {
	d, err := dataset.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	var header []string
	for _, c := range d.Schema.Columns {
		header = append(header, c.Name)
	}
	w.Write(header)
	for r := range d.Len() {
		var row []string
		for _, c := range d.Schema.Columns {
			switch c.Kind {
			case dataset.Numeric:
				v := d.Numeric[c.Name][r]
				if math.IsNaN(v) {
					row = append(row, "")
				} else {
					row = append(row, strconv.FormatFloat(v, 'g', -1, 64))
				}
			case dataset.Categorical:
				row = append(row, d.Categorical[c.Name][r])
			case dataset.Sensitive:
				row = append(row, d.Sensitive[c.Name][r])
			case dataset.Label:
				row = append(row, map[bool]string{true: "yes", false: "no"}[d.Y[r] == 1])
			}
		}
		w.Write(row)
	}
	w.Flush()
	if err := errors.Join(w.Error(), f.Close()); err != nil {
		t.Fatal(err)
	}
	return d
}

type outputs struct {
	// Model is the model directory, artifacts/model, which Gauntlet
	// publishes as the output model.
	Model       string  `json:"-"`
	ModelDigest string  `json:"model_digest"`
	EpochsRun   int     `json:"epochs_run"`
	ResumedFrom int     `json:"resumed_from"`
	Device      string  `json:"device"`
	Accuracy    float64 `json:"accuracy"`
}

// train runs train.py as a run: step would, returning its exit code, its
// output and outputs.json when it finished.
func train(t *testing.T, py, dir, data string, extra ...string) (int, string, *outputs) {
	cmd := exec.Command(py, "train.py")
	cmd.Env = append(os.Environ(),
		"GAUNTLET_OUTPUT_DIR="+filepath.Join(dir, "out"), "GAUNTLET_CHECKPOINT_DIR="+filepath.Join(dir, "ckpt"),
		"GAUNTLET_INPUT_DATA="+data, "GAUNTLET_INPUT_LABEL=defaulted", "GAUNTLET_INPUT_POSITIVE_LABEL=yes",
		"GAUNTLET_INPUT_SENSITIVE=sex,age_group", "GAUNTLET_INPUT_EPOCHS=4", "GAUNTLET_INPUT_HIDDEN=16,8",
		"GAUNTLET_INPUT_DEVICE=cpu", "GAUNTLET_INPUT_LR=0.01", "OMP_NUM_THREADS=1")
	cmd.Env = append(cmd.Env, extra...)
	for _, d := range []string{"out", "ckpt"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out, err := cmd.CombinedOutput()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		return code, string(out), nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "out", "outputs.json"))
	if err != nil {
		t.Fatalf("%v; trainer said:\n%s", err, out)
	}
	var o outputs
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatal(err)
	}
	o.Model = filepath.Join(dir, "out", "artifacts", "model")
	return code, string(out), &o
}

// TestTrainerUnderTheContract trains on the CPU with a crash after epoch
// 2 and a resumed second attempt, then checks: the resumed model equals an
// uninterrupted run's; Gauntlet loads it through the one scoring
// interface; and Gauntlet's ONNX path, in process and served by its model
// server over HTTP, scores every row as PyTorch does, to 1e-5.
func TestTrainerUnderTheContract(t *testing.T) {
	py := onnxtest.Python(t)
	onnxtest.Runtime(t)
	tmp := t.TempDir()
	data := filepath.Join(tmp, "credit.csv")
	d := writeCSV(t, data, "builtin:credit-risk?rows=600&seed=11&bias=0.3")

	crashed := filepath.Join(tmp, "crashed")
	code, log, _ := train(t, py, crashed, data, "GAUNTLET_INPUT_CRASH_AFTER=2")
	if code != 1 || !strings.Contains(log, "::progress epoch=2/4") || strings.Contains(log, "epoch=3/4") {
		t.Fatalf("first attempt: exit %d, want 1 after epoch 2:\n%s", code, log)
	}
	code, log, resumed := train(t, py, crashed, data)
	if code != 0 || resumed.ResumedFrom != 2 || resumed.EpochsRun != 2 || !strings.Contains(log, "resuming after epoch 2") {
		t.Fatalf("second attempt: exit %d, outputs %+v:\n%s", code, resumed, log)
	}
	if resumed.Device != "cpu" || resumed.Accuracy < 0.6 {
		t.Errorf("device %q, training accuracy %v (want at least 0.6: it learnt nothing)", resumed.Device, resumed.Accuracy)
	}
	code, log, whole := train(t, py, filepath.Join(tmp, "whole"), data)
	if code != 0 {
		t.Fatalf("uninterrupted run: exit %d:\n%s", code, log)
	}
	if strings.Count(log, "::progress epoch=") != 4 || strings.Count(log, "::checkpoint epoch=") != 4 {
		t.Errorf("want 4 progress lines and 4 checkpoint lines:\n%s", log)
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "whole", "ckpt", "*")); len(left) != 1 || filepath.Base(left[0]) != "checkpoint.pt" {
		t.Errorf("checkpoint directory holds %v, want checkpoint.pt alone", left)
	}

	opts := scoring.Options{ONNXRuntime: onnxtest.LibraryPath(t)}
	var probs [2][]float64
	for i, o := range []*outputs{resumed, whole} {
		m, err := scoring.Open(o.Model, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		info := m.Info()
		if info.Format != scoring.ONNX || info.Digest != o.ModelDigest {
			t.Errorf("format %s, digest %s (trainer says %s)", info.Format, info.Digest, o.ModelDigest)
		}
		if probs[i], err = scoring.ScoreDataset(m, d); err != nil {
			t.Fatal(err)
		}
	}
	for r := range probs[0] {
		if math.Abs(probs[0][r]-probs[1][r]) > 1e-6 {
			t.Fatalf("row %d: resumed model %v, uninterrupted %v", r, probs[0][r], probs[1][r])
		}
	}

	cmd := exec.Command(py, "train.py", "score", filepath.Join(crashed, "ckpt"), data)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var torchP []float64
	if err := json.Unmarshal(out, &torchP); err != nil {
		t.Fatal(err)
	}
	if len(torchP) != d.Len() {
		t.Fatalf("PyTorch scored %d rows of %d", len(torchP), d.Len())
	}
	worst := 0.0
	for r := range torchP {
		worst = max(worst, math.Abs(torchP[r]-probs[0][r]))
	}
	if worst > 1e-5 {
		t.Errorf("largest |P_torch − P_gauntlet_onnx| = %g, want ≤ 1e-5", worst)
	}
	t.Logf("%d rows: largest |P_torch − P_gauntlet_onnx| = %.2g; training accuracy %.3f", len(torchP), worst, resumed.Accuracy)

	served := servedScores(t, resumed.Model, opts, d)
	worst = 0
	for r := range torchP {
		worst = max(worst, math.Abs(torchP[r]-served[r]))
	}
	if worst > 1e-5 {
		t.Errorf("largest |P_torch − P_served| = %g, want ≤ 1e-5", worst)
	}
	t.Logf("%d rows over HTTP: largest |P_torch − P_served| = %.2g", len(torchP), worst)
}

// servedScores serves the model in dir with Gauntlet's model server on a
// loopback port and asks POST /v1/predict for every row of d, as a client
// would send them: numbers as JSON numbers, missing values as null.
func servedScores(t *testing.T, dir string, opts scoring.Options, d *dataset.Dataset) []float64 {
	t.Helper()
	srv, err := serving.New(context.Background(), serving.DirSource{Dir: dir, Name: "pytorch-credit"}, serving.Options{Scoring: opts})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer func() {
		ts.Close()
		srv.Close()
	}()
	if info := srv.Model().Scoring.Info(); info.Format != scoring.ONNX || info.Provider != ort.CPU {
		t.Fatalf("served model: format %s, provider %s", info.Format, info.Provider)
	}
	var out []float64
	for start := 0; start < d.Len(); start += 100 {
		var recs []map[string]any
		for r := start; r < min(start+100, d.Len()); r++ {
			rec := map[string]any{}
			for name, col := range d.Numeric {
				rec[name] = col[r]
				if math.IsNaN(col[r]) {
					rec[name] = nil
				}
			}
			for name, col := range d.Categorical {
				rec[name] = col[r]
			}
			for name, col := range d.Sensitive {
				rec[name] = col[r]
			}
			recs = append(recs, rec)
		}
		b, err := json.Marshal(map[string]any{"records": recs})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(ts.URL+"/v1/predict", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Predictions []struct {
				Score float64 `json:"score"`
			} `json:"predictions"`
			Error string `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || len(got.Predictions) != len(recs) {
			t.Fatalf("POST /v1/predict: status %d, %d predictions for %d records, %v %s", resp.StatusCode, len(got.Predictions), len(recs), err, got.Error)
		}
		for _, p := range got.Predictions {
			out = append(out, p.Score)
		}
	}
	return out
}

func TestTrainerRefusesBadInput(t *testing.T) {
	py := onnxtest.Python(t)
	tmp := t.TempDir()
	if code, log, _ := train(t, py, tmp, filepath.Join(tmp, "absent.csv")); code != 65 {
		t.Errorf("absent data: exit %d, want 65:\n%s", code, log)
	}
	if code, log, _ := train(t, py, tmp, "x.csv", "GAUNTLET_INPUT_EPOCHS=zero"); code != 2 || !strings.Contains(log, "epochs") {
		t.Errorf("bad epochs: exit %d, want 2:\n%s", code, log)
	}
}

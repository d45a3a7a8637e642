package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxtest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/ort"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
	"github.com/gauntlet-ml/gauntlet/internal/testkit"
	"github.com/gauntlet-ml/gauntlet/internal/tf"
)

// TestPyTorchPipelineEndToEnd runs the shipped pytorch-credit-risk
// pipeline on a real embedded Temporal server: Terraform provisions a
// local node whose worker runs the PyTorch trainer (Debian's python3-torch,
// on the CPU), then the main worker, with ONNX Runtime, takes the ONNX
// model through quantize, evaluate, fairness-gate, explain and report; a
// reviewer approves it and canary-deploy serves it. The served model must
// be the approved int8 ONNX graph, scoring as the scoring interface does.
func TestPyTorchPipelineEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("trains on a provisioned node and runs the whole gauntlet (minutes); skipped with -short")
	}
	if _, err := tf.Find(""); err != nil {
		testkit.Need(t, "the pipeline provisions its node with terraform: %v", err)
	}
	py := onnxtest.Python(t)
	onnxtest.Runtime(t)
	lib := onnxtest.LibraryPath(t)
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	worker := filepath.Join(root, "bin", "worker")
	if _, err := os.Stat(worker); err != nil {
		testkit.Need(t, "the node runs %s: build it with `make build` (make test does)", worker)
	}
	t.Setenv("GAUNTLET_WORKER_BINARY", worker)
	t.Setenv("GAUNTLET_INFRA_MODULES", filepath.Join(root, "infra", "modules"))
	state := t.TempDir()
	pipelines := filepath.Join(root, "pipelines")
	frontend := startEmbedded(t, pipelines, "--state-dir", state, "--onnxruntime-lib", lib)
	// The node's worker finds Temporal as provision passes it on.
	t.Setenv("TEMPORAL_ADDRESS", frontend)
	t.Cleanup(func() { killNodes(t, state) })
	env := map[string]string{"TEMPORAL_ADDRESS": frontend, "GAUNTLET_PIPELINES": pipelines, "GAUNTLET_USER": "alice"}

	const id = "pytorch-1"
	code, out, stderr := runCLI(t, env, "run", "pytorch-credit-risk", "--id", id,
		"-p", "repo="+root, "-p", "python="+py, "-p", "epochs=4", "-p", "hidden=16,8", "-p", "reviewer=bob",
		"-p", "data=builtin:credit-risk?rows=4000&seed=7&bias=0.3", "-p", "canary_interval=2s")
	if code != ExitOK {
		t.Fatalf("run: exit %d %s %s", code, out, stderr)
	}
	st := waitRun(t, env, id, func(st contract.Status) bool {
		return st.State == contract.RunWaiting || st.State == contract.RunSucceeded || st.State == contract.RunFailed
	})
	if st.State != contract.RunWaiting {
		t.Fatalf("run %s before the approval: %s", st.State, describeRun(st))
	}
	step := func(st contract.Status, id string) map[string]any {
		for _, s := range st.Steps {
			if s.ID == id {
				return s.Outputs
			}
		}
		t.Fatalf("no step %s: %s", id, describeRun(st))
		return nil
	}
	train, quant, eval, fair, expl, rep := step(st, "train"), step(st, "quantize"), step(st, "evaluate"), step(st, "fairness"), step(st, "explain"), step(st, "report")
	if train["format"] != "onnx" || train["device"] != "cpu" || !strings.Contains(train["model"].(string), "/trees/sha256/") {
		t.Errorf("train outputs %v", train)
	}
	for name, o := range map[string]map[string]any{"quantize": quant, "evaluate": eval, "fairness": fair, "explain": expl, "report": rep} {
		if o["provider"] != ort.CPU {
			t.Errorf("%s: provider %v, want ONNX Runtime's %s", name, o["provider"], ort.CPU)
		}
	}
	if quant["format"] != "onnx" || quant["size_after"].(float64) >= quant["size_before"].(float64) {
		t.Errorf("quantize outputs %v", quant)
	}
	if eval["passed"] != true || fair["passed"] != true {
		t.Errorf("gates: evaluate %v, fairness %v", eval["verdict"], fair["violations"])
	}
	t.Logf("PyTorch on %v: training accuracy %v; int8 ONNX %v -> %v bytes, agreement %v; ROC AUC %v; mitigated %v; top features %v",
		train["device"], train["accuracy"], quant["size_before"], quant["size_after"], quant["agreement"],
		eval["metrics"].(map[string]any)["roc_auc"], fair["mitigated"], expl["top_features"])

	code, out, stderr = runCLI(t, map[string]string{"TEMPORAL_ADDRESS": frontend, "GAUNTLET_USER": "bob"}, "approve", id, "--comment", "int8 ONNX looks right")
	if code != ExitOK {
		t.Fatalf("approve: exit %d %s %s", code, out, stderr)
	}
	st = waitRun(t, env, id, func(st contract.Status) bool {
		return st.State == contract.RunSucceeded || st.State == contract.RunFailed
	})
	if st.State != contract.RunSucceeded {
		t.Fatalf("run %s: %s", st.State, describeRun(st))
	}
	approved, canary := step(st, "approve"), step(st, "canary")
	if approved["model"] != fair["model"] || canary["decision"] != "promoted" {
		t.Fatalf("approved %v (fairness gave %v), canary %v", approved["model"], fair["model"], canary)
	}
	t.Logf("canary: %v (%v), version %v, router %v", canary["decision"], canary["reason"], canary["version"], canary["router_url"])

	// The router serves the approved model: its digest in the answers,
	// and the scores the scoring interface gives the same records.
	p, err := artifact.ParsePointer(approved["model"].(string))
	if err != nil {
		t.Fatal(err)
	}
	store, err := artifact.Open(context.Background(), p.Store)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "approved")
	if err := artifact.FetchTree(context.Background(), store, p.Digest, dir); err != nil {
		t.Fatal(err)
	}
	m, err := scoring.Open(dir, scoring.Options{ONNXRuntime: lib})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if info := m.Info(); info.Format != scoring.ONNX || info.Quantization != "int8" || info.Lineage.Params["fairness_policy"] == nil {
		t.Fatalf("approved model: %+v", info)
	}
	d, err := dataset.Load("builtin:credit-risk?rows=40&seed=99&bias=0.3")
	if err != nil {
		t.Fatal(err)
	}
	want, err := scoring.ScoreDataset(m, d)
	if err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	for r := range d.Len() {
		rec := map[string]any{}
		for name, col := range d.Numeric {
			if rec[name] = col[r]; math.IsNaN(col[r]) {
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
	b, _ := json.Marshal(map[string]any{"records": recs})
	resp, err := http.Post(canary["router_url"].(string)+"/v1/predict", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Model struct {
			Digest string `json:"digest"`
		} `json:"model"`
		Predictions []struct {
			Score float64 `json:"score"`
		} `json:"predictions"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK || len(got.Predictions) != d.Len() {
		t.Fatalf("POST /v1/predict to the router: status %d, %v %s", resp.StatusCode, err, got.Error)
	}
	if got.Model.Digest != m.Info().Digest {
		t.Errorf("the router serves model %s, the approval names %s", got.Model.Digest, m.Info().Digest)
	}
	for r, p := range got.Predictions {
		if math.Abs(p.Score-want[r]) > 1e-9 {
			t.Fatalf("record %d: served %v, the approved model scores %v", r, p.Score, want[r])
		}
	}
	if left := nodePIDs(t, state); len(left) != 0 {
		t.Errorf("node processes left behind: %v", left)
	}
}

// waitRun polls the run's status until done says so, for up to ten
// minutes: a node is provisioned and a model trained on the way.
func waitRun(t *testing.T, env map[string]string, id string, done func(contract.Status) bool) contract.Status {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		code, out, _ := runCLI(t, env, "status", id, "--output", "json")
		if code == ExitOK {
			var rep RunReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("status JSON: %v", err)
			}
			if done(rep.Status) {
				return rep.Status
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %s still %s after 10 minutes: %s", id, rep.State, describeRun(rep.Status))
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func describeRun(st contract.Status) string {
	var b strings.Builder
	b.WriteString(st.Error)
	for _, s := range st.Steps {
		b.WriteString("\n  " + s.ID + " " + s.State)
		if s.Error != "" {
			b.WriteString(": " + s.Error)
		}
	}
	return b.String()
}

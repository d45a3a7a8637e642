package steps

import (
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxtest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/ort"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnxmodel"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
)

// onnxEnv is a test env whose host runs ONNX models with the library
// make tools installs.
func onnxEnv(t *testing.T, state string) *testEnv {
	t.Helper()
	env := newEnv(t, state)
	env.scoring = scoring.Options{ONNXRuntime: onnxtest.LibraryPath(t), Threads: 1}
	return env
}

// exportONNX exports the Gauntlet model an output names to ONNX (with its
// held-out split) into a directory of this host, as a team bringing its
// own ONNX model would hand it over.
func exportONNX(t *testing.T, env Env, ptr any) string {
	t.Helper()
	lm := loadOut(t, env, ptr)
	defer lm.Close()
	dir := filepath.Join(t.TempDir(), "onnx")
	if _, err := onnxmodel.Export(lm.Model.(*scoring.GauntletModel).Artifact, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

const cpu = "CPUExecutionProvider"

func metric(out map[string]any, key, name string) float64 {
	v, _ := out[key].(map[string]any)[name].(float64)
	return v
}

// TestEveryModelStepTakesONNX runs the model-consuming steps on an ONNX
// model, against a champion in Gauntlet's format, and checks that each
// says ONNX Runtime scored it and that the models it writes stay ONNX.
func TestEveryModelStepTakesONNX(t *testing.T) {
	onnxtest.Runtime(t)
	state := t.TempDir()
	tr := mustRun(t, newEnv(t, state), "train", "train", map[string]any{
		"data": biasedLarge, "label": "defaulted", "positive_label": "yes", "model": "mlp", "hidden": []any{16}, "epochs": 4})
	odir := exportONNX(t, newEnv(t, state), tr["model"])

	// evaluate: against the Gauntlet-format original as the registry's
	// champion, on the held-out split the export carried along.
	ctx := context.Background()
	env := onnxEnv(t, state)
	base, err := artifact.ParsePointer(tr["model"].(string))
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(env.Artifacts().Store())
	mv, err := reg.Register(ctx, registry.RegisterRequest{Model: "credit", Artifact: base.Digest,
		Lineage: registry.Lineage{RunID: "run-0", StepID: "train"}, CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Promote(ctx, "credit", mv.Version, 0, registry.Audit{At: time.Now(), Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	ev := mustRun(t, env, "evaluate", "eval", map[string]any{"model": odir, "baseline": "champion", "registry_model": "credit",
		"thresholds": map[string]any{"roc_auc": map[string]any{"min": 0.6, "max_drop": 0.001}}})
	if ev["provider"] != cpu || ev["baseline_provider"] != "go" || ev["baseline_format"] != scoring.Gauntlet || ev["passed"] != true {
		t.Errorf("evaluate: provider %v, baseline %v %v, passed %v", ev["provider"], ev["baseline_format"], ev["baseline_provider"], ev["passed"])
	}
	if a, b := metric(ev, "metrics", "roc_auc"), metric(ev, "baseline_metrics", "roc_auc"); math.Abs(a-b) > 1e-4 || a < 0.6 {
		t.Errorf("evaluate: ROC AUC of the ONNX export %v, of the original %v", a, b)
	}

	// fairness-gate: the mitigated model is ONNX with the policy in its
	// lineage, and its own decisions pass the gate.
	fg := mustRun(t, onnxEnv(t, state), "fairness-gate", "fair", map[string]any{"model": odir, "sensitive": []any{"sex"},
		"max": map[string]any{"demographic_parity_difference": 0.1}, "mitigate": "threshold-optimizer"})
	if fg["mitigated"] != true || fg["passed"] != true || fg["provider"] != cpu {
		t.Fatalf("fairness-gate: mitigated %v passed %v provider %v: %v", fg["mitigated"], fg["passed"], fg["provider"], fg["violations"])
	}
	mit := loadOut(t, env, fg["model"])
	defer mit.Close()
	oinfo, _, err := scoring.Describe(odir)
	if err != nil {
		t.Fatal(err)
	}
	if mit.Info().Format != scoring.ONNX || mit.policy == nil || mit.Info().Lineage.ParentModel != oinfo.Digest {
		t.Fatalf("mitigated model: format %s, policy %v, parent %s (want %s)", mit.Info().Format, mit.policy, mit.Info().Lineage.ParentModel, oinfo.Digest)
	}
	again := mustRun(t, onnxEnv(t, state), "fairness-gate", "fair2", map[string]any{"model": fg["model"], "sensitive": "sex",
		"max": map[string]any{"demographic_parity_difference": 0.1}})
	if again["passed"] != true {
		t.Errorf("the mitigated ONNX model fails the gate on its held-out split: %v", again["violations"])
	}

	// explain: the same importances as the original's, to float32 ties.
	ex := mustRun(t, onnxEnv(t, state), "explain", "explain", map[string]any{"model": odir, "repeats": 2, "records": 1, "samples": 50})
	gx := mustRun(t, newEnv(t, state), "explain", "explain-g", map[string]any{"model": tr["model"], "repeats": 2, "records": 1, "samples": 50})
	if ex["provider"] != cpu || gx["provider"] != "go" {
		t.Errorf("explain providers: %v, %v", ex["provider"], gx["provider"])
	}
	for f, v := range gx["importance"].(map[string]any) {
		if o := metric(ex, "importance", f); math.Abs(o-v.(float64)) > 2e-3 {
			t.Errorf("explain: importance of %s %v on ONNX, %v on the original", f, o, v)
		}
	}

	// report: the mitigated ONNX candidate against the Gauntlet baseline.
	rp := mustRun(t, onnxEnv(t, state), "report", "report", map[string]any{"model": fg["model"], "baseline": tr["model"],
		"sensitive": "sex", "evaluation": ev, "fairness": fg, "explanation": ex})
	if rp["provider"] != cpu || rp["report"] == "" {
		t.Errorf("report: %v", rp)
	}
	if page := readReportPage(t, rp); !strings.Contains(page, "Evidence") {
		t.Errorf("report page: %.200s", page)
	}

	// quantize: the int8 copy stays ONNX, is smaller, decides alike and
	// keeps the held-out split for the steps after it.
	q := mustRun(t, onnxEnv(t, state), "quantize", "quantize", map[string]any{"model": odir, "max_accuracy_drop": 0.01})
	if q["format"] != scoring.ONNX || q["provider"] != cpu || q["size_after"].(float64) >= q["size_before"].(float64) || q["agreement"].(float64) < 0.97 {
		t.Errorf("quantize: %v", q)
	}
	qm := loadOut(t, env, q["model"])
	defer qm.Close()
	if qm.Info().Format != scoring.ONNX || qm.Info().Quantization != modelfile.Int8 || qm.Info().Lineage.ParentModel != oinfo.Digest {
		t.Errorf("int8 model: %+v", qm.Info())
	}
	if d, _, err := qm.loadData(ctx, env, "data", ""); err != nil || d.Len() == 0 {
		t.Errorf("int8 model's held-out split: %v", err)
	}
	qev := mustRun(t, onnxEnv(t, state), "evaluate", "eval-int8", map[string]any{"model": q["model"], "baseline": odir})
	if a, b := metric(qev, "metrics", "roc_auc"), metric(qev, "baseline_metrics", "roc_auc"); math.Abs(a-b) > 0.01 {
		t.Errorf("int8 ROC AUC %v, float %v", a, b)
	}

	// Pruning is for Gauntlet's own MLPs; the guard refuses an impossible
	// drop and publishes nothing.
	_, err = run(t, onnxEnv(t, state), "quantize", "q-prune", map[string]any{"model": odir, "prune": 0.5})
	wantPermanent(t, err, "with.prune", "pruning applies to Gauntlet's own MLPs")
	_, err = run(t, onnxEnv(t, state), "prune", "prune", map[string]any{"model": odir, "sparsity": 0.5})
	wantPermanent(t, err, "ONNX graph")
	genv := onnxEnv(t, state)
	_, err = run(t, genv, "quantize", "q-guard", map[string]any{"model": odir, "max_accuracy_drop": -1})
	if kind, _ := Classify(err); kind != kindGateFailed {
		t.Errorf("guard: %s %v", kind, err)
	}
	if _, ok, err := earlier(ctx, genv, Input{RunID: "run-1", StepID: "q-guard", Uses: "quantize", With: map[string]any{"model": odir, "max_accuracy_drop": -1}}, refModel); ok || err != nil {
		t.Errorf("a refused int8 model was published (%v)", err)
	}
}

// envNoRuntime, in TestONNXStepsWithoutRuntime's child process, names a
// library that is not there.
const envNoRuntime = "GAUNTLET_TEST_NO_ONNXRUNTIME"

// TestONNXStepsWithoutRuntime: on a host without ONNX Runtime an ONNX
// model fails its step permanently, saying how to install the library,
// while Gauntlet's own format works. It runs in a child process, since
// ONNX Runtime, once loaded by another test, stays loaded.
func TestONNXStepsWithoutRuntime(t *testing.T) {
	if os.Getenv(envNoRuntime) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestONNXStepsWithoutRuntime$", "-test.count=1")
		cmd.Env = append(os.Environ(), envNoRuntime+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "PASS") {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	state := t.TempDir()
	tr := mustRun(t, newEnv(t, state), "train", "train", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes"})
	odir := exportONNX(t, newEnv(t, state), tr["model"])
	env := newEnv(t, state)
	env.scoring = scoring.Options{ONNXRuntime: filepath.Join(t.TempDir(), "libonnxruntime.so.1")}
	for _, step := range []string{"evaluate", "explain", "quantize", "report"} {
		_, err := run(t, env, step, step, map[string]any{"model": odir})
		wantPermanent(t, err, "with.model", "ONNX Runtime is not installed", ort.EnvLibrary, "--onnxruntime-lib", "install-onnxruntime.sh")
		if kind, _ := Classify(err); kind != kindNoRuntime || !errors.Is(err, scoring.ErrNoRuntime) {
			t.Errorf("%s: kind %s: %v", step, kind, err)
		}
	}
	if _, err := run(t, env, "evaluate", "eval-g", map[string]any{"model": tr["model"]}); err != nil {
		t.Errorf("Gauntlet's own format without ONNX Runtime: %v", err)
	}
}

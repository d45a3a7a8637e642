package stepcli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxtest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnxmodel"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
	"github.com/gauntlet-ml/gauntlet/internal/steps"
)

func TestRunTrainWritesOutputs(t *testing.T) {
	out := t.TempDir()
	var stdout bytes.Buffer
	err := RunWith(context.Background(), "train", map[string]string{
		"data": "builtin:credit-risk?rows=2000&seed=3", "label": "defaulted", "positive_label": "yes",
		"model": "mlp", "epochs": "3", "hidden": "[8]",
	}, out, &stdout, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, OutputsFile))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	model, _ := got["model"].(string)
	if !strings.HasPrefix(model, "file://"+filepath.Join(out, ".state", "artifacts")+"/trees/sha256/") {
		t.Errorf("model %q is not a pointer into the out dir's store", model)
	}
	if !strings.Contains(stdout.String(), "progress epoch=3/3 loss=") {
		t.Errorf("stdout lacks the last epoch's progress line:\n%s", stdout.String())
	}
	if !strings.Contains(stdout.String(), model) {
		t.Errorf("stdout does not print the outputs")
	}

	// The model feeds the next step by pointer, as a pipeline template
	// would, when both share the store.
	stdout.Reset()
	if err := RunWith(context.Background(), "evaluate", map[string]string{"model": model, "thresholds": `{"roc_auc": {"min": 0.5}}`}, t.TempDir(), &stdout,
		Options{StateDir: filepath.Join(out, ".state")}); err != nil {
		t.Fatal(err)
	}
	// Given another store, the step says every worker needs the same one.
	err = Run(context.Background(), "evaluate", map[string]string{"model": model}, t.TempDir(), &stdout)
	if _, retryable := steps.Classify(err); err == nil || retryable || !strings.Contains(err.Error(), "same --store") {
		t.Errorf("a pointer into another store: %v", err)
	}
}

func TestRunErrors(t *testing.T) {
	err := Run(context.Background(), "trian", nil, t.TempDir(), &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "train") || !strings.Contains(err.Error(), "evaluate") {
		t.Errorf("unknown type: %v", err)
	}
	err = Run(context.Background(), "train", map[string]string{"data": "builtin:credit-risk?rows=100", "label": "nope", "positive_label": "yes"}, t.TempDir(), &bytes.Buffer{})
	if _, retryable := steps.Classify(err); err == nil || retryable || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing label column: %v", err)
	}
	_, err = ParseWith(map[string]string{"max": "{bad"})
	if err == nil || !strings.Contains(err.Error(), "max") {
		t.Errorf("bad JSON: %v", err)
	}
}

func TestProgressLine(t *testing.T) {
	got := progressLine(map[string]any{"epoch": 3, "epochs": 20, "loss": 0.41234})
	if got != "progress epoch=3/20 loss=0.4123" {
		t.Errorf("got %q", got)
	}
}

// Options.Scoring reaches the step: an ONNX model runs on the library it
// names, and a library that is not there fails the step for good, saying
// how to install one. The missing library comes first, before this
// process has loaded one.
func TestScoringOptionsReachTheStep(t *testing.T) {
	out := t.TempDir()
	if err := RunWith(context.Background(), "train", map[string]string{
		"data": "builtin:credit-risk?rows=1000&seed=3", "label": "defaulted", "positive_label": "yes",
	}, out, &bytes.Buffer{}, Options{}); err != nil {
		t.Fatal(err)
	}
	var trained struct{ Model string }
	b, _ := os.ReadFile(filepath.Join(out, OutputsFile))
	if err := json.Unmarshal(b, &trained); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(out, ".state")
	ws, err := workspace.Open(context.Background(), workspace.Config{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	p, err := artifact.ParsePointer(trained.Model)
	if err != nil {
		t.Fatal(err)
	}
	session := ws.Session()
	defer session.Close()
	dir, err := session.Materialize(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	a, err := modelfile.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	odir := filepath.Join(t.TempDir(), "onnx")
	if _, err := onnxmodel.Export(a, odir); err != nil {
		t.Fatal(err)
	}
	missing := scoring.Options{ONNXRuntime: filepath.Join(t.TempDir(), "libonnxruntime.so.1")}
	err = RunWith(context.Background(), "evaluate", map[string]string{"model": odir}, t.TempDir(), &bytes.Buffer{}, Options{StateDir: state, Scoring: missing})
	if kind, retryable := steps.Classify(err); retryable || kind != "ONNXRuntimeMissing" || !strings.Contains(err.Error(), "--onnxruntime-lib") {
		t.Errorf("without the library: %s, %v", kind, err)
	}
	onnxtest.Runtime(t)
	evalOut := t.TempDir()
	err = RunWith(context.Background(), "evaluate", map[string]string{"model": odir}, evalOut, &bytes.Buffer{},
		Options{StateDir: state, Scoring: scoring.Options{ONNXRuntime: onnxtest.LibraryPath(t)}})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(evalOut, OutputsFile)); !strings.Contains(string(b), `"provider": "CPUExecutionProvider"`) {
		t.Errorf("outputs do not name the provider:\n%s", b)
	}
}

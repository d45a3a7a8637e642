package steps

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/mltest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

func TestTrainOutputsAndHoldout(t *testing.T) {
	state := t.TempDir()
	env := newEnv(t, state)
	out := mustRun(t, env, "train", "train", map[string]any{
		"data": biased, "label": "defaulted", "positive_label": "yes", "sensitive": "sex,age_group", "seed": "3"})
	if out["rows"] != 3000.0 {
		t.Errorf("rows %v, want 3000", out["rows"])
	}
	if len(env.progress) == 0 || env.progress[0]["loss"] == nil {
		t.Errorf("progress %v lacks the loss", env.progress)
	}
	m := loadOut(t, env, out["model"])
	if out["model_digest"] != m.digest() || m.Ptr.Kind != artifact.KindTree {
		t.Errorf("model_digest %v, want the SHA256SUMS digest %s; pointer %s", out["model_digest"], m.digest(), m.Ptr)
	}
	if h := readOut(t, env, out["holdout"]); !strings.HasPrefix(string(h), "age,") && len(h) == 0 {
		t.Errorf("holdout output does not name the split: %.40q", h)
	}
	// The holdout is what evaluate falls back to: reading it back with the
	// model's schema must give the held-out rows with both classes.
	d, _, err := m.loadData(context.Background(), env, "data", "")
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 600 {
		t.Errorf("holdout has %d rows, want 20%% of 3000", d.Len())
	}
	pos := 0
	for _, y := range d.Y {
		pos += int(y)
	}
	if pos == 0 || pos == d.Len() {
		t.Errorf("holdout has %d positives of %d", pos, d.Len())
	}
	// The scores on the re-read holdout reproduce the holdout metrics the
	// manifest records.
	ev := mustRun(t, newEnv(t, state), "evaluate", "eval", map[string]any{"model": out["model"]})
	got := ev["metrics"].(map[string]any)["roc_auc"]
	if want := out["metrics"].(map[string]any)["roc_auc"]; got != want {
		t.Errorf("roc_auc on holdout %v, train recorded %v", got, want)
	}
}

func TestTrainRetryReusesModel(t *testing.T) {
	state := t.TempDir()
	env := newEnv(t, state)
	with := map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes", "model": "mlp", "epochs": 3, "hidden": "8"}
	first := mustRun(t, env, "train", "train", with)
	if first["reused"] != false {
		t.Fatalf("first attempt reports reused")
	}
	if _, err := os.Stat(filepath.Join(env.Dir(), "checkpoints")); err != nil {
		t.Errorf("no checkpoint directory: %v", err)
	}
	// A retry runs with the same step directory and state.
	env.progress = nil
	second := mustRun(t, env, "train", "train", with)
	if second["reused"] != true || second["model"] != first["model"] || second["model_digest"] != first["model_digest"] {
		t.Errorf("retry: %v, first: %v", second, first)
	}
	if len(env.progress) != 0 {
		t.Errorf("retry trained again: %d progress reports", len(env.progress))
	}
	// On another host sharing only the store, a retry finds it too.
	other := newEnv(t, state)
	third := mustRun(t, other, "train", "train", with)
	if third["reused"] != true || third["model"] != first["model"] {
		t.Errorf("retry on another worker: %v, first: %v", third, first)
	}
}

func TestTrainMissingLabelIsPermanent(t *testing.T) {
	_, err := run(t, newEnv(t, t.TempDir()), "train", "train", map[string]any{
		"data": biased, "label": "no_such_column", "positive_label": "yes"})
	wantPermanent(t, err, "no_such_column", "with.data")
}

func TestTrainBadInputs(t *testing.T) {
	for name, with := range map[string]map[string]any{
		"no data":       {"label": "defaulted", "positive_label": "yes"},
		"bad model":     {"data": biased, "label": "defaulted", "positive_label": "yes", "model": "forest"},
		"bad fraction":  {"data": biased, "label": "defaulted", "positive_label": "yes", "test_fraction": "1.5"},
		"bad hidden":    {"data": biased, "label": "defaulted", "positive_label": "yes", "hidden": "32,x"},
		"missing file":  {"data": filepath.Join(t.TempDir(), "none.csv"), "label": "y", "positive_label": "1"},
		"bad sensitive": {"data": biased, "label": "defaulted", "positive_label": "yes", "sensitive": "zodiac"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := run(t, newEnv(t, t.TempDir()), "train", "train", with)
			wantPermanent(t, err)
		})
	}
}

func TestTrainReweighAndBalanced(t *testing.T) {
	env := newEnv(t, t.TempDir())
	out := mustRun(t, env, "train", "train", map[string]any{
		"data": biased, "label": "defaulted", "positive_label": "yes", "reweigh": "true", "class_weight": "balanced"})
	m := loadOut(t, env, out["model"])
	if m.Info().Lineage.Params["reweigh"] != true || m.Info().Lineage.Params["class_weight"] != "balanced" {
		t.Errorf("lineage params %v", m.Info().Lineage.Params)
	}
}

// On UCI Adult the step must match what the model package reaches directly.
func TestTrainEvaluateAdult(t *testing.T) {
	dir := mltest.AdultDir(t)
	state := t.TempDir()
	tr := mustRun(t, newEnv(t, state), "train", "train", map[string]any{
		"data": filepath.Join(dir, "adult.data"), "label": "Y", "positive_label": ">50K,>50K.",
		"sensitive": []any{"sex", "race"}, "ignore": "fnlwgt"})
	ev := mustRun(t, newEnv(t, state), "evaluate", "eval", map[string]any{
		"model": tr["model"], "data": filepath.Join(dir, "adult.test"),
		"thresholds": map[string]any{"accuracy": map[string]any{"min": 0.85}}})
	acc := ev["metrics"].(map[string]any)["accuracy"].(float64)
	t.Logf("adult.test accuracy %.4f roc_auc %v", acc, ev["metrics"].(map[string]any)["roc_auc"])
	if acc < 0.85 || ev["passed"] != true {
		t.Errorf("accuracy %.4f on adult.test, want >= 0.85", acc)
	}
}

// A save killed half way (the worker SIGKILLed) leaves a staging directory
// beside the model in the step directory; the next successful save there
// removes it, and nothing of the killed save is published.
func TestKilledSaveLeavesNoStagingBehind(t *testing.T) {
	state := t.TempDir()
	env := newEnv(t, state)
	dir := filepath.Join(env.Dir(), "model-killed", "model")
	left := filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-killed")
	if err := os.MkdirAll(filepath.Join(left, "model"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, env, "train", "train", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes"})
	a := loadOut(t, env, out["model"]).Model.(*scoring.GauntletModel).Artifact
	mf := *a.Manifest
	f, err := dataset.LoadFrame(biased)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := saveTrainedModel(dir, &mf, a.Tensors, f, []int{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Fatalf("staging directory of the killed save is still there: %v", err)
	}
	if _, err := modelfile.Load(dir); err != nil {
		t.Fatalf("model not saved: %v", err)
	}
}

package steps

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// evidence is what the report draws from evaluation.json.
type evidence struct {
	ROC         []map[string]any   `json:"roc"`
	Calibration []map[string]any   `json:"calibration"`
	Confusion   map[string]float64 `json:"confusion"`
}

func TestEvaluateAgainstBaseline(t *testing.T) {
	state := t.TempDir()
	// A model trained on few rows is the weaker candidate; the baseline
	// saw many more.
	base := mustRun(t, newEnv(t, state), "train", "base", map[string]any{
		"data": "builtin:credit-risk?rows=5000&seed=7", "label": "defaulted", "positive_label": "yes"})
	weak := mustRun(t, newEnv(t, state), "train", "weak", map[string]any{
		"data": "builtin:credit-risk?rows=60&seed=7", "label": "defaulted", "positive_label": "yes", "model": "mlp", "epochs": 1, "hidden": 2})
	env := newEnv(t, state)
	out, err := run(t, env, "evaluate", "eval", map[string]any{
		"model": weak["model"], "data": "builtin:credit-risk?rows=2000&seed=99", "baseline": base["model"],
		"thresholds": `{"roc_auc": {"max_drop": "0.01"}, "log_loss": {"max": 5}}`})
	wantPermanent(t, err, "roc_auc", "vs baseline", "failed 1 check(s)")
	t.Log(err)
	if out["passed"] != false || out["baseline_metrics"] == nil {
		t.Fatalf("outputs %v", out)
	}
	v := out["verdict"].(map[string]any)
	if len(v["checks"].([]any)) != 2 || len(v["failures"].([]any)) != 1 {
		t.Errorf("verdict %v", v)
	}
	b, err := os.ReadFile(fetchOut(t, out["evaluation"]))
	if err != nil {
		t.Fatal(err)
	}
	var ev struct{ Candidate, Baseline evidence }
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]evidence{"candidate": ev.Candidate, "baseline": ev.Baseline} {
		last := s.ROC[len(s.ROC)-1]
		if len(s.ROC) < 3 || last["fpr"] != 1.0 || last["tpr"] != 1.0 || len(s.Calibration) != 10 {
			t.Errorf("%s: ROC %d points ending %v, %d calibration bins", name, len(s.ROC), last, len(s.Calibration))
		}
		c := s.Confusion
		if c["tp"]+c["fp"]+c["tn"]+c["fn"] != 2000 {
			t.Errorf("%s: confusion %v does not cover 2000 rows", name, c)
		}
	}

	// With fail_on_regression false the same verdict is reported, not raised.
	out = mustRun(t, newEnv(t, state), "evaluate", "eval2", map[string]any{
		"model": weak["model"], "data": "builtin:credit-risk?rows=2000&seed=99", "baseline": base["model"],
		"thresholds": map[string]any{"roc_auc": map[string]any{"max_drop": 0.01}}, "fail_on_regression": "false"})
	if out["passed"] != false {
		t.Errorf("passed %v", out["passed"])
	}
}

func TestEvaluateChampionWithoutRegistry(t *testing.T) {
	state := t.TempDir()
	tr := mustRun(t, newEnv(t, state), "train", "train", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes"})
	out := mustRun(t, newEnv(t, state), "evaluate", "eval", map[string]any{
		"model": tr["model"], "baseline": "champion",
		"thresholds": map[string]any{"roc_auc": map[string]any{"min": 0.6, "max_drop": 0.01}}})
	v := out["verdict"].(map[string]any)
	if out["passed"] != true || out["baseline_metrics"] != nil || !strings.Contains(v["note"].(string), "no champion") {
		t.Errorf("outputs %v", out)
	}
}

func TestEvaluateBadThresholds(t *testing.T) {
	state := t.TempDir()
	tr := mustRun(t, newEnv(t, state), "train", "train", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes"})
	for name, th := range map[string]any{
		"unknown metric": map[string]any{"auc": map[string]any{"min": 0.5}},
		"unknown key":    map[string]any{"roc_auc": map[string]any{"at_least": 0.5}},
		"not a number":   map[string]any{"roc_auc": map[string]any{"min": "high"}},
		"not json":       "{roc_auc",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := run(t, newEnv(t, state), "evaluate", "eval", map[string]any{"model": tr["model"], "thresholds": th})
			wantPermanent(t, err, "with.thresholds")
		})
	}
	_, err := run(t, newEnv(t, state), "evaluate", "eval", map[string]any{"model": tr["model"], "data": "builtin:nope"})
	wantPermanent(t, err, "with.data")
}

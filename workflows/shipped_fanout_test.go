package workflows_test

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
)

func shipped(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "pipelines", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The shipped sweep trains one model per grid point and passes on the one
// with the best held-out metric, which select and the grid agree on.
func TestShippedSweepPicksTheBestGridPoint(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(shipped(t, "sweep"), map[string]any{
		"data": "builtin:credit-risk?rows=1500&seed=7&bias=0.3", "test_data": "builtin:credit-risk?rows=800&seed=8&bias=0.3",
		"hidden": "[\"4\", \"8\"]", "epochs": 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	train := stepOf(t, *res, "train")
	if train.FanOut.Items != 4 || train.FanOut.Succeeded != 4 {
		t.Fatalf("train: %+v", train.FanOut)
	}
	metrics := train.Outputs["metrics"].([]any)
	best, bestAUC := -1, math.Inf(-1)
	for i, m := range metrics {
		if auc := m.(map[string]any)["roc_auc"].(float64); auc > bestAUC {
			best, bestAUC = i, auc
		}
	}
	sel := stepOf(t, *res, "select")
	if sel.Outputs["index"] != float64(best) || sel.Outputs["value"] != bestAUC || sel.Outputs["model"] != train.Outputs["model"].([]any)[best] {
		t.Fatalf("select %v, want grid point %d (roc_auc %v)", sel.Outputs, best, bestAUC)
	}
	if !reflect.DeepEqual(sel.Outputs["candidate"], train.Items[best]) {
		t.Fatalf("candidate %v, item %v", sel.Outputs["candidate"], train.Items[best])
	}
	if ev := stepOf(t, *res, "evaluate"); ev.State != contract.StateSucceeded {
		t.Fatalf("evaluate: %+v", ev)
	}
}

// The shipped cross-validation trains and evaluates once per fold and
// reports the metric's mean and spread over the folds.
func TestShippedCrossValidationScoresEveryFold(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(shipped(t, "cross-validation"), map[string]any{"data": "builtin:credit-risk?rows=1500&seed=7&bias=0.3", "folds": 4})
	if err != nil {
		t.Fatal(err)
	}
	ev := stepOf(t, *res, "evaluate")
	if ev.FanOut.Items != 4 || ev.FanOut.Succeeded != 4 {
		t.Fatalf("evaluate: %+v", ev.FanOut)
	}
	var aucs []float64
	for _, m := range ev.Outputs["metrics"].([]any) {
		aucs = append(aucs, m.(map[string]any)["roc_auc"].(float64))
	}
	mean, sq := 0.0, 0.0
	for _, a := range aucs {
		mean += a / 4
	}
	for _, a := range aucs {
		sq += (a - mean) * (a - mean) / 4
	}
	score := stepOf(t, *res, "score").Outputs
	if math.Abs(score["mean"].(float64)-mean) > 1e-12 || math.Abs(score["std"].(float64)-math.Sqrt(sq)) > 1e-12 || score["n"] != 4.0 {
		t.Fatalf("score %v, folds %v", score, aucs)
	}
	if mean < 0.6 || aucs[0] == aucs[1] {
		t.Fatalf("fold scores look wrong: %v", aucs)
	}
	// Each fold's model was trained on the other folds' rows.
	folds := stepOf(t, *res, "split").Outputs["folds"].([]any)
	rows := stepOf(t, *res, "train").Outputs["rows"].([]any)
	for k, f := range folds {
		if rows[k] != f.(map[string]any)["train_rows"] {
			t.Fatalf("fold %d: trained on %v rows, its train part has %v", k, rows[k], f.(map[string]any)["train_rows"])
		}
	}
}

package steps

import (
	"testing"
)

func TestPruneAndExplainSteps(t *testing.T) {
	state := t.TempDir()
	tr := mustRun(t, newEnv(t, state), "train", "train", map[string]any{
		"data": biased, "label": "defaulted", "positive_label": "yes", "model": "mlp", "epochs": 10, "hidden": "16"})
	out := mustRun(t, newEnv(t, state), "prune", "p", map[string]any{"model": tr["model"], "sparsity": 0.7, "schedule": "gradual",
		"epochs": 3, "train_data": biased, "max_accuracy_drop": 0.05})
	if s := out["sparsity"].(float64); s < 0.6 || out["size_sparse_bytes"].(float64) >= out["size_dense_bytes"].(float64) {
		t.Errorf("outputs %v", out)
	}
	m := loadOut(t, newEnv(t, state), out["model"])
	if m.Info().Lineage.ParentModel != tr["model_digest"] || m.Info().Lineage.Params["pruning"] == nil {
		t.Errorf("lineage %+v", m.Info().Lineage)
	}
	_, err := run(t, newEnv(t, state), "prune", "p2", map[string]any{"model": tr["model"], "sparsity": 0.5, "epochs": 2})
	wantPermanent(t, err, "train_data")
	_, err = run(t, newEnv(t, state), "prune", "p3", map[string]any{"model": tr["model"], "sparsity": 0.99, "max_accuracy_drop": -0.5})
	wantPermanent(t, err, "max_accuracy_drop")

	q := mustRun(t, newEnv(t, state), "quantize", "q", map[string]any{"model": tr["model"], "prune": 0.5, "max_accuracy_drop": 0.05})
	if s := q["sparsity"].(float64); s < 0.4 {
		t.Errorf("quantize with prune: sparsity %v", s)
	}
	_, err = run(t, newEnv(t, state), "quantize", "q2", map[string]any{"model": tr["model"], "prune": 0.95, "max_accuracy_drop": -0.5})
	wantPermanent(t, err, "pruned to sparsity 0.95", "max_accuracy_drop")

	ex := mustRun(t, newEnv(t, state), "explain", "e", map[string]any{"model": tr["model"], "samples": 50, "repeats": 2})
	if top := ex["top_features"].([]any); len(top) != 5 || ex["explanation"] == nil {
		t.Errorf("explain outputs %v", ex)
	}
	lr := mustRun(t, newEnv(t, state), "train", "lr", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes"})
	ex = mustRun(t, newEnv(t, state), "explain", "e2", map[string]any{"model": lr["model"], "records": 2})
	if ex["base_auc"].(float64) < 0.6 {
		t.Errorf("explain outputs %v", ex)
	}
	_, err = run(t, newEnv(t, state), "prune", "p4", map[string]any{"model": lr["model"], "sparsity": 0.5})
	wantPermanent(t, err, "MLPs")
}

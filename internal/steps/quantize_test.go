package steps

import (
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
)

func TestQuantizeMLP(t *testing.T) {
	state := t.TempDir()
	tr := mustRun(t, newEnv(t, state), "train", "train", map[string]any{
		"data": biased, "label": "defaulted", "positive_label": "yes", "model": "mlp", "epochs": 5, "hidden": "16"})
	out := mustRun(t, newEnv(t, state), "quantize", "q", map[string]any{"model": tr["model"], "scheme": "int8", "max_accuracy_drop": "0.02"})
	if out["size_after"].(float64) >= out["size_before"].(float64) {
		t.Errorf("int8 weights %v bytes, float %v", out["size_after"], out["size_before"])
	}
	if out["agreement"].(float64) < 0.95 {
		t.Errorf("agreement %v", out["agreement"])
	}
	m := loadOut(t, newEnv(t, state), out["model"])
	if m.Info().Quantization != modelfile.Int8 || m.Info().Lineage.ParentModel != tr["model_digest"] {
		t.Errorf("manifest quantization %q parent %q", m.Info().Quantization, m.Info().Lineage.ParentModel)
	}
	// The int8 model is usable downstream, defaulting to the same holdout.
	ev := mustRun(t, newEnv(t, state), "evaluate", "eval", map[string]any{"model": out["model"]})
	if acc := ev["metrics"].(map[string]any)["accuracy"]; acc != out["accuracy_after"] {
		t.Errorf("evaluate accuracy %v, quantize reported %v", acc, out["accuracy_after"])
	}
	_, err := run(t, newEnv(t, state), "quantize", "q2", map[string]any{"model": out["model"]})
	wantPermanent(t, err, "already quantized")
}

func TestQuantizeRejects(t *testing.T) {
	state := t.TempDir()
	tr := mustRun(t, newEnv(t, state), "train", "train", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes"})
	_, err := run(t, newEnv(t, state), "quantize", "q", map[string]any{"model": tr["model"], "scheme": "fp8"})
	wantPermanent(t, err, "with.scheme", "fp8")
	// A negative allowance demands that int8 beat float by that much, which
	// it cannot here: the check must fire and say by how much.
	_, err = run(t, newEnv(t, state), "quantize", "q", map[string]any{"model": tr["model"], "max_accuracy_drop": -0.5})
	wantPermanent(t, err, "max_accuracy_drop")
}

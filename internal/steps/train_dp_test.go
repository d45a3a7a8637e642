package steps

import (
	"testing"
)

func TestTrainWithDP(t *testing.T) {
	state := t.TempDir()
	out := mustRun(t, newEnv(t, state), "train", "train", map[string]any{
		"data": biased, "label": "defaulted", "positive_label": "yes", "epochs": 3,
		"dp": map[string]any{"epsilon": 3, "delta": 1e-5, "clip": 1.0}})
	p, ok := out["privacy"].(map[string]any)
	if !ok {
		t.Fatalf("no privacy output: %v", out)
	}
	if eps := p["epsilon"].(float64); !(eps > 0 && eps <= 3) || p["accountant"] == nil || p["sampling"] != "poisson" {
		t.Errorf("privacy %v", p)
	}
	m := loadOut(t, newEnv(t, state), out["model"])
	rec, ok := m.Info().Lineage.Params[paramPrivacy].(map[string]any)
	if !ok {
		t.Fatalf("manifest records no guarantee: %v", m.Info().Lineage.Params)
	}
	for _, k := range []string{"epsilon", "delta", "noise_multiplier", "clip", "sampling_rate", "steps", "accountant"} {
		if rec[k] == nil {
			t.Errorf("manifest guarantee lacks %s: %v", k, rec)
		}
	}
	if acc := out["metrics"].(map[string]any)["accuracy"].(float64); acc < 0.6 {
		t.Errorf("DP model accuracy %v", acc)
	}
}

func TestTrainDPRefusals(t *testing.T) {
	state := t.TempDir()
	base := func(extra map[string]any) map[string]any {
		w := map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes"}
		for k, v := range extra {
			w[k] = v
		}
		return w
	}
	_, err := run(t, newEnv(t, state), "train", "t1", base(map[string]any{
		"epochs": 40, "dp_epsilon": "0.5", "dp_noise_multiplier": "0.6"}))
	wantPermanent(t, err, "more than the budget", "epochs fit")
	if se := err.(*Error); se.Kind != kindPrivacyBudget {
		t.Errorf("kind %q", se.Kind)
	}
	_, err = run(t, newEnv(t, state), "train", "t2", base(map[string]any{"dp": map[string]any{"epsilon": 1}, "dp_clip": 1}))
	wantPermanent(t, err, "not both")
	_, err = run(t, newEnv(t, state), "train", "t3", base(map[string]any{"dp": map[string]any{"epsilon": 1, "sigma": 1}}))
	wantPermanent(t, err, "dp.sigma")
	_, err = run(t, newEnv(t, state), "train", "t4", base(map[string]any{"dp_epsilon": 1, "class_weight": "balanced"}))
	wantPermanent(t, err, "class_weight")
	_, err = run(t, newEnv(t, state), "train", "t5", base(map[string]any{"dp": map[string]any{"clip": 1}}))
	wantPermanent(t, err, "epsilon or noise_multiplier")
}

package steps

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A larger sample than the other tests: the mitigation reports on half of
// the holdout, and each sex group needs enough rows for a stable rate.
const biasedLarge = "builtin:credit-risk?rows=10000&seed=7&bias=0.3"

func trainBiased(t *testing.T, state string) map[string]any {
	t.Helper()
	return mustRun(t, newEnv(t, state), "train", "train", map[string]any{
		"data": biasedLarge, "label": "defaulted", "positive_label": "yes"})
}

func TestFairnessGateFailsOnBiasedModel(t *testing.T) {
	state := t.TempDir()
	tr := trainBiased(t, state)
	env := newEnv(t, state)
	out, err := run(t, env, "fairness-gate", "fair", map[string]any{
		"model": tr["model"], "sensitive": "sex", "max": `{"demographic_parity_difference": 0.1}`})
	wantPermanent(t, err, "demographic_parity_difference for sex", "above the maximum of 0.1")
	if out == nil || out["passed"] != false || out["mitigated"] != false {
		t.Fatalf("outputs %v", out)
	}
	if rep := readOut(t, env, out["report"]); !strings.Contains(string(rep), "initial") {
		t.Errorf("report %.80q", rep)
	}
}

func TestFairnessGateMitigates(t *testing.T) {
	state := t.TempDir()
	tr := trainBiased(t, state)
	env := newEnv(t, state)
	with := map[string]any{
		"model": tr["model"], "sensitive": []any{"sex"},
		"max":      map[string]any{"demographic_parity_difference": 0.1},
		"mitigate": "threshold-optimizer",
	}
	out := mustRun(t, env, "fairness-gate", "fair", with)
	if out["passed"] != true || out["mitigated"] != true {
		t.Fatalf("passed %v mitigated %v: %v", out["passed"], out["mitigated"], out["violations"])
	}
	dpd := func(which string) float64 {
		return out[which].(map[string]any)["sex"].(map[string]any)["demographic_parity_difference"].(float64)
	}
	if dpd("before") <= 0.1 || dpd("after") > 0.1 {
		t.Errorf("DPD before %.3f after %.3f: want before > 0.1 >= after", dpd("before"), dpd("after"))
	}
	groups := out["after"].(map[string]any)["sex"].(map[string]any)["groups"].(map[string]any)
	if len(groups) != 2 {
		t.Errorf("groups %v", groups)
	}
	mitigated := out["model"].(string)
	if mitigated == tr["model"] {
		t.Fatal("mitigation did not write a new model")
	}
	m := loadOut(t, env, mitigated)
	if m.policy == nil || m.Info().Lineage.ParentModel != tr["model_digest"] {
		t.Fatalf("mitigated manifest lacks the policy or its parent: %+v", m.Info().Lineage)
	}
	// The mitigated model's own decisions, read through its manifest, must
	// be fair on the data the gate reported on: gate it again without
	// mitigation on its full holdout.
	again := mustRun(t, newEnv(t, state), "fairness-gate", "fair2", map[string]any{
		"model": mitigated, "sensitive": "sex", "max": map[string]any{"demographic_parity_difference": 0.1}})
	if again["passed"] != true {
		t.Errorf("mitigated model fails the gate on its holdout: %v", again["violations"])
	}
	var rep map[string]any
	if err := json.Unmarshal(readOut(t, env, out["report"]), &rep); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"initial", "mitigation"} {
		if rep[k] == nil {
			t.Errorf("report lacks %s", k)
		}
	}
	// A retry of the same step, on any worker, reuses the published model.
	retry := mustRun(t, newEnv(t, state), "fairness-gate", "fair", with)
	if retry["model"] != mitigated {
		t.Errorf("retry wrote %v, first attempt %v", retry["model"], mitigated)
	}
	refs, err := env.Artifacts().Store().ListRefs(context.Background(), "steps/run-1/fair/")
	if err != nil || len(refs) != 1 {
		t.Errorf("the step recorded %v (%v), want one model", refs, err)
	}
}

func TestFairnessGatePredictionsCSV(t *testing.T) {
	dir := t.TempDir()
	body := "y_true,y_pred,sex\n"
	for i := range 200 {
		// Men are selected three times as often as women.
		sex, pred := "m", "1"
		if i%2 == 1 {
			sex = "f"
			if i%6 != 1 {
				pred = "0"
			}
		} else if i%6 == 0 {
			pred = "0"
		}
		body += []string{"0", "1"}[i%3%2] + "," + pred + "," + sex + "\n"
	}
	path := filepath.Join(dir, "pred.csv")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, newEnv(t, dir), "fairness-gate", "f", map[string]any{
		"predictions": path, "sensitive": "sex", "min": map[string]any{"demographic_parity_ratio": "0.8"}})
	wantPermanent(t, err, "demographic_parity_ratio for sex", "below the minimum of 0.8")
	if r := out["by_feature"].(map[string]any)["sex"].(map[string]any)["demographic_parity_ratio"].(float64); r > 0.8 {
		t.Errorf("ratio %v", r)
	}
	_, err = run(t, newEnv(t, dir), "fairness-gate", "f", map[string]any{
		"predictions": path, "sensitive": "sex", "max": map[string]any{"demographic_parity_difference": 0.1}, "mitigate": "threshold-optimizer"})
	wantPermanent(t, err, "with.mitigate")
}

package steps

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDriftBuiltin(t *testing.T) {
	ref := "builtin:credit-risk?rows=3000&seed=1"
	same := mustRun(t, newEnv(t, t.TempDir()), "drift", "d", map[string]any{"reference": ref, "current": "builtin:credit-risk?rows=3000&seed=2&drift=0"})
	if same["drifted"] != false {
		t.Errorf("drift=0 reported drift in %v", same["drifted_features"])
	}
	moved := mustRun(t, newEnv(t, t.TempDir()), "drift", "d", map[string]any{"reference": ref, "current": "builtin:credit-risk?rows=3000&seed=2&drift=1"})
	if moved["drifted"] != true {
		t.Errorf("drift=1 not reported: %v", moved["features"])
	}
	numeric := 0
	for _, name := range moved["drifted_features"].([]any) {
		f := moved["features"].(map[string]any)[name.(string)].(map[string]any)
		if f["drifted"] != true {
			t.Errorf("%s listed as drifted: %v", name, f)
		}
		if f["kind"] == "numeric" {
			numeric++
			if f["ks_statistic"] == nil || f["ks_pvalue"] == nil || f["psi"] == nil {
				t.Errorf("%s lacks its statistics: %v", name, f)
			}
		}
	}
	if numeric == 0 {
		t.Errorf("no numeric feature drifted: %v", moved["drifted_features"])
	}
	purpose := moved["features"].(map[string]any)["purpose"].(map[string]any)
	if purpose["chi_square"] == nil || purpose["kind"] != "categorical" {
		t.Errorf("purpose: %v", purpose)
	}
	if _, err := os.Stat(fetchOut(t, moved["report"])); err != nil {
		t.Error(err)
	}
}

func TestDriftCSVColumnsAndErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ref, cur := "x,c\n", "x,c\n"
	for i := range 200 {
		ref += []string{"1,a\n", "2,b\n", "3,a\n", "4,b\n"}[i%4]
		cur += []string{"11,a\n", "12,b\n", "13,a\n", "14,b\n"}[i%4]
	}
	out := mustRun(t, newEnv(t, dir), "drift", "d", map[string]any{"reference": write("r.csv", ref), "current": write("c.csv", cur), "columns": "x"})
	feats := out["features"].(map[string]any)
	if len(feats) != 1 || feats["x"].(map[string]any)["drifted"] != true {
		t.Errorf("features %v", feats)
	}
	_, err := run(t, newEnv(t, dir), "drift", "d", map[string]any{"reference": write("r2.csv", ref), "current": write("c2.csv", "x,c\nhigh,a\n")})
	wantPermanent(t, err, "column \"x\"", "text")
	_, err = run(t, newEnv(t, dir), "drift", "d", map[string]any{"reference": write("r3.csv", ref), "current": write("c3.csv", cur), "columns": "y"})
	wantPermanent(t, err, "with.columns", "\"y\"")
}

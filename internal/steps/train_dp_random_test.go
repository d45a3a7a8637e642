package steps

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dp"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/report"
)

// Two DP runs with the same seed share nothing an attacker could replay
// unless the pipeline asks for insecure_reproducible, which the manifest
// then records next to the ε it voids.
func TestTrainDPNoiseIsFreshUnlessInsecureReproducible(t *testing.T) {
	state := t.TempDir()
	train := func(step string, insecure bool) (weights []byte, rec map[string]any) {
		t.Helper()
		out := mustRun(t, newEnv(t, state), "train", step, map[string]any{
			"data": biased, "label": "defaulted", "positive_label": "yes", "seed": 5, "epochs": 2,
			"dp": map[string]any{"epsilon": 3, "insecure_reproducible": insecure}})
		env := newEnv(t, state)
		dir := materialized(t, env, out["model"])
		w, err := os.ReadFile(filepath.Join(dir, modelfile.WeightsFile))
		if err != nil {
			t.Fatal(err)
		}
		m := loadOut(t, env, out["model"])
		rec, ok := m.Info().Lineage.Params[paramPrivacy].(map[string]any)
		if !ok {
			t.Fatalf("manifest records no guarantee: %v", m.Info().Lineage.Params)
		}
		return w, rec
	}
	a, ra := train("secure-1", false)
	b, _ := train("secure-2", false)
	if bytes.Equal(a, b) {
		t.Error("two DP runs with the same seed saved identical weights")
	}
	if ra["randomness"] != dp.SecureRandomness || ra["insecure_reproducible"] != nil {
		t.Errorf("secure run's manifest: randomness %v, insecure_reproducible %v", ra["randomness"], ra["insecure_reproducible"])
	}
	c, rc := train("seeded-1", true)
	d, _ := train("seeded-2", true)
	if !bytes.Equal(c, d) {
		t.Error("two insecure_reproducible runs with the same seed saved different weights")
	}
	if rc["randomness"] != dp.SeededRandomness || rc["insecure_reproducible"] != true {
		t.Errorf("reproducible run's manifest: randomness %v, insecure_reproducible %v", rc["randomness"], rc["insecure_reproducible"])
	}
	if ra["epsilon"] != rc["epsilon"] || ra["noise_multiplier"] != rc["noise_multiplier"] {
		t.Errorf("the randomness changed the accounting: ε %v vs %v, σ %v vs %v", ra["epsilon"], rc["epsilon"], ra["noise_multiplier"], rc["noise_multiplier"])
	}
}

func TestTrainDPInsecureReproducibleWantsABoolean(t *testing.T) {
	_, err := run(t, newEnv(t, t.TempDir()), "train", "t", map[string]any{
		"data": biased, "label": "defaulted", "positive_label": "yes",
		"dp": map[string]any{"epsilon": 3, "insecure_reproducible": "perhaps"}})
	wantPermanent(t, err, "dp.insecure_reproducible")
}

// The evidence a reviewer reads carries the model's DP record: seeded
// noise is a warning above the metrics.
func TestReportWarnsOfInsecureReproducibleDP(t *testing.T) {
	state := t.TempDir()
	for _, insecure := range []bool{false, true} {
		step := map[bool]string{false: "secure", true: "seeded"}[insecure]
		m := mustRun(t, newEnv(t, state), "train", step, map[string]any{
			"data": reportData, "label": "defaulted", "positive_label": "yes", "epochs": 2,
			"dp": map[string]any{"epsilon": 3, "insecure_reproducible": insecure}})
		out := mustRun(t, newEnv(t, state), "report", "report-"+step, map[string]any{"model": m["model"]})
		page := readReportPage(t, out)
		if !strings.Contains(page, "<h2>Differential privacy</h2>") {
			t.Errorf("%s: the report has no privacy section", step)
		}
		warned := strings.Contains(page, report.InsecureDPWarning)
		if warned != insecure {
			t.Errorf("%s: report warns %v, want %v", step, warned, insecure)
		}
	}
}

package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/testkit"
	"github.com/gauntlet-ml/gauntlet/internal/tf"
)

// TestDemoRunsTheWholeGauntlet is the product's main job end to end: real
// Temporal server, real Terraform starting real node workers, real model
// servers behind the real router, generated and drifted traffic, and the
// monitor rolling production back.
func TestDemoRunsTheWholeGauntlet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two full pipelines (about two minutes); skipped with -short")
	}
	if _, err := tf.Find(""); err != nil {
		testkit.Need(t, "the demo provisions nodes with terraform: %v", err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	worker := filepath.Join(root, "bin", "worker")
	if _, err := os.Stat(worker); err != nil {
		testkit.Need(t, "the demo's nodes run %s: build it with `make build` (make test does)", worker)
	}
	t.Setenv("GAUNTLET_WORKER_BINARY", worker)
	t.Setenv("GAUNTLET_INFRA_MODULES", filepath.Join(root, "infra", "modules"))
	env := map[string]string{"GAUNTLET_PIPELINES": filepath.Join(root, "pipelines"), "GAUNTLET_USER": "ci"}
	histories := t.TempDir()
	code, out, stderr := runCLI(t, env, "demo", "--state-dir", filepath.Join(t.TempDir(), "demo"),
		"-p", "canary_interval=5s", "-p", "monitor_for=50s", "--export-histories", histories)
	if code != ExitOK {
		t.Fatalf("demo: exit %d\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{
		"promoted: initialized",                     // the first model has no champion
		"promoted: analysis passed at every weight", // the second passed its canary
		"promote  champion v1→v2, previous v0→v1",   // and became champion
		"rollback champion v2→v1, previous v1→v2",   // until the drift rolled it back
		"clients send a DRIFTED population",         // which the demo injected
		"teardown             succeeded",            // and the nodes were given back
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", out)
	}
	// Every workflow the demo ran replays; the second run (canary and
	// monitor steps, a node) and its monitor are kept for the replay tests.
	files, err := filepath.Glob(filepath.Join(histories, "*.json"))
	if err != nil || len(files) < 4 {
		t.Fatalf("exported histories %v (%v): want the three runs and the monitor", files, err)
	}
	for _, f := range files {
		hist, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name, id := "", strings.TrimSuffix(filepath.Base(f), ".json")
		switch base := filepath.Base(f); {
		case strings.HasPrefix(base, "monitor-"):
			name = "monitor.json"
		case strings.HasSuffix(base, "-second.json"):
			name = "pipeline_canary_monitor.json"
		}
		keepHistory(t, hist, name, id)
	}
}

package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSchedulesOnARealServer(t *testing.T) {
	pipes := t.TempDir()
	write := func(cron string) {
		t.Helper()
		src := "name: nightly\nschedule: {cron: \"" + cron + "\", timezone: Europe/Paris}\nsteps:\n  - {id: a, uses: echo, with: {x: 1}}\n"
		if cron == "" {
			src = "name: nightly\nsteps:\n  - {id: a, uses: echo, with: {x: 1}}\n"
		}
		if err := os.WriteFile(filepath.Join(pipes, "nightly.yaml"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("0 2 * * *")
	frontend := startEmbedded(t, pipes)
	env := map[string]string{"TEMPORAL_ADDRESS": frontend, "GAUNTLET_PIPELINES": pipes}
	cli := func(args ...string) string {
		t.Helper()
		code, out, stderr := runCLI(t, env, args...)
		if code != ExitOK {
			t.Fatalf("%v: exit %d: %s %s", args, code, out, stderr)
		}
		return out
	}

	if out := cli("schedule", "sync"); !strings.Contains(out, "create   gauntlet-nightly") {
		t.Fatalf("first sync: %q", out)
	}
	if out := cli("schedule", "sync"); !strings.Contains(out, "in sync") {
		t.Fatalf("second sync changed something: %q", out)
	}
	if out := cli("schedule", "describe", "nightly"); !strings.Contains(out, "skip") || !strings.Contains(out, "1h0m0s") {
		t.Fatalf("describe lacks the default overlap and catch-up window: %q", out)
	}
	write("30 3 * * *")
	if out := cli("schedule", "sync"); !strings.Contains(out, "update   gauntlet-nightly") {
		t.Fatalf("sync after an edit: %q", out)
	}
	if out := cli("schedule", "sync"); !strings.Contains(out, "in sync") {
		t.Fatalf("sync after the update is not idempotent: %q", out)
	}

	cli("schedule", "trigger", "nightly")
	var runID string
	waitFor(t, func() bool {
		code, out, _ := runCLI(t, env, "list", "--pipeline", "nightly", "--state", "succeeded", "--output", "json")
		if code != ExitOK || !strings.Contains(out, `"run_id": "nightly-`) {
			return false
		}
		i := strings.Index(out, `"run_id": "`) + len(`"run_id": "`)
		runID = out[i : i+strings.Index(out[i:], `"`)]
		return true
	})
	// The scheduled run's id carries its scheduled time.
	if !strings.HasPrefix(runID, "nightly-20") {
		t.Fatalf("scheduled run id %q does not carry the scheduled time", runID)
	}

	cli("schedule", "pause", "nightly")
	// The list comes from the visibility store, which the server updates
	// after the schedule itself: wait for it rather than read it once.
	waitFor(t, func() bool {
		return strings.Contains(cli("schedule", "list", "--output", "json"), `"paused": true`)
	})
	cli("schedule", "unpause", "nightly")

	write("")
	if out := cli("schedule", "sync"); !strings.Contains(out, "delete   gauntlet-nightly") {
		t.Fatalf("sync did not prune the removed schedule: %q", out)
	}
	if code, _, _ := runCLI(t, env, "schedule", "describe", "nightly"); code != ExitNotFound {
		t.Fatalf("deleted schedule still described: exit %d", code)
	}
}

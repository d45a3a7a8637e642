package extstep

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/checkpoint"
	"github.com/gauntlet-ml/gauntlet/internal/testkit"
)

// hostEnv is a fakeEnv on a host of its own that shares the store at
// store with the others, and nothing else.
func hostEnv(t *testing.T, store string) *fakeEnv {
	t.Helper()
	ws, err := workspace.Open(context.Background(), workspace.Config{Store: store, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s := ws.Session()
	t.Cleanup(s.Close)
	return &fakeEnv{t: t, dir: t.TempDir(), artifacts: s}
}

const ckptRef = "checkpoints/run-1/train/k"

func runCkpt(t *testing.T, env *fakeEnv, script string) (map[string]any, error) {
	t.Helper()
	return fast.Run(context.Background(), env, Command{Shell: script}, Input{RunID: "run-1", Pipeline: "pipe", StepID: "train", Checkpoint: ckptRef})
}

func record(t *testing.T, env *fakeEnv) (checkpoint.Record, bool) {
	t.Helper()
	ref, err := env.artifacts.Store().GetRef(context.Background(), ckptRef)
	if err != nil {
		return checkpoint.Record{}, false
	}
	var rec checkpoint.Record
	if err := json.Unmarshal(ref.Data, &rec); err != nil {
		t.Fatal(err)
	}
	return rec, true
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// A ::checkpoint line publishes the directory while the command runs; the
// end publishes it again, whatever the exit; another host restores it
// before its command starts.
func TestCheckpointPublishedOnDirectiveAndAtExit(t *testing.T) {
	store := "file://" + filepath.Join(t.TempDir(), "store")
	a := hostEnv(t, store)
	marker := filepath.Join(t.TempDir(), "go-on")
	script := `
set -e
cd "$GAUNTLET_CHECKPOINT_DIR"
echo one > a; echo '::checkpoint step=1 "of two"'
while [ ! -e ` + marker + ` ]; do sleep 0.01; done
echo two > b; printf half > .b.tmp
exit 3`
	done := make(chan error, 1)
	go func() {
		_, err := runCkpt(t, a, script)
		done <- err
	}()
	waitFor(t, "the ::checkpoint line's publish", func() bool { rec, ok := record(t, a); return ok && rec.Seq == 1 })
	if rec, _ := record(t, a); rec.Label != `step=1 "of two"` {
		t.Errorf("label %q, want the line's text", rec.Label)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if e := asError(t, <-done); e.Kind != KindCommandFailed {
		t.Fatalf("first attempt: %v", e)
	}
	rec, _ := record(t, a)
	if rec.Seq != 2 || !strings.HasPrefix(rec.Label, "at exit (exit status 3)") {
		t.Errorf("after the exit: %+v, want the second publish, at exit", rec)
	}
	var saw bool
	for _, hb := range a.heartbeats() {
		saw = saw || hb.Checkpoint == `step=1 "of two"`
	}
	if !saw {
		t.Errorf("no heartbeat named the published checkpoint: %+v", a.heartbeats())
	}

	b := hostEnv(t, store)
	out, err := runCkpt(t, b, `
cd "$GAUNTLET_CHECKPOINT_DIR"
echo "::output files=\"$(ls -A | tr '\n' ' ')\" b=$(cat b)"`)
	if err != nil {
		t.Fatal(err)
	}
	if out["files"] != "a b " || out["b"] != "two" {
		t.Errorf("host B's checkpoint directory: files %q, b %q; want a and b from host A, no temporary file", out["files"], out["b"])
	}
	log, err := os.ReadFile(filepath.Join(b.dir, "logs", "attempt-1.log"))
	if err != nil || !strings.Contains(string(log), "restored from the store") {
		t.Errorf("host B's log does not say the checkpoint was restored: %v\n%s", err, log)
	}
}

// A command whose checkpoint another attempt moved on is stopped at its
// next ::checkpoint, as a cancellation, with a kind that says why.
func TestSupersededCommandIsStopped(t *testing.T) {
	store := "file://" + filepath.Join(t.TempDir(), "store")
	a := hostEnv(t, store)
	marker := filepath.Join(t.TempDir(), "go-on")
	script := `
cd "$GAUNTLET_CHECKPOINT_DIR"
echo 1 > s; echo ::checkpoint 1
while [ ! -e ` + marker + ` ]; do sleep 0.01; done
echo 2 > s; echo ::checkpoint 2
sleep 60`
	done := make(chan error, 1)
	began := time.Now()
	go func() {
		_, err := runCkpt(t, a, script)
		done <- err
	}()
	waitFor(t, "the first publish", func() bool { _, ok := record(t, a); return ok })
	// The replacement, on another host, publishes its own.
	other, err := checkpoint.Open(context.Background(), a.artifacts.Store(), ckptRef, filepath.Join(t.TempDir(), "c"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other.Path(), "s"), []byte("replacement"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.Publish(context.Background(), "replacement"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e := asError(t, <-done)
	if e.Kind != KindCheckpointSuperseded || !e.Retryable() {
		t.Fatalf("superseded attempt: %s retryable %v: %v", e.Kind, e.Retryable(), e)
	}
	if waited := time.Since(began); waited > 50*time.Second {
		t.Errorf("the superseded command ran to its end (%s) instead of being stopped", waited)
	}
	if rec, _ := record(t, a); rec.Label != "replacement" {
		t.Errorf("the store's checkpoint is %q, want the replacement's", rec.Label)
	}
}

// The example trainer crashes on host A after epoch 2; its retry on host
// B, which shares only the store, resumes after epoch 2.
func TestTrainerResumesOnAnotherHost(t *testing.T) {
	testkit.Installed(t, python)
	store := "file://" + filepath.Join(t.TempDir(), "store")
	script, err := filepath.Abs("../../examples/trainer/train.py")
	if err != nil {
		t.Fatal(err)
	}
	in := Input{RunID: "r", Pipeline: "p", StepID: "train", Checkpoint: "checkpoints/r/train/k",
		With: map[string]any{"epochs": 5.0, "lr": 0.05, "rows": 200.0, "crash_after": 2.0}}
	cmd := Command{Argv: []string{python, script}}
	if _, err := fast.Run(context.Background(), hostEnv(t, store), cmd, in); asError(t, err).Kind != KindCommandFailed {
		t.Fatalf("first attempt: %v", err)
	}
	in.With = map[string]any{"epochs": 5.0, "lr": 0.05, "rows": 200.0}
	out, err := fast.Run(context.Background(), hostEnv(t, store), cmd, in)
	if err != nil {
		t.Fatal(err)
	}
	if out["resumed_from"] != 2.0 || out["epochs_run"] != 3.0 {
		t.Fatalf("host B: resumed_from %v epochs_run %v, want 2 and 3", out["resumed_from"], out["epochs_run"])
	}
}

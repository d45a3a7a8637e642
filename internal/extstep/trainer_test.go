package extstep

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/testkit"
)

const python = "/usr/bin/python3"

// runTrainer runs the example trainer as a pipeline would.
func runTrainer(t *testing.T, env *fakeEnv, with map[string]any) (map[string]any, error) {
	t.Helper()
	script, err := filepath.Abs("../../examples/trainer/train.py")
	if err != nil {
		t.Fatal(err)
	}
	return fast.Run(context.Background(), env, Command{Argv: []string{python, script}}, Input{RunID: "r", Pipeline: "p", StepID: "train", With: with})
}

func TestTrainerResumesFromCheckpointDir(t *testing.T) {
	testkit.Installed(t, python)
	const epochs = 5
	with := map[string]any{"epochs": float64(epochs), "lr": 0.05, "rows": 200.0, "crash_after": 2.0}

	env := newFakeEnv(t)
	_, err := runTrainer(t, env, with)
	e := asError(t, err)
	if e.Kind != KindCommandFailed || !e.Retryable() || e.ExitCode != 1 {
		t.Fatalf("first attempt: kind %s retryable %v code %d, want a retryable exit 1: %v", e.Kind, e.Retryable(), e.ExitCode, err)
	}
	if last := env.heartbeats(); len(last) == 0 || last[len(last)-1].Progress["epoch"] != "2/5" {
		t.Fatalf("first attempt's last heartbeat = %v, want epoch 2/5", last)
	}
	if _, err := os.Stat(filepath.Join(env.dir, "checkpoint", "checkpoint.json")); err != nil {
		t.Fatalf("no checkpoint after the crash: %v", err)
	}

	env.nextAttempt(t)
	out, err := runTrainer(t, env, with)
	if err != nil {
		t.Fatal(err)
	}
	if out["resumed_from"] != 2.0 || out["epochs_run"] != float64(epochs-2) {
		t.Fatalf("resumed_from %v epochs_run %v, want 2 and %d", out["resumed_from"], out["epochs_run"], epochs-2)
	}
	if b, err := os.ReadFile(env.local(t, out["model"])); err != nil || !strings.Contains(string(b), "logistic-regression") {
		t.Fatalf("model artefact %.80q: %v", b, err)
	}

	// Resuming must not change the result: an uninterrupted run in a fresh
	// directory ends with the same model.
	clean := map[string]any{"epochs": float64(epochs), "lr": 0.05, "rows": 200.0}
	whole, err := runTrainer(t, newFakeEnv(t), clean)
	if err != nil {
		t.Fatal(err)
	}
	if whole["resumed_from"] != 0.0 || whole["epochs_run"] != float64(epochs) {
		t.Fatalf("uninterrupted run: resumed_from %v epochs_run %v", whole["resumed_from"], whole["epochs_run"])
	}
	if whole["loss"] != out["loss"] || whole["accuracy"] != out["accuracy"] {
		t.Fatalf("resumed run ended at loss %v accuracy %v, uninterrupted at %v %v", out["loss"], out["accuracy"], whole["loss"], whole["accuracy"])
	}
}

func TestTrainerBadInputIsPermanent(t *testing.T) {
	testkit.Installed(t, python)
	_, err := runTrainer(t, newFakeEnv(t), map[string]any{"epochs": "many"})
	e := asError(t, err)
	if e.Kind != KindBadInput || e.Retryable() || e.ExitCode != 2 {
		t.Fatalf("kind %s retryable %v code %d, want permanent BadInput from exit 2: %v", e.Kind, e.Retryable(), e.ExitCode, err)
	}
}

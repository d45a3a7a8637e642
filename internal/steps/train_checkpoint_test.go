package steps

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/checkpoint"
)

// hostEnv is a testEnv on a host of its own: its own state directory,
// step directory and cache, sharing only the store with the others.
type hostEnv struct {
	*testEnv
	// onProgress, when set, sees each report once it is recorded.
	onProgress func(map[string]any)
}

func newHostEnv(t *testing.T, store string) *hostEnv {
	t.Helper()
	state := t.TempDir()
	ws, err := workspace.Open(context.Background(), workspace.Config{Store: store, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	session := ws.Session()
	t.Cleanup(session.Close)
	return &hostEnv{testEnv: &testEnv{dir: t.TempDir(), state: state, artifacts: session}}
}

func (e *hostEnv) Progress(details any) {
	e.testEnv.Progress(details)
	if e.onProgress != nil {
		e.mu.Lock()
		last := e.progress[len(e.progress)-1]
		e.mu.Unlock()
		e.onProgress(last)
	}
}

// trainUntil runs train on env and cancels it once epoch has been
// reported, as a node lost in the next epoch.
func trainUntil(t *testing.T, env *hostEnv, in Input, epoch int) {
	t.Helper()
	ty, _ := Lookup("train")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env.onProgress = func(p map[string]any) {
		if e, _ := p["epoch"].(float64); int(e) == epoch {
			cancel()
		}
	}
	defer func() { env.onProgress = nil }()
	if _, err := ty.Run(ctx, env, in); !errors.Is(err, context.Canceled) {
		t.Fatalf("train stopped after epoch %d: %v, want context.Canceled", epoch, err)
	}
}

func epochsOf(env *hostEnv) []int {
	var out []int
	for _, p := range env.progress {
		if e, ok := p["epoch"].(float64); ok {
			out = append(out, int(e))
		}
	}
	return out
}

func runInput(t *testing.T, env Env, in Input) map[string]any {
	t.Helper()
	ty, _ := Lookup("train")
	out, err := ty.Run(context.Background(), env, in)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(out)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// An MLP whose node is lost after epoch 3 resumes on another host, which
// shares only the store, from the checkpoint there: it trains epochs 4 to
// 6 alone, says so, and ends with the model an uninterrupted run gives.
func TestTrainResumesOnAnotherHostFromTheStore(t *testing.T) {
	store := "file://" + filepath.Join(t.TempDir(), "store")
	with := map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes", "model": "mlp", "epochs": 6, "hidden": "8", "seed": 4}
	in := Input{RunID: "run-ckpt", Pipeline: "p", StepID: "train", Uses: "train", With: with}

	whole := runInput(t, newHostEnv(t, store), Input{RunID: "run-whole", Pipeline: "p", StepID: "train", Uses: "train", With: with})
	if r, ok := whole["resumed_from_epoch"].(float64); !ok || r != 0 {
		t.Errorf("uninterrupted run: resumed_from_epoch %v, want 0", whole["resumed_from_epoch"])
	}

	a := newHostEnv(t, store)
	trainUntil(t, a, in, 3)
	b := newHostEnv(t, store)
	out := runInput(t, b, in)
	if got := epochsOf(b); !slices.Equal(got, []int{4, 5, 6}) {
		t.Errorf("host B trained epochs %v, want 4..6", got)
	}
	if out["resumed_from_epoch"] != 3.0 || out["reused"] != false {
		t.Errorf("host B: resumed_from_epoch %v reused %v, want 3 and false", out["resumed_from_epoch"], out["reused"])
	}
	if out["checkpoint"] != CheckpointName(in) {
		t.Errorf("checkpoint output %v, want %s", out["checkpoint"], CheckpointName(in))
	}
	// One publish per epoch over both hosts: none was trained twice.
	ref, err := b.Artifacts().Store().GetRef(context.Background(), CheckpointName(in))
	if err != nil {
		t.Fatal(err)
	}
	var rec checkpoint.Record
	if err := json.Unmarshal(ref.Data, &rec); err != nil || rec.Seq != 6 || rec.Label != "epoch 6" {
		t.Errorf("checkpoint record %+v (%v), want the 6th publish, of epoch 6", rec, err)
	}
	wm, om := whole["metrics"].(map[string]any), out["metrics"].(map[string]any)
	for _, k := range []string{"roc_auc", "log_loss", "accuracy"} {
		if wm[k] != om[k] {
			t.Errorf("%s: resumed %v, uninterrupted %v", k, om[k], wm[k])
		}
	}
}

// DP-SGD resumed on another host counts the epochs trained before the
// loss: its guarantee is the uninterrupted run's, every step included.
func TestTrainDPResumesAndCountsEveryEpoch(t *testing.T) {
	store := "file://" + filepath.Join(t.TempDir(), "store")
	with := map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes", "epochs": 4, "seed": 2,
		"dp": map[string]any{"epsilon": 3, "batch_size": 100, "insecure_reproducible": true}}
	in := Input{RunID: "run-dp", Pipeline: "p", StepID: "train", Uses: "train", With: with}
	whole := runInput(t, newHostEnv(t, store), Input{RunID: "run-dp-whole", Pipeline: "p", StepID: "train", Uses: "train", With: with})

	a := newHostEnv(t, store)
	trainUntil(t, a, in, 2)
	b := newHostEnv(t, store)
	out := runInput(t, b, in)
	if got := epochsOf(b); !slices.Equal(got, []int{3, 4}) || out["resumed_from_epoch"] != 2.0 {
		t.Errorf("host B trained epochs %v, resumed_from_epoch %v; want 3, 4 and 2", got, out["resumed_from_epoch"])
	}
	pw, po := whole["privacy"].(map[string]any), out["privacy"].(map[string]any)
	for _, k := range []string{"epsilon", "steps", "epochs", "noise_multiplier", "sampling_rate"} {
		if pw[k] == nil || pw[k] != po[k] {
			t.Errorf("privacy %s: resumed %v, uninterrupted %v", k, po[k], pw[k])
		}
	}
	if po["resumed_from_epoch"] != 2.0 {
		t.Errorf("the guarantee does not say it was resumed: %v", po)
	}
	if wm, om := whole["metrics"].(map[string]any), out["metrics"].(map[string]any); wm["roc_auc"] != om["roc_auc"] {
		t.Errorf("seeded DP run resumed: roc_auc %v, uninterrupted %v", om["roc_auc"], wm["roc_auc"])
	}
}

// An attempt overtaken by another (a node declared lost that kept
// running) stops at its next checkpoint rather than roll the store back.
func TestTrainSupersededAttemptStops(t *testing.T) {
	store := "file://" + filepath.Join(t.TempDir(), "store")
	with := map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes", "model": "mlp", "epochs": 4, "hidden": "8"}
	in := Input{RunID: "run-zombie", Pipeline: "p", StepID: "train", Uses: "train", With: with}
	ty, _ := Lookup("train")
	zombie := newHostEnv(t, store)
	other := newHostEnv(t, store)
	var moved bool
	zombie.onProgress = func(p map[string]any) {
		if p["epoch"] == 1.0 && !moved {
			moved = true
			// Meanwhile the replacement publishes a checkpoint of its own.
			d, err := checkpoint.Open(context.Background(), other.Artifacts().Store(), CheckpointName(in), filepath.Join(other.Dir(), "c"))
			if err != nil {
				t.Error(err)
				return
			}
			if err := writeJSON(filepath.Join(d.Path(), "x.json"), map[string]int{"epoch": 1}); err != nil {
				t.Error(err)
			}
			if _, _, err := d.Publish(context.Background(), "replacement"); err != nil {
				t.Error(err)
			}
		}
	}
	_, err := ty.Run(context.Background(), zombie, in)
	var se *Error
	if !errors.As(err, &se) || se.Kind != KindCheckpointSuperseded || !se.Retryable {
		t.Fatalf("overtaken attempt: %T %v, want a retryable %s", err, err, KindCheckpointSuperseded)
	}
	if got := epochsOf(zombie); !slices.Equal(got, []int{1}) {
		t.Errorf("overtaken attempt reported epochs %v, want it to stop after 1", got)
	}
}

package steps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/checkpoint"
)

// Checkpoints live in the store under the run, the step and a key of the
// step's inputs (checkpoint.Name), so that the attempt that replaces a lost
// node, on whatever host, resumes from the last epoch any attempt
// published; and a step run again with other inputs never resumes one made
// for these.

// KindCheckpointSuperseded is the error kind of an attempt whose checkpoint
// another attempt of the same step moved on: a node declared lost that
// still runs. Retried: the next attempt resumes from the newer checkpoint.
const KindCheckpointSuperseded = "CheckpointSuperseded"

// CheckpointKey is the key of a step execution's checkpoint: its inputs
// (run, step, type and `with:`) and its command.
func CheckpointKey(in Input) string {
	h := sha256.New()
	h.Write([]byte(inputsDigest(in)))
	if in.Command != nil {
		b, _ := json.Marshal(in.Command)
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// CheckpointName is the ref of a step execution's checkpoint.
func CheckpointName(in Input) string {
	return checkpoint.Name(in.RunID, in.StepID, CheckpointKey(in))
}

// openCheckpoint makes dir hold the step's checkpoint from the store (or
// nothing, on a first attempt).
func openCheckpoint(ctx context.Context, env Env, in Input, dir string) (*checkpoint.Dir, error) {
	d, err := checkpoint.Open(ctx, env.Artifacts().Store(), CheckpointName(in), dir)
	if err != nil {
		return nil, CheckpointError(err)
	}
	if r := d.Restored(); r != nil {
		env.Logger().Info("checkpoint restored from the store", "ref", d.Name(), "checkpoint", r.Label,
			"published_by", r.Host, "published_at", r.At, "seq", r.Seq)
	}
	return d, nil
}

// publishCheckpoint publishes what the trainer saved. Only a superseded
// attempt stops: a store that fails now leaves the previous checkpoint,
// and the next epoch tries again, which is better than losing the run
// over a checkpoint.
func publishCheckpoint(ctx context.Context, env Env, d *checkpoint.Dir, label string) error {
	_, _, err := d.Publish(ctx, label)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, checkpoint.ErrSuperseded), ctx.Err() != nil:
		return CheckpointError(err)
	}
	env.Logger().Warn("checkpoint not published; the store keeps the previous one", "ref", d.Name(), "checkpoint", label, "error", err)
	return nil
}

// CheckpointError gives a checkpoint failure its kind: superseded, or the
// store's (StoreUnavailable, StoreAccessDenied, ...).
func CheckpointError(err error) error {
	if errors.Is(err, checkpoint.ErrSuperseded) {
		return &Error{Kind: KindCheckpointSuperseded, Retryable: true, Err: err}
	}
	return workspace.Classify(err)
}

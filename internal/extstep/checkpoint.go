package extstep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/checkpoint"
)

// KindCheckpointSuperseded: another attempt of the step published a
// checkpoint after this one last did (this attempt's node was declared
// lost but kept running). The command is stopped; retryable, and the next
// attempt resumes from the newer checkpoint.
const KindCheckpointSuperseded = "CheckpointSuperseded"

// finalPublishTimeout bounds the publish at the command's end, which runs
// even when the step was cancelled.
const finalPublishTimeout = time.Minute

// checkpointSync publishes GAUNTLET_CHECKPOINT_DIR to the store when the
// command prints ::checkpoint and once more when it ends. Requests made
// while a publish runs are folded into one more publish, of the latest
// label: the directory is read as it is then, so the newest checkpoint
// wins and the command never waits for the store.
type checkpointSync struct {
	dir *checkpoint.Dir
	log *slog.Logger
	// stop cancels the attempt when it turns out to be superseded.
	stop context.CancelCauseFunc

	mu      sync.Mutex
	pending *string
	label   string // of the last checkpoint published or restored
	wake    chan struct{}
	done    chan struct{}
	quit    chan struct{}
}

func openCheckpoint(ctx context.Context, env Env, name, path string) (*checkpoint.Dir, error) {
	d, err := checkpoint.Open(ctx, env.Artifacts().Store(), name, path)
	if err != nil {
		return nil, checkpointError(err)
	}
	return d, nil
}

func checkpointError(err error) error {
	if errors.Is(err, checkpoint.ErrSuperseded) {
		return retryable(KindCheckpointSuperseded, err)
	}
	return workspace.Classify(err)
}

func newCheckpointSync(d *checkpoint.Dir, log *slog.Logger, stop context.CancelCauseFunc) *checkpointSync {
	c := &checkpointSync{dir: d, log: log, stop: stop, wake: make(chan struct{}, 1), done: make(chan struct{}), quit: make(chan struct{})}
	if r := d.Restored(); r != nil {
		c.label = r.Label
	}
	return c
}

// request asks for a publish labelled label (the ::checkpoint line's
// text).
func (c *checkpointSync) request(label string) {
	c.mu.Lock()
	c.pending = &label
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// run publishes on request until finish, calling published after each
// publish that moved the checkpoint.
func (c *checkpointSync) run(ctx context.Context, published func()) {
	defer close(c.done)
	for {
		select {
		case <-c.quit:
			return
		case <-c.wake:
		}
		c.mu.Lock()
		p := c.pending
		c.pending = nil
		c.mu.Unlock()
		if p == nil {
			continue
		}
		changed, err := c.publish(ctx, *p)
		if errors.Is(err, checkpoint.ErrSuperseded) {
			c.stop(err)
		}
		if changed {
			published()
		}
	}
}

// publish stores the directory; a failure other than being superseded
// leaves the store's previous checkpoint, which is logged, and the next
// request tries again.
func (c *checkpointSync) publish(ctx context.Context, label string) (bool, error) {
	rec, changed, err := c.dir.Publish(ctx, label)
	if err != nil {
		c.log.Warn("checkpoint not published; the store keeps the previous one", "ref", c.dir.Name(), "checkpoint", label, "error", err)
		return false, err
	}
	if changed {
		c.mu.Lock()
		c.label = rec.Label
		c.mu.Unlock()
		c.log.Info("checkpoint published", "ref", c.dir.Name(), "checkpoint", rec.Label, "seq", rec.Seq, "tree", rec.Tree)
	}
	return changed, nil
}

// last is the label of the newest checkpoint in the store as far as this
// attempt knows, for heartbeats; empty without checkpoints.
func (c *checkpointSync) last() string {
	if c == nil {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.label
}

// finish stops the loop and publishes what the command left, whatever
// its end: a failed or cancelled attempt's checkpoint is what the next
// one resumes from. It runs on its own deadline, since ctx may be over.
func (c *checkpointSync) finish(ctx context.Context, label string) error {
	close(c.quit)
	<-c.done
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalPublishTimeout)
	defer cancel()
	if _, err := c.publish(fctx, label); err != nil {
		return fmt.Errorf("publish the checkpoint at exit: %w", err)
	}
	return nil
}

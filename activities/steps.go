// Package activities adapts Gauntlet's plain-Go step types and pipeline
// loading into Temporal activities: decode the input, call the domain code,
// heartbeat, and map errors onto retryable or not.
package activities

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/gauntlet-ml/gauntlet/internal/metrics"
	"github.com/gauntlet-ml/gauntlet/internal/steps"
	"github.com/gauntlet-ml/gauntlet/workflows"
)

// Host carries what step activities need from the worker.
type Host struct {
	StateDir string
	// ArtifactStore is the location of the shared artifact store; empty
	// means file://<StateDir>/artifacts.
	ArtifactStore string
	Logger        *slog.Logger
	// Metrics, when set, records every step attempt; nil records nothing.
	Metrics *metrics.Metrics
}

// RegisterSteps registers one activity per activity-kind step type.
func (h *Host) RegisterSteps(w worker.ActivityRegistry) {
	for _, t := range steps.All() {
		if t.Kind != steps.Activity {
			continue
		}
		w.RegisterActivityWithOptions(h.stepActivity(t), activity.RegisterOptions{Name: workflows.StepActivityName(t.Name)})
	}
}

func (h *Host) stepActivity(t steps.Type) func(context.Context, workflows.StepInput) (workflows.StepResult, error) {
	return func(ctx context.Context, wi workflows.StepInput) (workflows.StepResult, error) {
		in := steps.Input{RunID: wi.RunID, Pipeline: wi.Pipeline, SpecHash: wi.SpecHash, StepID: wi.StepID, Uses: wi.Uses, With: wi.With, Command: wi.Command, StartedBy: wi.StartedBy}
		info := activity.GetInfo(ctx)
		dir := filepath.Join(h.StateDir, "runs", safe(in.RunID), safe(in.StepID))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return workflows.StepResult{}, fmt.Errorf("step %s: working directory: %w", in.StepID, err)
		}
		env := &activityEnv{ctx: ctx, dir: dir, state: h.StateDir, store: h.ArtifactStore, log: h.logger().With("run_id", in.RunID, "step_id", in.StepID, "attempt", info.Attempt)}
		began := time.Now()
		out, err := t.Run(ctx, env, in)
		if h.Metrics != nil {
			recordStep(ctx, h.Metrics, t.Name, in, out, err, time.Since(began))
		}
		if err != nil {
			return workflows.StepResult{}, toTemporal(err, info.Attempt)
		}
		return workflows.StepResult{Outputs: out, Attempt: info.Attempt}, nil
	}
}

func (h *Host) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// toTemporal keeps the error's message and maps its class onto an
// ApplicationError so that the pipeline's retry policy and `non_retryable`
// list see a stable type name. The attempt rides along in the details for
// the run's status record.
func toTemporal(err error, attempt int32) error {
	kind, retryable := steps.Classify(err)
	return temporal.NewApplicationErrorWithOptions(err.Error(), kind, temporal.ApplicationErrorOptions{
		NonRetryable: !retryable,
		Cause:        err,
		Details:      []any{attempt},
	})
}

type activityEnv struct {
	ctx   context.Context
	dir   string
	state string
	store string
	log   *slog.Logger
}

func (e *activityEnv) Progress(details any) { activity.RecordHeartbeat(e.ctx, details) }

func (e *activityEnv) Resume(v any) bool {
	if !activity.HasHeartbeatDetails(e.ctx) {
		return false
	}
	return activity.GetHeartbeatDetails(e.ctx, v) == nil
}

func (e *activityEnv) Dir() string          { return e.dir }
func (e *activityEnv) StateDir() string     { return e.state }
func (e *activityEnv) Store() string        { return storeOr(e.store, e.state) }
func (e *activityEnv) Logger() *slog.Logger { return e.log }

// storeOr defaults the artifact store to the worker's state directory.
func storeOr(loc, state string) string {
	if loc != "" {
		return loc
	}
	return "file://" + filepath.Join(state, "artifacts")
}

// safe keeps ids usable as single path elements.
func safe(s string) string {
	b := []byte(s)
	for i, c := range b {
		ok := c == '-' || c == '_' || c == '.' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if !ok {
			b[i] = '_'
		}
	}
	if len(b) == 0 || string(b) == "." || string(b) == ".." {
		return "_"
	}
	return string(b)
}

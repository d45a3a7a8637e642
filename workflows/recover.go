package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/dag"
)

// recoverTimeout bounds one attempt to read and plan the recovered run: two
// queries of a closed run, which a worker answers by replaying it, and a
// look in the store for each artifact it reuses.
const recoverTimeout = 2 * time.Minute

// recover starts a run that retries an earlier one (retry_of): the worker
// plans it (contract.RecoverName), and the steps it takes over start as
// succeeded with what they recorded, approvals never among them.
func (r *run) recover(ctx workflow.Context) error {
	if r.version < 4 {
		return temporal.NewNonRetryableApplicationError("retry_of needs run version 4", "InvalidPipeline", nil)
	}
	if r.input.Pipeline != "" || r.input.Spec != nil || r.input.YAML != "" {
		err := fmt.Errorf("input names a pipeline and retry_of %s: a retry runs the pinned definition of the run it recovers; give only retry_of (and params)", r.input.RetryOf)
		return temporal.NewNonRetryableApplicationError(err.Error(), "InvalidPipeline", err)
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: recoverTimeout,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 5,
			NonRetryableErrorTypes: []string{"RecoveryRefused"}},
	})
	var rec contract.Recovery
	in := contract.RecoverInput{RunID: r.input.RetryOf, From: r.input.RetryFrom, Params: r.input.Params}
	if err := workflow.ExecuteActivity(actx, contract.RecoverName, in).Get(ctx, &rec); err != nil {
		return fmt.Errorf("recover run %s: %w", r.input.RetryOf, err)
	}
	r.resolved = rec.Resolved
	r.status.RetryOf = rec.RunID
	if err := r.load(ctx); err != nil {
		return err
	}
	r.preset = map[string]dag.Status{}
	for _, old := range rec.Reused {
		i := r.indexOf(old.ID)
		if i < 0 {
			continue
		}
		st := &r.status.Steps[i]
		st.State = contract.StateSucceeded
		st.Outputs, st.FanOut, st.Items = old.Outputs, old.FanOut, old.Items
		st.StartedAt, st.EndedAt, st.Attempt = old.StartedAt, old.EndedAt, old.Attempt
		st.CacheKey, st.Cached = old.CacheKey, old.Cached
		st.Reason = "taken over from run " + rec.RunID + ", where it succeeded"
		r.preset[old.ID] = dag.Succeeded
	}
	for _, id := range rec.NotNeeded {
		r.setState(id, contract.StateSkipped, "not started: no step that runs again runs on this node")
		r.preset[id] = dag.Skipped
	}
	return nil
}

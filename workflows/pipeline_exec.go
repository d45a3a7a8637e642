package workflows

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
	"github.com/gauntlet-ml/gauntlet/internal/searchattr"
)

// start launches a step and calls done with its outcome from the selector,
// so the interpreter's loop stays single-threaded. A step that is one
// activity call is scheduled here; any other gets a coroutine of its own.
func (r *run) start(ctx workflow.Context, sr *stepRun, sel workflow.Selector, done func(map[string]any, error)) {
	sctx, cancel := workflow.WithCancel(ctx)
	sr.cancel = cancel
	id := sr.spec.ID
	now := workflow.Now(ctx)
	st := r.index(id)
	st.State = contract.StateRunning
	st.StartedAt = &now
	st.Attempt = 1
	// Before version 2 every step had a coroutine, which orders its
	// commands after the loop's own: old histories must keep that order.
	if r.version >= 2 && r.singleActivity(sr) {
		r.startActivity(sctx, sr, sel, done)
		return
	}
	fut, set := workflow.NewFuture(sctx)
	workflow.Go(sctx, func(gctx workflow.Context) {
		out, err := r.perform(gctx, sr)
		set.Set(out, err)
	})
	sel.AddFuture(fut, func(f workflow.Future) {
		var out map[string]any
		err := f.Get(ctx, &out)
		done(out, err)
	})
}

// singleActivity tells a step that is one activity call from one that waits
// in workflow code, looks up the cache or may replace its node. Every
// coroutine costs each workflow task of the run a switch, and a fan-out of
// twenty steps had twenty.
func (r *run) singleActivity(sr *stepRun) bool {
	uses := usesOf(sr.spec)
	_, inWorkflow := workflowSteps[uses]
	cached := sr.spec.Cache && !r.input.NoCache
	return !inWorkflow && !cached && sr.spec.RunsOn == "" && sr.items == nil
}

func (r *run) startActivity(ctx workflow.Context, sr *stepRun, sel workflow.Selector, done func(map[string]any, error)) {
	id, uses := sr.spec.ID, usesOf(sr.spec)
	if uses == "provision" {
		r.provisionWith[id] = sr.with
	}
	actx, err := r.activityOptions(ctx, sr.spec)
	if err != nil {
		fut, set := workflow.NewFuture(ctx)
		set.SetError(err)
		sel.AddFuture(fut, func(workflow.Future) { done(nil, err) })
		return
	}
	fut := workflow.ExecuteActivity(actx, contract.StepActivityName(uses), r.stepInput(sr))
	sel.AddFuture(fut, func(f workflow.Future) {
		var res contract.StepResult
		err := f.Get(ctx, &res)
		done(r.stepOutcome(id, res, err))
	})
}

// stepOutcome keeps the attempt an activity step ended on in its record.
func (r *run) stepOutcome(id string, res contract.StepResult, err error) (map[string]any, error) {
	st := r.index(id)
	if err != nil {
		st.Attempt = attemptOf(err, st.Attempt)
		return nil, err
	}
	st.Attempt = res.Attempt
	return res.Outputs, nil
}

// perform runs one step: from the cache, in workflow code, or as an
// activity.
func (r *run) perform(ctx workflow.Context, sr *stepRun) (map[string]any, error) {
	if sr.items != nil {
		return r.fanOut(ctx, sr)
	}
	uses := usesOf(sr.spec)
	if handler, ok := workflowSteps[uses]; ok {
		return handler(ctx, r, sr)
	}
	key := ""
	if sr.spec.Cache && !r.input.NoCache {
		var err error
		if key, err = r.cacheKey(sr); err != nil {
			return nil, err
		}
		var hit contract.CacheEntry
		if r.version >= 3 {
			// The activity reads the step's file and URL inputs, which
			// workflow code cannot, and completes the key with their
			// content: a CSV edited in place misses.
			in := contract.CacheLookupInput{Key: key, With: sr.with}
			if err := workflow.ExecuteActivity(lookupOptions(ctx), contract.CacheLookupName, in).Get(ctx, &hit); err != nil {
				return nil, fmt.Errorf("cache lookup: %w", err)
			}
			if hit.Key == "" {
				return nil, fmt.Errorf("cache lookup of %s returned no key", sr.spec.ID)
			}
			key = hit.Key
		} else if err := workflow.ExecuteActivity(r.quickOptions(ctx), contract.CacheGetName, key).Get(ctx, &hit); err != nil {
			return nil, fmt.Errorf("cache lookup: %w", err)
		}
		r.index(sr.spec.ID).CacheKey = key
		if hit.Found {
			r.index(sr.spec.ID).Cached = true
			return hit.Outputs, nil
		}
	}
	if uses == "provision" {
		r.provisionWith[sr.spec.ID] = sr.with
	}
	input := r.stepInput(sr)
	var res contract.StepResult
	for replaced := 0; ; replaced++ {
		actx, err := r.activityOptions(ctx, sr.spec)
		if err != nil {
			return nil, err
		}
		err = workflow.ExecuteActivity(actx, contract.StepActivityName(uses), input).Get(ctx, &res)
		if err == nil {
			break
		}
		r.index(sr.spec.ID).Attempt = attemptOf(err, r.index(sr.spec.ID).Attempt)
		if sr.spec.RunsOn == "" || !nodeLost(err) || ctx.Err() != nil {
			return nil, err
		}
		if replaced >= maxNodeReplacements {
			return nil, fmt.Errorf("node of %s lost %d times, giving up: %w", sr.spec.RunsOn, replaced+1, err)
		}
		if rerr := r.replaceNode(ctx, sr.spec.RunsOn, sr.spec.ID, err); rerr != nil {
			return nil, fmt.Errorf("node of %s lost (%s) and could not be replaced: %w", sr.spec.RunsOn, rootMessage(err), rerr)
		}
	}
	r.index(sr.spec.ID).Attempt = res.Attempt
	if key != "" {
		if err := workflow.ExecuteActivity(r.quickOptions(ctx), contract.CachePutName, contract.CacheEntry{Key: key, Found: true, Outputs: res.Outputs}).Get(ctx, nil); err != nil {
			// A result that could not be cached is still a result.
			workflow.GetLogger(ctx).Warn("cache store failed", "step", sr.spec.ID, "error", err)
		}
	}
	return res.Outputs, nil
}

func (r *run) stepInput(sr *stepRun) contract.StepInput {
	return contract.StepInput{
		RunID:     r.status.RunID,
		Pipeline:  r.resolved.Spec.Name,
		SpecHash:  r.resolved.Hash,
		StepID:    sr.spec.ID,
		Uses:      usesOf(sr.spec),
		With:      sr.with,
		Command:   sr.spec.Run,
		StartedBy: r.input.StartedBy,
	}
}

// cacheKey identifies a step's work: its type, its resolved inputs and the
// outputs of every step it needs (which carry their artifacts' digests).
// From run version 3 it is the workflow's part of the key: CacheLookup adds
// the content of the file and URL inputs.
func (r *run) cacheKey(sr *stepRun) (string, error) {
	up := map[string]any{}
	for _, n := range sr.spec.Needs {
		up[n] = r.index(n).Outputs
	}
	b, err := json.Marshal(struct {
		Uses     string         `json:"uses"`
		Command  *spec.Command  `json:"command,omitempty"`
		With     map[string]any `json:"with"`
		Upstream map[string]any `json:"upstream"`
	}{usesOf(sr.spec), sr.spec.Run, sr.with, up})
	if err != nil {
		return "", fmt.Errorf("cache key: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

func (r *run) quickOptions(ctx workflow.Context) workflow.Context { return quickOptions(ctx) }

// lookupOptions give CacheLookup time to read a step's data inputs, which
// may be large and remote.
func lookupOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5},
	})
}

// activityOptions maps a step's retry, timeout, heartbeat and runs_on onto
// Temporal's options (see stepOptions).
func (r *run) activityOptions(ctx workflow.Context, st spec.Step) (workflow.Context, error) {
	q := ""
	if st.RunsOn != "" {
		q, _ = r.index(st.RunsOn).Outputs["task_queue"].(string)
		if q == "" {
			err := fmt.Errorf("runs_on %s: that step has no task_queue output", st.RunsOn)
			return nil, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidPipeline", err)
		}
	}
	return stepOptions(ctx, st, r.version, q, st.ID), nil
}

// attemptOf reads the attempt an activity failure reports in its details.
func attemptOf(err error, fallback int32) int32 {
	var app *temporal.ApplicationError
	if errors.As(err, &app) && app.HasDetails() {
		var n int32
		if app.Details(&n) == nil && n > 0 {
			return n
		}
	}
	return fallback
}

func (r *run) indexOf(id string) int {
	for i := range r.status.Steps {
		if r.status.Steps[i].ID == id {
			return i
		}
	}
	return -1
}

// index returns the live record of a step; ids come from the validated
// spec, so the lookup cannot miss.
func (r *run) index(id string) *contract.StepStatus { return &r.status.Steps[r.indexOf(id)] }

func (r *run) setState(id, state, reason string) {
	st := r.index(id)
	st.State = state
	if reason != "" {
		st.Reason = reason
	}
}

func (r *run) succeed(ctx workflow.Context, id string, outputs map[string]any) {
	st := r.index(id)
	now := workflow.Now(ctx)
	st.State = contract.StateSucceeded
	st.EndedAt = &now
	st.Outputs = outputs
	if v, ok := outputs["model_version"]; ok && st.FanOut == nil {
		_ = workflow.UpsertTypedSearchAttributes(ctx, searchattr.ModelVersion.ValueSet(fmt.Sprint(v)))
	}
}

func (r *run) failStep(ctx workflow.Context, id string, err error) {
	st := r.index(id)
	now := workflow.Now(ctx)
	st.State = contract.StateFailed
	st.EndedAt = &now
	st.Error = rootMessage(err)
}

// rootMessage strips Temporal's wrapping ("activity error (type: ...)") so
// a person reads the step's own sentence.
func rootMessage(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Message()
	}
	var te *temporal.TimeoutError
	if errors.As(err, &te) {
		return "timed out (" + te.TimeoutType().String() + ")"
	}
	return err.Error()
}

// snapshot copies the status so a query never sees a half-updated record.
func (r *run) snapshot() contract.Status {
	s := r.status
	s.Steps = append([]contract.StepStatus(nil), r.status.Steps...)
	return s
}

func (r *run) finish(ctx workflow.Context, state string, err error) {
	now := workflow.Now(ctx)
	r.status.State = state
	r.status.EndedAt = &now
	if err != nil {
		r.status.Error = rootMessage(err)
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, searchattr.RunStatus.ValueSet(state))
	name := r.resolved.Spec.Name
	if name == "" {
		name = r.input.Pipeline
	}
	r.record(ctx, "record-run-metric", contract.RecordRunName, contract.RunRecord{Pipeline: name, Status: state})
}

// record reports an outcome to the worker's metrics: from version 2 on
// through its Recorder, before that through a local activity in a
// disconnected context so that canceled runs count too. A metric that
// cannot be recorded never fails the run.
func (r *run) record(ctx workflow.Context, change, activity string, in any) {
	if r.version >= 2 {
		report(ctx, in)
		return
	}
	// Histories recorded before these metrics existed have no such call.
	if workflow.GetVersion(ctx, change, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return
	}
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	lctx := workflow.WithLocalActivityOptions(dctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 5 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 2},
	})
	if err := workflow.ExecuteLocalActivity(lctx, activity, in).Get(lctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("metric not recorded", "activity", activity, "error", err)
	}
}

// rejectedError ends a run whose model a reviewer rejected.
type rejectedError struct{ msg string }

func (e *rejectedError) Error() string { return e.msg }

func (r *run) conclude(ctx workflow.Context, err error) (*contract.Result, error) {
	if err == nil {
		r.finish(ctx, contract.RunSucceeded, nil)
		res := r.snapshot()
		return &res, nil
	}
	var rej *rejectedError
	switch {
	case errors.As(err, &rej):
		r.finish(ctx, contract.RunRejected, err)
		return nil, temporal.NewNonRetryableApplicationError(rej.msg, "ApprovalRejected", nil, r.snapshot())
	case isCanceled(err) || temporal.IsCanceledError(ctx.Err()):
		r.finish(ctx, contract.RunCanceled, err)
		return nil, temporal.NewCanceledError(r.snapshot())
	default:
		r.finish(ctx, contract.RunFailed, err)
		return nil, temporal.NewNonRetryableApplicationError(rootMessage(err), "PipelineFailed", nil, r.snapshot())
	}
}

package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/monitor"
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
	"github.com/gauntlet-ml/gauntlet/internal/wfsteps"
)

func init() {
	workflowSteps["monitor"] = runMonitor
}

// runMonitor starts the production monitor of the model as a child
// workflow, one per model ("monitor-<name>"). With a duration the step
// watches for that long and reports what happened; without one the monitor
// is left running on its own when the run ends, and a later run finds it
// already watching.
func runMonitor(ctx workflow.Context, r *run, sr *stepRun) (map[string]any, error) {
	in, duration, err := newMonitorInput(sr, r.resolved.Spec.Name, r.input.Params, r.version)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidPipeline", err)
	}
	in.StartedBy = r.status.RunID
	id := "monitor-" + in.Name
	opts := workflow.ChildWorkflowOptions{WorkflowID: id, ParentClosePolicy: enums.PARENT_CLOSE_POLICY_ABANDON}
	if duration > 0 {
		in.Until = workflow.Now(ctx).Add(duration)
		opts.ParentClosePolicy = enums.PARENT_CLOSE_POLICY_TERMINATE
		opts.WorkflowID = fmt.Sprintf("%s-%s", id, r.status.RunID)
	}
	child := workflow.ExecuteChildWorkflow(workflow.WithChildOptions(ctx, opts), contract.MonitorName, in)
	if err := child.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) || temporal.IsWorkflowExecutionAlreadyStartedError(err) {
			return map[string]any{"monitor_id": id, "already_running": true}, nil
		}
		return nil, err
	}
	r.index(sr.spec.ID).Reason = "monitoring " + in.Name + " as " + opts.WorkflowID
	if duration == 0 {
		return map[string]any{"monitor_id": opts.WorkflowID, "already_running": false}, nil
	}
	var st contract.MonitorState
	if err := child.Get(ctx, &st); err != nil {
		return nil, err
	}
	return monitorOutputs(opts.WorkflowID, st), nil
}

func monitorOutputs(id string, st contract.MonitorState) map[string]any {
	incidents := make([]any, 0, len(st.Incidents))
	for _, inc := range st.Incidents {
		actions := make([]any, 0, len(inc.Actions))
		for _, a := range inc.Actions {
			actions = append(actions, string(a))
		}
		incidents = append(incidents, map[string]any{"at": inc.At.UTC().Format(time.RFC3339), "breach": breachSummary(inc.Breaches), "actions": actions})
	}
	retrains := make([]any, 0, len(st.Retrains))
	for _, r := range st.Retrains {
		retrains = append(retrains, r)
	}
	out := map[string]any{
		"monitor_id":   id,
		"passes":       st.Passes,
		"incidents":    incidents,
		"rolled_back":  len(st.Rollbacks) > 0,
		"retrain_runs": retrains,
	}
	if st.Last != nil {
		out["drifted"] = st.Last.DataDrifted
		out["samples"] = st.Last.Samples
	}
	return out
}

// newMonitorInput reads the monitor step's inputs.
func newMonitorInput(sr *stepRun, pipeline string, params map[string]any, version workflow.Version) (contract.MonitorInput, time.Duration, error) {
	if version < typedInputsVersion {
		return newMonitorInputV2(sr, pipeline, params)
	}
	fail := func(err error) (contract.MonitorInput, time.Duration, error) {
		return contract.MonitorInput{}, 0, fmt.Errorf("monitor %s: %w", sr.spec.ID, err)
	}
	a := wfsteps.Monitor()
	a.Name = pipeline
	if err := stepio.Decode(sr.with, &a); err != nil {
		return fail(err)
	}
	if err := checkTarget(a.Target); err != nil {
		return fail(err)
	}
	in := contract.MonitorInput{Name: a.Name, Interval: time.Duration(a.Interval), Window: time.Duration(a.Window),
		RetrainPipeline: pipeline, RetrainParams: params, Reference: a.Reference, Labels: a.Labels, Target: a.Target}
	if a.RetrainPipeline != "" {
		// A pipeline named here starts from its own defaults.
		in.RetrainPipeline, in.RetrainParams = a.RetrainPipeline, nil
	}
	if a.RetrainParams != nil {
		in.RetrainParams = a.RetrainParams
	}
	in.Policy = monitor.Policy{Cooldown: time.Duration(a.Cooldown)}
	for i, act := range a.OnBreach {
		switch monitor.Action(act) {
		case monitor.Rollback, monitor.Retrain:
			in.Policy.OnBreach = append(in.Policy.OnBreach, monitor.Action(act))
		default:
			return fail(&stepio.Error{Path: fmt.Sprintf("on_breach[%d]", i), Msg: fmt.Sprintf("%q is not an action (rollback, retrain)", act)})
		}
	}
	// A list, not a map: workflow code must not depend on map order.
	for _, f := range []struct {
		key string
		v   float64
		dst *float64
	}{{"psi_threshold", a.PSIThreshold, &in.Config.PSIThreshold}, {"alpha", a.Alpha, &in.Config.Alpha}, {"max_error_rate", a.MaxErrorRate, &in.Config.MaxErrorRate},
		{"min_accuracy", a.MinAccuracy, &in.Config.MinAccuracy}, {"max_accuracy_drop", a.MaxAccuracyDrop, &in.Config.MaxAccuracyDrop},
		{"min_samples", float64(a.MinSamples), nil}} {
		if f.v < 0 {
			return fail(&stepio.Error{Path: f.key, Msg: fmt.Sprintf("want a number of at least 0, got %v", f.v)})
		}
		if f.dst != nil {
			*f.dst = f.v
		}
	}
	in.Config.MinSamples = a.MinSamples
	in.Config.MaxP99Latency = time.Duration(a.MaxP99Latency)
	return in, time.Duration(a.Duration), nil
}

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
)

// Defaults of the monitor step, documented in its step type.
const (
	defaultMonitorInterval = 5 * time.Minute
	defaultMonitorCooldown = 6 * time.Hour
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
	in, duration, err := newMonitorInput(sr, r.resolved.Spec.Name, r.input.Params)
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
func newMonitorInput(sr *stepRun, pipeline string, params map[string]any) (contract.MonitorInput, time.Duration, error) {
	w := sr.with
	fail := func(err error) (contract.MonitorInput, time.Duration, error) {
		return contract.MonitorInput{}, 0, fmt.Errorf("monitor %s: %w", sr.spec.ID, err)
	}
	in := contract.MonitorInput{Name: pipeline, RetrainPipeline: pipeline, RetrainParams: params}
	if v, ok := w["name"].(string); ok && v != "" {
		in.Name = v
	}
	var err error
	if in.Interval, err = durationIn(w, "interval", defaultMonitorInterval); err != nil {
		return fail(err)
	}
	if in.Window, err = durationIn(w, "window", time.Hour); err != nil {
		return fail(err)
	}
	duration, err := durationIn(w, "duration", 0)
	if err != nil {
		return fail(err)
	}
	cooldown, err := durationIn(w, "cooldown", defaultMonitorCooldown)
	if err != nil {
		return fail(err)
	}
	in.Policy = monitor.Policy{Cooldown: cooldown, OnBreach: []monitor.Action{monitor.Rollback, monitor.Retrain}}
	if v, ok := w["on_breach"]; ok && v != nil {
		list, err := stringList(v)
		if err != nil {
			return fail(fmt.Errorf("with.on_breach: %w", err))
		}
		in.Policy.OnBreach = nil
		for _, a := range list {
			switch monitor.Action(a) {
			case monitor.Rollback, monitor.Retrain:
				in.Policy.OnBreach = append(in.Policy.OnBreach, monitor.Action(a))
			default:
				return fail(fmt.Errorf("with.on_breach: %q is not an action (rollback, retrain)", a))
			}
		}
	}
	if v, ok := w["retrain_pipeline"].(string); ok && v != "" {
		in.RetrainPipeline, in.RetrainParams = v, nil
	}
	if v, ok := w["retrain_params"]; ok && v != nil {
		m, ok := v.(map[string]any)
		if !ok {
			return fail(fmt.Errorf("with.retrain_params must be a mapping, not %v", v))
		}
		in.RetrainParams = m
	}
	in.Reference, _ = w["reference"].(string)
	in.Labels, _ = w["labels"].(string)
	num := func(key string) (float64, error) {
		v, ok := w[key]
		if !ok || v == nil {
			return 0, nil
		}
		f, ok := v.(float64)
		if !ok || f < 0 {
			return 0, fmt.Errorf("with.%s must be a non-negative number, not %v", key, v)
		}
		return f, nil
	}
	// A list, not a map: workflow code must not depend on map order.
	for _, f := range []struct {
		key string
		dst *float64
	}{{"psi_threshold", &in.Config.PSIThreshold}, {"alpha", &in.Config.Alpha}, {"max_error_rate", &in.Config.MaxErrorRate},
		{"min_accuracy", &in.Config.MinAccuracy}, {"max_accuracy_drop", &in.Config.MaxAccuracyDrop}} {
		if *f.dst, err = num(f.key); err != nil {
			return fail(err)
		}
	}
	ms, err := num("min_samples")
	if err != nil || ms != float64(int(ms)) {
		return fail(fmt.Errorf("with.min_samples must be a whole number, not %v", w["min_samples"]))
	}
	in.Config.MinSamples = int(ms)
	if in.Config.MaxP99Latency, err = durationIn(w, "max_p99_latency", 0); err != nil {
		return fail(err)
	}
	return in, duration, nil
}

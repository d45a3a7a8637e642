package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/monitor"
)

// monitorPassesPerRun bounds the history of one run: the workflow continues
// as new with its state after this many passes.
const monitorPassesPerRun = 200

// Monitor watches a model in production: every interval it checks drift,
// health and, with delayed labels, accuracy; a breach rolls back to the
// previous champion and/or starts one retraining run, each at most once per
// cooldown, so one incident starts one run.
func Monitor(ctx workflow.Context, in contract.MonitorInput) (contract.MonitorState, error) {
	st := &in.State
	if err := workflow.SetQueryHandler(ctx, contract.MonitorQuery, func() (contract.MonitorState, error) { return *st, nil }); err != nil {
		return *st, err
	}
	if in.Interval <= 0 {
		return *st, temporal.NewNonRetryableApplicationError("monitor: interval must be positive", "InvalidPipeline", nil)
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute, MaximumAttempts: 5, NonRetryableErrorTypes: []string{"BadInput"}},
	})
	for passes := 0; ; passes++ {
		wait := in.Interval
		if !in.Until.IsZero() {
			left := in.Until.Sub(workflow.Now(ctx))
			if left <= 0 {
				return *st, nil
			}
			wait = min(wait, left)
		}
		if err := workflow.Sleep(ctx, wait); err != nil {
			return *st, err
		}
		since := st.Since
		if in.Window > 0 {
			if from := workflow.Now(ctx).Add(-in.Window); from.After(since) {
				since = from
			}
		}
		var res contract.MonitorCheckResult
		err := workflow.ExecuteActivity(actx, contract.MonitorCheckName, contract.MonitorCheckInput{Name: in.Name, Config: in.Config, Reference: in.Reference, Labels: in.Labels, Since: since, Target: in.Target}).Get(ctx, &res)
		if err != nil {
			// A pass that cannot run (a server restarting, a store
			// unreachable) is not an incident; the next pass tries again.
			workflow.GetLogger(ctx).Warn("monitor pass failed", "model", in.Name, "error", err)
			continue
		}
		st.Passes++
		st.Last = &res.Report
		now := workflow.Now(ctx)
		actions, ledger := in.Policy.Decide(st.Ledger, res.Report, now)
		st.Ledger = ledger
		if len(actions) > 0 {
			st.Incidents = append(st.Incidents, contract.Incident{At: now, Breaches: res.Report.Breaches, Actions: actions})
			for _, a := range actions {
				if err := takeAction(ctx, actx, &in, res, a, now); err != nil {
					workflow.GetLogger(ctx).Error("monitor action failed", "model", in.Name, "action", a, "error", err)
				}
			}
		}
		if passes+1 >= monitorPassesPerRun {
			return *st, workflow.NewContinueAsNewError(ctx, contract.MonitorName, in)
		}
	}
}

func takeAction(ctx, actx workflow.Context, in *contract.MonitorInput, res contract.MonitorCheckResult, a monitor.Action, now time.Time) error {
	st := &in.State
	reason := breachSummary(res.Report.Breaches)
	switch a {
	case monitor.Rollback:
		var out contract.MonitorRollbackResult
		err := workflow.ExecuteActivity(actx, contract.MonitorRollbackName, contract.MonitorRollbackInput{
			Name: in.Name, Champion: res.Champion, Reason: reason, Actor: "gauntlet-monitor:" + workflow.GetInfo(ctx).WorkflowExecution.ID, Target: in.Target,
		}).Get(ctx, &out)
		if err != nil {
			return err
		}
		st.Rollbacks = append(st.Rollbacks, contract.RollbackRecord{At: now, From: res.Champion, To: out.Champion})
		// What the rolled-back model served is not evidence against the
		// one now serving.
		st.Since = now
		return nil
	case monitor.Retrain:
		if in.RetrainPipeline == "" {
			return fmt.Errorf("monitor: retrain asked but no retrain pipeline is set")
		}
		id := fmt.Sprintf("%s-retrain-%s", in.RetrainPipeline, now.UTC().Format("20060102T150405Z"))
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID:            id,
			ParentClosePolicy:     enums.PARENT_CLOSE_POLICY_ABANDON,
			WorkflowIDReusePolicy: enums.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		})
		child := workflow.ExecuteChildWorkflow(cctx, contract.PipelineName, contract.PipelineInput{Pipeline: in.RetrainPipeline, Params: in.RetrainParams, StartedBy: "monitor: " + reason})
		if err := child.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
			return err
		}
		st.Retrains = append(st.Retrains, id)
		return nil
	}
	return fmt.Errorf("monitor: unknown action %q", a)
}

func breachSummary(bs []monitor.Breach) string {
	if len(bs) == 0 {
		return "no breach"
	}
	s := bs[0].Detail
	if len(bs) > 1 {
		s += fmt.Sprintf(" (and %d more)", len(bs)-1)
	}
	return s
}

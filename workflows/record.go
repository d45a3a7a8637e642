package workflows

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/workflow"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
)

// RecorderInterceptor hands rec to the workflows a worker runs.
func RecorderInterceptor(rec contract.Recorder) interceptor.WorkerInterceptor {
	return &recorderInterceptor{rec: rec}
}

type recorderKey struct{}

type recorderInterceptor struct {
	interceptor.WorkerInterceptorBase
	rec contract.Recorder
}

func (i *recorderInterceptor) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &recorderInbound{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, rec: i.rec}
}

type recorderInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	rec contract.Recorder
}

func (w *recorderInbound) ExecuteWorkflow(ctx workflow.Context, in *interceptor.ExecuteWorkflowInput) (any, error) {
	return w.Next.ExecuteWorkflow(workflow.WithValue(ctx, recorderKey{}, w.rec), in)
}

// report hands a record to the worker's Recorder, once: not while the
// history replays, which would count a run again on every worker that
// picks it up. A worker without a Recorder (a replayer, a test) drops it.
func report(ctx workflow.Context, record any) {
	rec, ok := ctx.Value(recorderKey{}).(contract.Recorder)
	if !ok || workflow.IsReplaying(ctx) {
		return
	}
	var err error
	switch in := record.(type) {
	case contract.RunRecord:
		err = rec.Run(context.Background(), in)
	case contract.ApprovalRecord:
		err = rec.Approval(context.Background(), in)
	case contract.PreemptionRecord:
		err = rec.Preemption(context.Background(), in)
	default:
		err = fmt.Errorf("no recorder for %T", record)
	}
	if err != nil {
		workflow.GetLogger(ctx).Warn("metric not recorded", "record", fmt.Sprintf("%T", record), "error", err)
	}
}

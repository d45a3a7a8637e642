package workflows

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/workflow"
)

// Local activities through which runs recorded before version 2 of
// runVersionChange report what only workflow code knows (how a run ended,
// how an approval was decided, what a lost node cost) to the worker's
// metrics. Later runs hand the same records to the worker's Recorder
// directly: a local activity at the end of every run delayed its completion
// by a few milliseconds and added a marker to its history.
const (
	RecordRunName        = "RecordRun"
	RecordApprovalName   = "RecordApproval"
	RecordPreemptionName = "RecordPreemption"
)

// RunRecord is the input of RecordRun: a run of Pipeline ended with Status,
// the run state (succeeded, failed, canceled, rejected).
type RunRecord struct {
	Pipeline string `json:"pipeline"`
	Status   string `json:"status"`
}

// ApprovalRecord is the input of RecordApproval: an approval step of
// Pipeline was decided with Outcome (approved, rejected, timeout) after
// waiting Waited.
type ApprovalRecord struct {
	Pipeline string        `json:"pipeline"`
	Outcome  string        `json:"outcome"`
	Waited   time.Duration `json:"waited"`
}

// PreemptionRecord is the input of RecordPreemption: a node running a step
// of Pipeline was lost, and WasteUSD of its cost bought nothing kept.
type PreemptionRecord struct {
	Pipeline string  `json:"pipeline"`
	WasteUSD float64 `json:"waste_usd"`
}

// Recorder takes the records to a worker's metrics. Its methods must be
// quick and must not block: workflow code calls them.
type Recorder interface {
	Run(context.Context, RunRecord) error
	Approval(context.Context, ApprovalRecord) error
	Preemption(context.Context, PreemptionRecord) error
}

// RecorderInterceptor hands rec to the workflows a worker runs.
func RecorderInterceptor(rec Recorder) interceptor.WorkerInterceptor {
	return &recorderInterceptor{rec: rec}
}

type recorderKey struct{}

type recorderInterceptor struct {
	interceptor.WorkerInterceptorBase
	rec Recorder
}

func (i *recorderInterceptor) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &recorderInbound{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, rec: i.rec}
}

type recorderInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	rec Recorder
}

func (w *recorderInbound) ExecuteWorkflow(ctx workflow.Context, in *interceptor.ExecuteWorkflowInput) (any, error) {
	return w.Next.ExecuteWorkflow(workflow.WithValue(ctx, recorderKey{}, w.rec), in)
}

// report hands a record to the worker's Recorder, once: not while the
// history replays, which would count a run again on every worker that
// picks it up. A worker without a Recorder (a replayer, a test) drops it.
func report(ctx workflow.Context, record any) {
	rec, ok := ctx.Value(recorderKey{}).(Recorder)
	if !ok || workflow.IsReplaying(ctx) {
		return
	}
	var err error
	switch in := record.(type) {
	case RunRecord:
		err = rec.Run(context.Background(), in)
	case ApprovalRecord:
		err = rec.Approval(context.Background(), in)
	case PreemptionRecord:
		err = rec.Preemption(context.Background(), in)
	default:
		err = fmt.Errorf("no recorder for %T", record)
	}
	if err != nil {
		workflow.GetLogger(ctx).Warn("metric not recorded", "record", fmt.Sprintf("%T", record), "error", err)
	}
}

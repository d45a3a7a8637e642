// Package oldrun reads what a retry needs of an earlier run from Temporal:
// its definition and its record, by the queries every pipeline run
// answers, closed or not. The CLI and the worker's RecoverRun activity
// read runs through it.
package oldrun

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/recovery"
)

// ErrNoRun reports a run id Temporal does not know.
var ErrNoRun = errors.New("no such run")

// queryTimeout bounds each query: answering one for a closed run replays
// its history on a worker.
const queryTimeout = 30 * time.Second

// Read returns run id's definition and record. A run that is still open
// is refused (a recovery.Error) before anything else is read.
func Read(ctx context.Context, c client.Client, id string) (contract.Resolved, contract.Status, error) {
	var def contract.Resolved
	var st contract.Status
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return def, st, fmt.Errorf("run %s: %w", id, ErrNoRun)
		}
		return def, st, fmt.Errorf("describe run %s: %w", id, err)
	}
	info := desc.GetWorkflowExecutionInfo()
	if name := info.GetType().GetName(); name != contract.PipelineName {
		return def, st, &recovery.Error{Msg: fmt.Sprintf("%s is a %s workflow, not a pipeline run", id, name)}
	}
	closed := info.GetStatus()
	if closed == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return def, st, &recovery.Error{Msg: fmt.Sprintf("run %s is still running: cancel it (gauntlet cancel %s) or wait for it to end", id, id)}
	}
	if err := query(ctx, c, id, contract.DefinitionQuery, &def); err != nil {
		return def, st, err
	}
	if err := query(ctx, c, id, contract.StatusQuery, &st); err != nil {
		return def, st, err
	}
	// A run that was terminated or timed out never recorded its end.
	if st.State == contract.RunRunning || st.State == contract.RunWaiting || st.State == "" {
		switch closed {
		case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
			st.State = contract.RunSucceeded
		case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED, enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
			st.State = contract.RunCanceled
		default:
			st.State = contract.RunFailed
		}
	}
	if st.RunID == "" {
		st.RunID = id
	}
	return def, st, nil
}

func query(ctx context.Context, c client.Client, id, name string, into any) error {
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	v, err := c.QueryWorkflow(qctx, id, "", name)
	if err != nil {
		return fmt.Errorf("query %s of run %s (is a worker running?): %w", name, id, err)
	}
	if err := v.Get(into); err != nil {
		return fmt.Errorf("query %s of run %s: decode: %w", name, id, err)
	}
	return nil
}

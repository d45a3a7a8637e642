package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/searchattr"
)

func notFound(id string, err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return withCode(ExitNotFound, fmt.Errorf("no run %s", id))
	}
	return err
}

// runStatus reads a run's record: from the live query while it runs, from
// its result once closed.
func (a *app) runStatus(ctx context.Context, c client.Client, id string) (contract.Status, error) {
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return contract.Status{}, notFound(id, err)
	}
	if desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		st, err := queryStatus(ctx, c, id)
		if err != nil {
			return st, fmt.Errorf("query %s (is a worker running?): %w", id, err)
		}
		return st, nil
	}
	runErr := c.GetWorkflow(ctx, id, "").Get(ctx, nil)
	return a.finalStatus(ctx, c, id, runErr)
}

func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status RUN",
		Short: "Show a run's state, steps, outputs and errors",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := a.runStatus(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			by, err := recoveredBy(cmd.Context(), c, args[0])
			if err != nil {
				fmt.Fprintf(a.stderr, "note: cannot list the runs that recover %s: %v\n", args[0], err)
			}
			if a.jsonOut() {
				return a.printJSON(StatusReport{RunReport: RunReport{Status: st, URL: a.runURL(args[0])}, RecoveredBy: by})
			}
			printSummary(a.stdout, st)
			a.printLinks(st, by)
			fmt.Fprintf(a.stdout, "  %s\n", a.runURL(args[0]))
			return nil
		},
	}
}

func (a *app) cancelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel RUN",
		Short: "Cancel a run; its finally steps still run",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.CancelWorkflow(cmd.Context(), args[0], ""); err != nil {
				return notFound(args[0], err)
			}
			if a.jsonOut() {
				return a.printJSON(map[string]string{"run_id": args[0], "requested": "cancel"})
			}
			fmt.Fprintf(a.stdout, "Cancel requested for %s\n", args[0])
			return nil
		},
	}
}

// RunListItem is one line of `list --output json`.
type RunListItem struct {
	RunID     string     `json:"run_id"`
	Pipeline  string     `json:"pipeline"`
	State     string     `json:"state"`
	Temporal  string     `json:"temporal_status"`
	StartedAt time.Time  `json:"started_at"`
	ClosedAt  *time.Time `json:"closed_at,omitempty"`
}

func (a *app) listCommand() *cobra.Command {
	var pipeline, state string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List recent runs, newest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit <= 0 {
				return usagef("--limit must be positive")
			}
			c, err := a.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			q := fmt.Sprintf("WorkflowType = '%s'", contract.PipelineName)
			if pipeline != "" {
				q += fmt.Sprintf(" AND %s = '%s'", searchattr.Pipeline.GetName(), quote(pipeline))
			}
			if state != "" {
				q += fmt.Sprintf(" AND %s = '%s'", searchattr.RunStatus.GetName(), quote(state))
			}
			items, err := listRuns(cmd.Context(), c, q, limit)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(items)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RUN\tPIPELINE\tSTATE\tSTARTED")
			for _, it := range items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", it.RunID, it.Pipeline, it.State, it.StartedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&pipeline, "pipeline", "", "only runs of this pipeline")
	cmd.Flags().StringVar(&state, "state", "", "only runs in this state (running, waiting, succeeded, failed, rejected, canceled)")
	cmd.Flags().IntVar(&limit, "limit", 20, "at most this many runs")
	return cmd
}

func quote(s string) string { return strings.ReplaceAll(s, "'", "\\'") }

func listRuns(ctx context.Context, c client.Client, query string, limit int) ([]RunListItem, error) {
	var out []RunListItem
	var token []byte
	for len(out) < limit {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, PageSize: int32(limit), NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		for _, e := range resp.GetExecutions() {
			it := RunListItem{RunID: e.GetExecution().GetWorkflowId(), Temporal: strings.ToLower(e.GetStatus().String()), StartedAt: e.GetStartTime().AsTime()}
			if e.GetCloseTime() != nil {
				t := e.GetCloseTime().AsTime()
				it.ClosedAt = &t
			}
			fields := e.GetSearchAttributes().GetIndexedFields()
			it.Pipeline = keyword(fields[searchattr.Pipeline.GetName()].GetData())
			it.State = keyword(fields[searchattr.RunStatus.GetName()].GetData())
			if it.State == "" {
				it.State = it.Temporal
			}
			out = append(out, it)
			if len(out) == limit {
				break
			}
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			break
		}
	}
	return out, nil
}

// keyword decodes a JSON-encoded keyword search attribute.
func keyword(b []byte) string {
	return strings.Trim(string(b), `"`)
}

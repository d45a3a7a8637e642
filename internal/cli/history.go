package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/gauntlet-ml/gauntlet/internal/atomicfile"
)

func (a *app) historyCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "history RUN [--out FILE]",
		Short: "Export a run's whole event history as JSON, for audit or replay tests",
		Long: `history writes every event of a run (or of any workflow: a monitor, a
retraining run) in the JSON form Temporal's replayer and the temporal CLI
read. Every decision of a run — gate verdicts, votes, canary intervals,
rollbacks — is in it.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			b, err := exportHistory(cmd.Context(), c, args[0])
			if err != nil {
				return notFound(args[0], err)
			}
			if out == "" {
				_, err = a.stdout.Write(append(b, '\n'))
				return err
			}
			return atomicfile.Write(out, b)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write to this file (atomically) instead of standard output")
	return cmd
}

func exportHistory(ctx context.Context, c client.Client, id string) ([]byte, error) {
	iter := c.GetWorkflowHistory(ctx, id, "", false, 0)
	var h historypb.History
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			return nil, fmt.Errorf("history of %s: %w", id, err)
		}
		h.Events = append(h.Events, ev)
	}
	return temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(&h)
}

// exportHistories writes the history of every workflow in the namespace to
// dir, one <workflow id>.json each.
func exportHistories(ctx context.Context, c client.Client, dir string) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	n := 0
	var token []byte
	for {
		page, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{NextPageToken: token})
		if err != nil {
			return n, fmt.Errorf("list workflows: %w", err)
		}
		for _, e := range page.GetExecutions() {
			id := e.GetExecution().GetWorkflowId()
			b, err := exportHistory(ctx, c, id)
			if err != nil {
				return n, err
			}
			if err := atomicfile.Write(filepath.Join(dir, id+".json"), b); err != nil {
				return n, err
			}
			n++
		}
		if token = page.GetNextPageToken(); len(token) == 0 {
			return n, nil
		}
	}
}

package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/gauntlet-ml/gauntlet/workflows"
)

func (a *app) decisionCommand(name string) *cobra.Command {
	var as, comment, step string
	verb := map[string]string{workflows.ApproveName: "Approve", workflows.RejectName: "Reject"}[name]
	cmd := &cobra.Command{
		Use:   name + " RUN [--as NAME] [--comment TEXT] [--step ID]",
		Short: verb + " the model waiting at a run's approval step",
		Long: verb + ` the model of a run waiting at an approval step. The decision is an
Update: the workflow checks it (known reviewer, no second vote, no approving
your own run where forbidden, gate still open) and a refused decision never
enters the history. Your identity comes from --as or ` + EnvUser + `.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			who := a.user(as)
			h, err := c.UpdateWorkflow(cmd.Context(), client.UpdateWorkflowOptions{
				WorkflowID:   args[0],
				UpdateName:   name,
				Args:         []any{workflows.Decision{Reviewer: who, Comment: comment, Step: step}},
				WaitForStage: client.WorkflowUpdateStageCompleted,
			})
			if err != nil {
				return notFound(args[0], fmt.Errorf("%s refused: %w", name, err))
			}
			var req workflows.ApprovalRequest
			if err := h.Get(cmd.Context(), &req); err != nil {
				return fmt.Errorf("%s refused: %w", name, err)
			}
			if a.jsonOut() {
				return a.printJSON(req)
			}
			approvals := 0
			for _, v := range req.Votes {
				if v.Decision == workflows.ApproveName {
					approvals++
				}
			}
			fmt.Fprintf(a.stdout, "%s: %s recorded for %s at step %s (%d of %d approvals; reviewers %s)\n",
				args[0], name, who, req.Step, approvals, req.Required, strings.Join(req.Reviewers, ", "))
			return nil
		},
	}
	cmd.Flags().StringVar(&as, "as", "", "reviewer name (env "+EnvUser+")")
	cmd.Flags().StringVar(&comment, "comment", "", "why")
	cmd.Flags().StringVar(&step, "step", "", "the approval step, when several wait at once")
	return cmd
}

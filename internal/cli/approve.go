package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/signing"
)

func (a *app) decisionCommand(name string) *cobra.Command {
	var as, comment, step, keyFile string
	verb := map[string]string{contract.ApproveName: "Approve", contract.RejectName: "Reject"}[name]
	cmd := &cobra.Command{
		Use:   name + " RUN [--as NAME] [--comment TEXT] [--step ID]",
		Short: verb + " the model waiting at a run's approval step",
		Long: verb + ` the model of a run waiting at an approval step. The decision is an
Update: the workflow checks it (known reviewer, no second vote, no approving
your own run where forbidden, gate still open) and a refused decision never
enters the history. Your identity comes from --as or ` + EnvUser + `.
Where the step requires signatures, --key signs the decision (run, step,
decision, your name, the comment's hash, the time and the digest of the
model the step names) with your Ed25519 private key; make one with
'gauntlet keys generate'.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			who := a.user(as)
			d := contract.Decision{Reviewer: who, Comment: comment, Step: step}
			if keyFile != "" {
				if d.Signature, err = a.signDecision(cmd.Context(), c, args[0], name, keyFile, d); err != nil {
					return err
				}
			}
			h, err := c.UpdateWorkflow(cmd.Context(), client.UpdateWorkflowOptions{
				WorkflowID:   args[0],
				UpdateName:   name,
				Args:         []any{d},
				WaitForStage: client.WorkflowUpdateStageCompleted,
			})
			if err != nil {
				return notFound(args[0], fmt.Errorf("%s refused: %w", name, err))
			}
			var req contract.ApprovalRequest
			if err := h.Get(cmd.Context(), &req); err != nil {
				return fmt.Errorf("%s refused: %w", name, err)
			}
			if a.jsonOut() {
				return a.printJSON(req)
			}
			approvals := 0
			for _, v := range req.Votes {
				if v.Decision == contract.ApproveName {
					approvals++
				}
			}
			fmt.Fprintf(a.stdout, "%s: %s recorded for %s at step %s (%d of %d approvals; reviewers %s)\n",
				args[0], name, who, req.Step, approvals, req.Required, strings.Join(req.Reviewers, ", "))
			if req.Model != "" {
				fmt.Fprintf(a.stdout, "  model %s\n", contract.ArtifactIdentity(req.Model))
			}
			if req.ReportDigest != "" {
				fmt.Fprintf(a.stdout, "  report %s (%s)\n", req.ReportDigest, req.Report)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&as, "as", "", "reviewer name (env "+EnvUser+")")
	cmd.Flags().StringVar(&comment, "comment", "", "why")
	cmd.Flags().StringVar(&step, "step", "", "the approval step, when several wait at once")
	cmd.Flags().StringVar(&keyFile, "key", "", "sign the decision with this Ed25519 private key file (PEM PKCS#8 or base64 seed)")
	return cmd
}

// signDecision signs what the gate will verify. The step is part of what
// is signed, so when --step is not given it is found the way the workflow
// finds it: the one approval step waiting in the run.
func (a *app) signDecision(ctx context.Context, c client.Client, runID, decision, keyFile string, d contract.Decision) (*signing.Signature, error) {
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, usagef("--key: %v", err)
	}
	priv, err := signing.ParsePrivateKey(data, keyFile)
	if err != nil {
		return nil, usagef("--key: %v", err)
	}
	if d.Step == "" {
		v, err := c.QueryWorkflow(ctx, runID, "", contract.StatusQuery)
		if err != nil {
			return nil, notFound(runID, fmt.Errorf("%s: read the run's status: %w", decision, err))
		}
		var st contract.Status
		if err := v.Get(&st); err != nil {
			return nil, fmt.Errorf("%s: decode the run's status: %w", decision, err)
		}
		var waiting []string
		for _, s := range st.Steps {
			if s.Uses == "approval" && s.State == contract.StateWaiting {
				waiting = append(waiting, s.ID)
			}
		}
		switch len(waiting) {
		case 0:
			return nil, fmt.Errorf("%s: no approval is waiting in %s", decision, runID)
		case 1:
			d.Step = waiting[0]
		default:
			return nil, usagef("several approvals are waiting in %s (%s): name one with --step", runID, strings.Join(waiting, ", "))
		}
	}
	model, err := approvalModel(ctx, c, runID, d.Step)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", decision, err)
	}
	return signing.Sign(priv, signing.Approval{RunID: runID, Step: d.Step, Decision: decision, Reviewer: d.Reviewer, Comment: d.Comment, Model: model}, time.Now())
}

// approvalModel is the model the approval step asks about, as a signature
// must name it: the gate verifies that the signed model is its own.
func approvalModel(ctx context.Context, c client.Client, runID, step string) (string, error) {
	v, err := c.QueryWorkflow(ctx, runID, "", contract.ApprovalsQuery)
	if err != nil {
		return "", notFound(runID, fmt.Errorf("read the run's approvals: %w", err))
	}
	var reqs []contract.ApprovalRequest
	if err := v.Get(&reqs); err != nil {
		return "", fmt.Errorf("decode the run's approvals: %w", err)
	}
	for _, r := range reqs {
		if r.Step == step {
			if r.Model == "" {
				return "", nil
			}
			return contract.ArtifactIdentity(r.Model), nil
		}
	}
	return "", fmt.Errorf("approval step %s is not waiting in %s", step, runID)
}

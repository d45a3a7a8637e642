package steps

import (
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
	"github.com/gauntlet-ml/gauntlet/internal/wfsteps"
)

func init() {
	// The gate itself is workflow code (it waits on people and time); this
	// entry tells the validator what it takes and produces.
	Register(Type{
		Name:    "approval",
		Doc:     "Waits for reviewers to approve or reject, by Update (CLI, API) or Signal (Temporal UI).",
		Kind:    Workflow,
		Inputs:  stepio.Fields[wfsteps.ApprovalInputs](),
		Outputs: []string{"decision", "approvers", "votes", "comment", "model", "model_digest"},
	})
}

package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
	"github.com/gauntlet-ml/gauntlet/internal/wfsteps"
)

// typedInputsVersion is the run version from which the inputs of approval,
// canary-deploy and monitor steps are decoded by package stepio into the
// types of package wfsteps, as leniently as activity steps' inputs ("2" for
// 2, "a,b" for a list) and refusing what was silently ignored before (a
// number as on_timeout). Older runs keep the parsers of inputs_v2.go.
const typedInputsVersion workflow.Version = 3

// newGate reads an approval step's resolved inputs.
func newGate(sr *stepRun, startedBy string, now time.Time, version workflow.Version) (*gate, error) {
	if version < typedInputsVersion {
		return newGateV2(sr, startedBy, now)
	}
	a := wfsteps.Approval()
	if err := stepio.Decode(sr.with, &a); err != nil {
		return nil, fmt.Errorf("approval %s: %w", sr.spec.ID, err)
	}
	if a.Required < 1 {
		return nil, fmt.Errorf("approval %s: with.required: want at least 1, got %d", sr.spec.ID, a.Required)
	}
	if a.Required > len(a.Reviewers) {
		return nil, fmt.Errorf("approval %s: with.required is %d but only %d reviewers are listed", sr.spec.ID, a.Required, len(a.Reviewers))
	}
	switch a.OnTimeout {
	case "reject", "approve":
	case "escalate":
		if len(a.EscalateTo) == 0 {
			return nil, fmt.Errorf("approval %s: on_timeout: escalate needs with.escalate_to", sr.spec.ID)
		}
	default:
		return nil, fmt.Errorf("approval %s: with.on_timeout: want reject, approve or escalate, got %q", sr.spec.ID, a.OnTimeout)
	}
	timeout := time.Duration(a.Timeout)
	return &gate{
		req: contract.ApprovalRequest{
			Step: sr.spec.ID, Reviewers: a.Reviewers, Required: a.Required, Deadline: now.Add(timeout),
			OnTimeout: a.OnTimeout, StartedBy: startedBy, Votes: []contract.Vote{}, Evidence: a.Evidence, SelfForbid: a.ForbidSelfApproval,
			RequireSignatures: a.RequireSignatures,
			Model:             a.Model, ModelDigest: contract.ArtifactDigest(a.Model),
			Report: a.Report, ReportDigest: contract.ArtifactDigest(a.Report),
		},
		requireSig: a.RequireSignatures,
		maxSkew:    time.Duration(a.SignatureMaxSkew),
		escalateTo: a.EscalateTo,
		timeout:    timeout,
		notifyURL:  a.NotifyURL,
		reminder:   time.Duration(a.Reminder),
		open:       true,
	}, nil
}

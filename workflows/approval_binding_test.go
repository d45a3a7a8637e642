package workflows_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/gauntlet-ml/gauntlet/internal/canary"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
)

const (
	approvedModel = "s3://models/gauntlet/trees/sha256/1111111111111111111111111111111111111111111111111111111111111111"
	swappedModel  = "s3://models/gauntlet/trees/sha256/2222222222222222222222222222222222222222222222222222222222222222"
)

// boundPipeline approves one model and canaries whatever `ship` names:
// the approved model, or an artifact swapped in after the approval.
const boundPipeline = `
name: credit
params:
  ship: {type: string, required: true}
steps:
  - {id: quantize, uses: echo, with: {model: "` + approvedModel + `"}}
  - id: approve
    uses: approval
    needs: [quantize]
    with: {reviewers: [alice], model: "${{ steps.quantize.outputs.model }}", report: "s3://models/gauntlet/trees/sha256/3333333333333333333333333333333333333333333333333333333333333333"}
  - id: canary
    uses: canary-deploy
    needs: [approve]
    with: {model: "${{ params.ship }}", weights: [50], interval: 1m}
`

func TestApprovalBindsTheModelThatShips(t *testing.T) {
	for _, tc := range []struct {
		name, ship string
		deployed   bool
	}{
		{"approved artifact ships", approvedModel, true},
		{"swapped artifact is refused", swappedModel, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			f := mockCanary(h, contract.CanaryStartResult{Version: 2, Champion: 1}, canary.Pass)
			var req contract.ApprovalRequest
			h.env.RegisterDelayedCallback(func() {
				v, err := h.env.QueryWorkflow(contract.ApprovalsQuery)
				if err != nil {
					t.Error(err)
					return
				}
				var reqs []contract.ApprovalRequest
				if err := v.Get(&reqs); err != nil || len(reqs) != 1 {
					t.Errorf("approvals %v %v", reqs, err)
					return
				}
				req = reqs[0]
				sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "alice"})
			}, time.Hour)
			res, err := h.run(boundPipeline, map[string]any{"ship": tc.ship})
			if req.ModelDigest != "sha256:"+strings.Repeat("1", 64) || req.ReportDigest != "sha256:"+strings.Repeat("3", 64) {
				t.Fatalf("the reviewer was shown model %q report %q", req.ModelDigest, req.ReportDigest)
			}
			if tc.deployed {
				if err != nil {
					t.Fatal(err)
				}
				if len(f.promoted) != 1 || stepOf(t, *res, "approve").Outputs["model_digest"] != req.ModelDigest {
					t.Fatalf("promoted %+v, approve outputs %+v", f.promoted, stepOf(t, *res, "approve").Outputs)
				}
				return
			}
			var app *temporal.ApplicationError
			if !errors.As(err, &app) || !strings.Contains(err.Error(), "is not the artifact approved in this run") ||
				!strings.Contains(err.Error(), "sha256:"+strings.Repeat("2", 64)) || !strings.Contains(err.Error(), "nothing was deployed") {
				t.Fatalf("err = %v, want a refusal naming the swapped digest", err)
			}
			if f.started != 0 || len(f.weights) != 0 || len(f.promoted) != 0 {
				t.Fatalf("something was deployed: %d starts, weights %v, promoted %+v", f.started, f.weights, f.promoted)
			}
		})
	}
}

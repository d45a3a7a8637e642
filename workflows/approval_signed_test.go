package workflows_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/gauntlet-ml/gauntlet/activities"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/signing"
	"github.com/gauntlet-ml/gauntlet/workflows"
)

const signedPipeline = `
name: signed
steps:
  - {id: train, uses: echo, with: {auc: 0.91}}
  - id: approve
    uses: approval
    needs: [train]
    with: {reviewers: [alice, bob], required: 1, timeout: 48h, require_signatures: true}
`

// signedHarness starts a run whose worker reads a key file holding keys
// for the given reviewers; it returns their private keys.
func signedHarness(t *testing.T, reviewers ...string) (*harness, map[string]ed25519.PrivateKey) {
	t.Helper()
	ring, privs := signing.KeyRing{}, map[string]ed25519.PrivateKey{}
	for _, name := range reviewers {
		pub, priv, err := signing.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ring[name], privs[name] = pub, priv
	}
	keys := filepath.Join(t.TempDir(), "reviewers.keys")
	if err := os.WriteFile(keys, signing.FormatKeyRing(ring), 0o644); err != nil {
		t.Fatal(err)
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	workflows.Register(env)
	if err := activities.Register(env, activities.Config{PipelinesDir: t.TempDir(), StateDir: t.TempDir(), ReviewerKeys: keys}); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, env: env, input: contract.PipelineInput{YAML: signedPipeline, StartedBy: "erin"}}
	return h, privs
}

func sign(t *testing.T, priv ed25519.PrivateKey, runID, decision, reviewer, comment string, at time.Time) *signing.Signature {
	t.Helper()
	sig, err := signing.Sign(priv, signing.Approval{RunID: runID, Step: "approve", Decision: decision, Reviewer: reviewer, Comment: comment}, at)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func TestSignedApprovalRefusesUnsignedForgedAndReplayedDecisions(t *testing.T) {
	h, privs := signedHarness(t, "alice", "bob")
	_, mallory, err := signing.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const runID = "default-test-workflow-id"
	refused := map[string]*updateResult{}
	var good *updateResult
	h.env.RegisterDelayedCallback(func() {
		now := h.env.Now()
		refused["unsigned"] = sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "alice"})
		refused["forged"] = sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "alice",
			Signature: sign(t, mallory, runID, contract.ApproveName, "alice", "", now)})
		refused["other run"] = sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "alice",
			Signature: sign(t, privs["alice"], "another-run", contract.ApproveName, "alice", "", now)})
		refused["signed reject sent as approve"] = sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "alice",
			Signature: sign(t, privs["alice"], runID, contract.RejectName, "alice", "", now)})
		refused["comment changed"] = sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "alice", Comment: "ship it",
			Signature: sign(t, privs["alice"], runID, contract.ApproveName, "alice", "looks risky", now)})
		refused["bob's key for alice"] = sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "alice",
			Signature: sign(t, privs["bob"], runID, contract.ApproveName, "alice", "", now)})
		refused["stale"] = sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "alice",
			Signature: sign(t, privs["alice"], runID, contract.ApproveName, "alice", "", now.Add(-time.Hour))})
	}, time.Hour)
	h.env.RegisterDelayedCallback(func() {
		good = sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "alice", Comment: "ship it",
			Signature: sign(t, privs["alice"], runID, contract.ApproveName, "alice", "ship it", h.env.Now())})
	}, 2*time.Hour)
	res, err := h.start()
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range refused {
		if r.accepted || r.err == nil {
			t.Errorf("%s decision was accepted", name)
		} else if !strings.Contains(r.err.Error(), "requires a signed decision") {
			t.Errorf("%s decision refused for another reason: %v", name, r.err)
		}
	}
	if good == nil || !good.accepted || good.err != nil {
		t.Fatalf("valid signed decision not accepted: %+v", good)
	}
	approve := stepOf(t, *res, "approve")
	votes, _ := approve.Outputs["votes"].([]any)
	if approve.Outputs["decision"] != "approved" || len(votes) != 1 {
		t.Fatalf("approve outputs %+v", approve.Outputs)
	}
	vote, _ := votes[0].(map[string]any)
	if want := signing.Fingerprint(privs["alice"].Public().(ed25519.PublicKey)); vote["key_id"] != want {
		t.Fatalf("vote records key %v, want %s", vote["key_id"], want)
	}
}

func TestSignedApprovalNeedsAKeyForEveryReviewer(t *testing.T) {
	h, _ := signedHarness(t, "alice")
	_, err := h.start()
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !strings.Contains(app.Error(), "have none for bob") {
		t.Fatalf("want a failure naming bob's missing key, got %v", err)
	}
}

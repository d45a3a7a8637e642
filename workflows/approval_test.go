package workflows_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
)

const approvalPipeline = `
name: gate
params:
  timeout: {type: duration, default: 48h}
  on_timeout: {type: string, default: reject}
  required: {type: integer, default: 2}
  url: {type: string, default: ""}
steps:
  - {id: train, uses: echo, with: {auc: 0.91}}
  - id: approve
    uses: approval
    needs: [train]
    with:
      reviewers: [alice, bob, carol]
      required: "${{ params.required }}"
      timeout: "${{ params.timeout }}"
      on_timeout: "${{ params.on_timeout }}"
      escalate_to: [dave]
      forbid_self_approval: true
      reminder: 12h
      notify_url: "${{ params.url }}"
      evidence: {auc: "${{ steps.train.outputs.auc }}"}
  - {id: ship, uses: echo, needs: [approve], with: {by: "${{ steps.approve.outputs.approvers }}"}}
`

type updateResult struct {
	accepted bool
	err      error
}

func sendUpdate(env *testsuite.TestWorkflowEnvironment, name string, d contract.Decision) *updateResult {
	res := &updateResult{}
	env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
		OnAccept: func() { res.accepted = true },
		OnReject: func(err error) { res.err = err },
		OnComplete: func(_ any, err error) {
			if err != nil {
				res.err = err
			}
		},
	}, d)
	return res
}

func startApproval(t *testing.T, params map[string]any, startedBy string) *harness {
	t.Helper()
	h := newHarness(t)
	h.input = contract.PipelineInput{YAML: approvalPipeline, Params: params, StartedBy: startedBy}
	return h
}

func TestApprovalQuorumReached(t *testing.T) {
	h := startApproval(t, nil, "erin")
	var first, second *updateResult
	h.env.RegisterDelayedCallback(func() {
		first = sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "alice", Comment: "metrics fine"})
	}, time.Hour)
	h.env.RegisterDelayedCallback(func() {
		v, err := h.env.QueryWorkflow(contract.ApprovalsQuery)
		if err != nil {
			t.Error(err)
			return
		}
		var reqs []contract.ApprovalRequest
		_ = v.Get(&reqs)
		if len(reqs) != 1 || len(reqs[0].Votes) != 1 || reqs[0].Evidence["auc"] != 0.91 {
			t.Errorf("waiting request: %+v", reqs)
		}
	}, 2*time.Hour)
	h.env.RegisterDelayedCallback(func() { second = sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "bob"}) }, 3*time.Hour)
	res, err := h.start()
	if err != nil {
		t.Fatal(err)
	}
	if !first.accepted || !second.accepted {
		t.Fatalf("updates not accepted: %+v %+v", first, second)
	}
	ship := stepOf(t, *res, "ship")
	if by, _ := json.Marshal(ship.Outputs["by"]); string(by) != `["alice","bob"]` {
		t.Fatalf("approvers %s", by)
	}
	approve := stepOf(t, *res, "approve")
	if approve.Outputs["decision"] != "approved" || approve.Outputs["comment"] != "metrics fine" {
		t.Fatalf("approve outputs %+v", approve.Outputs)
	}
}

func TestApprovalRejectionEndsRunRejected(t *testing.T) {
	h := startApproval(t, nil, "erin")
	h.env.RegisterDelayedCallback(func() {
		sendUpdate(h.env, contract.RejectName, contract.Decision{Reviewer: "carol", Comment: "fairness gap too wide"})
	}, time.Hour)
	_, err := h.start()
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != "ApprovalRejected" || !strings.Contains(app.Error(), "fairness gap too wide") {
		t.Fatalf("want ApprovalRejected, got %v", err)
	}
	st := failedStatus(t, err)
	if st.State != contract.RunRejected || stepOf(t, st, "ship").State != contract.StateSkipped {
		t.Fatalf("status %+v", st)
	}
}

func TestApprovalValidatorRefusesBadDecisions(t *testing.T) {
	h := startApproval(t, map[string]any{"required": 1}, "alice")
	var unknown, self, dup, ok *updateResult
	h.env.RegisterDelayedCallback(func() {
		unknown = sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "mallory"})
		self = sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "alice"})
	}, time.Hour)
	h.env.RegisterDelayedCallback(func() { sendUpdate(h.env, contract.RejectName, contract.Decision{Reviewer: "mallory"}) }, 90*time.Minute)
	h.env.RegisterDelayedCallback(func() {
		// A signal from the UI with a bad payload is recorded, not obeyed.
		h.env.SignalWorkflow(contract.ApproveName, contract.Decision{Reviewer: "mallory"})
	}, 2*time.Hour)
	h.env.RegisterDelayedCallback(func() {
		ok = sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "bob"})
		dup = sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "bob"})
	}, 3*time.Hour)
	res, err := h.start()
	if err != nil {
		t.Fatal(err)
	}
	if unknown.accepted || unknown.err == nil || !strings.Contains(unknown.err.Error(), "not a reviewer") {
		t.Fatalf("unknown reviewer: %+v", unknown)
	}
	if self.accepted || self.err == nil || !strings.Contains(self.err.Error(), "may not approve") {
		t.Fatalf("self approval: %+v", self)
	}
	if !ok.accepted {
		t.Fatalf("bob's approval refused: %v", ok.err)
	}
	if dup.accepted || dup.err == nil {
		t.Fatalf("a second vote was accepted: %+v", dup)
	}
	w := stepOf(t, *res, "approve").Waiting
	b, _ := json.Marshal(w)
	if !strings.Contains(string(b), `refused`) || strings.Count(string(b), `"reviewer":`) != 1 {
		t.Fatalf("refused updates must not be votes; invalid signal must be noted: %s", b)
	}
}

func TestApprovalTimeouts(t *testing.T) {
	t.Run("reject", func(t *testing.T) {
		h := startApproval(t, nil, "erin")
		_, err := h.start()
		st := failedStatus(t, err)
		if st.State != contract.RunRejected || !strings.Contains(st.Error, "timeout") {
			t.Fatalf("%+v", st)
		}
		if d := stepOf(t, st, "approve").EndedAt.Sub(*stepOf(t, st, "approve").StartedAt); d != 48*time.Hour {
			t.Fatalf("decided after %s, want 48h", d)
		}
	})
	t.Run("approve", func(t *testing.T) {
		h := startApproval(t, map[string]any{"on_timeout": "approve"}, "erin")
		res, err := h.start()
		if err != nil {
			t.Fatal(err)
		}
		if stepOf(t, *res, "ship").State != contract.StateSucceeded {
			t.Fatal("on_timeout approve did not let the run go on")
		}
	})
	t.Run("escalate", func(t *testing.T) {
		h := startApproval(t, map[string]any{"on_timeout": "escalate", "required": 1}, "erin")
		var early, late *updateResult
		h.env.RegisterDelayedCallback(func() { early = sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "dave"}) }, time.Hour)
		h.env.RegisterDelayedCallback(func() {
			late = sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "dave", Comment: "escalated ok"})
		}, 50*time.Hour)
		res, err := h.start()
		if err != nil {
			t.Fatal(err)
		}
		if early.accepted {
			t.Fatal("dave decided before the escalation")
		}
		if !late.accepted || stepOf(t, *res, "approve").Outputs["comment"] != "escalated ok" {
			t.Fatalf("escalated decision: %+v %+v", late, stepOf(t, *res, "approve").Outputs)
		}
	})
}

func TestApprovalNotifiesOncePerChange(t *testing.T) {
	var mu sync.Mutex
	var events, keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in contract.NotifyInput
		_ = json.NewDecoder(r.Body).Decode(&in)
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		// The first post fails as a busy receiver would: its retry must
		// carry the same key, and be counted once.
		if len(keys) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		events = append(events, in.Event)
	}))
	defer srv.Close()
	h := startApproval(t, map[string]any{"url": srv.URL, "required": 2}, "erin")
	h.env.RegisterDelayedCallback(func() { sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "alice"}) }, 30*time.Hour)
	h.env.RegisterDelayedCallback(func() { sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "bob"}) }, 40*time.Hour)
	if _, err := h.start(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// Requested at 0; reminders at 12h and 24h; alice's vote at 30h; a
	// reminder 12h after it (42h) never comes because bob decides at 40h.
	want := []string{"approval requested", "reminder: approval still waiting", "reminder: approval still waiting", "vote recorded", "approved"}
	if strings.Join(events, "|") != strings.Join(want, "|") {
		t.Fatalf("notifications:\n got %q\nwant %q", events, want)
	}
	if keys[0] == "" || keys[0] != keys[1] {
		t.Fatalf("a retried notification must repeat its Idempotency-Key: %q", keys[:2])
	}
	seen := map[string]bool{}
	for _, k := range keys[1:] {
		if k == "" || seen[k] {
			t.Fatalf("each notification needs its own Idempotency-Key: %q", keys)
		}
		seen[k] = true
	}
}

func TestRunWaitsUntilTheLastOfParallelApprovalsCloses(t *testing.T) {
	h := newHarness(t)
	h.input = contract.PipelineInput{YAML: `
name: two-gates
steps:
  - {id: legal, uses: approval, with: {reviewers: [alice]}}
  - {id: risk, uses: approval, with: {reviewers: [bob]}}
`}
	var afterFirst contract.Status
	h.env.RegisterDelayedCallback(func() {
		sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "alice", Step: "legal"})
	}, time.Hour)
	h.env.RegisterDelayedCallback(func() {
		v, err := h.env.QueryWorkflow(contract.StatusQuery)
		if err != nil {
			t.Error(err)
			return
		}
		_ = v.Get(&afterFirst)
		sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "bob", Step: "risk"})
	}, 2*time.Hour)
	res, err := h.start()
	if err != nil {
		t.Fatal(err)
	}
	if afterFirst.State != contract.RunWaiting {
		t.Fatalf("with risk still open the run is %q, want waiting", afterFirst.State)
	}
	if res.State != contract.RunSucceeded {
		t.Fatalf("run %s", res.State)
	}
}

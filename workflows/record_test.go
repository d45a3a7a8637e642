package workflows_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/workflows"
)

// countingRecorder keeps what workflow code reported.
type countingRecorder struct {
	mu        sync.Mutex
	runs      []contract.RunRecord
	approvals []contract.ApprovalRecord
}

func (c *countingRecorder) Run(_ context.Context, in contract.RunRecord) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.runs = append(c.runs, in)
	return nil
}

func (c *countingRecorder) Approval(_ context.Context, in contract.ApprovalRecord) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.approvals = append(c.approvals, in)
	return nil
}

func (c *countingRecorder) Preemption(context.Context, contract.PreemptionRecord) error { return nil }

func (c *countingRecorder) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.runs) + len(c.approvals)
}

func withRecorder(h *harness) *countingRecorder {
	rec := &countingRecorder{}
	h.env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{workflows.RecorderInterceptor(rec)}})
	return rec
}

func TestRunEndsReachTheWorkersRecorderOnce(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, status string
	}{
		{"succeeded", "name: ok\nsteps:\n  - {id: a, uses: echo}\n", contract.RunSucceeded},
		{"failed", "name: bad\nsteps:\n  - {id: a, uses: test-fail, with: {message: broken}}\n", contract.RunFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			rec := withRecorder(h)
			_, _ = h.run(tc.yaml, nil)
			if len(rec.runs) != 1 || rec.runs[0].Status != tc.status || rec.runs[0].Pipeline == "" {
				t.Fatalf("recorded runs %+v, want one %s", rec.runs, tc.status)
			}
		})
	}
}

func TestApprovalDecisionReachesTheRecorder(t *testing.T) {
	h := startApproval(t, map[string]any{"required": 1}, "erin")
	rec := withRecorder(h)
	h.env.RegisterDelayedCallback(func() {
		sendUpdate(h.env, contract.ApproveName, contract.Decision{Reviewer: "alice"})
	}, time.Hour)
	if _, err := h.start(); err != nil {
		t.Fatal(err)
	}
	if len(rec.approvals) != 1 || rec.approvals[0].Outcome != "approved" || rec.approvals[0].Waited != time.Hour {
		t.Fatalf("recorded approvals %+v, want one approved after 1h", rec.approvals)
	}
	if len(rec.runs) != 1 || rec.runs[0].Status != contract.RunSucceeded {
		t.Fatalf("recorded runs %+v", rec.runs)
	}
}

package workflows_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"

	"github.com/gauntlet-ml/gauntlet/internal/canary"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
)

const canaryPipeline = `
name: credit
steps:
  - id: canary
    uses: canary-deploy
    with:
      model: /models/candidate
      weights: [10, 50, 100]
      interval: 5m
      analysis: {max_error_rate: 0.05, failure_limit: 2}
  - {id: after, uses: echo, needs: [canary], with: {v: "${{ steps.canary.outputs.version }}"}}
`

// canaryFakes stands in for the deployment target and its metrics: the
// workflow's decisions are what these tests check.
type canaryFakes struct {
	mu       sync.Mutex
	started  int
	weights  []int
	measured []time.Time
	promoted []contract.CanaryPromoteInput
	aborted  []string
}

func mockCanary(h *harness, start contract.CanaryStartResult, outcomes ...canary.Outcome) *canaryFakes {
	f := &canaryFakes{}
	h.env.OnActivity(contract.CanaryStartName, mock.Anything, mock.Anything).Return(func(context.Context, contract.CanaryStartInput) (contract.CanaryStartResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.started++
		return start, nil
	})
	h.env.OnActivity(contract.CanaryWeightName, mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.CanaryWeightInput) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.weights = append(f.weights, in.Percent)
		return nil
	})
	h.env.OnActivity(contract.CanaryMeasureName, mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.CanaryMeasureInput) (canary.Result, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.measured = append(f.measured, h.env.Now())
		o := outcomes[min(len(f.measured), len(outcomes))-1]
		reason := ""
		if o == canary.Fail {
			reason = "error rate 0.2 > 0.05"
		}
		return canary.Result{Outcome: o, Checks: []canary.CheckResult{{Name: "error rate", Metric: canary.ErrorRate, Value: 0.2, Threshold: 0.05, Outcome: o, Reason: reason}}}, nil
	})
	h.env.OnActivity(contract.CanaryPromoteName, mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.CanaryPromoteInput) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.promoted = append(f.promoted, in)
		return nil
	})
	h.env.OnActivity(contract.CanaryAbortName, mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.CanaryAbortInput) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.aborted = append(f.aborted, in.Reason)
		return nil
	})
	return f
}

func TestCanaryPromotesAfterEveryWeightPasses(t *testing.T) {
	h := newHarness(t)
	f := mockCanary(h, contract.CanaryStartResult{Version: 2, Champion: 1}, canary.Pass)
	res, err := h.run(canaryPipeline, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.weights; len(got) != 3 || got[0] != 10 || got[2] != 100 {
		t.Fatalf("weights %v", got)
	}
	if len(f.measured) != 3 || len(f.aborted) != 0 {
		t.Fatalf("measured %d times, aborted %v", len(f.measured), f.aborted)
	}
	if len(f.promoted) != 1 || f.promoted[0].Version != 2 || f.promoted[0].ExpectedChampion != 1 {
		t.Fatalf("promotions %+v", f.promoted)
	}
	st := stepOf(t, *res, "canary")
	if st.Outputs["decision"] != "promoted" || len(st.Outputs["intervals"].([]any)) != 3 {
		t.Fatalf("outputs %+v", st.Outputs)
	}
	if stepOf(t, *res, "after").Outputs["v"] != float64(2) {
		t.Fatalf("downstream did not see the promoted version: %+v", stepOf(t, *res, "after"))
	}
}

func TestCanaryFirstModelIsPromotedWithoutAnalysis(t *testing.T) {
	h := newHarness(t)
	f := mockCanary(h, contract.CanaryStartResult{Version: 1, Champion: 0}, canary.Fail)
	res, err := h.run(canaryPipeline, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.measured) != 0 || len(f.promoted) != 1 || f.promoted[0].ExpectedChampion != 0 {
		t.Fatalf("measured %d, promotions %+v", len(f.measured), f.promoted)
	}
	if r := stepOf(t, *res, "canary").Outputs["reason"].(string); !strings.Contains(r, "no champion") {
		t.Fatalf("reason %q", r)
	}
}

func TestCanaryRollsBackAtTheFailureLimit(t *testing.T) {
	h := newHarness(t)
	f := mockCanary(h, contract.CanaryStartResult{Version: 2, Champion: 1}, canary.Fail)
	_, err := h.run(canaryPipeline, nil)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !strings.Contains(app.Error(), "rolled back") {
		t.Fatalf("want a rolled-back run, got %v", err)
	}
	// failure_limit 2: the second failed interval decides, at 50%.
	if len(f.measured) != 2 || len(f.promoted) != 0 || len(f.aborted) != 1 || f.weights[len(f.weights)-1] != 50 {
		t.Fatalf("measured %d, promoted %v, aborted %v, weights %v", len(f.measured), f.promoted, f.aborted, f.weights)
	}
	st := failedStatus(t, err)
	canaryStep := stepOf(t, st, "canary")
	if canaryStep.State != contract.StateFailed || !strings.Contains(canaryStep.Error, "error rate 0.2 > 0.05") {
		t.Fatalf("canary step %+v", canaryStep)
	}
	if stepOf(t, st, "after").State != contract.StateSkipped {
		t.Fatalf("the step after a rolled-back canary ran")
	}
}

func TestCanaryPauseStopsTheClockAndAbortRollsBack(t *testing.T) {
	h := newHarness(t)
	f := mockCanary(h, contract.CanaryStartResult{Version: 2, Champion: 1}, canary.Pass)
	var began time.Time
	h.env.RegisterDelayedCallback(func() {
		began = h.env.Now()
		h.env.SignalWorkflow(contract.CanaryPauseSignal, contract.CanarySignal{By: "oncall"})
	}, time.Minute)
	h.env.RegisterDelayedCallback(func() {
		h.env.SignalWorkflow(contract.CanaryResumeSignal, contract.CanarySignal{By: "oncall"})
	}, 3*time.Hour)
	h.env.RegisterDelayedCallback(func() {
		h.env.SignalWorkflow(contract.CanaryAbortSignal, contract.CanarySignal{By: "oncall", Reason: "pager"})
	}, 3*time.Hour+6*time.Minute)
	_, err := h.run(canaryPipeline, nil)
	if err == nil || !strings.Contains(err.Error(), "aborted by oncall") {
		t.Fatalf("want an aborted canary, got %v", err)
	}
	// Paused at 1m with 4 of the 5 minutes left, resumed at 3h: the
	// interval ends at 3h04m, 3h03m after the pause.
	if len(f.measured) != 1 || f.measured[0].Sub(began) != 3*time.Hour+3*time.Minute {
		t.Fatalf("measured at %v (paused at %v)", f.measured, began)
	}
	if len(f.aborted) != 1 || len(f.promoted) != 0 {
		t.Fatalf("aborted %v promoted %v", f.aborted, f.promoted)
	}
}

func TestCanaryRejectsBadWeights(t *testing.T) {
	h := newHarness(t)
	mockCanary(h, contract.CanaryStartResult{Version: 2, Champion: 1}, canary.Pass)
	_, err := h.run(strings.Replace(canaryPipeline, "[10, 50, 100]", "[50, 10]", 1), nil)
	if err == nil || !strings.Contains(err.Error(), "with.weights[1]") {
		t.Fatalf("want a weights error, got %v", err)
	}
}

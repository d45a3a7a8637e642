package workflows_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/workflow"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/monitor"
)

// TestMonitorRollsBackAndRetrainsOncePerIncident runs the monitor for
// twelve hours of drift: the first breaching pass rolls back and starts
// one retraining run; the passes after it, inside the six-hour cooldown,
// act no more; the first pass after the cooldown acts again.
func TestMonitorRollsBackAndRetrainsOncePerIncident(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	var sinces []time.Time
	champion := 2
	h.env.OnActivity(contract.MonitorCheckName, mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.MonitorCheckInput) (contract.MonitorCheckResult, error) {
		mu.Lock()
		defer mu.Unlock()
		sinces = append(sinces, in.Since)
		now := h.env.Now()
		rep := monitor.Report{Samples: 900, Window: monitor.Window{From: now.Add(-time.Hour), To: now}}
		// Healthy for the first two hours, drifted after.
		if len(sinces) > 2 {
			rep.DataDrifted = true
			rep.Breaches = []monitor.Breach{{Kind: monitor.BreachDrift, Feature: "income", Detail: "income drifted: PSI 0.41 ≥ 0.2", Value: 0.41, Threshold: 0.2}}
		}
		return contract.MonitorCheckResult{Champion: champion, Report: rep}, nil
	})
	var rollbacks []contract.MonitorRollbackInput
	h.env.OnActivity(contract.MonitorRollbackName, mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.MonitorRollbackInput) (contract.MonitorRollbackResult, error) {
		mu.Lock()
		defer mu.Unlock()
		rollbacks = append(rollbacks, in)
		return contract.MonitorRollbackResult{Champion: 1}, nil
	})
	var retrains []contract.PipelineInput
	h.env.OnWorkflow(contract.PipelineName, mock.Anything, mock.Anything).Return(func(_ workflow.Context, in contract.PipelineInput) (*contract.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		retrains = append(retrains, in)
		return &contract.Result{}, nil
	})
	start := h.env.Now()
	h.env.ExecuteWorkflow(contract.MonitorName, contract.MonitorInput{
		Name: "credit", Interval: time.Hour, Window: 2 * time.Hour, Until: start.Add(12 * time.Hour),
		Policy:          monitor.Policy{OnBreach: []monitor.Action{monitor.Rollback, monitor.Retrain}, Cooldown: 6 * time.Hour},
		RetrainPipeline: "credit", RetrainParams: map[string]any{"rows": 5000},
	})
	if err := h.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var st contract.MonitorState
	if err := h.env.GetWorkflowResult(&st); err != nil {
		t.Fatal(err)
	}
	if st.Passes != 12 || len(sinces) != 12 {
		t.Fatalf("%d passes (%d checks), want 12", st.Passes, len(sinces))
	}
	// Drift from the third pass (3h); cooldown 6h: actions at 3h and 9h.
	if len(st.Incidents) != 2 || len(rollbacks) != 2 || len(retrains) != 2 {
		t.Fatalf("incidents %d, rollbacks %d, retrains %d (%v); want 2 each", len(st.Incidents), len(rollbacks), len(retrains), st.Retrains)
	}
	if got := st.Incidents[1].At.Sub(st.Incidents[0].At); got != 6*time.Hour {
		t.Fatalf("second incident %v after the first, want the 6h cooldown", got)
	}
	if rollbacks[0].Champion != 2 || !strings.Contains(rollbacks[0].Reason, "income drifted") {
		t.Fatalf("rollback %+v", rollbacks[0])
	}
	if retrains[0].Pipeline != "credit" || retrains[0].Params["rows"] != float64(5000) || !strings.HasPrefix(retrains[0].StartedBy, "monitor:") {
		t.Fatalf("retrain %+v", retrains[0])
	}
	if len(st.Retrains) != 2 || !strings.HasPrefix(st.Retrains[0], "credit-retrain-") {
		t.Fatalf("retrain runs %v", st.Retrains)
	}
	// A pass reads the last two hours, but never what the rolled-back
	// model served: the third pass (at 3h) reads from 1h, the fourth (at
	// 4h) from the rollback at 3h.
	if want := start.Add(time.Hour); !sinces[2].Equal(want) {
		t.Fatalf("third pass read since %v, want %v", sinces[2], want)
	}
	if !sinces[3].Equal(st.Rollbacks[0].At) {
		t.Fatalf("pass after the rollback read since %v, rollback at %v", sinces[3], st.Rollbacks[0].At)
	}
}

func TestMonitorStepWatchesForItsDuration(t *testing.T) {
	h := newHarness(t)
	h.env.OnActivity(contract.MonitorCheckName, mock.Anything, mock.Anything).Return(contract.MonitorCheckResult{Champion: 1, Report: monitor.Report{Samples: 10}}, nil)
	res, err := h.run(`
name: credit
steps:
  - {id: watch, uses: monitor, with: {interval: 10m, duration: 1h, cooldown: 1h}}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := stepOf(t, *res, "watch").Outputs
	if out["passes"] != float64(6) || out["rolled_back"] != false || !strings.HasPrefix(out["monitor_id"].(string), "monitor-credit-") {
		t.Fatalf("outputs %+v", out)
	}
}

func TestMonitorStepRefusesUnknownActions(t *testing.T) {
	h := newHarness(t)
	_, err := h.run(`
name: credit
steps:
  - {id: watch, uses: monitor, with: {on_breach: [rollback, page]}}
`, nil)
	if err == nil || !strings.Contains(err.Error(), `"page" is not an action`) {
		t.Fatalf("want an on_breach error, got %v", err)
	}
}

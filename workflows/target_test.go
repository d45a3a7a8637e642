package workflows_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/mock"

	"github.com/gauntlet-ml/gauntlet/internal/canary"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/monitor"
)

// A step's target reaches every activity it calls, the monitor's passes
// and rollbacks included, so a worker drives the target the step names.
func TestStepsCarryTheirDeploymentTarget(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	targets := map[string][]string{}
	seen := func(activity, target string) {
		mu.Lock()
		defer mu.Unlock()
		targets[activity] = append(targets[activity], target)
	}
	h.env.OnActivity(contract.CanaryStartName, mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.CanaryStartInput) (contract.CanaryStartResult, error) {
		seen(contract.CanaryStartName, in.Target)
		return contract.CanaryStartResult{Version: 2, Champion: 1}, nil
	})
	h.env.OnActivity(contract.CanaryWeightName, mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.CanaryWeightInput) error {
		seen(contract.CanaryWeightName, in.Target)
		return nil
	})
	h.env.OnActivity(contract.CanaryMeasureName, mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.CanaryMeasureInput) (canary.Result, error) {
		seen(contract.CanaryMeasureName, in.Target)
		return canary.Result{Outcome: canary.Pass}, nil
	})
	h.env.OnActivity(contract.CanaryPromoteName, mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.CanaryPromoteInput) error {
		seen(contract.CanaryPromoteName, in.Target)
		return nil
	})
	h.env.OnActivity(contract.MonitorCheckName, mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.MonitorCheckInput) (contract.MonitorCheckResult, error) {
		seen(contract.MonitorCheckName, in.Target)
		return contract.MonitorCheckResult{Champion: 2, Report: monitor.Report{Samples: 900, DataDrifted: true,
			Breaches: []monitor.Breach{{Kind: monitor.BreachDrift, Feature: "age", Detail: "age drifted", Value: 0.5, Threshold: 0.2}}}}, nil
	})
	h.env.OnActivity(contract.MonitorRollbackName, mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.MonitorRollbackInput) (contract.MonitorRollbackResult, error) {
		seen(contract.MonitorRollbackName, in.Target)
		return contract.MonitorRollbackResult{Champion: 1}, nil
	})
	res, err := h.run(`
name: credit
steps:
  - id: canary
    uses: canary-deploy
    with: {model: /models/candidate, weights: [50], interval: 1m, target: fleet}
  - id: watch
    uses: monitor
    needs: [canary]
    with: {interval: 10m, duration: 30m, on_breach: [rollback], target: fleet}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out := stepOf(t, *res, "watch").Outputs; out["rolled_back"] != true {
		t.Fatalf("monitor outputs %+v", out)
	}
	for _, a := range []string{contract.CanaryStartName, contract.CanaryWeightName, contract.CanaryMeasureName, contract.CanaryPromoteName, contract.MonitorCheckName, contract.MonitorRollbackName} {
		got := targets[a]
		if len(got) == 0 {
			t.Errorf("%s was not called", a)
		}
		for _, tg := range got {
			if tg != contract.TargetFleet {
				t.Errorf("%s got target %q, want fleet", a, tg)
			}
		}
	}
}

func TestUnknownDeploymentTargetFailsTheStep(t *testing.T) {
	for _, step := range []string{
		"{id: canary, uses: canary-deploy, with: {model: /m, target: cloud}}",
		"{id: watch, uses: monitor, with: {target: cloud}}",
	} {
		h := newHarness(t)
		_, err := h.run("name: credit\nsteps:\n  - "+step+"\n", nil)
		if err == nil || !strings.Contains(err.Error(), `target: "cloud": want embedded or fleet`) {
			t.Errorf("%s: want an error naming the target, got %v", step, err)
		}
	}
}

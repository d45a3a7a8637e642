package workflows_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
)

// A node lost while it trains is destroyed by its node_id, which any
// worker finds in the store (run version 5), before the next generation
// is provisioned and the step runs again there.
func TestLostNodeIsDestroyedByItsID(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	var provisioned, destroyed, trainedOn []string
	h.env.OnActivity(contract.StepActivityName("provision"), mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.StepInput) (contract.StepResult, error) {
			mu.Lock()
			defer mu.Unlock()
			provisioned = append(provisioned, in.StepID)
			n := len(provisioned)
			// No workdir: provision has not output one since version 5.
			return contract.StepResult{Outputs: map[string]any{"node_id": fmt.Sprintf("node-%d", n), "task_queue": fmt.Sprintf("queue-%d", n)}}, nil
		})
	h.env.OnActivity(contract.StepActivityName("destroy"), mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.StepInput) (contract.StepResult, error) {
			mu.Lock()
			defer mu.Unlock()
			destroyed = append(destroyed, fmt.Sprint(in.With["node"]))
			return contract.StepResult{Outputs: map[string]any{"cost_usd": 0.25}}, nil
		})
	h.env.OnActivity(contract.StepActivityName("train"), mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in contract.StepInput) (contract.StepResult, error) {
			q := activity.GetInfo(ctx).TaskQueue
			mu.Lock()
			trainedOn = append(trainedOn, q)
			mu.Unlock()
			if q == "queue-1" {
				return contract.StepResult{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_HEARTBEAT, nil)
			}
			return contract.StepResult{Outputs: map[string]any{"resumed_from_epoch": 3}}, nil
		})
	res, err := h.run(`
name: lost
steps:
  - {id: gpu, uses: provision}
  - {id: train, uses: train, needs: [gpu], runs_on: gpu, heartbeat: 30s, retry: {max_attempts: 1}, with: {data: d.csv, label: y, positive_label: "1"}}
finally:
  - {id: teardown, uses: destroy, with: {node: gpu}}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(provisioned) != 2 || provisioned[1] != contract.NodeGeneration("gpu", 2) {
		t.Errorf("provisioned %v, want gpu and its second generation", provisioned)
	}
	if len(destroyed) != 2 || destroyed[0] != "node-1" || destroyed[1] != "gpu" {
		t.Errorf("destroyed %v, want the lost node by its id, then the step's nodes by the step's id", destroyed)
	}
	if len(trainedOn) != 2 || trainedOn[1] != "queue-2" {
		t.Errorf("train ran on %v, want the lost node's queue, then the replacement's", trainedOn)
	}
	gpu := stepOf(t, *res, "gpu").Outputs
	if gpu["node_id"] != "node-2" || gpu["generation"] != 2.0 || gpu["preemption_waste_usd"] != 0.25 {
		t.Errorf("gpu outputs after the replacement: %v", gpu)
	}
}

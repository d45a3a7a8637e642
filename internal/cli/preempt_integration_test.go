package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/testkit"
	"github.com/gauntlet-ml/gauntlet/internal/tf"
)

const preemptPipeline = `name: preempt
steps:
  - {id: gpu, uses: provision, with: {module: local-node}}
  - id: train
    uses: train
    needs: [gpu]
    runs_on: gpu
    heartbeat: 3s
    retry: {max_attempts: 2, initial_interval: 1s}
    with: {data: "builtin:credit-risk?rows=20000&seed=3", label: defaulted, positive_label: "yes", model: mlp, epochs: 300, hidden: "64,32"}
finally:
  - {id: teardown, uses: destroy, with: {node: gpu}}
`

// TestPreemptedNodeIsReplacedAndTrainingResumes kills the node worker
// that Terraform started while it trains: the run must provision a second
// node, resume from the checkpoint rather than epoch 1, bill both nodes,
// and leave no node process behind.
func TestPreemptedNodeIsReplacedAndTrainingResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("trains on two real nodes; skipped with -short")
	}
	if _, err := tf.Find(""); err != nil {
		testkit.Need(t, "nodes are provisioned with terraform: %v", err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	worker := filepath.Join(root, "bin", "worker")
	if _, err := os.Stat(worker); err != nil {
		testkit.Need(t, "nodes run %s: build it with `make build` (make test does)", worker)
	}
	pipes, state := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(pipes, "preempt.yaml"), []byte(preemptPipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	frontend := startEmbedded(t, pipes, "--state-dir", state)
	t.Setenv("TEMPORAL_ADDRESS", frontend)
	t.Setenv("GAUNTLET_WORKER_BINARY", worker)
	t.Setenv("GAUNTLET_INFRA_MODULES", filepath.Join(root, "infra", "modules"))
	t.Cleanup(func() { killNodes(t, state) })
	env := map[string]string{"TEMPORAL_ADDRESS": frontend, "GAUNTLET_PIPELINES": pipes}
	if code, out, stderr := runCLI(t, env, "run", "preempt", "--id", "preempt-1"); code != ExitOK {
		t.Fatalf("run: exit %d %s %s", code, out, stderr)
	}
	// Kill the node once it has checkpointed a few epochs.
	checkpoint := filepath.Join(state, "runs", "preempt-1", "train", "checkpoints", "mlp-checkpoint.json")
	var pids []int
	waitFor(t, func() bool {
		if _, err := os.Stat(checkpoint); err != nil {
			return false
		}
		pids = nodePIDs(t, state)
		return len(pids) == 1
	})
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var st contract.Status
	waitFor(t, func() bool {
		code, out, _ := runCLI(t, env, "status", "preempt-1", "--output", "json")
		if code != ExitOK {
			return false
		}
		var rep RunReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("status JSON: %v", err)
		}
		st = rep.Status
		return st.State == contract.RunSucceeded || st.State == contract.RunFailed
	})
	if st.State != contract.RunSucceeded {
		t.Fatalf("run %s: %s", st.State, st.Error)
	}
	step := func(id string) map[string]any {
		for _, s := range st.Steps {
			if s.ID == id {
				return s.Outputs
			}
		}
		t.Fatalf("no step %s", id)
		return nil
	}
	gpu, train, teardown := step("gpu"), step("train"), step("teardown")
	if gpu["generation"] != float64(2) || len(gpu["lost_nodes"].([]any)) != 1 {
		t.Fatalf("gpu outputs: generation %v, lost %v", gpu["generation"], gpu["lost_nodes"])
	}
	if _, ok := gpu["preemption_waste_usd"].(float64); !ok {
		t.Fatalf("gpu outputs carry no preemption waste: %v", gpu)
	}
	if from, _ := train["resumed_from_epoch"].(float64); from < 1 {
		t.Fatalf("training started over instead of resuming: %v", train["resumed_from_epoch"])
	}
	if nodes, _ := teardown["nodes"].([]any); len(nodes) != 2 {
		t.Fatalf("teardown priced %d nodes, want both: %v", len(nodes), teardown["nodes"])
	}
	if left := nodePIDs(t, state); len(left) != 0 {
		t.Fatalf("node processes left behind: %v", left)
	}
}

// nodePIDs lists the live node workers the local-node module recorded.
func nodePIDs(t *testing.T, state string) []int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(state, "worker-*.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err == nil && syscall.Kill(pid, 0) == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

func killNodes(t *testing.T, state string) {
	for _, pid := range nodePIDs(t, state) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

package workflows

import (
	"errors"
	"fmt"
	"maps"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
)

// maxNodeReplacements bounds how often one step's node is replaced: spot
// capacity that keeps vanishing is a reason to fail, not to spend forever.
const maxNodeReplacements = 3

// nodeStartTimeout is how long a task may wait on a node's queue before
// the node counts as gone: twice the step's heartbeat, so a node that
// stopped heartbeating is not waited on longer than it took to notice, or
// five minutes for steps that do not heartbeat.
func nodeStartTimeout(heartbeat time.Duration) time.Duration {
	if heartbeat <= 0 {
		return 5 * time.Minute
	}
	return max(2*heartbeat, 10*time.Second)
}

// nodeLost says whether a step failed because its node stopped answering:
// a missed heartbeat (the process or machine died, or a spot instance was
// reclaimed) or a task no worker picked up.
func nodeLost(err error) bool {
	var te *temporal.TimeoutError
	if !errors.As(err, &te) {
		return false
	}
	switch te.TimeoutType() {
	case enumspb.TIMEOUT_TYPE_HEARTBEAT, enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START:
		return true
	}
	return false
}

// replaceNode destroys the lost node of provision step provID and
// provisions the next generation in its place; the steps that run on it
// then go to the new node's queue and resume from their checkpoints. Both
// nodes stay on the record: the run pays for both.
func (r *run) replaceNode(ctx workflow.Context, provID, stepID string, lost error) error {
	// Runs recorded before node replacement existed never reached here.
	workflow.GetVersion(ctx, "node-replacement", workflow.DefaultVersion, 1)
	ps := r.index(provID)
	old := ps.Outputs
	gen := 2
	if g, ok := old["generation"].(float64); ok {
		gen = int(g) + 1
	}
	opts := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Minute,
		HeartbeatTimeout:    2 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 5 * time.Second, MaximumInterval: time.Minute, MaximumAttempts: 5},
	})
	// The old node may be half alive (a spot notice, a hung process):
	// destroy it first, whatever is left of it, so it cannot bill or
	// compete for the step's work. From version 5 it is named by its id,
	// which any worker finds in the store; runs before named it by the
	// workdir output, a path on the worker that provisioned it, or by its
	// id where a newer worker's provision gave no workdir.
	node, _ := old["node_id"].(string)
	if workdir, _ := old["workdir"].(string); r.version < 5 && workdir != "" {
		node = workdir
	}
	destroy := contract.StepInput{RunID: r.status.RunID, Pipeline: r.resolved.Spec.Name, SpecHash: r.resolved.Hash, StepID: provID, Uses: "destroy",
		With: map[string]any{"node": node}, StartedBy: r.input.StartedBy}
	dctx, cancel := workflow.NewDisconnectedContext(opts)
	defer cancel()
	var destroyed contract.StepResult
	if err := workflow.ExecuteActivity(dctx, contract.StepActivityName("destroy"), destroy).Get(dctx, &destroyed); err != nil {
		return fmt.Errorf("destroy lost node %v: %w", old["node_id"], err)
	}
	// The whole life of a lost node is counted as waste: what it computed
	// after its step's last checkpoint is redone, and telling that part
	// apart would need the checkpoint's time, which only the step knows.
	waste, _ := destroyed.Outputs["cost_usd"].(float64)
	r.record(ctx, "record-preemption-metric", contract.RecordPreemptionName, contract.PreemptionRecord{Pipeline: r.resolved.Spec.Name, WasteUSD: waste})
	with := maps.Clone(r.provisionWith[provID])
	prov := contract.StepInput{RunID: r.status.RunID, Pipeline: r.resolved.Spec.Name, SpecHash: r.resolved.Hash, StepID: contract.NodeGeneration(provID, gen),
		Uses: "provision", With: with, StartedBy: r.input.StartedBy}
	var res contract.StepResult
	if err := workflow.ExecuteActivity(opts, contract.StepActivityName("provision"), prov).Get(ctx, &res); err != nil {
		return fmt.Errorf("provision generation %d: %w", gen, err)
	}
	lostNodes, _ := old["lost_nodes"].([]any)
	lostNodes = append(lostNodes, map[string]any{"node_id": old["node_id"], "while": stepID, "reason": rootMessage(lost),
		"at": workflow.Now(ctx).UTC().Format(time.RFC3339), "waste_usd": waste})
	prevWaste, _ := old["preemption_waste_usd"].(float64)
	out := res.Outputs
	out["generation"] = float64(gen)
	out["lost_nodes"] = lostNodes
	out["preemption_waste_usd"] = prevWaste + waste
	ps.Outputs = out
	ps.Reason = fmt.Sprintf("node %v lost while running %s (%s); replaced by %v", old["node_id"], stepID, rootMessage(lost), out["node_id"])
	return nil
}

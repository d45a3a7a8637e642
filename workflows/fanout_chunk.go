package workflows

import (
	"encoding/json"
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/tmpl"
)

// FanOutChunk runs one chunk of the items of a large fan-out for the run
// that started it (see runChunks), and returns every item's result in
// item order. Deciding the step is the run's: a chunk only stops early
// once it alone has seen more failures than the step can take.
func FanOutChunk(ctx workflow.Context, in contract.ChunkInput) (*contract.ChunkResult, error) {
	st := in.Step
	ir := &itemRunner{
		step:    st,
		base:    tmpl.Context{Params: in.Params, Steps: in.Steps, Run: tmpl.RunInfo{ID: in.RunID, Pipeline: in.Pipeline}, Step: st.ID},
		input:   contract.StepInput{RunID: in.RunID, Pipeline: in.Pipeline, SpecHash: in.SpecHash, StepID: st.ID, Uses: usesOf(st), Command: st.Run, StartedBy: in.StartedBy},
		version: workflow.Version(in.Version),
		offset:  in.Offset, limit: max(1, in.MaxParallel), perItemIf: st.ConditionReadsItem(),
		queue: func(id string) (string, error) {
			q := in.Queues[id]
			if q == "" {
				return "", badInput("runs_on %q: not a node of this run", id)
			}
			return q, nil
		},
		// A node lost under a chunk's item fails that item: only the run
		// can replace a node.
		upstream: in.Upstream,
		noCache:  in.NoCache,
		acquire:  func() bool { return true },
		release:  func() {},
		waitFor:  func() bool { return true },
	}
	t := &tally{st: &st, fo: &contract.FanOut{Items: len(in.Items)}, items: in.Items, chunk: true, chunkLimit: in.MaxFailures}
	res := &contract.ChunkResult{Items: ir.run(ctx, in.Items, t)}
	if b, err := json.Marshal(res); err != nil || len(b) > maxFanOutOutputBytes {
		// Sending it would fail this workflow's task again and again.
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the outputs of items %d to %d are more than the %d bytes a chunk can return: have items store large results as artifacts and output their pointers",
				in.Offset, in.Offset+len(in.Items)-1, maxFanOutOutputBytes), "FanOutTooLarge", nil)
	}
	return res, nil
}

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/tclient"
)

// fanrecPipeline splits data into folds (outputs: artifact pointers), fans
// an echo out over a matrix of folds and seeds, then fans a command out
// over five names: four heartbeat until cancelled and the fifth fails once
// they all run, unless the test has created the file "fixed". Failing with
// no min_success, the fifth makes the step cancel the other four, in item
// order, in one workflow task.
const fanrecPipeline = `name: fanrec
params:
  marks: {type: string, required: true}
  rows: {type: integer, default: 200}
defaults:
  heartbeat: 2s
  retry: {max_attempts: 1}
steps:
  - id: split
    uses: split
    with: {data: "builtin:credit-risk?rows=${{ params.rows }}&seed=1", label: defaulted, positive_label: "yes", folds: 2}
  - id: grid
    uses: echo
    needs: [split]
    matrix:
      fold: ${{ steps.split.outputs.folds }}
      seed: [1, 2]
    with: {test: "${{ item.fold.test }}", seed: "${{ item.seed }}"}
  - id: wait
    needs: [grid]
    for_each: [a, b, c, d, e]
    run: |
      if [ "$GAUNTLET_INPUT_NAME" = e ]; then
        while [ "$(ls "$GAUNTLET_INPUT_MARKS" | wc -l)" -lt 4 ]; do sleep 0.1; done
        test -f "$GAUNTLET_INPUT_MARKS/../fixed" || { echo "four running, failing" >&2; exit 3; }
        exit 0
      fi
      touch "$GAUNTLET_INPUT_MARKS/$GAUNTLET_INPUT_NAME"
      test -f "$GAUNTLET_INPUT_MARKS/../fixed" && exit 0
      exec sleep 300
    with: {name: "${{ item }}", marks: "${{ params.marks }}"}
  - id: after
    uses: echo
    needs: [wait]
    with: {n: "${{ len(steps.wait.items) }}", tests: "${{ steps.grid.outputs.test }}"}
finally:
  - {id: report, uses: echo, with: {wait: "${{ steps.wait.status }}"}}
`

// blockPipeline runs until cancelled.
const blockPipeline = `name: block
steps:
  - {id: wait, run: "exec sleep 300", heartbeat: 2s}
`

// chunkPipeline fans out over more items than one chunk workflow holds.
const chunkPipeline = `name: chunked
params:
  n: {type: integer, default: 501}
max_parallel: 100
steps:
  - id: each
    uses: echo
    for_each: "${{ map(1..int(params.n), # - 1) }}"
    with: {i: "${{ item }}"}
  - {id: sum, uses: echo, needs: [each], with: {n: "${{ len(steps.each.outputs.i) }}", last: "${{ steps.each.outputs.i[500] }}"}}
`

// TestFanOutAndRetryOnARealServer runs a fan-out that fails on a real
// server, recovers it with gauntlet retry, checks what a retry refuses, and
// records the histories that workflows' replay test replays (the failed
// run cancels four items in one workflow task: replayed many times).
func TestFanOutAndRetryOnARealServer(t *testing.T) {
	pipes := t.TempDir()
	for name, text := range map[string]string{"fanrec": fanrecPipeline, "block": blockPipeline, "chunked": chunkPipeline} {
		if err := os.WriteFile(filepath.Join(pipes, name+".yaml"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	state := t.TempDir()
	frontend := startEmbedded(t, pipes, "--state-dir", state)
	env := map[string]string{"TEMPORAL_ADDRESS": frontend, "GAUNTLET_PIPELINES": pipes, "GAUNTLET_USER": "ci"}
	ctx := context.Background()
	c, err := tclient.Dial(ctx, tclient.Options{Address: frontend, Namespace: "default"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	work := t.TempDir()
	marks := filepath.Join(work, "marks")
	if err := os.Mkdir(marks, 0o755); err != nil {
		t.Fatal(err)
	}
	const first = "fanrec-1"
	code, out, stderr := runCLI(t, env, "run", "fanrec", "-p", "marks="+marks, "--id", first, "--wait", "--output", "json")
	if code != ExitFailed {
		t.Fatalf("first run: exit %d, want %d: %s %s", code, ExitFailed, out, stderr)
	}
	var rep RunReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not one JSON document: %v\n%s", err, out)
	}
	wait := stepIn(t, rep.Status, "wait")
	if wait.State != contract.StateFailed || wait.FanOut == nil || wait.FanOut.Failed != 1 || wait.FanOut.Canceled != 4 ||
		len(wait.FanOut.Failures) != 1 || wait.FanOut.Failures[0].Index != 4 {
		t.Fatalf("wait: %+v %+v", wait, wait.FanOut)
	}
	grid := stepIn(t, rep.Status, "grid")
	if grid.FanOut == nil || grid.FanOut.Succeeded != 4 || len(grid.Outputs["test"].([]any)) != 4 {
		t.Fatalf("grid: %+v", grid)
	}
	requested, canceled := cancellations(t, c, first)
	if len(requested) != 4 || canceled != 4 {
		t.Fatalf("history has %d cancel requests (%v) and %d cancelled activities, want 4 and 4", len(requested), requested, canceled)
	}
	recordHistory(t, c, first, "pipeline_fanout_cancel.json")

	// A running run cannot be retried, and nothing starts.
	code, _, _ = runCLI(t, env, "run", "block", "--id", "block-1")
	if code != ExitOK {
		t.Fatalf("run block: exit %d", code)
	}
	code, _, stderr = runCLI(t, env, "retry", "block-1", "--id", "refused-1")
	if code != ExitUsage || !strings.Contains(stderr, "run block-1 is still running") || !strings.Contains(stderr, "nothing was started") {
		t.Fatalf("retry of a running run: exit %d %q", code, stderr)
	}
	notStarted(t, c, "refused-1")
	if code, _, stderr = runCLI(t, env, "cancel", "block-1"); code != ExitOK {
		t.Fatalf("cancel: %d %s", code, stderr)
	}
	code, _, stderr = runCLI(t, env, "retry", "no-such-run")
	if code != ExitNotFound {
		t.Fatalf("retry of an unknown run: exit %d %q", code, stderr)
	}
	code, _, stderr = runCLI(t, env, "retry", first, "-p", "rows=300", "--id", "refused-2")
	if code != ExitUsage || !strings.Contains(stderr, "param rows is read by split") {
		t.Fatalf("a param under a reused step: exit %d %q", code, stderr)
	}
	notStarted(t, c, "refused-2")

	// Fixed: the retry reuses split and grid and runs wait again.
	if err := os.WriteFile(filepath.Join(work, "fixed"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const second = "fanrec-retry-1"
	code, out, stderr = runCLI(t, env, "retry", first, "--id", second, "--wait", "--output", "json")
	if code != ExitOK {
		t.Fatalf("retry: exit %d: %s %s", code, out, stderr)
	}
	rep = RunReport{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not one JSON document: %v\n%s", err, out)
	}
	if rep.RetryOf != first || rep.State != contract.RunSucceeded {
		t.Fatalf("retry run: %+v", rep.Status)
	}
	for _, id := range []string{"split", "grid"} {
		if s := stepIn(t, rep.Status, id); !strings.Contains(s.Reason, "taken over from run "+first) {
			t.Fatalf("%s was not reused: %+v", id, s)
		}
	}
	if s := stepIn(t, rep.Status, "wait"); s.FanOut.Succeeded != 5 || strings.Contains(s.Reason, "taken over") {
		t.Fatalf("wait: %+v", s)
	}
	if got := stepIn(t, rep.Status, "after").Outputs["tests"]; fmt.Sprint(got) != fmt.Sprint(grid.Outputs["test"]) {
		t.Fatalf("after read %v, the first run's grid made %v", got, grid.Outputs["test"])
	}
	code, out, stderr = runCLI(t, env, "status", first)
	if code != ExitOK || !strings.Contains(out, "recovered by "+second+" (succeeded)") {
		t.Fatalf("the old run's status does not link to its retry: %d %s %s", code, out, stderr)
	}
	code, out, _ = runCLI(t, env, "status", second)
	if code != ExitOK || !strings.Contains(out, "recovers "+first) || !strings.Contains(out, "items 5/5 ok") {
		t.Fatalf("status of the retry: %d %s", code, out)
	}
	desc, err := c.DescribeWorkflowExecution(ctx, second, "")
	if err != nil {
		t.Fatal(err)
	}
	var memo string
	if p := desc.GetWorkflowExecutionInfo().GetMemo().GetFields()[contract.RetryOfMemo]; p == nil || json.Unmarshal(p.GetData(), &memo) != nil || memo != first {
		t.Fatalf("the retry's memo does not name %s: %v", first, desc.GetWorkflowExecutionInfo().GetMemo())
	}
	recordHistory(t, c, second, "pipeline_retry.json")

	// The Temporal UI's way: start Pipeline with {"retry_of": RUN}.
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "fanrec-ui", TaskQueue: "gauntlet"}, contract.PipelineName,
		map[string]any{"retry_of": first, "retry_from": "after"})
	if err != nil {
		t.Fatal(err)
	}
	var ui contract.Result
	if err := run.Get(ctx, &ui); err != nil {
		t.Fatalf("retry from the UI's input: %v", err)
	}
	if ui.RetryOf != first || stepIn(t, ui, "wait").State != contract.StateSucceeded || stepIn(t, ui, "grid").State != contract.StateSucceeded {
		t.Fatalf("UI retry: %+v", ui)
	}

	// Artifacts gone: the CLI refuses before starting, and so does the
	// worker when the run is started another way.
	fold := grid.Outputs["test"].([]any)[0].(string)
	p, err := artifact.ParsePointer(fold)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(state, "artifacts", "blobs", "sha256", p.Digest.Hex())); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, env, "retry", first, "--id", "refused-3")
	if code != ExitUsage || !strings.Contains(stderr, "are gone from the store") || !strings.Contains(stderr, p.Digest.Hex()) {
		t.Fatalf("retry with an artifact gone: exit %d %q", code, stderr)
	}
	notStarted(t, c, "refused-3")
	run, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "fanrec-ui-gone", TaskQueue: "gauntlet"}, contract.PipelineName,
		contract.PipelineInput{RetryOf: first})
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Get(ctx, nil); err == nil || !strings.Contains(err.Error(), "are gone from the store") {
		t.Fatalf("the worker reused a missing artifact: %v", err)
	}
	st, err := queryStatus(ctx, c, "fanrec-ui-gone")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Steps {
		if s.State != contract.StatePending {
			t.Fatalf("step %s of a refused recovery is %s", s.ID, s.State)
		}
	}

	// More items than one chunk: child workflows, and the run's own
	// history grows by chunks, not items.
	code, out, stderr = runCLI(t, env, "run", "chunked", "--id", "chunked-1", "--wait", "--output", "json")
	if code != ExitOK {
		t.Fatalf("chunked: exit %d %s %s", code, out, stderr)
	}
	rep = RunReport{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if each := stepIn(t, rep.Status, "each"); each.FanOut.Chunks != 2 || each.FanOut.Succeeded != 501 {
		t.Fatalf("each: %+v", each.FanOut)
	}
	if sum := stepIn(t, rep.Status, "sum"); sum.Outputs["n"] != 501.0 || sum.Outputs["last"] != 500.0 {
		t.Fatalf("sum: %v", sum.Outputs)
	}
	if n := historyLength(t, c, "chunked-1"); n > 60 {
		t.Fatalf("the parent's history has %d events for 501 items in 2 chunks", n)
	}
	recordHistory(t, c, "chunked-1", "pipeline_chunked.json")
	recordHistory(t, c, "chunked-1.each.1", "fanout_chunk.json")
}

func stepIn(t *testing.T, st contract.Status, id string) contract.StepStatus {
	t.Helper()
	for _, s := range st.Steps {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no step %s in %+v", id, st.Steps)
	return contract.StepStatus{}
}

// notStarted checks that no workflow has id.
func notStarted(t *testing.T, c client.Client, id string) {
	t.Helper()
	_, err := c.DescribeWorkflowExecution(context.Background(), id, "")
	var nf *serviceerror.NotFound
	if !errors.As(err, &nf) {
		t.Fatalf("a refused retry started %s: %v", id, err)
	}
}

func historyLength(t *testing.T, c client.Client, id string) int64 {
	t.Helper()
	d, err := c.DescribeWorkflowExecution(context.Background(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	return d.GetWorkflowExecutionInfo().GetHistoryLength()
}

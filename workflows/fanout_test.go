package workflows_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/gauntlet-ml/gauntlet/activities"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/steps"
	"github.com/gauntlet-ml/gauntlet/workflows"
)

// concurrency tracks how many items of a group run at once.
var concurrency sync.Map // group -> *[2]atomic.Int64{now, max}

func init() {
	// test-item fails when told to, waits a little when told to (so items
	// overlap), and reports its inputs back.
	steps.Register(steps.Type{
		Name: "test-item", Kind: steps.Activity,
		Inputs:  []steps.InputSpec{{Name: "v"}, {Name: "fail"}, {Name: "group"}, {Name: "wait_ms"}},
		Outputs: []string{"v", "step_id"},
		Run: func(ctx context.Context, _ steps.Env, in steps.Input) (map[string]any, error) {
			if g, ok := in.With["group"].(string); ok {
				c, _ := concurrency.LoadOrStore(g, new([2]atomic.Int64))
				ctr := c.(*[2]atomic.Int64)
				now := ctr[0].Add(1)
				defer ctr[0].Add(-1)
				for {
					m := ctr[1].Load()
					if now <= m || ctr[1].CompareAndSwap(m, now) {
						break
					}
				}
			}
			if ms, ok := in.With["wait_ms"].(float64); ok {
				select {
				case <-time.After(time.Duration(ms) * time.Millisecond):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			if f, _ := in.With["fail"].(bool); f {
				return nil, steps.Permanentf("BadData", "item %v refused", in.With["v"])
			}
			return map[string]any{"v": in.With["v"], "step_id": in.StepID}, nil
		},
	})
}

func TestForEachOutputsAreListsInItemOrder(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(`
name: each
params:
  words: {type: list, default: [alpha, beta, gamma]}
steps:
  - id: each
    uses: test-item
    for_each: ${{ params.words }}
    with: {v: "${{ upper(item) }}"}
  - id: after
    uses: echo
    needs: [each]
    with: {got: "${{ steps.each.outputs.v }}", n: "${{ len(steps.each.items) }}", ids: "${{ steps.each.outputs.step_id }}"}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	each := stepOf(t, *res, "each")
	if each.State != contract.StateSucceeded || each.FanOut == nil || each.FanOut.Items != 3 || each.FanOut.Succeeded != 3 {
		t.Fatalf("each: %+v %+v", each, each.FanOut)
	}
	after := stepOf(t, *res, "after")
	if !reflect.DeepEqual(after.Outputs["got"], []any{"ALPHA", "BETA", "GAMMA"}) || after.Outputs["n"] != float64(3) {
		t.Fatalf("after: %v", after.Outputs)
	}
	// Each item is its own activity, with an id of its own.
	if !reflect.DeepEqual(after.Outputs["ids"], []any{"each[0]", "each[1]", "each[2]"}) {
		t.Fatalf("item ids: %v", after.Outputs["ids"])
	}
}

func TestMatrixRunsTheProductAndReadsItemNames(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(`
name: grid
steps:
  - id: grid
    uses: test-item
    matrix:
      model: [lr, mlp]
      seed: [1, 2, 3]
    with: {v: "${{ item.model }}-${{ item.seed }}"}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := stepOf(t, *res, "grid")
	want := []any{"lr-1", "lr-2", "lr-3", "mlp-1", "mlp-2", "mlp-3"}
	if !reflect.DeepEqual(g.Outputs["v"], want) {
		t.Fatalf("outputs %v", g.Outputs["v"])
	}
	if first, ok := g.Items[0].(map[string]any); !ok || first["model"] != "lr" || first["seed"] != float64(1) {
		t.Fatalf("items %v", g.Items)
	}
}

func TestForEachOverAnEarlierStepsOutputAndChainedFanOuts(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(`
name: chain
steps:
  - {id: src, uses: echo, with: {list: [3, 1, 2]}}
  - id: double
    uses: test-item
    needs: [src]
    for_each: ${{ steps.src.outputs.list }}
    with: {v: "${{ item * 2 }}"}
  - id: pair
    uses: test-item
    needs: [double, src]
    for_each: ${{ steps.double.outputs.v }}
    with: {v: "${{ item }}/${{ steps.src.outputs.list[int(item / 2) - 1] }}"}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := stepOf(t, *res, "pair").Outputs["v"]; !reflect.DeepEqual(got, []any{"6/2", "2/3", "4/1"}) {
		t.Fatalf("pair %v", got)
	}
}

func TestEmptyForEachSucceedsAndDependentsRun(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(`
name: empty
params:
  xs: {type: list, default: []}
steps:
  - id: none
    uses: test-item
    for_each: ${{ params.xs }}
    with: {v: "${{ item }}"}
  - id: after
    uses: echo
    needs: [none]
    with: {got: "${{ steps.none.outputs.v }}", n: "${{ len(steps.none.items) }}"}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	none := stepOf(t, *res, "none")
	if none.State != contract.StateSucceeded || none.FanOut.Items != 0 {
		t.Fatalf("none: %+v", none)
	}
	after := stepOf(t, *res, "after")
	if after.State != contract.StateSucceeded || !reflect.DeepEqual(after.Outputs["got"], []any{}) || after.Outputs["n"] != float64(0) {
		t.Fatalf("after: %+v", after)
	}
}

func TestForEachOverANonListFailsTheStep(t *testing.T) {
	h := newHarness(t)
	_, err := h.run(`
name: notalist
steps:
  - {id: src, uses: echo, with: {list: "a,b,c"}}
  - id: each
    uses: test-item
    needs: [src]
    for_each: ${{ steps.src.outputs.list }}
    with: {v: "${{ item }}"}
`, nil)
	st := failedStatus(t, err)
	each := stepOf(t, st, "each")
	if each.State != contract.StateFailed || !strings.Contains(each.Error, `for_each gave a string "a,b,c", not a list`) {
		t.Fatalf("each: %+v", each)
	}
}

func TestListParamFromTheCommandLineFansOut(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(`
name: cli
params:
  xs: {type: list, required: true}
steps:
  - {id: each, uses: test-item, for_each: "${{ params.xs }}", with: {v: "${{ item }}"}}
`, map[string]any{"xs": "[1, 2]"})
	if err != nil {
		t.Fatal(err)
	}
	if got := stepOf(t, *res, "each").Outputs["v"]; !reflect.DeepEqual(got, []any{float64(1), float64(2)}) {
		t.Fatalf("got %v", got)
	}
}

func TestMinSuccessLetsSomeItemsFailAndListsThem(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(`
name: tolerant
steps:
  - id: each
    uses: test-item
    for_each: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    min_success: 0.8
    with: {v: "${{ item }}", fail: "${{ item == 3 || item == 7 }}"}
  - {id: after, uses: echo, needs: [each], with: {v: "${{ steps.each.outputs.v }}"}}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	each := stepOf(t, *res, "each")
	fo := each.FanOut
	if each.State != contract.StateSucceeded || fo.Succeeded != 8 || fo.Failed != 2 || len(fo.Failures) != 2 {
		t.Fatalf("each: %+v %+v", each, fo)
	}
	if fo.Failures[0].Index != 3 || fo.Failures[1].Index != 7 || !strings.Contains(fo.Failures[1].Error, "item 7 refused") {
		t.Fatalf("failures %+v", fo.Failures)
	}
	if !strings.Contains(each.Reason, "2 of 10 items failed; min_success 0.8 holds") {
		t.Fatalf("reason %q", each.Reason)
	}
	v := stepOf(t, *res, "after").Outputs["v"].([]any)
	if v[3] != nil || v[7] != nil || v[4] != float64(4) {
		t.Fatalf("a failed item's output is null: %v", v)
	}
}

func TestMinSuccessCountNotMetFailsTheStep(t *testing.T) {
	h := newHarness(t)
	_, err := h.run(`
name: count
fail_fast: false
steps:
  - id: each
    uses: test-item
    for_each: [0, 1, 2, 3]
    min_success: 3
    with: {v: "${{ item }}", fail: "${{ item >= 2 }}"}
  - {id: after, uses: echo, needs: [each]}
`, nil)
	st := failedStatus(t, err)
	each := stepOf(t, st, "each")
	if each.State != contract.StateFailed || !strings.Contains(each.Error, "min_success 3 needs 3") || !strings.Contains(each.Error, "item 2 (2): item 2 refused") {
		t.Fatalf("each: %+v", each)
	}
	if stepOf(t, st, "after").State != contract.StateSkipped {
		t.Fatal("a dependent of a failed fan-out ran")
	}
}

// Without min_success one failure decides the step: items not yet started
// never start, and the failure is named.
func TestOneFailedItemFailsTheStepAndStopsTheRest(t *testing.T) {
	h := newHarness(t)
	_, err := h.run(`
name: strict
steps:
  - id: each
    uses: test-item
    max_parallel: 1
    for_each: [0, 1, 2, 3, 4, 5]
    with: {v: "${{ item }}", fail: "${{ item == 1 }}"}
`, nil)
	st := failedStatus(t, err)
	each := stepOf(t, st, "each")
	fo := each.FanOut
	if fo.Succeeded != 1 || fo.Failed != 1 || fo.Canceled != 4 {
		t.Fatalf("fan-out %+v", fo)
	}
	if !strings.Contains(each.Error, "1 of 6 items succeeded; 1 failed, 4 canceled; item 1 (1): item 1 refused") {
		t.Fatalf("error %q", each.Error)
	}
}

func TestEachItemIsRetriedOnItsOwn(t *testing.T) {
	resetFlaky(t)
	h := newHarness(t)
	key := t.Name()
	res, err := h.run(`
name: flaky
steps:
  - id: each
    uses: test-flaky
    for_each: [a, b, c]
    retry: {max_attempts: 4, initial_interval: 1s}
    with: {key: "`+key+`-${{ item }}", succeed_on: "${{ item == 'b' ? 3 : 1 }}"}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	each := stepOf(t, *res, "each")
	if got := each.Outputs["attempts"]; !reflect.DeepEqual(got, []any{float64(1), float64(3), float64(1)}) {
		t.Fatalf("attempts %v", got)
	}
	if each.Attempt != 3 {
		t.Fatalf("the step's attempt is its slowest item's: %d", each.Attempt)
	}
}

func TestEachItemTimesOutOnItsOwn(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(`
name: slow
steps:
  - id: each
    uses: test-item
    for_each: [1, 2, 3]
    min_success: 2
    timeout: 2s
    retry: {max_attempts: 1}
    with: {v: "${{ item }}", wait_ms: "${{ item == 2 ? 60000 : 0 }}"}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	fo := stepOf(t, *res, "each").FanOut
	if fo.Succeeded != 2 || len(fo.Failures) != 1 || fo.Failures[0].Index != 1 || !strings.Contains(fo.Failures[0].Error, "timed out") {
		t.Fatalf("fan-out %+v", fo)
	}
}

func TestMaxParallelBoundsItemsInFlight(t *testing.T) {
	for _, limit := range []int{1, 3} {
		group := fmt.Sprintf("%s-%d", t.Name(), limit)
		h := newHarness(t)
		res, err := h.run(fmt.Sprintf(`
name: bounded
max_parallel: 10
steps:
  - id: each
    uses: test-item
    max_parallel: %d
    for_each: [1, 2, 3, 4, 5, 6, 7, 8]
    with: {v: "${{ item }}", group: %s, wait_ms: 20}
`, limit, group), nil)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := concurrency.Load(group)
		if peak := c.(*[2]atomic.Int64)[1].Load(); peak > int64(limit) || peak < 1 {
			t.Fatalf("max_parallel %d: %d items ran at once", limit, peak)
		}
		if stepOf(t, *res, "each").FanOut.Succeeded != 8 {
			t.Fatal("not every item ran")
		}
	}
}

func TestItemConditionSkipsItemsNotTheStep(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(`
name: cond
params:
  go: {type: boolean, default: true}
steps:
  - id: each
    uses: test-item
    for_each: [1, 2, 3, 4]
    if: params.go && int(item) % 2 == 0
    with: {v: "${{ item }}"}
  - id: off
    uses: test-item
    for_each: [1, 2]
    if: "!params.go"
    with: {v: "${{ item }}"}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	each := stepOf(t, *res, "each")
	if !reflect.DeepEqual(each.Outputs["v"], []any{nil, float64(2), nil, float64(4)}) || each.FanOut.Skipped != 2 {
		t.Fatalf("each: %v %+v", each.Outputs, each.FanOut)
	}
	if off := stepOf(t, *res, "off"); off.State != contract.StateSkipped || off.FanOut != nil {
		t.Fatalf("a condition without item skips the whole step: %+v", off)
	}
}

func TestEachItemIsCachedOnItsOwn(t *testing.T) {
	state := t.TempDir()
	pipeline := `
name: cachedfan
params:
  xs: {type: list, default: [a, b]}
steps:
  - {id: each, uses: test-count, cache: true, for_each: "${{ params.xs }}", with: {value: "${{ item }}"}}
`
	first := runWithState(t, state, pipeline, nil)
	second := runWithState(t, state, pipeline, map[string]any{"xs": []any{"a", "b", "c"}})
	if first.FanOut.Cached != 0 || second.FanOut.Cached != 2 || second.FanOut.Succeeded != 3 {
		t.Fatalf("want the two known items from the cache:\n%+v\n%+v", first.FanOut, second.FanOut)
	}
	fn, sn := first.Outputs["n"].([]any), second.Outputs["n"].([]any)
	if fn[0] != sn[0] || fn[1] != sn[1] {
		t.Fatalf("cached items ran again: %v %v", fn, sn)
	}
}

func TestRunsOnTemplateMustNameAProvisionStep(t *testing.T) {
	h := newHarness(t)
	_, err := h.run(`
name: nodes
steps:
  - {id: src, uses: echo}
  - id: each
    uses: test-item
    needs: [src]
    for_each: [src]
    runs_on: ${{ item }}
    with: {v: "${{ item }}"}
`, nil)
	st := failedStatus(t, err)
	if f := stepOf(t, st, "each").FanOut.Failures; len(f) != 1 || !strings.Contains(f[0].Error, `runs_on "src": not a provision step`) {
		t.Fatalf("failures %+v", f)
	}
}

// More items than one chunk holds run in child workflows, in item order,
// with the step's outputs merged back in order.
func TestLargeFanOutRunsInChunks(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(`
name: large
params:
  n: {type: integer, default: 1201}
steps:
  - {id: src, uses: echo}
  - id: each
    uses: test-item
    needs: [src]
    max_parallel: 600
    min_success: 0.99
    for_each: "${{ map(1..int(params.n), # - 1) }}"
    with: {v: "${{ item }}", fail: "${{ item == 700 }}"}
  - {id: after, uses: echo, needs: [each], with: {n: "${{ len(steps.each.outputs.v) }}", last: "${{ steps.each.outputs.v[1200] }}"}}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	each := stepOf(t, *res, "each")
	fo := each.FanOut
	if fo.Items != 1201 || fo.Chunks != 3 || fo.Succeeded != 1200 || fo.Failed != 1 || fo.Failures[0].Index != 700 {
		t.Fatalf("fan-out %+v", fo)
	}
	ids := each.Outputs["step_id"].([]any)
	if ids[0] != "each[0]" || ids[999] != "each[999]" || ids[1200] != "each[1200]" || ids[700] != nil {
		t.Fatalf("item ids across chunks: %v %v %v %v", ids[0], ids[999], ids[1200], ids[700])
	}
	after := stepOf(t, *res, "after")
	if after.Outputs["n"] != float64(1201) || after.Outputs["last"] != float64(1200) {
		t.Fatalf("after %v", after.Outputs)
	}
}

func TestFailedChunkedFanOutStopsTheOtherChunks(t *testing.T) {
	h := newHarness(t)
	_, err := h.run(`
name: largefail
steps:
  - id: each
    uses: test-item
    max_parallel: 500
    for_each: "${{ map(1..1500, # - 1) }}"
    with: {v: "${{ item }}", fail: "${{ item == 10 }}"}
`, nil)
	st := failedStatus(t, err)
	each := stepOf(t, st, "each")
	fo := each.FanOut
	// One chunk runs at a time (max_parallel 500): the first stops at its
	// failure and the others never start.
	if fo.Failed != 1 || fo.Succeeded+fo.Failed+fo.Canceled != 1500 || fo.Canceled < 1000 {
		t.Fatalf("fan-out %+v", fo)
	}
	if !strings.Contains(each.Error, "item 10 (10): item 10 refused") {
		t.Fatalf("error %q", each.Error)
	}
}

func TestFailFastCancelsARunningFanOut(t *testing.T) {
	h := newHarness(t)
	_, err := h.run(`
name: ffan
steps:
  - id: each
    uses: test-block
    for_each: [1, 2, 3]
    heartbeat: 5s
    retry: {max_attempts: 1}
  - {id: boom, uses: test-fail, with: {message: boom}}
`, nil)
	st := failedStatus(t, err)
	each := stepOf(t, st, "each")
	if each.State != contract.StateCanceled || each.FanOut.Canceled != 3 {
		t.Fatalf("each: %+v %+v", each, each.FanOut)
	}
}

func runWithState(t *testing.T, state, pipeline string, params map[string]any) contract.StepStatus {
	t.Helper()
	h := newHarnessWithState(t, state)
	res, err := h.run(pipeline, params)
	if err != nil {
		t.Fatal(err)
	}
	return stepOf(t, *res, "each")
}

// newHarnessWithState is newHarness over a given state directory, so that
// runs share a step cache.
func newHarnessWithState(t *testing.T, state string) *harness {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	workflows.Register(env)
	if err := activities.Register(env, activities.Config{PipelinesDir: t.TempDir(), StateDir: state}); err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, env: env}
}

// The templates of a run: command are resolved, an item's too.
func TestRunCommandTemplatesAreResolved(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(`
name: cmds
params:
  x: {type: string, default: hello}
steps:
  - {id: one, run: 'echo "::output got=${{ params.x }}-$GREETING"', env: {GREETING: "${{ upper(params.x) }}"}}
  - id: each
    needs: [one]
    for_each: [1, 2]
    run: ['sh', '-c', 'echo "::output v=${{ item * 10 }}-${{ steps.one.outputs.got }}"']
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := stepOf(t, *res, "one").Outputs["got"]; got != "hello-HELLO" {
		t.Fatalf("one: %v", got)
	}
	if got := stepOf(t, *res, "each").Outputs["v"]; !reflect.DeepEqual(got, []any{"10-hello-HELLO", "20-hello-HELLO"}) {
		t.Fatalf("each: %v", got)
	}
}

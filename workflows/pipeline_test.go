package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/gauntlet-ml/gauntlet/activities"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/steps"
	"github.com/gauntlet-ml/gauntlet/workflows"
)

// Test step types, registered into the real catalog so that the real
// resolver, validator and activity adapter are exercised.
var (
	flakyCalls   sync.Map // key -> *int32
	blockStarted sync.Map // with.signal -> chan closed when the step starts
	sideEffects  atomic.Int64
)

// resetFlaky forgets earlier attempts, so that -count=N repeats a test
// rather than continue the previous run's attempt count.
func resetFlaky(t *testing.T) {
	t.Helper()
	flakyCalls.Clear()
}

func init() {
	steps.Register(steps.Type{
		Name: "test-flaky", Kind: steps.Activity,
		Inputs:  []steps.InputSpec{{Name: "key", Required: true}, {Name: "succeed_on", Required: true}},
		Outputs: []string{"attempts"},
		Run: func(_ context.Context, _ steps.Env, in steps.Input) (map[string]any, error) {
			v, _ := flakyCalls.LoadOrStore(in.With["key"], new(int32))
			n := atomic.AddInt32(v.(*int32), 1)
			if float64(n) < in.With["succeed_on"].(float64) {
				return nil, fmt.Errorf("transient failure %d", n)
			}
			return map[string]any{"attempts": float64(n)}, nil
		},
	})
	steps.Register(steps.Type{
		Name: "test-fail", Kind: steps.Activity,
		Inputs: []steps.InputSpec{{Name: "message"}},
		Run: func(_ context.Context, _ steps.Env, in steps.Input) (map[string]any, error) {
			return nil, steps.Permanentf("BadData", "%v", in.With["message"])
		},
	})
	steps.Register(steps.Type{
		Name: "test-block", Kind: steps.Activity,
		Inputs:  []steps.InputSpec{{Name: "signal"}},
		Outputs: []string{},
		Run: func(ctx context.Context, env steps.Env, in steps.Input) (map[string]any, error) {
			if ch, ok := blockStarted.LoadAndDelete(in.With["signal"]); ok {
				close(ch.(chan struct{}))
			}
			for {
				env.Progress("waiting")
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(50 * time.Millisecond):
				}
			}
		},
	})
	steps.Register(steps.Type{
		Name: "test-count", Kind: steps.Activity,
		Inputs:  []steps.InputSpec{{Name: "value"}},
		Outputs: []string{"value", "n"},
		Run: func(_ context.Context, _ steps.Env, in steps.Input) (map[string]any, error) {
			n := sideEffects.Add(1)
			return map[string]any{"value": in.With["value"], "n": float64(n)}, nil
		},
	})
}

type harness struct {
	t     *testing.T
	env   *testsuite.TestWorkflowEnvironment
	input contract.PipelineInput
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	workflows.Register(env)
	if err := activities.Register(env, activities.Config{PipelinesDir: t.TempDir(), StateDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, env: env}
}

func (h *harness) run(yaml string, params map[string]any) (*contract.Result, error) {
	h.t.Helper()
	h.input = contract.PipelineInput{YAML: yaml, Params: params}
	return h.start()
}

func (h *harness) start() (*contract.Result, error) {
	h.t.Helper()
	h.env.ExecuteWorkflow(contract.PipelineName, h.input)
	if !h.env.IsWorkflowCompleted() {
		h.t.Fatal("workflow did not complete")
	}
	err := h.env.GetWorkflowError()
	if err != nil {
		return nil, err
	}
	var res contract.Result
	if err := h.env.GetWorkflowResult(&res); err != nil {
		h.t.Fatal(err)
	}
	return &res, nil
}

// failedStatus extracts the run record carried by a failed run's error.
func failedStatus(t *testing.T, err error) contract.Status {
	t.Helper()
	var app *temporal.ApplicationError
	if !errors.As(err, &app) {
		t.Fatalf("want an application error, got %v", err)
	}
	var st contract.Status
	if err := app.Details(&st); err != nil {
		t.Fatalf("failure carries no status: %v", err)
	}
	return st
}

func stepOf(t *testing.T, st contract.Status, id string) contract.StepStatus {
	t.Helper()
	for _, s := range st.Steps {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no step %s in %+v", id, st.Steps)
	return contract.StepStatus{}
}

func TestChainPassesOutputsDownstream(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(`
name: chain
params:
  greeting: {type: string, default: hello}
  n: {type: integer, default: 3}
steps:
  - id: a
    uses: echo
    with: {text: "${{ params.greeting }}", n: "${{ params.n }}"}
  - id: b
    uses: echo
    needs: [a]
    with: {text: "${{ steps.a.outputs.text }} world", double: "${{ steps.a.outputs.n * 2 }}"}
  - id: c
    uses: echo
    needs: [b]
    with: {got: "${{ steps.b.outputs.text }}", double: "${{ steps.b.outputs.double }}", run: "${{ run.pipeline }}"}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.State != contract.RunSucceeded {
		t.Fatalf("state %s", res.State)
	}
	c := stepOf(t, *res, "c")
	if c.Outputs["got"] != "hello world" || c.Outputs["double"] != float64(6) || c.Outputs["run"] != "chain" {
		t.Fatalf("outputs of c: %v", c.Outputs)
	}
	if res.SpecHash == "" || !strings.HasPrefix(res.SpecHash, "sha256:") {
		t.Fatalf("spec hash %q", res.SpecHash)
	}
}

func TestDiamondRunsJoinAfterBothBranches(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(`
name: diamond
steps:
  - {id: top, uses: echo, with: {v: 1}}
  - {id: left, uses: echo, needs: [top], with: {v: "${{ steps.top.outputs.v + 1 }}"}}
  - {id: right, uses: echo, needs: [top], with: {v: "${{ steps.top.outputs.v + 10 }}"}}
  - {id: join, uses: echo, needs: [left, right], with: {sum: "${{ steps.left.outputs.v + steps.right.outputs.v }}"}}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	join := stepOf(t, *res, "join")
	if join.Outputs["sum"] != float64(13) {
		t.Fatalf("sum %v", join.Outputs["sum"])
	}
	for _, id := range []string{"left", "right"} {
		if !stepOf(t, *res, id).EndedAt.Before(*join.StartedAt) && !stepOf(t, *res, id).EndedAt.Equal(*join.StartedAt) {
			t.Fatalf("%s ended after join started", id)
		}
	}
}

func TestFanOutFiftyWide(t *testing.T) {
	var b strings.Builder
	b.WriteString("name: fan\nmax_parallel: 50\nsteps:\n  - {id: src, uses: echo, with: {v: 1}}\n")
	var needs []string
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&b, "  - {id: w%d, uses: echo, needs: [src], with: {i: %d}}\n", i, i)
		needs = append(needs, fmt.Sprintf("w%d", i))
	}
	fmt.Fprintf(&b, "  - {id: sink, uses: echo, needs: [%s], with: {last: \"${{ steps.w49.outputs.i }}\"}}\n", strings.Join(needs, ", "))
	h := newHarness(t)
	res, err := h.run(b.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 52 {
		t.Fatalf("%d steps", len(res.Steps))
	}
	for _, s := range res.Steps {
		if s.State != contract.StateSucceeded {
			t.Fatalf("step %s %s", s.ID, s.State)
		}
	}
	if got := stepOf(t, *res, "sink").Outputs["last"]; got != float64(49) {
		t.Fatalf("sink saw %v", got)
	}
}

func TestConditionSkipsStepAndItsDependents(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(`
name: cond
params:
  deploy: {type: boolean, default: false}
steps:
  - {id: build, uses: echo, with: {ok: true}}
  - {id: deploy, uses: echo, needs: [build], if: "params.deploy && steps.build.outputs.ok"}
  - {id: announce, uses: echo, needs: [deploy]}
  - {id: always, uses: echo, needs: [build], if: "${{ steps.build.status == 'succeeded' }}"}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := stepOf(t, *res, "deploy"); s.State != contract.StateSkipped || !strings.Contains(s.Reason, "condition is false") {
		t.Fatalf("deploy: %+v", s)
	}
	if s := stepOf(t, *res, "announce"); s.State != contract.StateSkipped {
		t.Fatalf("announce: %+v", s)
	}
	if s := stepOf(t, *res, "always"); s.State != contract.StateSucceeded {
		t.Fatalf("always: %+v", s)
	}
}

func TestRetrySucceedsOnThirdAttempt(t *testing.T) {
	resetFlaky(t)
	h := newHarness(t)
	key := t.Name()
	res, err := h.run(`
name: retry
steps:
  - id: flaky
    uses: test-flaky
    retry: {max_attempts: 5, initial_interval: 1s, backoff: 2}
    with: {key: "`+key+`", succeed_on: 3}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := stepOf(t, *res, "flaky")
	if s.Outputs["attempts"] != float64(3) || s.Attempt != 3 {
		t.Fatalf("flaky: %+v", s)
	}
}

func TestRetryGivesUpAfterMaxAttempts(t *testing.T) {
	resetFlaky(t)
	h := newHarness(t)
	_, err := h.run(`
name: retry-out
steps:
  - id: flaky
    uses: test-flaky
    retry: {max_attempts: 2, initial_interval: 1s}
    with: {key: "`+t.Name()+`", succeed_on: 5}
`, nil)
	st := failedStatus(t, err)
	s := stepOf(t, st, "flaky")
	if s.State != contract.StateFailed || s.Attempt != 2 || !strings.Contains(s.Error, "transient failure 2") {
		t.Fatalf("flaky: %+v", s)
	}
}

func TestNonRetryableFailureFailsRunOnce(t *testing.T) {
	h := newHarness(t)
	_, err := h.run(`
name: bad
steps:
  - {id: load, uses: test-fail, retry: {max_attempts: 5}, with: {message: "column age: text in a numeric column"}}
  - {id: after, uses: echo, needs: [load]}
finally:
  - {id: cleanup, uses: echo, with: {load: "${{ steps.load.status }}"}}
`, nil)
	st := failedStatus(t, err)
	if st.State != contract.RunFailed || !strings.Contains(st.Error, "text in a numeric column") {
		t.Fatalf("run: %s %q", st.State, st.Error)
	}
	load := stepOf(t, st, "load")
	if load.Attempt != 1 {
		t.Fatalf("a non-retryable failure was retried: attempt %d", load.Attempt)
	}
	if s := stepOf(t, st, "after"); s.State != contract.StateSkipped {
		t.Fatalf("after: %+v", s)
	}
	if s := stepOf(t, st, "cleanup"); s.State != contract.StateSucceeded || s.Outputs["load"] != "failed" {
		t.Fatalf("finally step: %+v", s)
	}
}

func TestNonRetryableListStopsRetries(t *testing.T) {
	resetFlaky(t)
	h := newHarness(t)
	_, err := h.run(`
name: listed
steps:
  - id: flaky
    uses: test-flaky
    retry: {max_attempts: 5, initial_interval: 1s, non_retryable: [StepError]}
    with: {key: "`+t.Name()+`", succeed_on: 3}
`, nil)
	if s := stepOf(t, failedStatus(t, err), "flaky"); s.Attempt != 1 {
		t.Fatalf("retried despite non_retryable: %+v", s)
	}
}

func TestContinueOnErrorLetsDownstreamRun(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(`
name: cont
steps:
  - {id: optional, uses: test-fail, continue_on_error: true, with: {message: nope}}
  - {id: next, uses: echo, needs: [optional], with: {saw: "${{ steps.optional.status }}"}}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := stepOf(t, *res, "optional"); s.State != contract.StateFailed || s.Error == "" {
		t.Fatalf("optional: %+v", s)
	}
	if s := stepOf(t, *res, "next"); s.Outputs["saw"] != "failed" {
		t.Fatalf("next: %+v", s)
	}
}

func TestStepTimeoutFailsStep(t *testing.T) {
	h := newHarness(t)
	_, err := h.run(`
name: slow
steps:
  - {id: slow, uses: test-block, timeout: 1s, retry: {max_attempts: 1}}
finally:
  - {id: cleanup, uses: echo}
`, nil)
	st := failedStatus(t, err)
	s := stepOf(t, st, "slow")
	if s.State != contract.StateFailed || !strings.Contains(s.Error, "timed out") {
		t.Fatalf("slow: %+v", s)
	}
	if stepOf(t, st, "cleanup").State != contract.StateSucceeded {
		t.Fatal("finally did not run after a timeout")
	}
}

func TestFailFastCancelsRunningSiblings(t *testing.T) {
	h := newHarness(t)
	_, err := h.run(`
name: ff
fail_fast: true
steps:
  - {id: long, uses: test-block, heartbeat: 5s, retry: {max_attempts: 1}}
  - {id: boom, uses: test-fail, with: {message: boom}}
  - {id: later, uses: echo, needs: [long]}
`, nil)
	st := failedStatus(t, err)
	if s := stepOf(t, st, "long"); s.State != contract.StateCanceled {
		t.Fatalf("long: %+v", s)
	}
	if s := stepOf(t, st, "later"); s.State != contract.StateSkipped {
		t.Fatalf("later: %+v", s)
	}
}

func TestWithoutFailFastIndependentBranchesFinish(t *testing.T) {
	h := newHarness(t)
	_, err := h.run(`
name: noff
fail_fast: false
steps:
  - {id: boom, uses: test-fail, with: {message: boom}}
  - {id: a, uses: echo}
  - {id: b, uses: echo, needs: [a]}
  - {id: c, uses: echo, needs: [boom]}
`, nil)
	st := failedStatus(t, err)
	if stepOf(t, st, "b").State != contract.StateSucceeded {
		t.Fatal("independent branch was not allowed to finish")
	}
	if stepOf(t, st, "c").State != contract.StateSkipped {
		t.Fatal("dependent of the failure ran")
	}
}

func TestFinallyRunsOnCancel(t *testing.T) {
	h := newHarness(t)
	started := make(chan struct{})
	blockStarted.Store(t.Name(), started)
	// The mock clock stands still while an activity runs, so the cancel
	// comes from outside once the step is known to be running.
	go func() {
		<-started
		h.env.CancelWorkflow()
	}()
	_, err := h.run(`
name: cancel
steps:
  - {id: long, uses: test-block, heartbeat: 5s, retry: {max_attempts: 1}, with: {signal: "`+t.Name()+`"}}
finally:
  - {id: teardown, uses: test-count, with: {value: "${{ steps.long.status }}"}}
`, nil)
	var canceled *temporal.CanceledError
	if !errors.As(err, &canceled) {
		t.Fatalf("want canceled, got %v", err)
	}
	var st contract.Status
	if err := canceled.Details(&st); err != nil {
		t.Fatal(err)
	}
	if st.State != contract.RunCanceled {
		t.Fatalf("state %s", st.State)
	}
	td := stepOf(t, st, "teardown")
	if td.State != contract.StateSucceeded || td.Outputs["value"] != "canceled" {
		t.Fatalf("teardown: %+v", td)
	}
}

func TestCacheHitAndMiss(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	state := t.TempDir()
	pipeline := `
name: cached
params:
  v: {type: string, default: one}
steps:
  - {id: work, uses: test-count, cache: true, with: {value: "${{ params.v }}"}}
`
	runOnce := func(params map[string]any, noCache bool) contract.StepStatus {
		env := suite.NewTestWorkflowEnvironment()
		workflows.Register(env)
		if err := activities.Register(env, activities.Config{PipelinesDir: t.TempDir(), StateDir: state}); err != nil {
			t.Fatal(err)
		}
		env.ExecuteWorkflow(contract.PipelineName, contract.PipelineInput{YAML: pipeline, Params: params, NoCache: noCache})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		var res contract.Result
		if err := env.GetWorkflowResult(&res); err != nil {
			t.Fatal(err)
		}
		return stepOf(t, res, "work")
	}
	first := runOnce(nil, false)
	second := runOnce(nil, false)
	if first.Cached || !second.Cached || first.CacheKey != second.CacheKey || second.Outputs["n"] != first.Outputs["n"] {
		t.Fatalf("want a miss then a hit with the same key:\n%+v\n%+v", first, second)
	}
	other := runOnce(map[string]any{"v": "two"}, false)
	if other.Cached || other.CacheKey == first.CacheKey {
		t.Fatalf("changed input hit the cache: %+v", other)
	}
	forced := runOnce(nil, true)
	if forced.Cached || forced.Outputs["n"] == first.Outputs["n"] {
		t.Fatalf("--no-cache still hit: %+v", forced)
	}
}

func TestInvalidPipelineFailsWithPositions(t *testing.T) {
	h := newHarness(t)
	_, err := h.run(`
name: broken
steps:
  - {id: a, uses: echo, neds: [b]}
`, nil)
	if err == nil || !strings.Contains(err.Error(), "inline.yaml:4") || !strings.Contains(err.Error(), `did you mean "needs"`) {
		t.Fatalf("want a positioned diagnostic, got %v", err)
	}
}

func TestMissingRequiredParamIsReported(t *testing.T) {
	h := newHarness(t)
	_, err := h.run(`
name: needs-param
params:
  data: {type: string, required: true}
steps:
  - {id: a, uses: echo, with: {d: "${{ params.data }}"}}
`, nil)
	if err == nil || !strings.Contains(err.Error(), "data") {
		t.Fatalf("want a missing-param error, got %v", err)
	}
}

// The status query after the run has ended (mid-run queries are covered by
// the integration test on a real server, where the clock is real).
func TestStatusQueryAfterRun(t *testing.T) {
	h := newHarness(t)
	_, _ = h.run(`
name: q
steps:
  - {id: first, uses: echo, with: {x: 1}}
  - {id: bad, uses: test-fail, needs: [first], with: {message: broken}}
`, nil)
	v, err := h.env.QueryWorkflow(contract.StatusQuery)
	if err != nil {
		t.Fatal(err)
	}
	var st contract.Status
	if err := v.Get(&st); err != nil {
		t.Fatal(err)
	}
	if st.State != contract.RunFailed || st.Pipeline != "q" {
		t.Fatalf("status: %+v", st)
	}
	first := stepOf(t, st, "first")
	if first.State != contract.StateSucceeded || first.Outputs["x"] != float64(1) || first.StartedAt == nil || first.EndedAt == nil {
		t.Fatalf("first: %+v", first)
	}
	if bad := stepOf(t, st, "bad"); bad.State != contract.StateFailed || bad.Error != "broken" {
		t.Fatalf("bad: %+v", bad)
	}
}

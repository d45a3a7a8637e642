package workflows_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/recovery"
)

// recoverable fails at its third step the first time (flaky succeeds on
// its second attempt, and retries are off), after a fan-out.
const recoverable = `
name: recoverable
params:
  key: {type: string, required: true}
  note: {type: string, default: first}
defaults:
  retry: {max_attempts: 1}
steps:
  - {id: count, uses: test-count, with: {value: "${{ params.key }}"}}
  - id: fan
    uses: test-count
    needs: [count]
    for_each: [a, b]
    with: {value: "${{ item }}-${{ steps.count.outputs.n }}"}
  - {id: flaky, uses: test-flaky, needs: [fan], with: {key: "${{ params.key }}", succeed_on: 2}}
  - {id: after, uses: echo, needs: [flaky], with: {fan: "${{ steps.fan.outputs.value }}", note: "${{ params.note }}"}}
finally:
  - {id: report, uses: echo, with: {flaky: "${{ steps.flaky.status }}"}}
`

// firstRun runs recoverable until it fails and returns what a retry reads
// of it: its definition (by query) and its record.
func firstRun(t *testing.T) (contract.Resolved, contract.Status) {
	t.Helper()
	resetFlaky(t)
	h := newHarness(t)
	_, err := h.run(recoverable, map[string]any{"key": t.Name()})
	old := failedStatus(t, err)
	if stepOf(t, old, "flaky").State != contract.StateFailed {
		t.Fatalf("the first run should fail at flaky: %+v", old)
	}
	v, err := h.env.QueryWorkflow(contract.DefinitionQuery)
	if err != nil {
		t.Fatal(err)
	}
	var def contract.Resolved
	if err := v.Get(&def); err != nil {
		t.Fatal(err)
	}
	old.RunID = "recoverable-1"
	return def, old
}

// retry runs a recovered run whose RecoverRun activity answers with plan
// (the worker's activity reads the old run through a Temporal client,
// which the test environment has not).
func retry(t *testing.T, in contract.PipelineInput, answer func(contract.RecoverInput) (contract.Recovery, error)) (*contract.Result, error) {
	t.Helper()
	h := newHarness(t)
	h.env.OnActivity(contract.RecoverName, mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.RecoverInput) (contract.Recovery, error) {
		return answer(in)
	})
	h.input = in
	return h.start()
}

func planned(t *testing.T, def contract.Resolved, old contract.Status) func(contract.RecoverInput) (contract.Recovery, error) {
	return func(in contract.RecoverInput) (contract.Recovery, error) {
		if in.RunID != old.RunID {
			t.Errorf("recovering %q, want %q", in.RunID, old.RunID)
		}
		p, err := recovery.Make(def, old, in.From, in.Params)
		if err != nil {
			return contract.Recovery{}, temporal.NewNonRetryableApplicationError(err.Error(), "RecoveryRefused", nil)
		}
		def.Params = p.Params
		return contract.Recovery{RunID: old.RunID, Resolved: def, Reused: p.Reused, NotNeeded: p.NotNeeded}, nil
	}
}

func TestRecoveredRunReusesSucceededStepsAndRunsTheRest(t *testing.T) {
	def, old := firstRun(t)
	before := sideEffects.Load()
	res, err := retry(t, contract.PipelineInput{RetryOf: old.RunID, Params: map[string]any{"note": "second"}}, planned(t, def, old))
	if err != nil {
		t.Fatal(err)
	}
	if res.State != contract.RunSucceeded || res.RetryOf != old.RunID {
		t.Fatalf("run: %s retry_of %q", res.State, res.RetryOf)
	}
	// count and both items of fan were taken over: test-count never ran.
	if n := sideEffects.Load() - before; n != 0 {
		t.Fatalf("%d reused steps ran again", n)
	}
	for _, id := range []string{"count", "fan"} {
		s := stepOf(t, *res, id)
		if s.State != contract.StateSucceeded || !strings.Contains(s.Reason, "taken over from run recoverable-1") {
			t.Fatalf("%s: %+v", id, s)
		}
	}
	if fan := stepOf(t, *res, "fan"); fan.FanOut == nil || fan.FanOut.Items != 2 || len(fan.Items) != 2 {
		t.Fatalf("a reused fan-out keeps its items: %+v", fan)
	}
	flaky := stepOf(t, *res, "flaky")
	if flaky.State != contract.StateSucceeded || flaky.Outputs["attempts"] != float64(2) {
		t.Fatalf("flaky ran again: %+v", flaky)
	}
	after := stepOf(t, *res, "after")
	oldFan := stepOf(t, old, "fan").Outputs["value"].([]any)
	got := after.Outputs["fan"].([]any)
	if got[0] != oldFan[0] || got[1] != oldFan[1] || after.Outputs["note"] != "second" {
		t.Fatalf("after read %v, the first run's fan-out gave %v", after.Outputs, oldFan)
	}
	if res.Params["note"] != "second" || res.Params["key"] != t.Name() {
		t.Fatalf("params %v", res.Params)
	}
}

func TestRecoveredRunFromAStepRunsItAgain(t *testing.T) {
	def, old := firstRun(t)
	before := sideEffects.Load()
	res, err := retry(t, contract.PipelineInput{RetryOf: old.RunID, RetryFrom: "fan"}, planned(t, def, old))
	if err != nil {
		t.Fatal(err)
	}
	if n := sideEffects.Load() - before; n != 2 {
		t.Fatalf("--from fan ran %d test-count activities, want its two items", n)
	}
	if s := stepOf(t, *res, "count"); !strings.Contains(s.Reason, "taken over") {
		t.Fatalf("count: %+v", s)
	}
}

func TestRefusedRecoveryFailsTheRunBeforeAnyStep(t *testing.T) {
	def, old := firstRun(t)
	before := sideEffects.Load()
	_, err := retry(t, contract.PipelineInput{RetryOf: old.RunID, Params: map[string]any{"key": "other"}}, planned(t, def, old))
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !strings.Contains(err.Error(), "param key is read by count") {
		t.Fatalf("got %v", err)
	}
	if n := sideEffects.Load() - before; n != 0 {
		t.Fatalf("%d steps ran", n)
	}
	_, err = retry(t, contract.PipelineInput{RetryOf: old.RunID, Pipeline: "recoverable"}, planned(t, def, old))
	if err == nil || !strings.Contains(err.Error(), "give only retry_of") {
		t.Fatalf("pipeline and retry_of: %v", err)
	}
}

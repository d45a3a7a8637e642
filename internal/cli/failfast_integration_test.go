package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/tclient"
)

// failFastPipeline runs four heartbeating siblings and a fifth step that
// fails once all four are running, so that fail_fast cancels four
// activities in one workflow task: the case whose command order used to
// follow Go's random map order.
const failFastPipeline = `name: failfast
params:
  marks: {type: string, required: true}
fail_fast: true
defaults:
  heartbeat: 2s
  retry: {max_attempts: 1}
steps:
  - {id: a, run: 'touch "$GAUNTLET_INPUT_MARKS/a" && exec sleep 300', with: {marks: "${{ params.marks }}"}}
  - {id: b, run: 'touch "$GAUNTLET_INPUT_MARKS/b" && exec sleep 300', with: {marks: "${{ params.marks }}"}}
  - {id: c, run: 'touch "$GAUNTLET_INPUT_MARKS/c" && exec sleep 300', with: {marks: "${{ params.marks }}"}}
  - {id: d, run: 'touch "$GAUNTLET_INPUT_MARKS/d" && exec sleep 300', with: {marks: "${{ params.marks }}"}}
  - id: boom
    run: 'while [ "$(ls "$GAUNTLET_INPUT_MARKS" | wc -l)" -lt 4 ]; do sleep 0.1; done; echo "four siblings running, failing" >&2; exit 3'
    with: {marks: "${{ params.marks }}"}
finally:
  - {id: report, uses: echo, with: {a: "${{ steps.a.status }}", boom: "${{ steps.boom.status }}"}}
`

// TestFailFastCancelsSiblingsReplayably fails one step of five on a real
// server and checks that its four running siblings were cancelled (each
// heartbeats, so the cancellation reaches it) and that the history replays;
// with GAUNTLET_RECORD_HISTORIES=1 it refreshes the committed history that
// workflows' replay test replays many times.
func TestFailFastCancelsSiblingsReplayably(t *testing.T) {
	pipes := t.TempDir()
	if err := os.WriteFile(filepath.Join(pipes, "failfast.yaml"), []byte(failFastPipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	frontend := startEmbedded(t, pipes)
	env := map[string]string{"TEMPORAL_ADDRESS": frontend, "GAUNTLET_PIPELINES": pipes, "GAUNTLET_USER": "ci"}
	marks := t.TempDir()
	const id = "failfast-1"
	code, out, stderr := runCLI(t, env, "run", "failfast", "-p", "marks="+marks, "--id", id, "--wait", "--output", "json")
	if code != ExitFailed {
		t.Fatalf("run --wait exit %d, want %d (failed): %s %s", code, ExitFailed, out, stderr)
	}
	c, err := tclient.Dial(context.Background(), tclient.Options{Address: frontend, Namespace: "default"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	st, err := queryStatus(context.Background(), c, id)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": contract.StateCanceled, "b": contract.StateCanceled, "c": contract.StateCanceled,
		"d": contract.StateCanceled, "boom": contract.StateFailed, "report": contract.StateSucceeded}
	for _, s := range st.Steps {
		if s.State != want[s.ID] {
			t.Errorf("step %s is %s, want %s (%s %s)", s.ID, s.State, want[s.ID], s.Error, s.Reason)
		}
	}

	requested, canceled := cancellations(t, c, id)
	if len(requested) != 4 || canceled != 4 {
		t.Fatalf("history has %d cancel requests (%v) and %d cancelled activities, want 4 and 4", len(requested), requested, canceled)
	}
	recordHistory(t, c, id, "pipeline_failfast.json")
}

// cancellations reads from a run's history which activities a workflow
// task asked to cancel (by scheduled event id, in command order) and how
// many ended cancelled.
func cancellations(t *testing.T, c client.Client, id string) (requested []string, canceled int) {
	t.Helper()
	iter := c.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED:
			requested = append(requested, fmt.Sprint(ev.GetActivityTaskCancelRequestedEventAttributes().GetScheduledEventId()))
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
			canceled++
		}
	}
	return requested, canceled
}

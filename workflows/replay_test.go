package workflows_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/workflows"
)

// TestReplayRecordedHistories replays histories recorded from real runs
// (see internal/cli's integration and demo tests,
// GAUNTLET_RECORD_HISTORIES=1). A change to workflow code that would break
// runs already in flight fails here, before it reaches a worker.
//
// A file named NAME@WORKFLOW_ID.json is replayed under that workflow id:
// workflows that derive ids from their own (a monitor, a retraining run)
// produce other commands under the replayer's default id.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "histories", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no recorded histories in testdata/histories")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			// Commands whose order a map could decide (several cancels
			// in one workflow task) fail a replay only sometimes: such
			// histories are replayed until a random order would have
			// shown itself.
			times := 1
			if n, err := maxCancelsPerTask(f); err != nil {
				t.Fatal(err)
			} else if n > 1 {
				times = replaysOfUnorderable
			}
			for i := range times {
				// A replay must not count a run, an approval or a lost
				// node again: the worker that lived them did.
				rec := &countingRecorder{}
				if err := replayFile(f, rec); err != nil {
					t.Fatalf("%s no longer replays (replay %d of %d): %v", f, i+1, times, err)
				}
				if n := rec.total(); n != 0 {
					t.Fatalf("replaying %s reported %d metric records", f, n)
				}
			}
		})
	}
}

// replaysOfUnorderable is how often a history with several cancels in one
// workflow task is replayed: with four, a random order matches the
// recorded one once in 24 replays, so 50 passing replays leave a chance of
// about 1 in 10^69 that the order was not fixed.
const replaysOfUnorderable = 50

// maxCancelsPerTask counts the activity cancel requests the workflow tasks
// of a history issued together, and returns the largest count.
func maxCancelsPerTask(path string) (int, error) {
	hist, err := loadHistory(path)
	if err != nil {
		return 0, err
	}
	best, run := 0, 0
	for _, ev := range hist.GetEvents() {
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED:
			run++
			best = max(best, run)
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			run = 0
		}
	}
	return best, nil
}

func loadHistory(path string) (*historypb.History, error) {
	r, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return client.HistoryFromJSON(r, client.HistoryJSONOptions{})
}

// TestFailFastHistoryIsReplayedOften keeps the history that proves
// fail-fast cancellation deterministic in the replay set.
func TestFailFastHistoryIsReplayedOften(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "histories", "pipeline_failfast*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no fail-fast history in testdata/histories (internal/cli TestFailFastCancelsSiblingsReplayably records it)")
	}
	for _, f := range files {
		n, err := maxCancelsPerTask(f)
		if err != nil {
			t.Fatal(err)
		}
		if n < 4 {
			t.Errorf("%s cancels at most %d activities in one workflow task, want at least 4", f, n)
		}
	}
}

func replayFile(path string, rec contract.Recorder) error {
	hist, err := loadHistory(path)
	if err != nil {
		return err
	}
	var opts worker.ReplayWorkflowHistoryOptions
	if _, id, ok := strings.Cut(strings.TrimSuffix(filepath.Base(path), ".json"), "@"); ok {
		opts.OriginalExecution = workflow.Execution{ID: id}
	}
	replayer, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{
		Interceptors: []interceptor.WorkerInterceptor{workflows.RecorderInterceptor(rec)},
	})
	if err != nil {
		return err
	}
	workflows.Register(replayer)
	return replayer.ReplayWorkflowHistoryWithOptions(nil, hist, opts)
}

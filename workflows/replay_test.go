package workflows_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

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
			// A replay must not count a run, an approval or a lost node
			// again: the worker that lived them did.
			rec := &countingRecorder{}
			if err := replayFile(f, rec); err != nil {
				t.Fatalf("%s no longer replays: %v", f, err)
			}
			if n := rec.total(); n != 0 {
				t.Fatalf("replaying %s reported %d metric records", f, n)
			}
		})
	}
}

func replayFile(path string, rec workflows.Recorder) error {
	r, err := os.Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	hist, err := client.HistoryFromJSON(r, client.HistoryJSONOptions{})
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

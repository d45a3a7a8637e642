package workflows_test

import (
	"path/filepath"
	"testing"
)

// TestFanOutHistoriesAreKept keeps the histories recorded by internal/cli's
// TestFanOutAndRetryOnARealServer in the replay set: a fan-out that
// cancels four items in one workflow task (replayed many times, since only
// a fixed order replays it every time), a recovered run, and a fan-out in
// chunk workflows with one of its chunks.
func TestFanOutHistoriesAreKept(t *testing.T) {
	for _, pattern := range []string{"pipeline_fanout_cancel@*.json", "pipeline_retry@*.json", "pipeline_chunked@*.json", "fanout_chunk@*.json"} {
		files, err := filepath.Glob(filepath.Join("testdata", "histories", pattern))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Errorf("no %s in testdata/histories (GAUNTLET_RECORD_HISTORIES=1 go test -run TestFanOutAndRetryOnARealServer ./internal/cli records it)", pattern)
		}
		for _, f := range files {
			if pattern != "pipeline_fanout_cancel@*.json" {
				continue
			}
			if n, err := maxCancelsPerTask(f); err != nil || n < 4 {
				t.Errorf("%s cancels at most %d activities in one workflow task, want at least 4 (%v)", f, n, err)
			}
		}
	}
}

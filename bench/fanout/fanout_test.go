package main

import (
	"context"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
)

// TestTenThousandItems runs 10,000 items of a no-op step through one run
// on a real (embedded) server: every item succeeds, the step's outputs
// hold one entry per item in order, and the run's own history stays small
// (its items run in chunk workflows). It logs the wall time, the events
// and the memory; bench/fanout/RESULTS.md keeps measured runs.
func TestTenThousandItems(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	res, err := measure(ctx, 10000, 200, 1)
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	report(testWriter{t}, 10000, 200, res)
	if r.Status.State != contract.RunSucceeded {
		t.Fatalf("run %s: %s", r.Status.State, r.Status.Error)
	}
	var each, count contract.StepStatus
	for _, s := range r.Status.Steps {
		switch s.ID {
		case "each":
			each = s
		case "count":
			count = s
		}
	}
	if fo := each.FanOut; fo == nil || fo.Items != 10000 || fo.Succeeded != 10000 || fo.Chunks != 20 || len(each.Items) != 10000 {
		t.Fatalf("each: %+v", each.FanOut)
	}
	if each.Items[0] != 0.0 || each.Items[9999] != 9999.0 {
		t.Fatalf("items out of order: %v %v", each.Items[0], each.Items[9999])
	}
	if count.Outputs["items"] != 10000.0 {
		t.Fatalf("count: %v", count.Outputs)
	}
	// A chunk costs the run about ten events (its start, its end and the
	// workflow tasks they wake); 10,000 items in its own history would
	// have cost it more than 30,000.
	if r.ParentEvents > 20*int64(r.Chunks)+100 {
		t.Fatalf("the run's history has %d events", r.ParentEvents)
	}
	// Each chunk stays far below Temporal's 51,200 events per history.
	if per := r.ChunkEvents / int64(r.Chunks); per > 10000 {
		t.Fatalf("a chunk's history has %d events on average", per)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

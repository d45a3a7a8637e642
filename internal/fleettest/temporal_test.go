package fleettest

import (
	"context"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// Every index type a namespace can hold, so that the readiness probe is
// proved to upsert each kind.
var probeAttrs = map[string]enumspb.IndexedValueType{
	"ProbeKeyword":     enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	"ProbeText":        enumspb.INDEXED_VALUE_TYPE_TEXT,
	"ProbeInt":         enumspb.INDEXED_VALUE_TYPE_INT,
	"ProbeDouble":      enumspb.INDEXED_VALUE_TYPE_DOUBLE,
	"ProbeBool":        enumspb.INDEXED_VALUE_TYPE_BOOL,
	"ProbeDatetime":    enumspb.INDEXED_VALUE_TYPE_DATETIME,
	"ProbeKeywordList": enumspb.INDEXED_VALUE_TYPE_KEYWORD_LIST,
}

func TestTemporalOnPostgresAcrossHosts(t *testing.T) {
	f := New(t)
	db, server, app := f.AddHost("db"), f.AddHost("temporal"), f.AddHost("app")
	pg := StartPostgres(t, db)
	tp := StartTemporal(t, server, pg, TemporalOptions{Namespace: "fleet", SearchAttributes: probeAttrs})
	t.Logf("Temporal: schema %s, frontend serving %s after start, namespace ready %s later",
		tp.Schema.Round(time.Millisecond), tp.Startup.Round(time.Millisecond), tp.Ready.Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The namespace lives in PostgreSQL on the other host.
	names, err := pg.Query(ctx, app, "temporal", "SELECT name FROM namespaces ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains("\n"+names+"\n", "\nfleet\n") {
		t.Fatalf("namespaces in PostgreSQL: %q; want fleet", names)
	}

	// A worker on a third host runs workflows that upsert every attribute.
	if err := tp.WaitReady(ctx, app, "fleet", probeAttrs); err != nil {
		t.Fatalf("ready from app: %v", err)
	}

	// The server shuts down cleanly on SIGTERM.
	if err := tp.Proc.Stop(time.Minute); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if strings.Contains(tp.Proc.Output(), pg.Password()) {
		t.Fatal("the server log holds the database password")
	}
}

// TestProbeReportsRejectedUpsert shows the probe failing the way a run
// does on a namespace that lacks an attribute: the server fails the first
// workflow task, and the probe says why instead of waiting.
func TestProbeReportsRejectedUpsert(t *testing.T) {
	f := New(t)
	h := f.AddHost("temporal")
	pg := StartPostgres(t, h)
	tp := StartTemporal(t, h, pg, TemporalOptions{Namespace: "fleet"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Listing finds the attribute missing before any workflow runs.
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	err := tp.WaitReady(short, h, "fleet", map[string]enumspb.IndexedValueType{"Unregistered": enumspb.INDEXED_VALUE_TYPE_KEYWORD})
	cancelShort()
	if err == nil || !strings.Contains(err.Error(), "not registered: [Unregistered]") {
		t.Fatalf("WaitReady with an unregistered attribute: %v", err)
	}

	c, err := tp.Dial(ctx, h, "fleet")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := worker.New(c, "probe-rejected", worker.Options{})
	w.RegisterWorkflowWithOptions(probeWorkflow, workflow.RegisterOptions{Name: probeWorkflowName})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	err = tp.probeOnce(ctx, c, "fleet", "probe-rejected", "probe-rejected-1", []probeAttr{{"Unregistered", enumspb.INDEXED_VALUE_TYPE_KEYWORD}})
	if err == nil || !strings.Contains(err.Error(), "first workflow task failed") || !strings.Contains(err.Error(), "Unregistered") {
		t.Fatalf("probe upserting an unregistered attribute: %v; want the server's rejection naming it", err)
	}
	t.Logf("probe on a namespace without the attribute: %v", err)
}

package extstep

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
)

// fakeEnv records progress reports and replays the last one as the next
// attempt's resume details, the way the Temporal adapter does.
type fakeEnv struct {
	t         *testing.T
	dir       string
	artifacts *workspace.Session

	mu      sync.Mutex
	reports []Heartbeat
	resume  []byte
}

// newFakeEnv's store and cache live under a fresh directory.
func newFakeEnv(t *testing.T) *fakeEnv {
	ws, err := workspace.Open(context.Background(), workspace.Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s := ws.Session()
	t.Cleanup(s.Close)
	return &fakeEnv{t: t, dir: t.TempDir(), artifacts: s}
}

func (e *fakeEnv) Artifacts() *workspace.Session { return e.artifacts }

// local materialises the artifact an output names and returns its path.
func (e *fakeEnv) local(t *testing.T, ptr any) string {
	t.Helper()
	s, _ := ptr.(string)
	p, err := artifact.ParsePointer(s)
	if err != nil {
		t.Fatalf("output %v: %v", ptr, err)
	}
	path, err := e.artifacts.Materialize(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func (e *fakeEnv) Progress(details any) {
	// Round-trip through JSON, as a heartbeat does, so the test sees what
	// Temporal would store.
	data, err := json.Marshal(details)
	if err != nil {
		e.t.Errorf("progress details do not encode: %v", err)
		return
	}
	var hb Heartbeat
	if err := json.Unmarshal(data, &hb); err != nil {
		e.t.Errorf("progress details are not a Heartbeat: %v", err)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reports = append(e.reports, hb)
}

func (e *fakeEnv) Resume(v any) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.resume == nil {
		return false
	}
	return json.Unmarshal(e.resume, v) == nil
}

func (e *fakeEnv) Dir() string          { return e.dir }
func (e *fakeEnv) Logger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// nextAttempt makes the last report the resume details, as Temporal does
// when it schedules a retry.
func (e *fakeEnv) nextAttempt(t *testing.T) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.reports) == 0 {
		t.Fatal("no heartbeat to resume from")
	}
	data, err := json.Marshal(e.reports[len(e.reports)-1])
	if err != nil {
		t.Fatal(err)
	}
	e.resume = data
	e.reports = nil
}

func (e *fakeEnv) heartbeats() []Heartbeat {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Heartbeat(nil), e.reports...)
}

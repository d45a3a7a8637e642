package steps

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// testEnv is a steps.Env for tests: it records progress and can play back a
// previous attempt's last details.
type testEnv struct {
	dir, state string
	mu         sync.Mutex
	progress   []map[string]any
	resume     []byte
}

func newEnv(t *testing.T, state string) *testEnv {
	t.Helper()
	return &testEnv{dir: t.TempDir(), state: state}
}

func (e *testEnv) Progress(details any) {
	b, _ := json.Marshal(details)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.progress = append(e.progress, m)
}

func (e *testEnv) Resume(v any) bool {
	if e.resume == nil {
		return false
	}
	return json.Unmarshal(e.resume, v) == nil
}

func (e *testEnv) Dir() string          { return e.dir }
func (e *testEnv) StateDir() string     { return e.state }
func (e *testEnv) Logger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func run(t *testing.T, env Env, typ, step string, with map[string]any) (map[string]any, error) {
	t.Helper()
	ty, ok := Lookup(typ)
	if !ok {
		t.Fatalf("type %q not registered", typ)
	}
	out, err := ty.Run(context.Background(), env, Input{RunID: "run-1", Pipeline: "p", StepID: step, Uses: typ, With: with})
	if err == nil {
		// Outputs cross Temporal history as JSON: they must survive it.
		b, jerr := json.Marshal(out)
		if jerr != nil {
			t.Fatalf("%s outputs are not JSON: %v", typ, jerr)
		}
		out = nil
		if jerr := json.Unmarshal(b, &out); jerr != nil {
			t.Fatal(jerr)
		}
	}
	return out, err
}

func mustRun(t *testing.T, env Env, typ, step string, with map[string]any) map[string]any {
	t.Helper()
	out, err := run(t, env, typ, step, with)
	if err != nil {
		t.Fatalf("%s: %v", typ, err)
	}
	return out
}

func wantPermanent(t *testing.T, err error, substr ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("want an error, got none")
	}
	var se *Error
	if !errors.As(err, &se) || se.Retryable {
		t.Fatalf("want a permanent *steps.Error, got %T: %v", err, err)
	}
	for _, s := range substr {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

const biased = "builtin:credit-risk?rows=3000&seed=7&bias=0.3"

func TestTrainLogistic(t *testing.T) {
	state := t.TempDir()
	env := newEnv(t, state)
	out := mustRun(t, env, "train", "train", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes"})
	if !strings.HasPrefix(out["model"].(string), filepath.Join(state, "models")) {
		t.Errorf("model %v not under the state dir", out["model"])
	}
	t.Logf("%v", out)
	if len(env.progress) == 0 {
		t.Error("no progress reported")
	}
}

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
	store      string
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

func (e *testEnv) Dir() string      { return e.dir }
func (e *testEnv) StateDir() string { return e.state }
func (e *testEnv) Store() string {
	if e.store != "" {
		return e.store
	}
	return "file://" + filepath.Join(e.state, "artifacts")
}
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

func TestArgsAcceptStringsAndTyped(t *testing.T) {
	for _, with := range []map[string]any{
		{"f": "0.1", "l": "a, b", "b": "true", "m": `{"x": "0.5"}`, "i": "3"},
		{"f": 0.1, "l": []any{"a", "b"}, "b": true, "m": map[string]any{"x": 0.5}, "i": 3},
	} {
		in := Input{With: with}
		f, _, err := argFloat(in, "f")
		if err != nil || f != 0.1 {
			t.Errorf("%v: float %v %v", with, f, err)
		}
		l, err := argList(in, "l")
		if err != nil || strings.Join(l, "|") != "a|b" {
			t.Errorf("%v: list %q %v", with, l, err)
		}
		b, err := boolOr(in, "b", false)
		if err != nil || !b {
			t.Errorf("%v: bool %v %v", with, b, err)
		}
		m, err := argMap(in, "m")
		if err != nil {
			t.Fatal(err)
		}
		fm, err := floatMap("m", m)
		if err != nil || fm["x"] != 0.5 {
			t.Errorf("%v: map %v %v", with, fm, err)
		}
		i, err := intOr(in, "i", 0)
		if err != nil || i != 3 {
			t.Errorf("%v: int %v %v", with, i, err)
		}
	}
	_, err := intOr(Input{With: map[string]any{"epochs": "2.5"}}, "epochs", 0)
	wantPermanent(t, err, "with.epochs")
}

package steps

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
)

type runEnv struct {
	dir string
	s   *workspace.Session
}

func newRunEnv(t *testing.T) runEnv {
	dir := t.TempDir()
	ws, err := workspace.Open(context.Background(), workspace.Config{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s := ws.Session()
	t.Cleanup(s.Close)
	return runEnv{dir: dir, s: s}
}

func (runEnv) Progress(any)                    {}
func (runEnv) Resume(any) bool                 { return false }
func (e runEnv) Dir() string                   { return e.dir }
func (e runEnv) StateDir() string              { return e.dir }
func (e runEnv) Artifacts() *workspace.Session { return e.s }
func (runEnv) Logger() *slog.Logger            { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestRunTypeRunsCommand(t *testing.T) {
	rt, ok := Lookup("run")
	if !ok {
		t.Fatal("run type not registered")
	}
	in := Input{StepID: "s", With: map[string]any{"n": 3.0}, Command: &spec.Command{Shell: `echo "::output n=$GAUNTLET_INPUT_N"`}}
	out, err := rt.Run(context.Background(), newRunEnv(t), in)
	if err != nil {
		t.Fatal(err)
	}
	if out["n"] != "3" {
		t.Fatalf("outputs = %v, want n=3", out)
	}
}

func TestRunTypeKeepsContractKinds(t *testing.T) {
	rt, _ := Lookup("run")
	cases := []struct {
		cmd       *spec.Command
		kind      string
		retryable bool
	}{
		{nil, "BadInput", false},
		{&spec.Command{Shell: "exit 65"}, "BadInput", false},
		{&spec.Command{Shell: "exit 1"}, "CommandFailed", true},
		{&spec.Command{Shell: `echo '[' > "$GAUNTLET_OUTPUT_DIR/outputs.json"`}, "BadOutput", false},
	}
	for _, c := range cases {
		_, err := rt.Run(context.Background(), newRunEnv(t), Input{StepID: "s", Command: c.cmd})
		if err == nil {
			t.Fatalf("%+v: no error", c.cmd)
		}
		kind, retryable := Classify(err)
		if kind != c.kind || retryable != c.retryable {
			t.Errorf("%+v: Classify = %s %v, want %s %v (%v)", c.cmd, kind, retryable, c.kind, c.retryable, err)
		}
	}
	// Cancellation stays visible to the Temporal SDK through the wrapping.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := rt.Run(ctx, newRunEnv(t), Input{StepID: "s", Command: &spec.Command{Shell: "true"}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
}

// Package stepcli runs one registered step type without Temporal, for
// `gauntlet step TYPE --with k=v ... --out DIR`: the same Run function a
// pipeline's activity calls, with progress printed instead of heartbeated.
package stepcli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/atomicfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
	"github.com/gauntlet-ml/gauntlet/internal/steps"
)

// OutputsFile is the file Run writes the step's outputs to, in the out dir.
const OutputsFile = "outputs.json"

// Options configure RunWith.
type Options struct {
	// StateDir is the root of local state (models, caches); empty means
	// <outDir>/.state.
	StateDir string
	// Workspace is the artifact store the step reads and writes and the
	// local cache of it; nil means the store file://<StateDir>/artifacts
	// and the cache <StateDir>/cache. Give the fleet's store to hand a
	// pipeline's workers what the step produced, or to use theirs.
	Workspace *workspace.Workspace
	// RunID and StepID identify the execution to the step (model directory
	// names, webhook payloads); they default to "cli" and the type name.
	RunID, StepID string
	// Scoring is how the step runs models: the ONNX Runtime library.
	Scoring scoring.Options
	// ProgressInterval is the least time between two printed progress
	// lines; zero prints every one. Logistic regression reports each
	// iteration, which would flood a terminal.
	ProgressInterval time.Duration
}

// Run runs step type typ with the given `with:` values and writes its
// outputs to outDir/outputs.json, with state under outDir/.state.
func Run(ctx context.Context, typ string, with map[string]string, outDir string, stdout io.Writer) error {
	return RunWith(ctx, typ, with, outDir, stdout, Options{ProgressInterval: 250 * time.Millisecond})
}

// RunWith is Run with options. A step's error is returned wrapped, so
// steps.Classify still tells a permanent failure from a retryable one.
func RunWith(ctx context.Context, typ string, with map[string]string, outDir string, stdout io.Writer, o Options) error {
	t, ok := steps.Lookup(typ)
	if !ok {
		return fmt.Errorf("unknown step type %q (known: %s)", typ, strings.Join(runnable(), ", "))
	}
	if t.Kind != steps.Activity {
		return fmt.Errorf("step type %q runs only inside a pipeline workflow (it waits on people or time); runnable here: %s", typ, strings.Join(runnable(), ", "))
	}
	values, err := ParseWith(with)
	if err != nil {
		return err
	}
	if outDir == "" {
		return fmt.Errorf("step %s: no output directory", typ)
	}
	outDir, err = filepath.Abs(outDir)
	if err != nil {
		return err
	}
	state := o.StateDir
	if state == "" {
		state = filepath.Join(outDir, ".state")
	}
	if state, err = filepath.Abs(state); err != nil {
		return err
	}
	for _, d := range []string{outDir, state} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("step %s: %w", typ, err)
		}
	}
	in := steps.Input{RunID: o.RunID, StepID: o.StepID, Uses: typ, With: values}
	if in.RunID == "" {
		in.RunID = "cli"
	}
	if in.StepID == "" {
		in.StepID = typ
	}
	ws := o.Workspace
	if ws == nil {
		if ws, err = workspace.Open(ctx, workspace.Config{StateDir: state}); err != nil {
			return fmt.Errorf("step %s: %w", typ, err)
		}
	}
	session := ws.Session()
	defer session.Close()
	env := &cliEnv{out: stdout, dir: outDir, state: state, artifacts: session, scoring: o.Scoring, interval: o.ProgressInterval,
		log: slog.New(slog.NewTextHandler(stdout, nil)).With("step", typ)}
	outputs, err := t.Run(ctx, env, in)
	env.flush()
	if err != nil {
		return fmt.Errorf("step %s: %w", typ, err)
	}
	b, err := json.MarshalIndent(outputs, "", "  ")
	if err != nil {
		return fmt.Errorf("step %s: outputs are not JSON: %w", typ, err)
	}
	b = append(b, '\n')
	if err := atomicfile.Write(filepath.Join(outDir, OutputsFile), b); err != nil {
		return fmt.Errorf("step %s: %w", typ, err)
	}
	_, err = stdout.Write(b)
	return err
}

// ParseWith turns `--with k=v` strings into step inputs: values that look
// like JSON objects or arrays are decoded, everything else stays a string,
// which every step type accepts for scalars ("0.1", "true", "a,b").
func ParseWith(with map[string]string) (map[string]any, error) {
	out := make(map[string]any, len(with))
	for k, v := range with {
		s := strings.TrimSpace(v)
		if strings.HasPrefix(s, "{") || strings.HasPrefix(s, "[") {
			var x any
			if err := json.Unmarshal([]byte(s), &x); err != nil {
				return nil, fmt.Errorf("--with %s: looks like JSON but does not parse: %w", k, err)
			}
			out[k] = x
			continue
		}
		out[k] = v
	}
	return out, nil
}

func runnable() []string {
	var names []string
	for _, t := range steps.All() {
		if t.Kind == steps.Activity {
			names = append(names, t.Name)
		}
	}
	return names
}

// cliEnv prints progress; there is no earlier attempt to resume from.
type cliEnv struct {
	out        io.Writer
	dir, state string
	artifacts  *workspace.Session
	scoring    scoring.Options
	log        *slog.Logger
	interval   time.Duration

	mu      sync.Mutex
	last    time.Time
	pending string
}

func (e *cliEnv) Progress(details any) {
	line := progressLine(details)
	e.mu.Lock()
	defer e.mu.Unlock()
	if now := time.Now(); e.interval == 0 || now.Sub(e.last) >= e.interval {
		fmt.Fprintln(e.out, line)
		e.last, e.pending = now, ""
		return
	}
	e.pending = line
}

// flush prints the last progress line if the interval held it back, so the
// final state is always shown.
func (e *cliEnv) flush() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pending != "" {
		fmt.Fprintln(e.out, e.pending)
		e.pending = ""
	}
}

func (e *cliEnv) Resume(any) bool               { return false }
func (e *cliEnv) Dir() string                   { return e.dir }
func (e *cliEnv) StateDir() string              { return e.state }
func (e *cliEnv) Artifacts() *workspace.Session { return e.artifacts }
func (e *cliEnv) Logger() *slog.Logger          { return e.log }
func (e *cliEnv) Scoring() scoring.Options      { return e.scoring }

var _ steps.ModelHost = (*cliEnv)(nil)

// progressLine renders details as "progress epoch=3/20 loss=0.41": an
// epoch/epochs pair is joined, other keys follow in name order.
func progressLine(details any) string {
	var m map[string]any
	b, err := json.Marshal(details)
	if err != nil || json.Unmarshal(b, &m) != nil {
		return fmt.Sprintf("progress %v", details)
	}
	parts := []string{"progress"}
	if ep, ok := m["epoch"]; ok {
		if n, ok := m["epochs"]; ok {
			parts = append(parts, fmt.Sprintf("epoch=%v/%v", ep, n))
			delete(m, "epoch")
			delete(m, "epochs")
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := m[k]
		if f, ok := v.(float64); ok {
			v = fmt.Sprintf("%.4g", f)
		}
		parts = append(parts, fmt.Sprintf("%s=%v", k, v))
	}
	return strings.Join(parts, " ")
}

// Package steps holds Gauntlet's built-in step types as plain Go: each type
// declares its inputs and outputs (which the pipeline validator checks) and a
// Run function that knows nothing of Temporal. The activities package adapts
// every type into a Temporal activity, and `gauntlet step` calls Run
// directly, so both paths run the same code.
package steps

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
)

// Kind says how the interpreter executes a step type.
type Kind int

const (
	// Activity types run Run inside a Temporal activity.
	Activity Kind = iota
	// Workflow types are carried out by workflow code (approval gates,
	// canary analysis), because they wait on people or on time.
	Workflow
)

// Input describes one execution of a step.
type Input struct {
	RunID    string         `json:"run_id"`
	Pipeline string         `json:"pipeline"`
	SpecHash string         `json:"spec_hash,omitempty"`
	StepID   string         `json:"step_id"`
	Uses     string         `json:"uses"`
	With     map[string]any `json:"with,omitempty"`
	// StartedBy is who started the run, for approvals and audit.
	StartedBy string `json:"started_by,omitempty"`
	// Command is set for `run:` steps, which the "run" type executes.
	Command *spec.Command `json:"command,omitempty"`
}

// Env is what a running step may use of its host. The Temporal adapter
// turns Progress into heartbeats; the CLI prints it.
type Env interface {
	// Progress reports liveness and progress; details are kept so that a
	// retried attempt can resume (see Resume).
	Progress(details any)
	// Resume decodes the details of the last Progress of a previous
	// attempt into v and reports whether there were any.
	Resume(v any) bool
	// Dir is a private working directory for this step of this run.
	Dir() string
	// StateDir is the root of local state (artifacts, registry, caches).
	StateDir() string
	// Artifacts is this execution's use of the fleet's artifact store and
	// of the host's cache: a step publishes what it produces there and
	// hands on the pointer, and materialises the pointers and data sources
	// it takes. Workers on several hosts share the store, not a disk.
	Artifacts() *workspace.Session
	Logger() *slog.Logger
}

// InputSpec describes one `with:` key: Define lists them from a type's
// input struct; a type written by hand (a test's) lists its own.
type InputSpec = stepio.Field

// Type is one step type.
type Type struct {
	Name string
	Doc  string
	Kind Kind
	// Inputs are the `with:` keys the type takes; nil: any key.
	Inputs []InputSpec
	// Outputs are the keys the type produces; nil: any key (e.g. external
	// commands).
	Outputs []string
	Run     func(ctx context.Context, env Env, in Input) (map[string]any, error)
	// outputs describe Outputs, when a struct declares them (Define).
	outputs []InputSpec
}

// Define completes t from the struct types of its inputs and outputs:
// Inputs and Outputs are listed from their field tags (see package stepio),
// and Run decodes `with:` into a copy of defaults, calls run, and returns
// its outputs in the JSON shape later steps read. Bad inputs fail as
// BadInput before run starts. Outputs returned with an error (a failed
// gate's numbers) are kept for the step's metrics.
func Define[I, O any](t Type, defaults I, run func(ctx context.Context, env Env, in Input, args I) (*O, error)) Type {
	t.Inputs = stepio.Fields[I]()
	t.outputs = stepio.Fields[O]()
	t.Outputs = stepio.Names[O]()
	t.Run = func(ctx context.Context, env Env, in Input) (map[string]any, error) {
		args := defaults
		if err := stepio.Decode(in.With, &args); err != nil {
			return nil, Permanent(kindBadInput, err)
		}
		o, err := run(ctx, env, in, args)
		out, encErr := stepio.Encode(o)
		if err == nil {
			err = encErr
		}
		return out, err
	}
	return t
}

var (
	mu    sync.RWMutex
	types = map[string]Type{}
)

// Register adds a step type; each type's file calls it from init, so adding a
// step type touches one file.
func Register(t Type) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := types[t.Name]; dup {
		// Two files claiming one name is a programming error found at start.
		panic(fmt.Sprintf("steps: type %q registered twice", t.Name))
	}
	if t.Kind == Activity && t.Run == nil {
		panic(fmt.Sprintf("steps: activity type %q has no Run", t.Name))
	}
	types[t.Name] = t
}

// Lookup finds a registered type.
func Lookup(name string) (Type, bool) {
	mu.RLock()
	defer mu.RUnlock()
	t, ok := types[name]
	return t, ok
}

// All returns every registered type sorted by name.
func All() []Type {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]Type, 0, len(types))
	for _, t := range types {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

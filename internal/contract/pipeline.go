package contract

import (
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
)

// Step states as shown by the status query and the CLI.
const (
	StatePending   = "pending"
	StateRunning   = "running"
	StateWaiting   = "waiting"
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
	StateSkipped   = "skipped"
	StateCanceled  = "canceled"
)

// Run states.
const (
	RunRunning   = "running"
	RunWaiting   = "waiting"
	RunSucceeded = "succeeded"
	RunFailed    = "failed"
	RunCanceled  = "canceled"
	RunRejected  = "rejected"
)

// PipelineInput starts a run. A person starting from the Temporal UI types
// {"pipeline": "smoke", "params": {...}}; tools may send an inline spec
// instead of a name.
type PipelineInput struct {
	Pipeline string         `json:"pipeline,omitempty"`
	Params   map[string]any `json:"params,omitempty"`
	// Spec is an inline definition (JSON form of a pipeline file).
	Spec *spec.Spec `json:"spec,omitempty"`
	// YAML is an inline definition in the file format.
	YAML string `json:"yaml,omitempty"`
	// NoCache disables `cache: true` for this run.
	NoCache   bool   `json:"no_cache,omitempty"`
	StartedBy string `json:"started_by,omitempty"`
	// RetryOf recovers an earlier run (by workflow id): the new run uses
	// its pinned definition and params (Params then override those of
	// steps that run again), reuses what its succeeded steps recorded and
	// runs the rest. What a person types into the UI: {"retry_of": "RUN"}.
	RetryOf string `json:"retry_of,omitempty"`
	// RetryFrom runs this step and everything after it again too.
	RetryFrom string `json:"retry_from,omitempty"`
}

// ResolveInput asks the worker to load, validate and complete a definition.
type ResolveInput struct {
	Pipeline string         `json:"pipeline,omitempty"`
	Spec     *spec.Spec     `json:"spec,omitempty"`
	YAML     string         `json:"yaml,omitempty"`
	Params   map[string]any `json:"params,omitempty"`
}

// Resolved is the one copy of the definition a run uses from then on, so
// editing the YAML never disturbs runs in flight.
type Resolved struct {
	Spec   spec.Spec      `json:"spec"`
	Hash   string         `json:"hash"`
	Params map[string]any `json:"params"`
}

// StepStatus is one step's record in the status query and the result.
type StepStatus struct {
	ID        string         `json:"id"`
	Uses      string         `json:"uses"`
	Finally   bool           `json:"finally,omitempty"`
	State     string         `json:"state"`
	Attempt   int32          `json:"attempt,omitempty"`
	StartedAt *time.Time     `json:"started_at,omitempty"`
	EndedAt   *time.Time     `json:"ended_at,omitempty"`
	Outputs   map[string]any `json:"outputs,omitempty"`
	Error     string         `json:"error,omitempty"`
	// Reason says why a step was skipped or continued past a failure.
	Reason   string `json:"reason,omitempty"`
	CacheKey string `json:"cache_key,omitempty"`
	Cached   bool   `json:"cached,omitempty"`
	// Waiting holds what a person needs to act on a step that waits on
	// them (an approval request).
	Waiting any `json:"waiting,omitempty"`
	// FanOut and Items are set on a step that ran once per item; each of
	// its outputs is then the list of its items' values, in item order.
	FanOut *FanOut `json:"fan_out,omitempty"`
	Items  []any   `json:"items,omitempty"`
}

// Status is the whole run as the status query returns it.
type Status struct {
	RunID     string         `json:"run_id"`
	Pipeline  string         `json:"pipeline"`
	SpecHash  string         `json:"spec_hash,omitempty"`
	State     string         `json:"state"`
	Params    map[string]any `json:"params,omitempty"`
	StartedAt time.Time      `json:"started_at"`
	EndedAt   *time.Time     `json:"ended_at,omitempty"`
	Error     string         `json:"error,omitempty"`
	Steps     []StepStatus   `json:"steps"`
	// RetryOf is the run this one recovers.
	RetryOf string `json:"retry_of,omitempty"`
}

// StepResult is what every step activity returns.
type StepResult struct {
	Outputs map[string]any `json:"outputs"`
	Attempt int32          `json:"attempt"`
}

// Result is what a finished run returns.
type Result = Status

// StepActivityName is the activity type that runs a step type.
func StepActivityName(uses string) string { return stepRunPrefix + uses }

// StepInput is what a step activity receives.
type StepInput struct {
	RunID     string         `json:"run_id"`
	Pipeline  string         `json:"pipeline"`
	SpecHash  string         `json:"spec_hash,omitempty"`
	StepID    string         `json:"step_id"`
	Uses      string         `json:"uses"`
	With      map[string]any `json:"with,omitempty"`
	Command   *spec.Command  `json:"command,omitempty"`
	StartedBy string         `json:"started_by,omitempty"`
}

// CacheLookupInput is CacheLookup's input: the part of a step's cache key
// workflow code computes (type, resolved inputs, the outputs of the steps
// it needs) and the step's inputs, whose files and URLs the activity reads
// for the content part.
type CacheLookupInput struct {
	Key  string         `json:"key"`
	With map[string]any `json:"with,omitempty"`
}

// CacheEntry is a cached step result; Found is false on a miss. From
// CacheLookup, Key is the final key, whether it hit or not.
type CacheEntry struct {
	Key     string         `json:"key"`
	Found   bool           `json:"found"`
	Outputs map[string]any `json:"outputs,omitempty"`
}

// Package spec defines the pipeline format: the resolved, JSON-serialisable
// Spec, its parser (YAML with positions), its validator, parameter
// resolution and a content hash.
//
// A Spec is what a run executes. The workflow receives it once, from an
// activity, and then uses only that copy, so every type here round-trips
// through JSON without loss: numbers read from YAML are float64, as JSON
// decodes them, and source positions live outside the JSON.
package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Spec is a parsed pipeline with defaults applied.
type Spec struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Params are sorted by name, so their order in the file does not
	// change the hash.
	Params      []Param   `json:"params,omitempty"`
	Defaults    Defaults  `json:"defaults"`
	Schedule    *Schedule `json:"schedule,omitempty"`
	MaxParallel int       `json:"max_parallel"`
	FailFast    bool      `json:"fail_fast"`
	// MaxFanOut bounds the items of one fanned-out step (for_each,
	// matrix); 0 means DefaultMaxFanOut.
	MaxFanOut int    `json:"max_fan_out,omitempty"`
	Steps     []Step `json:"steps"`
	Finally   []Step `json:"finally,omitempty"`

	// Source maps paths to positions in the file the spec was parsed from;
	// nil for a spec decoded from JSON.
	Source *Source `json:"-"`
}

// Param types.
const (
	TypeString   = "string"
	TypeNumber   = "number"
	TypeInteger  = "integer"
	TypeBoolean  = "boolean"
	TypeDuration = "duration"
	TypeEnum     = "enum"
	// TypeList holds a list of any values, for steps to fan out over; a
	// command line gives it as JSON ([1, 2]) or comma-separated text.
	TypeList = "list"
)

// ParamTypes lists the valid param types.
var ParamTypes = []string{TypeString, TypeNumber, TypeInteger, TypeBoolean, TypeDuration, TypeEnum, TypeList}

// Param declares one run parameter.
type Param struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Description string `json:"description,omitempty"`
	// Default holds the typed value: float64 for number and integer, bool
	// for boolean, string otherwise.
	Default  any      `json:"default,omitempty"`
	Required bool     `json:"required,omitempty"`
	Values   []string `json:"values,omitempty"`
}

// Defaults apply to every step (normal and finally) that does not set its
// own value; Parse has already merged them into the steps.
type Defaults struct {
	Retry     *Retry   `json:"retry,omitempty"`
	Timeout   Duration `json:"timeout,omitempty"`
	Heartbeat Duration `json:"heartbeat,omitempty"`
}

// Retry is a step's retry policy. A zero field means "inherit": from
// defaults for a step, from the interpreter's built-in policy for defaults.
type Retry struct {
	MaxAttempts     int      `json:"max_attempts,omitempty"`
	InitialInterval Duration `json:"initial_interval,omitempty"`
	Backoff         float64  `json:"backoff,omitempty"`
	MaxInterval     Duration `json:"max_interval,omitempty"`
	NonRetryable    []string `json:"non_retryable,omitempty"`
}

// Overlap policies of a schedule, named as in Temporal's ScheduleOverlapPolicy.
const (
	OverlapSkip           = "skip"
	OverlapBufferOne      = "buffer_one"
	OverlapBufferAll      = "buffer_all"
	OverlapCancelOther    = "cancel_other"
	OverlapTerminateOther = "terminate_other"
	OverlapAllowAll       = "allow_all"
)

// OverlapPolicies lists the valid overlap policies.
var OverlapPolicies = []string{OverlapSkip, OverlapBufferOne, OverlapBufferAll, OverlapCancelOther, OverlapTerminateOther, OverlapAllowAll}

// Schedule runs the pipeline periodically.
type Schedule struct {
	Cron          string         `json:"cron"`
	Timezone      string         `json:"timezone"`
	Overlap       string         `json:"overlap"`
	CatchupWindow Duration       `json:"catchup_window"`
	Params        map[string]any `json:"params,omitempty"`
}

// Step is one node of the pipeline. Exactly one of Uses and Run is set.
type Step struct {
	ID              string         `json:"id"`
	Uses            string         `json:"uses,omitempty"`
	Run             *Command       `json:"run,omitempty"`
	Needs           []string       `json:"needs,omitempty"`
	With            map[string]any `json:"with,omitempty"`
	If              string         `json:"if,omitempty"`
	Retry           *Retry         `json:"retry,omitempty"`
	Timeout         Duration       `json:"timeout,omitempty"`
	Heartbeat       Duration       `json:"heartbeat,omitempty"`
	RunsOn          string         `json:"runs_on,omitempty"`
	ContinueOnError bool           `json:"continue_on_error,omitempty"`
	Cache           bool           `json:"cache,omitempty"`

	// ForEach fans the step out over a list: the list itself, or a string
	// that is one ${{ }} template giving one. Matrix fans it out over the
	// product of named lists instead. Each item runs as its own activity,
	// reading the item as ${{ item }}.
	ForEach any    `json:"for_each,omitempty"`
	Matrix  []Axis `json:"matrix,omitempty"`
	// MaxParallel bounds the items in flight; 0 means the pipeline's.
	MaxParallel int `json:"max_parallel,omitempty"`
	// MinSuccess lets a fan-out succeed with some items failed: below 1 it
	// is the share of the items that ran, from 1 on a count of items.
	// 0 means every item must succeed.
	MinSuccess float64 `json:"min_success,omitempty"`
}

// Axis is one named list of a matrix: Values is a list, or a string that
// is one ${{ }} template giving one. Axes keep the file's order, the first
// varying slowest.
type Axis struct {
	Name   string `json:"name"`
	Values any    `json:"values"`
}

// FansOut reports whether the step runs once per item.
func (s *Step) FansOut() bool { return s.ForEach != nil || len(s.Matrix) > 0 }

// Command is an external command: Shell is run by a shell, Argv is run
// directly; one of them is set. Every string may hold templates.
type Command struct {
	Shell   string            `json:"shell,omitempty"`
	Argv    []string          `json:"argv,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	Workdir string            `json:"workdir,omitempty"`
}

// Param returns the declared param called name.
func (s *Spec) Param(name string) (Param, bool) {
	for _, p := range s.Params {
		if p.Name == name {
			return p, true
		}
	}
	return Param{}, false
}

// Step returns the normal or finally step called id.
func (s *Spec) Step(id string) (Step, bool) {
	for _, list := range [][]Step{s.Steps, s.Finally} {
		for _, st := range list {
			if st.ID == id {
				return st, true
			}
		}
	}
	return Step{}, false
}

// Hash is the hex sha256 of the spec's JSON encoding, prefixed "sha256:".
// The encoding is canonical: struct fields have a fixed order, map keys are
// sorted by encoding/json and params are sorted by name, so two files that
// differ only in key order or formatting hash the same.
func (s *Spec) Hash() (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("hash pipeline %q: %w", s.Name, err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

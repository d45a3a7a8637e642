package contract

import (
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/tmpl"
)

// FanOutChunkName is the child workflow that runs one chunk of the items of
// a large fan-out, so that no workflow holds more pending activities or
// history events than Temporal allows.
const FanOutChunkName = "PipelineFanOutChunk"

// Item states, as ItemResult.State.
const (
	ItemSucceeded = StateSucceeded
	ItemFailed    = StateFailed
	ItemSkipped   = StateSkipped
	ItemCanceled  = StateCanceled
)

// MaxListedFailures bounds FanOut.Failures, which every status query and
// the run's result carry.
const MaxListedFailures = 100

// FanOut is the record of a step that ran once per item.
type FanOut struct {
	Items     int `json:"items"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
	Canceled  int `json:"canceled,omitempty"`
	Running   int `json:"running"`
	Cached    int `json:"cached,omitempty"`
	// Chunks is how many child workflows ran the items; 0 when the run
	// ran them itself.
	Chunks int `json:"chunks,omitempty"`
	// Failures are the failed items in item order, the first
	// MaxListedFailures of them.
	Failures []ItemFailure `json:"failures,omitempty"`
}

// ItemFailure is one failed item of a fan-out.
type ItemFailure struct {
	Index int    `json:"index"`
	Item  any    `json:"item"`
	Error string `json:"error"`
}

// ItemResult is how one item ended.
type ItemResult struct {
	State   string         `json:"state"`
	Outputs map[string]any `json:"outputs,omitempty"`
	Error   string         `json:"error,omitempty"`
	Attempt int32          `json:"attempt,omitempty"`
	Cached  bool           `json:"cached,omitempty"`
}

// ChunkInput starts FanOutChunk: items Offset… of one step of a run, with
// what their templates may read.
type ChunkInput struct {
	RunID     string         `json:"run_id"`
	Pipeline  string         `json:"pipeline"`
	SpecHash  string         `json:"spec_hash,omitempty"`
	StartedBy string         `json:"started_by,omitempty"`
	Step      spec.Step      `json:"step"`
	Offset    int            `json:"offset"`
	Items     []any          `json:"items"`
	Params    map[string]any `json:"params,omitempty"`
	// Steps are the states of the steps the step's templates read.
	Steps map[string]tmpl.StepState `json:"steps,omitempty"`
	// Queues are the task queues of the run's nodes by provision step.
	Queues map[string]string `json:"queues,omitempty"`
	// Upstream is the digest of the outputs of the step's needs, part of
	// each item's cache key.
	Upstream    string `json:"upstream,omitempty"`
	MaxParallel int    `json:"max_parallel"`
	// MaxFailures stops the chunk once more of its items failed: the
	// step has failed whatever the other chunks do.
	MaxFailures int  `json:"max_failures"`
	NoCache     bool `json:"no_cache,omitempty"`
	// Version is the parent run's version (see workflows), which the
	// chunk behaves as.
	Version int `json:"version"`
}

// ChunkResult is every item of a chunk, in item order.
type ChunkResult struct {
	Items []ItemResult `json:"items"`
}

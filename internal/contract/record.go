package contract

import (
	"context"
	"time"
)

// RunRecord is the input of RecordRun: a run of Pipeline ended with Status,
// the run state (succeeded, failed, canceled, rejected).
type RunRecord struct {
	Pipeline string `json:"pipeline"`
	Status   string `json:"status"`
}

// ApprovalRecord is the input of RecordApproval: an approval step of
// Pipeline was decided with Outcome (approved, rejected, timeout) after
// waiting Waited.
type ApprovalRecord struct {
	Pipeline string        `json:"pipeline"`
	Outcome  string        `json:"outcome"`
	Waited   time.Duration `json:"waited"`
}

// PreemptionRecord is the input of RecordPreemption: a node running a step
// of Pipeline was lost, and WasteUSD of its cost bought nothing kept.
type PreemptionRecord struct {
	Pipeline string  `json:"pipeline"`
	WasteUSD float64 `json:"waste_usd"`
}

// Recorder takes the records to a worker's metrics. Its methods must be
// quick and must not block: workflow code calls them.
type Recorder interface {
	Run(context.Context, RunRecord) error
	Approval(context.Context, ApprovalRecord) error
	Preemption(context.Context, PreemptionRecord) error
}

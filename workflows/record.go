package workflows

import "time"

// Activities through which workflow code reports what only it knows: how a
// run ended and how an approval was decided, for the worker's metrics. A
// workflow must not update a metric itself (it replays); a local activity's
// result is recorded in the history and not run again on replay.
const (
	RecordRunName        = "RecordRun"
	RecordApprovalName   = "RecordApproval"
	RecordPreemptionName = "RecordPreemption"
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

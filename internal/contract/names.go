// Package contract holds what Gauntlet's workflows, its activities and its
// clients must agree on: the names Temporal knows them by (workflow types,
// activity types, signals, updates, queries) and the payloads that cross
// between them. It is plain data with no behaviour, so that workflows,
// activities and the CLI import it without importing each other.
//
// Every payload here is in recorded histories: add fields with omitempty and
// never rename a JSON key, or runs in flight stop replaying.
package contract

// Workflow types, as registered with Temporal and typed into the UI's Start
// Workflow form, and the default task queue.
const (
	PipelineName = "Pipeline"
	MonitorName  = "Monitor"
	DefaultQueue = "gauntlet"
)

// Queries.
const (
	StatusQuery    = "status"
	ApprovalsQuery = "approvals"
	MonitorQuery   = "monitor"
)

// Approval decisions: Updates for the CLI and API (refused decisions never
// enter history), Signals of the same names for the Temporal UI.
const (
	ApproveName = "approve"
	RejectName  = "reject"
)

// Signals a person sends to steer a canary, in the spirit of Flagger's
// manual gates and Argo Rollouts' promote and abort.
const (
	CanaryPauseSignal   = "canary-pause"
	CanaryResumeSignal  = "canary-resume"
	CanaryPromoteSignal = "canary-promote"
	CanaryAbortSignal   = "canary-abort"
)

// Activity types besides the step activities (StepActivityName).
const (
	ResolveName  = "ResolvePipeline"
	CacheGetName = "CacheGet"
	CachePutName = "CachePut"
	// CacheLookupName looks a step up in the cache from run version 3: it
	// completes the key with the content of the step's file and URL inputs
	// and returns the final key, which CachePut then stores under.
	CacheLookupName = "CacheLookup"
	// NotifyActivity posts an approval's notifications.
	NotifyActivity = "Notify"
	// LoadReviewerKeysName reads the worker's reviewer key file. Its result
	// is recorded in history, so the keys a run verified with are the keys
	// it replays with.
	LoadReviewerKeysName = "LoadReviewerKeys"

	CanaryStartName   = "CanaryStart"
	CanaryWeightName  = "CanaryWeight"
	CanaryMeasureName = "CanaryMeasure"
	CanaryPromoteName = "CanaryPromote"
	CanaryAbortName   = "CanaryAbort"

	MonitorCheckName    = "MonitorCheck"
	MonitorRollbackName = "MonitorRollback"

	// Local activities through which runs recorded before version 2 of the
	// Pipeline workflow report what only workflow code knows to the
	// worker's metrics; later runs hand the same records to a Recorder.
	RecordRunName        = "RecordRun"
	RecordApprovalName   = "RecordApproval"
	RecordPreemptionName = "RecordPreemption"
)

const stepRunPrefix = "step."

// Deployment targets a canary-deploy or monitor step may name (with.target),
// as the worker's --deploy-target does.
const (
	// TargetEmbedded is a router and model servers inside the worker.
	TargetEmbedded = "embedded"
	// TargetFleet is long-running router and model servers the worker
	// drives over their admin APIs.
	TargetFleet = "fleet"
)

package contract

// DefinitionQuery returns a run's Resolved: the definition and params it
// runs with, which a recovered run pins.
const DefinitionQuery = "definition"

// RecoverName is the activity that reads the run a retry recovers, checks
// that its reused artifacts are still in the store and plans the retry.
const RecoverName = "RecoverRun"

// RecoverInput asks to recover run RunID.
type RecoverInput struct {
	RunID string `json:"run_id"`
	// From runs this step and everything after it again.
	From string `json:"from,omitempty"`
	// Params override the recovered run's, only for steps that run again.
	Params map[string]any `json:"params,omitempty"`
}

// Recovery is what a recovered run starts from.
type Recovery struct {
	RunID string `json:"run_id"`
	// Resolved is the recovered run's definition, with the new params.
	Resolved Resolved `json:"resolved"`
	// Reused are the records of the steps the new run does not run again,
	// in definition order.
	Reused []StepStatus `json:"reused"`
	// NotNeeded are provision steps that nothing running again runs on:
	// the new run starts no node for them.
	NotNeeded []string `json:"not_needed,omitempty"`
}

// RetryOfMemo is the memo key under which a recovered run names the run it
// recovers (the searchattr.RetryOf search attribute holds it too, so that
// the old run's status can list the runs that recovered it).
const RetryOfMemo = "retry_of"

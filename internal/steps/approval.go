package steps

func init() {
	// The gate itself is workflow code (it waits on people and time); this
	// entry tells the validator what it takes and produces.
	Register(Type{
		Name: "approval",
		Doc:  "Waits for reviewers to approve or reject, by Update (CLI, API) or Signal (Temporal UI).",
		Kind: Workflow,
		Inputs: []InputSpec{
			{Name: "reviewers", Required: true, Doc: "who may decide"},
			{Name: "required", Doc: "approvals needed (default 1)"},
			{Name: "timeout", Doc: "how long to wait (default 72h)"},
			{Name: "on_timeout", Doc: "reject (default), approve or escalate"},
			{Name: "escalate_to", Doc: "reviewers added when on_timeout is escalate"},
			{Name: "forbid_self_approval", Doc: "the person who started the run may not approve"},
			{Name: "reminder", Doc: "interval between reminders"},
			{Name: "notify_url", Doc: "webhook told of every state change"},
			{Name: "evidence", Doc: "what the reviewer sees: metrics, fairness, report link"},
			{Name: "require_signatures", Doc: "count only decisions signed with the reviewer's configured Ed25519 key (default false)"},
			{Name: "signature_max_skew", Doc: "how far a signature's time may be from the gate's clock (default 10m)"},
		},
		Outputs: []string{"decision", "approvers", "votes", "comment"},
	})
}

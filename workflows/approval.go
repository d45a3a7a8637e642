package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/searchattr"
	"github.com/gauntlet-ml/gauntlet/internal/signing"
)

const (
	defaultApprovalT     = 72 * time.Hour
	defaultSignatureSkew = 10 * time.Minute
)

// gate is one approval step's live state.
type gate struct {
	req         contract.ApprovalRequest
	escalateTo  []string
	timeout     time.Duration
	notifyURL   string
	reminder    time.Duration
	open        bool
	approvals   int
	rejected    bool
	lastChange  int // bumps on every state change, for notifications
	notifiedFor int
	requireSig  bool
	keys        signing.KeyRing
	maxSkew     time.Duration
}

func init() {
	workflowSteps["approval"] = runApproval
	registeredHooks = append(registeredHooks, registerApprovalHandlers)
}

func registerApprovalHandlers(ctx workflow.Context, r *run) error {
	// From version 2 one coroutine receives both signals: every blocked
	// coroutine costs each workflow task of the run a switch, approval
	// steps or not. Before, each had its own, which decides the order two
	// signals in one workflow task are counted in: old runs keep it.
	signals := workflow.NewSelector(ctx)
	for _, name := range []string{contract.ApproveName, contract.RejectName} {
		decision := name
		err := workflow.SetUpdateHandlerWithOptions(ctx, name,
			func(ctx workflow.Context, d contract.Decision) (contract.ApprovalRequest, error) {
				g, _ := r.gateFor(d)
				r.vote(ctx, g, d, decision, "update")
				return g.req, nil
			},
			workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, d contract.Decision) error {
				_, err := r.checkDecision(ctx, d, decision)
				return err
			}},
		)
		if err != nil {
			return err
		}
		ch := workflow.GetSignalChannel(ctx, name)
		receive := func(d contract.Decision) {
			g, err := r.checkDecision(ctx, d, decision)
			if err != nil {
				// Signals cannot be refused; keep the attempt visible.
				r.noteInvalid(g, fmt.Sprintf("%s from %q refused: %v", decision, d.Reviewer, err))
				return
			}
			r.vote(ctx, g, d, decision, "signal")
		}
		if r.version < 2 {
			workflow.Go(ctx, func(ctx workflow.Context) {
				for {
					var d contract.Decision
					ch.Receive(ctx, &d)
					receive(d)
				}
			})
			continue
		}
		signals.AddReceive(ch, func(ch workflow.ReceiveChannel, _ bool) {
			var d contract.Decision
			ch.ReceiveAsync(&d)
			receive(d)
		})
	}
	if r.version >= 2 {
		workflow.Go(ctx, func(ctx workflow.Context) {
			for {
				signals.Select(ctx)
			}
		})
	}
	return workflow.SetQueryHandler(ctx, contract.ApprovalsQuery, func() ([]contract.ApprovalRequest, error) {
		var out []contract.ApprovalRequest
		for _, g := range r.gates {
			out = append(out, g.req)
		}
		return out, nil
	})
}

// addGate keeps the gates sorted by step id, the order queries and error
// messages list them in. A slice rather than a map: workflow code must not
// depend on Go's random map order, even where today's use would not.
func (r *run) addGate(g *gate) {
	r.gates = append(r.gates, g)
	slices.SortFunc(r.gates, func(a, b *gate) int { return strings.Compare(a.req.Step, b.req.Step) })
}

func (r *run) gateOf(step string) (*gate, bool) {
	for _, g := range r.gates {
		if g.req.Step == step {
			return g, true
		}
	}
	return nil, false
}

// gateFor finds the gate a decision addresses: the named step, the step a
// signature names, or the one open gate.
func (r *run) gateFor(d contract.Decision) (*gate, error) {
	step := d.Step
	if step == "" && d.Signature != nil {
		step = d.Signature.Step
	}
	if step != "" {
		g, ok := r.gateOf(step)
		if !ok {
			return nil, fmt.Errorf("no approval step %q in this run", step)
		}
		return g, nil
	}
	var open []*gate
	for _, g := range r.gates {
		if g.open {
			open = append(open, g)
		}
	}
	switch len(open) {
	case 0:
		return nil, errors.New("no approval is waiting in this run")
	case 1:
		return open[0], nil
	default:
		return nil, errors.New("several approvals are waiting: name one with step")
	}
}

// checkDecision is the validator: it must not change state.
func (r *run) checkDecision(ctx workflow.Context, d contract.Decision, decision string) (*gate, error) {
	g, err := r.gateFor(d)
	if err != nil {
		return g, err
	}
	reviewer := strings.TrimSpace(d.Reviewer)
	switch {
	case reviewer == "":
		return g, errors.New("decision names no reviewer")
	case !g.open:
		return g, fmt.Errorf("approval %s is closed", g.req.Step)
	case !slices.Contains(g.req.Reviewers, reviewer):
		return g, fmt.Errorf("%s is not a reviewer of %s (reviewers: %s)", reviewer, g.req.Step, strings.Join(g.req.Reviewers, ", "))
	case g.req.SelfForbid && decision == contract.ApproveName && reviewer == g.req.StartedBy:
		return g, fmt.Errorf("%s started this run and may not approve it", reviewer)
	}
	for _, v := range g.req.Votes {
		if v.Reviewer == reviewer {
			return g, fmt.Errorf("%s has already voted (%s)", reviewer, v.Decision)
		}
	}
	if g.requireSig {
		sd := signing.SignedDecision{
			Approval:  signing.Approval{RunID: r.status.RunID, Step: g.req.Step, Decision: decision, Reviewer: reviewer, Comment: d.Comment, Model: contract.ArtifactIdentity(g.req.Model)},
			Signature: d.Signature,
		}
		if err := g.keys.Verify(sd, workflow.Now(ctx), g.maxSkew); err != nil {
			return g, fmt.Errorf("%s requires a signed decision (gauntlet %s --key): %w", g.req.Step, decision, err)
		}
	}
	return g, nil
}

func (r *run) noteInvalid(g *gate, msg string) {
	if g == nil {
		r.status.Error = msg
		return
	}
	g.req.Invalid = append(g.req.Invalid, msg)
	r.refreshWaiting(g)
}

func (r *run) vote(ctx workflow.Context, g *gate, d contract.Decision, decision, via string) {
	v := contract.Vote{Reviewer: strings.TrimSpace(d.Reviewer), Decision: decision, Comment: d.Comment, At: workflow.Now(ctx), Via: via}
	// Only a verified signature is worth recording: an unchecked one would
	// look like proof in the audit trail.
	if g.requireSig && d.Signature != nil {
		at := d.Signature.SignedAt
		v.KeyID, v.SignedAt = d.Signature.KeyID, &at
	}
	g.req.Votes = append(g.req.Votes, v)
	if decision == contract.ApproveName {
		g.approvals++
	} else {
		g.rejected = true
	}
	g.lastChange++
	r.refreshWaiting(g)
}

func (r *run) refreshWaiting(g *gate) {
	if i := r.indexOf(g.req.Step); i >= 0 {
		r.status.Steps[i].Waiting = g.req
	}
}

// runApproval waits for a quorum of approvals, a rejection, or the
// deadline.
func runApproval(ctx workflow.Context, r *run, sr *stepRun) (map[string]any, error) {
	g, err := newGate(sr, r.input.StartedBy, workflow.Now(ctx), r.version)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidPipeline", err)
	}
	if g.requireSig {
		if err := loadReviewerKeys(ctx, g); err != nil {
			return nil, err
		}
	}
	r.addGate(g)
	st := r.index(sr.spec.ID)
	st.State = contract.StateWaiting
	r.refreshWaiting(g)
	r.status.State = contract.RunWaiting
	_ = workflow.UpsertTypedSearchAttributes(ctx, searchattr.RunStatus.ValueSet(contract.RunWaiting), searchattr.Approval.ValueSet("waiting:"+sr.spec.ID))
	defer func() {
		g.open = false
		// Another gate may still wait: the run waits until the last closes.
		for _, other := range r.gates {
			if other.open {
				return
			}
		}
		if r.status.State == contract.RunWaiting {
			r.status.State = contract.RunRunning
			_ = workflow.UpsertTypedSearchAttributes(ctx, searchattr.RunStatus.ValueSet(contract.RunRunning))
		}
	}()
	r.notify(ctx, g, "approval requested")

	decided := func() bool { return g.rejected || g.approvals >= g.req.Required }
	for !decided() {
		wait := g.req.Deadline.Sub(workflow.Now(ctx))
		if g.reminder > 0 && g.reminder < wait {
			wait = g.reminder
		}
		seen := g.lastChange
		ok, err := workflow.AwaitWithTimeout(ctx, wait, func() bool { return decided() || g.lastChange != seen })
		if err != nil {
			return nil, err
		}
		if ok {
			if !decided() {
				r.notify(ctx, g, "vote recorded")
			}
			continue
		}
		if !workflow.Now(ctx).Before(g.req.Deadline) {
			if done := r.timeOut(ctx, g); done {
				break
			}
			continue
		}
		r.notify(ctx, g, "reminder: approval still waiting")
	}
	g.open = false
	out := approvalOutputs(g)
	outcome := "approved"
	if g.rejected {
		outcome = "rejected"
	}
	if n := len(g.req.Votes); n > 0 && g.req.Votes[n-1].Via == "timeout" {
		outcome = "timeout"
	}
	waited := workflow.Now(ctx).Sub(*st.StartedAt)
	r.record(ctx, "record-approval-metric", contract.RecordApprovalName, contract.ApprovalRecord{Pipeline: r.resolved.Spec.Name, Outcome: outcome, Waited: waited})
	if g.rejected {
		_ = workflow.UpsertTypedSearchAttributes(ctx, searchattr.Approval.ValueSet("rejected:"+strings.Join(out["rejecters"].([]string), ",")))
		r.notify(ctx, g, "rejected")
		return nil, &rejectedError{msg: rejectionMessage(g)}
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, searchattr.Approval.ValueSet("approved:"+strings.Join(out["approvers"].([]string), ",")))
	r.notify(ctx, g, "approved")
	delete(out, "rejecters")
	return out, nil
}

// loadReviewerKeys fetches the worker's reviewer keys and checks that every
// reviewer who could be asked, escalation included, has one: a reviewer
// without a key could never cast a vote that counts.
func loadReviewerKeys(ctx workflow.Context, g *gate) error {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5, NonRetryableErrorTypes: []string{"InvalidReviewerKeys"}},
	})
	var keys signing.KeyRing
	if err := workflow.ExecuteActivity(actx, contract.LoadReviewerKeysName).Get(ctx, &keys); err != nil {
		return err
	}
	var missing []string
	fingerprints := map[string]string{}
	for _, name := range slices.Concat(g.req.Reviewers, g.escalateTo) {
		pub, ok := keys[name]
		if !ok {
			if !slices.Contains(missing, name) {
				missing = append(missing, name)
			}
			continue
		}
		fingerprints[name] = signing.Fingerprint(pub)
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("approval %s requires signatures but the worker's reviewer keys have none for %s", g.req.Step, strings.Join(missing, ", "))
		return temporal.NewNonRetryableApplicationError(msg, "MissingReviewerKeys", nil)
	}
	g.keys = keys
	g.req.KeyFingerprints = fingerprints
	return nil
}

// timeOut applies on_timeout; it reports whether the gate is decided.
func (r *run) timeOut(ctx workflow.Context, g *gate) bool {
	switch g.req.OnTimeout {
	case "approve":
		g.req.Votes = append(g.req.Votes, contract.Vote{Reviewer: "timeout", Decision: contract.ApproveName, At: workflow.Now(ctx), Via: "timeout", Comment: "approved by on_timeout: approve"})
		g.approvals = g.req.Required
	case "escalate":
		if !g.req.Escalated && len(g.escalateTo) > 0 {
			g.req.Escalated = true
			g.req.Reviewers = append(g.req.Reviewers, g.escalateTo...)
			g.req.Deadline = workflow.Now(ctx).Add(g.timeout)
			g.lastChange++
			r.refreshWaiting(g)
			r.notify(ctx, g, "escalated to "+strings.Join(g.escalateTo, ", "))
			return false
		}
		fallthrough
	default:
		g.req.Votes = append(g.req.Votes, contract.Vote{Reviewer: "timeout", Decision: contract.RejectName, At: workflow.Now(ctx), Via: "timeout", Comment: "no decision before the deadline"})
		g.rejected = true
	}
	r.refreshWaiting(g)
	return true
}

func rejectionMessage(g *gate) string {
	for _, v := range g.req.Votes {
		if v.Decision == contract.RejectName {
			msg := fmt.Sprintf("%s rejected by %s", g.req.Step, v.Reviewer)
			if v.Comment != "" {
				msg += ": " + v.Comment
			}
			return msg
		}
	}
	return g.req.Step + " rejected"
}

func approvalOutputs(g *gate) map[string]any {
	approvers, rejecters := []string{}, []string{}
	votes := make([]any, 0, len(g.req.Votes))
	comment := ""
	for _, v := range g.req.Votes {
		if v.Decision == contract.ApproveName {
			approvers = append(approvers, v.Reviewer)
		} else {
			rejecters = append(rejecters, v.Reviewer)
		}
		if v.Comment != "" && comment == "" {
			comment = v.Comment
		}
		votes = append(votes, map[string]any{"reviewer": v.Reviewer, "decision": v.Decision, "comment": v.Comment, "at": v.At.UTC().Format(time.RFC3339), "via": v.Via, "key_id": v.KeyID})
	}
	decision := "approved"
	if g.rejected {
		decision = "rejected"
	}
	out := map[string]any{"decision": decision, "approvers": approvers, "rejecters": rejecters, "votes": votes, "comment": comment}
	if g.req.Model != "" {
		// What was approved, for the steps that ship it to name.
		out["model"], out["model_digest"] = g.req.Model, contract.ArtifactIdentity(g.req.Model)
	}
	return out
}

// notify posts a state change to the step's webhook through an activity,
// once per change: reminders and votes each count as one change.
func (r *run) notify(ctx workflow.Context, g *gate, event string) {
	g.req.Notified++
	r.refreshWaiting(g)
	if g.notifyURL == "" {
		return
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5},
	})
	msg := contract.NotifyInput{URL: g.notifyURL, RunID: r.status.RunID, Pipeline: r.status.Pipeline, StepID: g.req.Step, Event: event, Request: g.req}
	// A webhook that is down must not hold the gate; the outcome is logged.
	_ = workflow.ExecuteActivity(actx, contract.NotifyActivity, msg).Get(ctx, nil)
}

// checkApprovedModel refuses to ship a model other than the ones this
// run's approval gates approved, when any gate names a model: what a
// reviewer saw must be what reaches production. Gates that name no model
// bind nothing (the validator warns about them).
func (r *run) checkApprovedModel(step, model string) error {
	var named, approved []string
	for _, g := range r.gates {
		if g.req.Model == "" {
			continue
		}
		named = append(named, g.req.Step)
		if !g.rejected && g.approvals >= g.req.Required {
			approved = append(approved, contract.ArtifactIdentity(g.req.Model))
		}
	}
	if len(named) == 0 || slices.Contains(approved, contract.ArtifactIdentity(model)) {
		return nil
	}
	what := "none of them has approved a model yet"
	if len(approved) > 0 {
		what = "they approved " + strings.Join(approved, ", ")
	}
	err := fmt.Errorf("%s: model %s is not the artifact approved in this run (approval steps %s name models; %s): nothing was deployed",
		step, contract.ArtifactIdentity(model), strings.Join(named, ", "), what)
	return temporal.NewNonRetryableApplicationError(err.Error(), "NotApproved", err)
}

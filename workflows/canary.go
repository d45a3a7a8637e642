package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gauntlet-ml/gauntlet/internal/canary"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
)

// CanaryInterval is one analysed interval, kept in the step's outputs.
type CanaryInterval struct {
	Weight   int                  `json:"weight"`
	At       time.Time            `json:"at"`
	Outcome  canary.Outcome       `json:"outcome"`
	Decision canary.Decision      `json:"decision"`
	Checks   []canary.CheckResult `json:"checks"`
}

func init() {
	workflowSteps["canary-deploy"] = runCanary
}

// canaryRun is one canary-deploy step in flight.
type canaryRun struct {
	r         *run
	sr        *stepRun
	cfg       canaryConfig
	start     contract.CanaryStartResult
	tracker   canary.Tracker
	intervals []CanaryInterval
	weight    int
	// manual is set by a promote or abort signal.
	manual string
	by     string
	reason string
	paused bool
}

// runCanary shifts traffic to the candidate weight by weight, analysing
// each interval, and promotes it or rolls it back. The first model of a
// name has no champion to compare with: it is promoted without analysis,
// as Flagger initialises a new canary.
func runCanary(ctx workflow.Context, r *run, sr *stepRun) (map[string]any, error) {
	cfg, err := newCanaryConfig(sr, r.resolved.Spec.Name, r.version)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidPipeline", err)
	}
	if r.version >= 3 {
		if err := r.checkApprovedModel("canary-deploy "+sr.spec.ID, cfg.model); err != nil {
			return nil, err
		}
	}
	c := &canaryRun{r: r, sr: sr, cfg: cfg}
	actx := c.options(ctx, 5*time.Minute)
	in := contract.CanaryStartInput{RunID: r.status.RunID, StepID: sr.spec.ID, SpecHash: r.resolved.Hash, Name: cfg.name, Model: cfg.model, Target: cfg.target}
	if err := workflow.ExecuteActivity(actx, contract.CanaryStartName, in).Get(ctx, &c.start); err != nil {
		return nil, err
	}
	if c.start.Champion == 0 {
		c.reason = "first version of " + cfg.name + ": no champion to compare with"
		return c.promote(ctx, "initialized")
	}
	signals := c.signals(ctx)
	for _, w := range cfg.weights {
		if err := c.setWeight(ctx, w); err != nil {
			return nil, err
		}
		if err := c.wait(ctx, signals); err != nil {
			return nil, err
		}
		switch c.manual {
		case "promote":
			return c.promote(ctx, "promoted by "+c.by)
		case "abort":
			return nil, c.rollback(ctx, "aborted by "+c.by)
		}
		var m canary.Result
		if err := workflow.ExecuteActivity(c.options(ctx, cfg.interval+5*time.Minute), contract.CanaryMeasureName,
			contract.CanaryMeasureInput{Name: cfg.name, Analysis: cfg.analysis, Interval: cfg.interval, Prometheus: cfg.prometheus, Target: cfg.target}).Get(ctx, &m); err != nil {
			return nil, err
		}
		decision := c.tracker.Record(cfg.analysis, m.Outcome)
		c.intervals = append(c.intervals, CanaryInterval{Weight: w, At: workflow.Now(ctx), Outcome: m.Outcome, Decision: decision, Checks: m.Checks})
		c.show(fmt.Sprintf("%d%% to the candidate: %s (%d failed, %d inconclusive of %d intervals)", w, m.Outcome, c.tracker.Failures, c.tracker.Inconclusives, c.tracker.Intervals))
		if decision != canary.Continue {
			return nil, c.rollback(ctx, describeFailure(decision, m))
		}
	}
	return c.promote(ctx, "analysis passed at every weight")
}

func (c *canaryRun) options(ctx workflow.Context, timeout time.Duration) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: timeout,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 5, NonRetryableErrorTypes: []string{"BadInput"}},
	})
}

func (c *canaryRun) setWeight(ctx workflow.Context, percent int) error {
	c.weight = percent
	c.show(fmt.Sprintf("%d%% to the candidate behind %s", percent, c.start.RouterURL))
	return workflow.ExecuteActivity(c.options(ctx, time.Minute), contract.CanaryWeightName, contract.CanaryWeightInput{Name: c.cfg.name, Percent: percent, Target: c.cfg.target}).Get(ctx, nil)
}

// show keeps the step's live state readable from `gauntlet status`.
func (c *canaryRun) show(msg string) {
	c.r.index(c.sr.spec.ID).Reason = msg
}

type canarySignals struct {
	pause, resume, promote, abort workflow.ReceiveChannel
}

func (c *canaryRun) signals(ctx workflow.Context) canarySignals {
	return canarySignals{
		pause:   workflow.GetSignalChannel(ctx, contract.CanaryPauseSignal),
		resume:  workflow.GetSignalChannel(ctx, contract.CanaryResumeSignal),
		promote: workflow.GetSignalChannel(ctx, contract.CanaryPromoteSignal),
		abort:   workflow.GetSignalChannel(ctx, contract.CanaryAbortSignal),
	}
}

// wait lets one interval of traffic pass at the current weight. A pause
// stops the clock until resume; promote or abort ends the wait at once.
// Signals naming another step are left for it.
func (c *canaryRun) wait(ctx workflow.Context, s canarySignals) error {
	remaining := c.cfg.interval
	for remaining > 0 && c.manual == "" {
		began, wasPaused := workflow.Now(ctx), c.paused
		tctx, cancel := workflow.WithCancel(ctx)
		sel := workflow.NewSelector(ctx)
		fired := false
		if !c.paused {
			sel.AddFuture(workflow.NewTimer(tctx, remaining), func(workflow.Future) { fired = true })
		}
		receive := func(ch workflow.ReceiveChannel, apply func(contract.CanarySignal)) {
			sel.AddReceive(ch, func(ch workflow.ReceiveChannel, _ bool) {
				var sig contract.CanarySignal
				ch.Receive(ctx, &sig)
				if sig.Step != "" && sig.Step != c.sr.spec.ID {
					return
				}
				apply(sig)
			})
		}
		receive(s.pause, func(sig contract.CanarySignal) {
			c.paused = true
			c.show(fmt.Sprintf("paused at %d%% by %s", c.weight, sig.By))
		})
		receive(s.resume, func(sig contract.CanarySignal) {
			c.paused = false
			c.show(fmt.Sprintf("%d%% to the candidate (resumed by %s)", c.weight, sig.By))
		})
		receive(s.promote, func(sig contract.CanarySignal) { c.manual, c.by, c.reason = "promote", sig.By, sig.Reason })
		receive(s.abort, func(sig contract.CanarySignal) { c.manual, c.by, c.reason = "abort", sig.By, sig.Reason })
		sel.Select(ctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		if fired {
			return nil
		}
		if !wasPaused {
			remaining -= workflow.Now(ctx).Sub(began)
		}
	}
	return nil
}

func (c *canaryRun) promote(ctx workflow.Context, why string) (map[string]any, error) {
	in := contract.CanaryPromoteInput{Name: c.cfg.name, Version: c.start.Version, ExpectedChampion: c.start.Champion,
		RunID: c.r.status.RunID, Actor: "gauntlet:" + c.r.status.RunID, Reason: why, Target: c.cfg.target}
	if err := workflow.ExecuteActivity(c.options(ctx, 5*time.Minute), contract.CanaryPromoteName, in).Get(ctx, nil); err != nil {
		// The champion moved under us or the store is gone: either way the
		// candidate must not keep any traffic.
		_ = c.abort(ctx, "promotion failed: "+rootMessage(err))
		return nil, err
	}
	c.show("promoted: " + why)
	out := c.outputs("promoted", why)
	return out, nil
}

// rollback returns all traffic to the champion and fails the step, so the
// run says plainly that this model did not ship.
func (c *canaryRun) rollback(ctx workflow.Context, why string) error {
	if err := c.abort(ctx, why); err != nil {
		return err
	}
	c.show("rolled back: " + why)
	c.r.index(c.sr.spec.ID).Outputs = c.outputs("rolled_back", why)
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("canary of %s v%d rolled back: %s", c.cfg.name, c.start.Version, why), "CanaryRolledBack", nil, c.outputs("rolled_back", why))
}

func (c *canaryRun) abort(ctx workflow.Context, why string) error {
	// Disconnected: a cancelled run must still take its candidate out of
	// the traffic.
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	return workflow.ExecuteActivity(c.options(dctx, 5*time.Minute), contract.CanaryAbortName, contract.CanaryAbortInput{Name: c.cfg.name, Reason: why, Target: c.cfg.target}).Get(dctx, nil)
}

func (c *canaryRun) outputs(decision, why string) map[string]any {
	intervals := make([]any, 0, len(c.intervals))
	for _, iv := range c.intervals {
		checks := make([]any, 0, len(iv.Checks))
		for _, ch := range iv.Checks {
			checks = append(checks, map[string]any{"name": ch.Name, "value": finite(ch.Value), "champion": finite(ch.Champion), "threshold": ch.Threshold, "outcome": string(ch.Outcome), "reason": ch.Reason})
		}
		intervals = append(intervals, map[string]any{"weight": iv.Weight, "at": iv.At.UTC().Format(time.RFC3339), "outcome": string(iv.Outcome), "decision": string(iv.Decision), "checks": checks})
	}
	reason := why
	if c.reason != "" && c.reason != why {
		reason = why + ": " + c.reason
	}
	return map[string]any{
		"decision":   decision,
		"reason":     reason,
		"version":    c.start.Version,
		"champion":   c.start.Champion,
		"weight":     c.weight,
		"intervals":  intervals,
		"failures":   c.tracker.Failures,
		"router_url": c.start.RouterURL,
	}
}

// finite keeps NaN (no data) out of JSON, which cannot carry it.
func finite(v float64) any {
	if v != v {
		return nil
	}
	return v
}

func describeFailure(d canary.Decision, m canary.Result) string {
	for _, ch := range m.Checks {
		if ch.Outcome == m.Outcome && ch.Reason != "" {
			return fmt.Sprintf("%s: %s", d, ch.Reason)
		}
	}
	return string(d)
}

package activities

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/canary"
	canarysource "github.com/gauntlet-ml/gauntlet/internal/canary/source"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/deploy"
	"github.com/gauntlet-ml/gauntlet/internal/metrics"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
	"github.com/gauntlet-ml/gauntlet/internal/steps"
)

// Canary adapts the canary-deploy step's activities onto the deployment
// target, the registry and the canary analysis.
type Canary struct {
	// Deploy are the worker's deployment targets; a step names one or
	// gets the default.
	Deploy *deploy.Set
	// Workspace is the store holding the registry and the candidates.
	Workspace *workspace.Workspace
	// Metrics, when set, follows the candidate's traffic, the analyses'
	// verdicts and rollbacks; nil records nothing.
	Metrics *metrics.Metrics

	mu        sync.Mutex
	providers map[string]*canaryProviders
}

// canaryProviders measure one environment: the router sees every request
// and its latency, the model servers the scores.
type canaryProviders struct {
	router, serving *canarysource.ScrapeProvider
	champion        string // the stable server's version label
}

// Start registers the candidate (once per run and step, however often the
// activity is retried) and starts it beside the champion at no traffic.
// The candidate is an artifact pointer (a model step's output); a model
// directory on this host, as runs recorded before pointers pass it, is
// published first.
func (c *Canary) Start(ctx context.Context, in contract.CanaryStartInput) (contract.CanaryStartResult, error) {
	session := c.Workspace.Session()
	defer session.Close()
	ptr, err := modelPointer(ctx, session, in.Model)
	if err != nil {
		return contract.CanaryStartResult{}, toTemporal(fmt.Errorf("canary: with.model: %w", err), 0)
	}
	dir, err := session.Materialize(ctx, ptr)
	if err != nil {
		return contract.CanaryStartResult{}, toTemporal(fmt.Errorf("canary: with.model: %w", err), 0)
	}
	info, _, err := scoring.Describe(dir)
	if err != nil {
		return contract.CanaryStartResult{}, nonRetryable("BadInput", fmt.Errorf("canary: with.model %s: %w", ptr, err))
	}
	reg := registry.New(c.Workspace.Store())
	metrics := map[string]float64{}
	for k, v := range info.Metrics {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			metrics[k] = v
		}
	}
	champion := 0
	if mv, err := reg.Resolve(ctx, in.Name, registry.Champion); err == nil {
		champion = mv.Version
	} else if !errors.Is(err, registry.ErrNotFound) {
		return contract.CanaryStartResult{}, fmt.Errorf("canary: champion of %s: %w", in.Name, err)
	}
	mv, err := reg.Register(ctx, registry.RegisterRequest{
		Model: in.Name, Artifact: ptr.Digest, Metrics: metrics, Parent: champion, CreatedAt: time.Now().UTC(),
		Lineage: registry.Lineage{RunID: in.RunID, StepID: in.StepID, SpecHash: in.SpecHash, DataDigest: info.Lineage.DataDigest},
	})
	if err != nil {
		return contract.CanaryStartResult{}, fmt.Errorf("canary: register %s: %w", in.Name, err)
	}
	target, err := deployTarget(c.Deploy, in.Target)
	if err != nil {
		return contract.CanaryStartResult{}, err
	}
	env, err := target.StartCanary(ctx, in.Name, deploy.Candidate{Model: ptr, Version: mv.Version})
	if err != nil {
		return contract.CanaryStartResult{}, deployErr(err)
	}
	if c.Metrics != nil {
		c.Metrics.CanaryWeight(in.Name, canaryWeight(env))
	}
	return contract.CanaryStartResult{Version: mv.Version, Champion: champion, RouterURL: env.RouterURL}, nil
}

// modelPointer reads a model given by pointer, or publishes a directory of
// this host.
func modelPointer(ctx context.Context, session *workspace.Session, model string) (artifact.Pointer, error) {
	p, err := artifact.ParsePointer(model)
	if err == nil {
		return p, nil
	}
	if !errors.Is(err, artifact.ErrNotPointer) {
		return artifact.Pointer{}, steps.Permanent("BadInput", err)
	}
	if fi, serr := os.Stat(model); serr != nil || !fi.IsDir() {
		return artifact.Pointer{}, steps.Permanentf("BadInput", "%q is neither an artifact pointer nor a model directory on this worker", model)
	}
	return session.Publish(ctx, model)
}

// Weight moves traffic and starts a fresh measurement interval, so each
// analysis judges the candidate at the weight it was given. A fleet is
// measured by its Prometheus over the interval, which needs no baseline.
func (c *Canary) Weight(ctx context.Context, in contract.CanaryWeightInput) error {
	target, err := deployTarget(c.Deploy, in.Target)
	if err != nil {
		return err
	}
	env, err := target.SetCanaryWeight(ctx, in.Name, in.Percent)
	if err != nil {
		return deployErr(err)
	}
	// Recorded before the baseline: the traffic has moved even if the
	// baseline fails and the activity is retried.
	if c.Metrics != nil {
		c.Metrics.CanaryWeight(in.Name, canaryWeight(env))
	}
	if env.Prometheus != nil {
		return nil
	}
	p, err := c.providersFor(env)
	if err != nil {
		return err
	}
	if err := p.router.Baseline(ctx); err != nil {
		return err
	}
	return p.serving.Baseline(ctx)
}

// Measure analyses the interval since the last weight change. After a
// worker restart the baseline is gone: the providers then take one and
// wait a whole interval, heartbeating, before they measure. With
// in.Prometheus the router's traffic comes from that server over the
// interval just ended instead, which needs no baseline; the scores are
// still scraped from the model servers, whose ports a Prometheus
// configuration cannot know ahead of a canary. A fleet's servers have
// known addresses: its Prometheus answers for the router and the servers
// both, and nothing is kept in the worker's memory.
func (c *Canary) Measure(ctx context.Context, in contract.CanaryMeasureInput) (canary.Result, error) {
	target, err := deployTarget(c.Deploy, in.Target)
	if err != nil {
		return canary.Result{}, err
	}
	env, err := target.Ensure(ctx, in.Name)
	if err != nil {
		return canary.Result{}, deployErr(err)
	}
	if env.Prometheus != nil {
		return c.measureFleet(ctx, in, env)
	}
	p, err := c.providersFor(env)
	if err != nil {
		return canary.Result{}, err
	}
	stop := heartbeatEvery(ctx, 10*time.Second)
	defer stop()
	var traffic canary.Provider = p.router
	if in.Prometheus != nil {
		if traffic, err = canarysource.NewPrometheusProvider(api.Config{Address: in.Prometheus.URL}, canarysource.RouterSource, in.Prometheus.Matchers); err != nil {
			return canary.Result{}, nonRetryable("BadInput", err)
		}
	}
	m, err := traffic.Measure(ctx, canary.Window{Champion: deploy.Stable, Candidate: deploy.Canary, Duration: in.Interval})
	if err != nil {
		return canary.Result{}, err
	}
	scores, err := p.serving.Measure(ctx, canary.Window{Champion: p.champion, Candidate: "dir", Duration: in.Interval})
	if err != nil {
		return canary.Result{}, err
	}
	m.Champion.Scores, m.Candidate.Scores = scores.Champion.Scores, scores.Candidate.Scores
	return c.evaluate(in, m), nil
}

func (c *Canary) evaluate(in contract.CanaryMeasureInput, m canary.Measurement) canary.Result {
	res := canary.Evaluate(in.Analysis, m)
	if c.Metrics != nil {
		c.Metrics.GateOutcome(gateCanary, analysisOutcome(res.Outcome))
	}
	return res
}

// measureFleet asks the fleet's Prometheus (or the step's, for the router)
// about the interval just ended: the router's traffic by variant, and the
// servers' scores by the versions stable and canary serve.
func (c *Canary) measureFleet(ctx context.Context, in contract.CanaryMeasureInput, env deploy.Environment) (canary.Result, error) {
	stable, hasStable := env.Variant(deploy.Stable)
	cand, hasCanary := env.Variant(deploy.Canary)
	if !hasStable || !hasCanary {
		return canary.Result{}, fmt.Errorf("canary: the fleet of %s serves no stable and canary versions to compare", env.Name)
	}
	prom := *env.Prometheus
	if in.Prometheus != nil {
		prom.URL, prom.RouterMatchers = in.Prometheus.URL, in.Prometheus.Matchers
	}
	traffic, err := canarysource.NewPrometheusProvider(api.Config{Address: prom.URL}, canarysource.RouterSource, prom.RouterMatchers)
	if err != nil {
		return canary.Result{}, nonRetryable("BadInput", err)
	}
	scores, err := canarysource.NewPrometheusProvider(api.Config{Address: env.Prometheus.URL}, canarysource.ServingSource, env.Prometheus.ServingMatchers)
	if err != nil {
		return canary.Result{}, nonRetryable("BadInput", err)
	}
	end := time.Now()
	m, err := traffic.Measure(ctx, canary.Window{Champion: deploy.Stable, Candidate: deploy.Canary, Duration: in.Interval, End: end})
	if err != nil {
		return canary.Result{}, err
	}
	s, err := scores.Measure(ctx, canary.Window{Champion: stable.Version, Candidate: cand.Version, Duration: in.Interval, End: end})
	if err != nil {
		return canary.Result{}, err
	}
	m.Champion.Scores, m.Candidate.Scores = s.Champion.Scores, s.Candidate.Scores
	return c.evaluate(in, m), nil
}

// Promote moves the champion alias (compare-and-swap: of two runs
// promoting from one champion exactly one wins) and ends the canary, so
// the stable variant serves the new champion.
func (c *Canary) Promote(ctx context.Context, in contract.CanaryPromoteInput) error {
	reg, _, err := c.registry(ctx)
	if err != nil {
		return err
	}
	err = reg.Promote(ctx, in.Name, in.Version, in.ExpectedChampion, registry.Audit{At: time.Now().UTC(), Actor: in.Actor, Reason: in.Reason})
	var conflict *registry.ConflictError
	if errors.As(err, &conflict) {
		return nonRetryable("PromotionConflict", fmt.Errorf("canary: %w: another run promoted first", err))
	}
	if err != nil {
		return fmt.Errorf("canary: promote %s v%d: %w", in.Name, in.Version, err)
	}
	target, err := deployTarget(c.Deploy, in.Target)
	if err != nil {
		return err
	}
	_, err = target.EndCanary(ctx, in.Name)
	if err != nil && !errors.Is(err, deploy.ErrNoCanary) {
		return deployErr(err)
	}
	if c.Metrics != nil {
		c.Metrics.CanaryWeight(in.Name, 0)
	}
	return nil
}

// Abort sends every request back to the champion and stops the candidate.
// Nothing to abort is success: the call is retried and may run twice.
func (c *Canary) Abort(ctx context.Context, in contract.CanaryAbortInput) error {
	activity.GetLogger(ctx).Info("canary aborted", "model", in.Name, "reason", in.Reason)
	target, err := deployTarget(c.Deploy, in.Target)
	if err != nil {
		return err
	}
	_, err = target.EndCanary(ctx, in.Name)
	if err != nil && !errors.Is(err, deploy.ErrNoCanary) {
		return deployErr(err)
	}
	if c.Metrics != nil {
		c.Metrics.CanaryWeight(in.Name, 0)
		if err == nil {
			c.Metrics.Rollback(in.Name, rollbackCanary)
		}
	}
	return nil
}

func (c *Canary) providersFor(env deploy.Environment) (*canaryProviders, error) {
	stable, hasStable := env.Variant(deploy.Stable)
	cand, hasCanary := env.Variant(deploy.Canary)
	if !hasStable || !hasCanary {
		return nil, fmt.Errorf("canary: %s runs no stable and canary variants to compare", env.Name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.providers == nil {
		c.providers = map[string]*canaryProviders{}
	}
	p, ok := c.providers[env.Name]
	// Servers restarted on other ports need new providers (and a new
	// baseline), or the counters would be read across two processes.
	if !ok || p.router.URLs[0] != env.RouterMetricsURL || p.champion != stable.Version || p.serving.URLs[1] != cand.MetricsURL {
		p = &canaryProviders{
			router:   &canarysource.ScrapeProvider{URLs: []string{env.RouterMetricsURL}, Source: canarysource.RouterSource},
			serving:  &canarysource.ScrapeProvider{URLs: []string{stable.MetricsURL, cand.MetricsURL}, Source: canarysource.ServingSource},
			champion: stable.Version,
		}
		c.providers[env.Name] = p
	}
	return p, nil
}

func (c *Canary) registry(context.Context) (*registry.Registry, artifact.Store, error) {
	return registry.New(c.Workspace.Store()), c.Workspace.Store(), nil
}

// deployTarget is the target a step names, or the worker's default; one
// this worker does not have fails the step for good.
func deployTarget(set *deploy.Set, kind string) (deploy.Target, error) {
	t, err := set.Get(kind)
	if err != nil {
		return nil, nonRetryable("DeployTarget", err)
	}
	return t, nil
}

// deployErr marks a target set up wrongly (a fleet's router or servers
// that are not what it drives, a refused admin token) as not worth
// retrying; the rest (a server still loading, a store away) is retried.
func deployErr(err error) error {
	if deploy.IsConfigError(err) {
		return nonRetryable("DeployTarget", err)
	}
	return err
}

func nonRetryable(kind string, err error) error {
	return temporal.NewNonRetryableApplicationError(err.Error(), kind, err)
}

// heartbeatEvery keeps a long measurement visibly alive.
func heartbeatEvery(ctx context.Context, d time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return func() { close(done) }
}

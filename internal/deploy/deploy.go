// Package deploy holds the deployment targets that the canary-deploy and
// monitor steps drive (Target): Local, the embedded default, and Fleet,
// long-running router and model servers (see fleet.go). A worker has a Set
// of them: embedded always, a fleet when configured, and a default that a
// step's target input overrides.
//
// # Local
//
// For each environment, named after the registered model it serves, a
// Local runs real HTTP servers on 127.0.0.1 with ephemeral ports: a router
// (internal/router) in front of model servers (internal/serving).
//
//   - The stable variant serves the registry's champion alias through a
//     serving.RegistrySource, so moving the alias swaps its model without a
//     failed request, after at most one poll interval.
//   - During a canary, the canary variant serves a candidate model, named
//     by its artifact pointer and materialised from the store into the
//     host's cache (held there while it serves), through a
//     serving.DirSource; its responses and metrics report version "dir".
//
// Each model server samples what it scores into
// <StateDir>/deploy/<env>/<variant>/samples (see serving.SampleOptions);
// that is what monitoring reads.
//
// # First deployment
//
// A model with no champion has no stable variant. Ensure still starts the
// router, which answers 503 until something is deployed, and StartCanary
// then sends the canary all traffic whatever weight is asked for, since
// there is nothing else to send it to. The workflow skips the analysis of a
// first model and promotes it; after the promotion (the caller moves the
// alias) EndCanary starts the stable variant on the new champion, moves all
// traffic to it and stops the canary. An EndCanary without a promotion
// (the candidate was rejected) leaves nothing deployed again.
//
// # Durability
//
// The desired state of an environment (its model, the candidate in canary
// and the canary's weight) is kept in <StateDir>/deploy/<env>/desired.json,
// written atomically. Servers live as long as the Local: after a worker
// restart a new Local re-creates them on the first call for the
// environment (Ensure, typically), on new ports, which the returned
// Environment reports.
//
// # Secrets
//
// Each router's admin API is protected by a random token generated in
// process. It lives only in memory and is never part of an Environment,
// desired.json or a log line, all of which can end up in workflow
// histories. A router is built in process with its first variants; every
// later change goes through that API, over HTTP, as it would against a
// router running elsewhere, so the embedded default exercises the same path.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
	"github.com/gauntlet-ml/gauntlet/internal/router"
	"github.com/gauntlet-ml/gauntlet/internal/serving"
)

// Variant names, as the router and the metrics label them.
const (
	Stable = "stable"
	Canary = "canary"
)

var (
	// ErrClosed reports a call on a Local that was closed.
	ErrClosed = errors.New("deploy: closed")
	// ErrNoCanary reports a canary change for an environment with none.
	ErrNoCanary = errors.New("no canary in progress")
	// ErrCanaryInProgress reports a StartCanary for another candidate while
	// one is in canary: two runs must not overwrite each other's canary, so
	// the first must end it (EndCanary) before the next starts.
	ErrCanaryInProgress = errors.New("another candidate is in canary")
)

// Options configure a Local.
type Options struct {
	// StateDir is the root of local state; environments live under
	// <StateDir>/deploy. Required.
	StateDir string
	// Workspace is the artifact store holding the registry and the
	// candidates, with this host's cache of it; nil means the store
	// file://<StateDir>/artifacts, the steps' default.
	Workspace *workspace.Workspace
	Logger    *slog.Logger
	// Serving configures the model servers: limits, poll interval, sample
	// rate and rotation. A Sample.Rate of 0 means 1 (every record), since
	// monitoring reads the samples. Sample.Dir, Registry, AdminToken and
	// Logger are set per server and ignored here.
	Serving serving.Options
}

// Environment is what runs for one model. It holds no secret, so it may be
// returned from an activity.
type Environment struct {
	Name string `json:"name"`
	// Target is the kind of target running it: Embedded or FleetKind.
	Target string `json:"target,omitempty"`
	// RouterURL is where clients send predictions (POST /v1/predict).
	RouterURL        string `json:"router_url"`
	RouterMetricsURL string `json:"router_metrics_url"`
	// Variants are the running model servers, stable first.
	Variants []VariantInfo `json:"variants"`
	// Weights are the router's current weights by variant name, out of 100.
	Weights map[string]int `json:"weights"`
	// Faults are the faults injected into variants (see SetFault).
	Faults map[string]router.Fault `json:"faults,omitempty"`
	// Prometheus, on a fleet, is the server scraping its router and model
	// servers, which canary analysis asks; nil on Local, whose servers
	// are scraped directly.
	Prometheus *Prometheus `json:"prometheus,omitempty"`
	// Samples says where the model servers' sample logs are: SamplesInStore
	// (shipped to the artifact store under samples/<name>/, a fleet's),
	// or empty: in each variant's SampleDir.
	Samples string `json:"samples,omitempty"`
}

// SamplesInStore is Environment.Samples of servers that ship their samples
// to the artifact store (serving.SampleOptions.Store).
const SamplesInStore = "store"

// Prometheus is a Prometheus server scraping a fleet. The matchers are
// PromQL label matchers added to every selector, such as
// job="gauntlet-router", that keep other deployments' series out.
type Prometheus struct {
	URL             string `json:"url"`
	RouterMatchers  string `json:"router_matchers,omitempty"`
	ServingMatchers string `json:"serving_matchers,omitempty"`
}

// Variant returns the named variant.
func (e Environment) Variant(name string) (VariantInfo, bool) {
	for _, v := range e.Variants {
		if v.Name == name {
			return v, true
		}
	}
	return VariantInfo{}, false
}

// VariantInfo describes one running model server.
type VariantInfo struct {
	Name       string `json:"name"`
	URL        string `json:"url"`
	MetricsURL string `json:"metrics_url"`
	// Model is what the server follows: the registry alias for stable, the
	// candidate's artifact pointer for canary.
	Model string `json:"model"`
	// Version and Digest name the model being served now ("v3", or "dir"
	// for a directory), as the server's responses and metrics label it.
	Version   string `json:"version"`
	Digest    string `json:"digest"`
	SampleDir string `json:"sample_dir"`
}

// Local runs environments in this process. It is safe for concurrent use;
// calls for one environment are serialised, calls for different ones are
// not.
type Local struct {
	opts    Options
	root    string // <StateDir>/deploy, absolute
	initErr error
	log     *slog.Logger
	admin   *http.Client

	mu     sync.Mutex
	envs   map[string]*env
	closed bool

	storeMu sync.Mutex
	reg     *registry.Registry
	ws      *workspace.Workspace
}

// NewLocal returns a Local; it starts nothing until an environment is
// asked for.
func NewLocal(opts Options) *Local {
	l := &Local{opts: opts, log: opts.Logger, envs: map[string]*env{}, admin: &http.Client{Timeout: 30 * time.Second}}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if opts.StateDir == "" {
		l.initErr = errors.New("deploy: no state directory")
		return l
	}
	state, err := filepath.Abs(opts.StateDir)
	if err != nil {
		l.initErr = fmt.Errorf("deploy: state directory %s: %w", opts.StateDir, err)
		return l
	}
	l.root = filepath.Join(state, "deploy")
	l.opts.StateDir = state
	l.ws = opts.Workspace
	return l
}

// Ensure makes the environment of model name run: the router and, once the
// model has a champion, the stable variant; and, when the desired state
// (this Local's, or desired.json after a restart) has a candidate in canary,
// the canary at its weight. Calling it again starts only what is missing,
// such as stable once the model has a champion.
func (l *Local) Ensure(ctx context.Context, name string) (Environment, error) {
	e, err := l.lock(name)
	if err != nil {
		return Environment{}, err
	}
	defer e.mu.Unlock()
	if err := e.apply(ctx, e.desired, change{}); err != nil {
		return Environment{}, fmt.Errorf("deploy %s: ensure: %w", name, err)
	}
	return e.describe(), nil
}

// Kind is Embedded.
func (l *Local) Kind() string { return Embedded }

// StartCanary serves the candidate's model, an artifact in the store, as
// the canary variant, at weight 0 (all traffic when there is no stable
// variant yet). Starting the candidate already in canary changes nothing,
// so a retried call is safe; another candidate is refused with
// ErrCanaryInProgress. The candidate's version is not used: the canary
// serves the artifact itself.
func (l *Local) StartCanary(ctx context.Context, name string, c Candidate) (Environment, error) {
	candidate := c.Model
	if candidate.Digest == "" {
		return Environment{}, fmt.Errorf("deploy %s: start canary: no candidate", name)
	}
	want := candidate.String()
	e, err := l.lock(name)
	if err != nil {
		return Environment{}, err
	}
	defer e.mu.Unlock()
	next := e.desired
	if cur := next.Candidate; cur != "" && cur != want {
		return Environment{}, fmt.Errorf("deploy %s: start canary %s: %w: %s", name, want, ErrCanaryInProgress, cur)
	}
	fresh := next.Candidate == ""
	if fresh {
		next.Candidate, next.Weight = want, 0
	}
	if err := e.apply(ctx, next, change{freshCanary: fresh}); err != nil {
		return Environment{}, fmt.Errorf("deploy %s: start canary: %w", name, err)
	}
	return e.describe(), nil
}

// SetCanaryWeight sends percent of the traffic to the canary and the rest
// to stable, through the router's admin API.
func (l *Local) SetCanaryWeight(ctx context.Context, name string, percent int) (Environment, error) {
	if percent < 0 || percent > 100 {
		return Environment{}, fmt.Errorf("deploy %s: set canary weight: %d is not a percentage", name, percent)
	}
	e, err := l.lock(name)
	if err != nil {
		return Environment{}, err
	}
	defer e.mu.Unlock()
	if e.desired.Candidate == "" {
		return Environment{}, fmt.Errorf("deploy %s: set canary weight: %w", name, ErrNoCanary)
	}
	want := e.desired
	want.Weight = percent
	if err := e.apply(ctx, want, change{}); err != nil {
		return Environment{}, fmt.Errorf("deploy %s: set canary weight: %w", name, err)
	}
	return e.describe(), nil
}

// SetFault makes the router of name answer abortPercent of variant's
// requests with status (0: 503) instead of serving them; abortPercent 0
// removes the fault. It is a chaos and game-day tool: injected into the
// canary, it shows that the analysis rolls a failing candidate back. A
// fault is not part of the desired state: it ends with the variant (a
// canary's with EndCanary) and with the Local, so a forgotten drill does
// not outlive its process.
func (l *Local) SetFault(ctx context.Context, name, variant string, abortPercent, status int) (Environment, error) {
	e, err := l.lock(name)
	if err != nil {
		return Environment{}, err
	}
	defer e.mu.Unlock()
	if e.front == nil || e.front.router.Load() == nil {
		return Environment{}, fmt.Errorf("deploy %s: set fault on %s: nothing deployed", name, variant)
	}
	c := router.Client{BaseURL: e.front.url, Token: e.token, HTTP: e.l.admin}
	if _, err := c.SetFaults(ctx, map[string]router.Fault{variant: {AbortPercent: abortPercent, Status: status}}); err != nil {
		return Environment{}, fmt.Errorf("deploy %s: set fault on %s: %w", name, variant, err)
	}
	l.log.Warn("fault injected", "env", name, "variant", variant, "abort_percent", abortPercent, "status", status)
	return e.describe(), nil
}

// EndCanary sends all traffic to stable, then stops and removes the canary.
// It serves both outcomes: after a promotion (the caller moved the champion
// alias first) stable reloads at once rather than at its next poll, so no
// request after EndCanary sees the old champion; after an abort or a
// rollback the champion is where it was. If stable cannot load the new
// champion, routing is left as it was and the error returned. Ending no
// canary changes nothing.
func (l *Local) EndCanary(ctx context.Context, name string) (Environment, error) {
	e, err := l.lock(name)
	if err != nil {
		return Environment{}, err
	}
	defer e.mu.Unlock()
	want := e.desired
	want.Candidate, want.Weight = "", 0
	if err := e.apply(ctx, want, change{reloadStable: true}); err != nil {
		return Environment{}, fmt.Errorf("deploy %s: end canary: %w", name, err)
	}
	return e.describe(), nil
}

// FollowChampion makes a stable variant running here serve the champion
// now rather than at its next poll. It starts nothing: an environment not
// running in this process is started, on the champion, by the next
// Ensure.
func (l *Local) FollowChampion(ctx context.Context, name string) (Environment, error) {
	e, err := l.lock(name)
	if err != nil {
		return Environment{}, err
	}
	defer e.mu.Unlock()
	if e.stable == nil {
		return Environment{Name: name, Target: Embedded, Variants: []VariantInfo{}, Weights: map[string]int{}}, nil
	}
	if _, err := e.stable.srv.Reload(ctx); err != nil {
		return Environment{}, fmt.Errorf("deploy %s: follow the champion: %w", name, err)
	}
	return e.describe(), nil
}

// Describe reports what runs for name in this Local, without waiting for a
// change in progress; false when nothing was started for it here.
func (l *Local) Describe(name string) (Environment, bool) {
	l.mu.Lock()
	e := l.envs[name]
	l.mu.Unlock()
	if e == nil {
		return Environment{}, false
	}
	v := e.view.Load()
	if v == nil {
		return Environment{}, false
	}
	return v.environment(), true
}

// Close stops every environment: routers first, so that no new request
// arrives, then the model servers, each draining the requests in flight
// (bounded by ctx and Serving.ShutdownTimeout) and flushing its sample log.
// The desired state stays on disk for the next Local.
func (l *Local) Close(ctx context.Context) error {
	l.mu.Lock()
	l.closed = true
	envs := make([]*env, 0, len(l.envs))
	for _, e := range l.envs {
		envs = append(envs, e)
	}
	l.mu.Unlock()
	errs := make([]error, len(envs))
	var wg sync.WaitGroup
	for i, e := range envs {
		wg.Go(func() { errs[i] = e.shutdown(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// lock returns the environment of name, locked and with its desired state
// loaded.
func (l *Local) lock(name string) (*env, error) {
	if l.initErr != nil {
		return nil, l.initErr
	}
	if err := registry.ValidateName(name); err != nil {
		// The name becomes a directory: the registry's rules keep it one
		// path element.
		return nil, fmt.Errorf("deploy: %w", err)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	e := l.envs[name]
	if e == nil {
		e = newEnv(l, name)
		l.envs[name] = e
	}
	l.mu.Unlock()
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	if !e.loaded {
		if err := e.load(); err != nil {
			e.mu.Unlock()
			return nil, fmt.Errorf("deploy %s: %w", name, err)
		}
	}
	return e, nil
}

// openRegistry opens the store on first use; a failure is not kept, so a store
// that was unreachable is tried again on the next call.
func (l *Local) openRegistry(ctx context.Context) (*registry.Registry, *workspace.Workspace, error) {
	l.storeMu.Lock()
	defer l.storeMu.Unlock()
	if l.ws == nil {
		ws, err := workspace.Open(ctx, workspace.Config{StateDir: l.opts.StateDir})
		if err != nil {
			return nil, nil, err
		}
		l.ws = ws
	}
	if l.reg == nil {
		l.reg = registry.New(l.ws.Store())
	}
	return l.reg, l.ws, nil
}

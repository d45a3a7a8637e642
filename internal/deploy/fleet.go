package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
	"github.com/gauntlet-ml/gauntlet/internal/router"
	"github.com/gauntlet-ml/gauntlet/internal/serving"
)

// Fleet drives long-running `gauntlet router` and `gauntlet serve`
// processes, the services of docker-compose.yml: for each model, a router
// with two variants, stable and canary, in front of two model servers that
// follow registry aliases of the store the fleet shares,
//
//	gauntlet serve --model NAME@champion   --store STORE --ship-samples ...
//	gauntlet serve --model NAME@challenger --store STORE --ship-samples ...
//	gauntlet router --variant stable=URL=100 --variant canary=URL=0 --admin-token-file FILE
//
// A canary moves the challenger alias to the candidate's version and has
// the canary server load it (POST /admin/reload, or its next poll), then
// moves traffic with the router's admin API; ending a canary has stable
// load the champion the same way before traffic returns to it. The
// model servers' sample logs are shipped to the store, where the monitor
// reads them, and canary analysis asks the Prometheus that scrapes the
// router and the servers, so no measurement depends on a worker's memory:
// a worker that dies in the middle of a canary is replaced by any other,
// and the router serves on meanwhile.
//
// # Desired state
//
// What a model's fleet should run (the candidate in canary, its version and
// weight) is the ref deploy/<name>/desired in the store, changed by
// compare-and-swap, so that two workers, or two runs, cannot both start a
// canary. Ensure brings the router back to it, after the router restarted
// on its command line's weights, say.
//
// # Admin token
//
// The routers' and model servers' admin APIs take one bearer token, read
// from a file (ReadAdminToken): it lives in the Fleet's memory only, never
// in an Environment, an error, a log line or the store.
type Fleet struct {
	opts  FleetOptions
	token string
	store artifact.Store
	reg   *registry.Registry
	http  *http.Client
	log   *slog.Logger
}

// FleetOptions configure a Fleet.
type FleetOptions struct {
	// Routers are the routers' base URLs by model name.
	Routers map[string]string
	// AdminToken is the bearer token of the routers' and servers' admin
	// APIs (see ReadAdminToken). Required.
	AdminToken string
	// Store holds the registry, the candidates and the desired states.
	Store artifact.Store
	// Prometheus scrapes the routers and servers; its URL is required.
	Prometheus Prometheus
	// ReadyTimeout bounds the wait for a model server to serve the version
	// asked for. Default 2m.
	ReadyTimeout time.Duration
	// PollInterval is how often a server's /readyz is asked meanwhile.
	// Default 250ms.
	PollInterval time.Duration
	// HTTP reaches the routers and servers; nil means a client with a 30s
	// timeout.
	HTTP   *http.Client
	Logger *slog.Logger
}

// ReadAdminToken reads the admin token from path. Errors name the file,
// never its content.
func ReadAdminToken(path string) (string, error) {
	if path == "" {
		return "", errors.New("no admin token file given")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("admin token file %s is empty", path)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("admin token file %s: want one token on one line", path)
	}
	return tok, nil
}

// validate checks what can be checked without a store or a network.
func (opts FleetOptions) validate() error {
	if opts.AdminToken == "" {
		return errors.New("fleet: no admin token (a fleet is driven over its authenticated admin APIs only)")
	}
	if len(opts.Routers) == 0 {
		return errors.New("fleet: no router (MODEL=URL)")
	}
	for name, u := range opts.Routers {
		if err := registry.ValidateName(name); err != nil {
			return fmt.Errorf("fleet: router for %q: %w", name, err)
		}
		if err := httpURL(u); err != nil {
			return fmt.Errorf("fleet: router of %s: %w", name, err)
		}
	}
	if err := httpURL(opts.Prometheus.URL); err != nil {
		return fmt.Errorf("fleet: Prometheus: %w", err)
	}
	return nil
}

// NewFleet checks opts; it reaches nothing until a call.
func NewFleet(opts FleetOptions) (*Fleet, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.Store == nil {
		return nil, errors.New("fleet: no artifact store")
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 2 * time.Minute
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 250 * time.Millisecond
	}
	f := &Fleet{opts: opts, token: opts.AdminToken, store: opts.Store, reg: registry.New(opts.Store), http: opts.HTTP, log: opts.Logger}
	f.opts.AdminToken = ""
	if f.http == nil {
		f.http = &http.Client{Timeout: 30 * time.Second}
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	return f, nil
}

func httpURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	if u.User != nil {
		return errors.New("credentials in the URL are refused")
	}
	return nil
}

// Kind is FleetKind.
func (f *Fleet) Kind() string { return FleetKind }

// Close does nothing: the fleet outlives the worker.
func (f *Fleet) Close(context.Context) error { return nil }

// fleetDesired is what deploy/<name>/desired holds.
type fleetDesired struct {
	// Candidate is the pointer of the model in canary; empty when none.
	Candidate string `json:"candidate,omitempty"`
	Version   int    `json:"version,omitempty"`
	Weight    int    `json:"canary_weight"`
}

func desiredRef(name string) string { return "deploy/" + name + "/desired" }

func (f *Fleet) load(ctx context.Context, name string) (fleetDesired, string, error) {
	ref, err := f.store.GetRef(ctx, desiredRef(name))
	if errors.Is(err, artifact.ErrNotFound) {
		return fleetDesired{}, "", nil
	}
	if err != nil {
		return fleetDesired{}, "", fmt.Errorf("fleet %s: desired state: %w", name, err)
	}
	var d fleetDesired
	if err := json.Unmarshal(ref.Data, &d); err != nil {
		return fleetDesired{}, "", fmt.Errorf("fleet %s: desired state %s: %w", name, desiredRef(name), err)
	}
	return d, ref.Version, nil
}

// update applies fn to the desired state under compare-and-swap, starting
// over when another writer came first, and returns what it wrote.
func (f *Fleet) update(ctx context.Context, name string, fn func(*fleetDesired) error) (fleetDesired, error) {
	for range 20 {
		d, version, err := f.load(ctx, name)
		if err != nil {
			return d, err
		}
		next := d
		if err := fn(&next); err != nil {
			return d, err
		}
		if next == d && version != "" {
			return d, nil
		}
		b, err := json.Marshal(next)
		if err != nil {
			return d, err
		}
		_, err = f.store.PutRef(ctx, desiredRef(name), b, version)
		if errors.Is(err, artifact.ErrConflict) {
			continue
		}
		if err != nil {
			return d, fmt.Errorf("fleet %s: save desired state: %w", name, err)
		}
		return next, nil
	}
	return fleetDesired{}, fmt.Errorf("fleet %s: desired state: %w", name, registry.ErrContended)
}

// routerOf returns the admin client of name's router.
func (f *Fleet) routerOf(name string) (*router.Client, error) {
	if err := registry.ValidateName(name); err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	u, ok := f.opts.Routers[name]
	if !ok {
		return nil, configErrorf("fleet: no router for model %s (--fleet-router %s=URL)", name, name)
	}
	return &router.Client{BaseURL: u, Token: f.token, HTTP: f.http}, nil
}

// fleetEnv is one model's router and the servers behind it, as the router
// knows them.
type fleetEnv struct {
	name           string
	rc             *router.Client
	stable, canary router.Variant
	state          router.State
}

// look reads the router's state: its stable and canary variants.
func (f *Fleet) look(ctx context.Context, name string) (*fleetEnv, error) {
	rc, err := f.routerOf(name)
	if err != nil {
		return nil, err
	}
	st, err := rc.State(ctx)
	if err != nil {
		return nil, f.adminErr(name, "router", rc.BaseURL, err)
	}
	e := &fleetEnv{name: name, rc: rc, state: st}
	var names []string
	for _, v := range st.Variants {
		names = append(names, v.Name)
		switch v.Name {
		case Stable:
			e.stable = v
		case Canary:
			e.canary = v
		}
	}
	if e.stable.URL == "" || e.canary.URL == "" {
		return nil, configErrorf("fleet %s: the router at %s has variants %v; want %s and %s (gauntlet router --variant stable=URL=100 --variant canary=URL=0)", name, rc.BaseURL, names, Stable, Canary)
	}
	// Servers of another model behind this router would be given its
	// traffic: refuse before anything moves.
	for _, v := range []router.Variant{e.stable, e.canary} {
		if s := f.readyz(ctx, v.URL); s.ready && s.ref.Name != name {
			return nil, configErrorf("fleet %s: the %s server at %s serves model %s", name, v.Name, v.URL, s.ref.Name)
		}
	}
	return e, nil
}

func (f *Fleet) adminErr(name, what, base string, err error) error {
	var se *router.StatusError
	if errors.As(err, &se) && (se.Code == http.StatusUnauthorized || se.Code == http.StatusNotFound) {
		return configErrorf("fleet %s: the %s at %s refused the admin API (%d: %s): check that it runs with --admin-token-file holding the fleet's token", name, what, base, se.Code, se.Message)
	}
	return fmt.Errorf("fleet %s: %s at %s: %w", name, what, base, err)
}

// served is what a model server's /readyz says it serves; ready is false
// while it loads, waits for its alias or cannot be reached.
type served struct {
	ready  bool
	ref    serving.Ref
	digest string
	why    string
}

func (f *Fleet) readyz(ctx context.Context, base string) served {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/readyz", nil)
	if err != nil {
		return served{why: err.Error()}
	}
	resp, err := f.http.Do(req)
	if err != nil {
		return served{why: err.Error()}
	}
	defer resp.Body.Close()
	var body struct {
		Status string      `json:"status"`
		Model  serving.Ref `json:"model"`
		Digest string      `json:"digest"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err := json.Unmarshal(b, &body); err != nil {
		return served{why: fmt.Sprintf("HTTP %d: not a model server's answer", resp.StatusCode)}
	}
	if resp.StatusCode != http.StatusOK {
		return served{why: body.Status}
	}
	return served{ready: true, ref: body.Model, digest: body.Digest}
}

// load asks the server at base to load what its alias names now, then
// waits until it serves version of name. A server without an admin API
// loads it at its next poll, which the wait covers.
func (f *Fleet) loadVersion(ctx context.Context, name, variant, base string, version int) (served, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/admin/reload", nil)
	if err != nil {
		return served{}, err
	}
	req.Header.Set("Authorization", "Bearer "+f.token)
	if resp, err := f.http.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized {
			return served{}, configErrorf("fleet %s: the %s server at %s refused the fleet's admin token", name, variant, base)
		}
	}
	want := "v" + strconv.Itoa(version)
	ctx, cancel := context.WithTimeout(ctx, f.opts.ReadyTimeout)
	defer cancel()
	t := time.NewTicker(f.opts.PollInterval)
	defer t.Stop()
	for {
		s := f.readyz(ctx, base)
		if s.ready && s.ref.Name != name {
			return s, configErrorf("fleet %s: the %s server at %s serves model %s", name, variant, base, s.ref.Name)
		}
		if s.ready && s.ref.Version == want {
			return s, nil
		}
		select {
		case <-ctx.Done():
			now := s.why
			if s.ready {
				now = "it serves " + s.ref.Version
			}
			return s, fmt.Errorf("fleet %s: the %s server at %s does not serve %s after %s (%s)", name, variant, base, want, f.opts.ReadyTimeout, now)
		case <-t.C:
		}
	}
}

// champion is the champion's version; 0 when the model has none.
func (f *Fleet) champion(ctx context.Context, name string) (int, error) {
	mv, err := f.reg.Resolve(ctx, name, registry.Champion)
	if errors.Is(err, registry.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("fleet %s: champion: %w", name, err)
	}
	return mv.Version, nil
}

// challenge points the challenger alias at version.
func (f *Fleet) challenge(ctx context.Context, name string, version int) error {
	for range 5 {
		cur := 0
		if mv, err := f.reg.Resolve(ctx, name, registry.Challenger); err == nil {
			cur = mv.Version
		} else if !errors.Is(err, registry.ErrNotFound) {
			return fmt.Errorf("fleet %s: challenger: %w", name, err)
		}
		if cur == version {
			return nil
		}
		err := f.reg.SetAlias(ctx, name, registry.Challenger, version, cur, registry.Audit{At: time.Now().UTC(), Actor: "gauntlet-deploy", Reason: "canary of v" + strconv.Itoa(version)})
		var conflict *registry.ConflictError
		if errors.As(err, &conflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("fleet %s: challenger alias to v%d: %w", name, version, err)
		}
		return nil
	}
	return fmt.Errorf("fleet %s: challenger alias: %w", name, registry.ErrContended)
}

// unchallenge removes the challenger alias if it still names version.
func (f *Fleet) unchallenge(ctx context.Context, name string, version int) error {
	if version == 0 {
		return nil
	}
	err := f.reg.SetAlias(ctx, name, registry.Challenger, 0, version, registry.Audit{At: time.Now().UTC(), Actor: "gauntlet-deploy", Reason: "canary of v" + strconv.Itoa(version) + " ended"})
	var conflict *registry.ConflictError
	if err == nil || errors.As(err, &conflict) {
		// Moved on by someone else: theirs to keep.
		return nil
	}
	return fmt.Errorf("fleet %s: challenger alias: %w", name, err)
}

// route sets the router's weights for d: the canary's weight to canary and
// the rest to stable, all to the canary while there is no champion, none
// to it without a candidate.
func (f *Fleet) route(ctx context.Context, e *fleetEnv, d fleetDesired, champion int) error {
	canary := d.Weight
	switch {
	case d.Candidate == "":
		canary = 0
	case champion == 0:
		canary = 100
	}
	stable := 100 - canary
	if d.Candidate == "" && champion == 0 {
		// Nothing to serve: the router answers 503, as Local's does.
		stable = 0
	}
	if e.stable.Weight == stable && e.canary.Weight == canary {
		return nil
	}
	st, err := e.rc.SetWeights(ctx, map[string]int{Stable: stable, Canary: canary})
	if err != nil {
		return f.adminErr(e.name, "router", e.rc.BaseURL, err)
	}
	e.state = st
	e.stable.Weight, e.canary.Weight = stable, canary
	f.log.Info("routing", "env", e.name, "weights", map[string]int{Stable: stable, Canary: canary})
	return nil
}

// describe reports the fleet of name: the router's weights and faults, and
// the servers that serve a model now.
func (f *Fleet) describe(ctx context.Context, e *fleetEnv) (Environment, error) {
	env := Environment{
		Name: e.name, Target: FleetKind, RouterURL: e.rc.BaseURL, RouterMetricsURL: strings.TrimRight(e.rc.BaseURL, "/") + "/metrics",
		Variants: []VariantInfo{}, Weights: map[string]int{}, Faults: e.state.Faults,
		Prometheus: &f.opts.Prometheus, Samples: SamplesInStore,
	}
	for _, v := range e.state.Variants {
		env.Weights[v.Name] = v.Weight
	}
	for _, v := range []struct {
		rv    router.Variant
		alias string
	}{{e.stable, registry.Champion}, {e.canary, registry.Challenger}} {
		s := f.readyz(ctx, v.rv.URL)
		if !s.ready {
			continue
		}
		if s.ref.Name != e.name {
			return env, configErrorf("fleet %s: the %s server at %s serves model %s", e.name, v.rv.Name, v.rv.URL, s.ref.Name)
		}
		env.Variants = append(env.Variants, VariantInfo{
			Name: v.rv.Name, URL: v.rv.URL, MetricsURL: strings.TrimRight(v.rv.URL, "/") + "/metrics",
			Model: e.name + "@" + v.alias, Version: s.ref.Version, Digest: s.digest,
		})
	}
	return env, nil
}

// Ensure brings the fleet of name to its desired state: stable serving the
// champion, the candidate in canary (if any) on the canary server, and the
// router's weights.
func (f *Fleet) Ensure(ctx context.Context, name string) (Environment, error) {
	e, err := f.look(ctx, name)
	if err != nil {
		return Environment{}, err
	}
	d, _, err := f.load(ctx, name)
	if err != nil {
		return Environment{}, err
	}
	champion, err := f.champion(ctx, name)
	if err != nil {
		return Environment{}, err
	}
	if champion != 0 {
		if _, err := f.loadVersion(ctx, name, Stable, e.stable.URL, champion); err != nil {
			return Environment{}, err
		}
	}
	if d.Candidate != "" {
		if err := f.challenge(ctx, name, d.Version); err != nil {
			return Environment{}, err
		}
		if _, err := f.loadVersion(ctx, name, Canary, e.canary.URL, d.Version); err != nil {
			return Environment{}, err
		}
	}
	if err := f.route(ctx, e, d, champion); err != nil {
		return Environment{}, err
	}
	return f.describe(ctx, e)
}

// StartCanary records c as the candidate in canary (refusing another one),
// moves the challenger alias to its version, waits for the canary server
// to serve it and routes it weight 0, or everything when there is no
// champion yet.
func (f *Fleet) StartCanary(ctx context.Context, name string, c Candidate) (Environment, error) {
	if c.Model.Digest == "" || c.Version <= 0 {
		return Environment{}, fmt.Errorf("fleet %s: start canary: no candidate version", name)
	}
	if err := c.Model.Check(f.store); err != nil {
		return Environment{}, &ConfigError{Err: fmt.Errorf("fleet %s: start canary: %w", name, err)}
	}
	e, err := f.look(ctx, name)
	if err != nil {
		return Environment{}, err
	}
	want := c.Model.String()
	d, err := f.update(ctx, name, func(d *fleetDesired) error {
		if d.Candidate != "" && d.Candidate != want {
			return fmt.Errorf("fleet %s: start canary %s: %w: %s", name, want, ErrCanaryInProgress, d.Candidate)
		}
		if d.Candidate == "" {
			*d = fleetDesired{Candidate: want, Version: c.Version}
		}
		return nil
	})
	if err != nil {
		return Environment{}, err
	}
	if err := f.challenge(ctx, name, c.Version); err != nil {
		return Environment{}, err
	}
	if _, err := f.loadVersion(ctx, name, Canary, e.canary.URL, c.Version); err != nil {
		return Environment{}, err
	}
	champion, err := f.champion(ctx, name)
	if err != nil {
		return Environment{}, err
	}
	if err := f.route(ctx, e, d, champion); err != nil {
		return Environment{}, err
	}
	f.log.Info("canary started", "env", name, "version", c.Version, "model", want)
	return f.describe(ctx, e)
}

// SetCanaryWeight records the weight and routes it.
func (f *Fleet) SetCanaryWeight(ctx context.Context, name string, percent int) (Environment, error) {
	if percent < 0 || percent > 100 {
		return Environment{}, fmt.Errorf("fleet %s: set canary weight: %d is not a percentage", name, percent)
	}
	e, err := f.look(ctx, name)
	if err != nil {
		return Environment{}, err
	}
	d, err := f.update(ctx, name, func(d *fleetDesired) error {
		if d.Candidate == "" {
			return fmt.Errorf("fleet %s: set canary weight: %w", name, ErrNoCanary)
		}
		d.Weight = percent
		return nil
	})
	if err != nil {
		return Environment{}, err
	}
	champion, err := f.champion(ctx, name)
	if err != nil {
		return Environment{}, err
	}
	if err := f.route(ctx, e, d, champion); err != nil {
		return Environment{}, err
	}
	return f.describe(ctx, e)
}

// SetFault injects a fault through the router's admin API. Like Local's,
// it is not desired state: a restarted router has none, and EndCanary
// removes the canary's.
func (f *Fleet) SetFault(ctx context.Context, name, variant string, abortPercent, status int) (Environment, error) {
	e, err := f.look(ctx, name)
	if err != nil {
		return Environment{}, err
	}
	st, err := e.rc.SetFaults(ctx, map[string]router.Fault{variant: {AbortPercent: abortPercent, Status: status}})
	if err != nil {
		return Environment{}, fmt.Errorf("fleet %s: set fault on %s: %w", name, variant, err)
	}
	e.state = st
	f.log.Warn("fault injected", "env", name, "variant", variant, "abort_percent", abortPercent, "status", status)
	return f.describe(ctx, e)
}

// EndCanary has stable serve the champion, sends it all traffic, removes
// the canary's fault and the challenger alias, and then forgets the
// candidate. If stable cannot serve the champion, routing is left as it
// was and the error returned; a retry completes what a failed call began.
func (f *Fleet) EndCanary(ctx context.Context, name string) (Environment, error) {
	e, err := f.look(ctx, name)
	if err != nil {
		return Environment{}, err
	}
	d, _, err := f.load(ctx, name)
	if err != nil {
		return Environment{}, err
	}
	champion, err := f.champion(ctx, name)
	if err != nil {
		return Environment{}, err
	}
	if champion != 0 {
		if _, err := f.loadVersion(ctx, name, Stable, e.stable.URL, champion); err != nil {
			return Environment{}, fmt.Errorf("end canary: %w", err)
		}
	}
	if err := f.route(ctx, e, fleetDesired{}, champion); err != nil {
		return Environment{}, err
	}
	if _, ok := e.state.Faults[Canary]; ok {
		st, err := e.rc.SetFaults(ctx, map[string]router.Fault{Canary: {}})
		if err != nil {
			return Environment{}, fmt.Errorf("fleet %s: remove the canary's fault: %w", name, err)
		}
		e.state = st
	}
	if err := f.unchallenge(ctx, name, d.Version); err != nil {
		return Environment{}, err
	}
	if _, err := f.update(ctx, name, func(d *fleetDesired) error { *d = fleetDesired{}; return nil }); err != nil {
		return Environment{}, err
	}
	if d.Candidate != "" {
		f.log.Info("canary ended", "env", name, "version", d.Version, "champion", champion)
	}
	return f.describe(ctx, e)
}

// FollowChampion has stable serve the champion now.
func (f *Fleet) FollowChampion(ctx context.Context, name string) (Environment, error) {
	e, err := f.look(ctx, name)
	if err != nil {
		return Environment{}, err
	}
	champion, err := f.champion(ctx, name)
	if err != nil {
		return Environment{}, err
	}
	if champion == 0 {
		return Environment{}, fmt.Errorf("fleet %s: no champion to follow: %w", name, registry.ErrNotFound)
	}
	if _, err := f.loadVersion(ctx, name, Stable, e.stable.URL, champion); err != nil {
		return Environment{}, err
	}
	return f.describe(ctx, e)
}

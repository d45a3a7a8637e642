package deploy

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/cache"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
	"github.com/gauntlet-ml/gauntlet/internal/router"
	"github.com/gauntlet-ml/gauntlet/internal/serving"
)

// env is one environment. Its fields other than view are guarded by mu.
type env struct {
	l    *Local
	name string
	dir  string
	log  *slog.Logger
	// token is the router's admin token: a secret. See the package
	// documentation for why it never leaves memory.
	token string
	// upstream is the routers' transport to the model servers, kept to
	// close its idle connections before a server stops: a connection
	// dialled but never used counts as active for up to 5 seconds of the
	// server's drain.
	upstream *http.Transport

	mu      sync.Mutex
	loaded  bool
	stopped bool
	desired desired
	saved   bool // desired is what desired.json holds
	front   *front
	stable  *modelServer
	canary  *modelServer

	// view is what Describe reads, so that it never waits for a change.
	view atomic.Pointer[view]
}

func newEnv(l *Local, name string) *env {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 1024, 256
	return &env{
		l: l, name: name, dir: filepath.Join(l.root, name),
		log:   l.log.With("env", name),
		token: rand.Text(), upstream: t,
	}
}

// change says what a call asks beyond reaching the desired state.
type change struct {
	// reloadStable asks stable to follow the champion now: the caller has
	// just moved the alias and must not wait for the next poll.
	reloadStable bool
	// freshCanary marks a new candidate, whose samples must not be mixed
	// with the previous candidate's: both report version "dir".
	freshCanary bool
}

// apply brings what runs to want and records want as the desired state.
// Every step is idempotent, so a call that failed halfway is completed by
// the next one. A server is only stopped once the router no longer sends it
// traffic, and want is saved before the router sends traffic as it says.
func (e *env) apply(ctx context.Context, want desired, c change) error {
	defer e.publish()
	if e.front == nil {
		f, err := startFront(ctx, e.name, e.log)
		if err != nil {
			return fmt.Errorf("start router: %w", err)
		}
		e.front = f
	}
	if e.stable == nil {
		s, err := e.startStable(ctx)
		if err != nil {
			return err
		}
		e.stable = s
	} else if c.reloadStable {
		if _, err := e.stable.srv.Reload(ctx); err != nil {
			return fmt.Errorf("reload stable: %w", err)
		}
	}
	// First route as both the saved state and want allow: a canary that
	// want drops gets no more traffic, and stable gets its share even if
	// what follows fails.
	pre := e.desired
	if pre.Candidate != want.Candidate {
		pre = desired{Model: e.name}
	}
	if err := e.route(ctx, pre); err != nil {
		return err
	}
	if e.canary != nil && e.canary.model != want.Candidate {
		old := e.canary
		e.canary = nil
		e.upstream.CloseIdleConnections()
		if err := old.stop(ctx); err != nil {
			return fmt.Errorf("stop canary: %w", err)
		}
		e.log.Info("canary stopped", "model", old.model)
	}
	var started *modelServer
	if want.Candidate != "" && e.canary == nil {
		if c.freshCanary {
			if err := os.RemoveAll(e.sampleDir(Canary)); err != nil {
				return fmt.Errorf("start canary: clear samples: %w", err)
			}
		}
		s, err := e.startCanary(ctx, want.Candidate)
		if err != nil {
			return fmt.Errorf("start canary %s: %w", want.Candidate, err)
		}
		e.canary, started = s, s
		e.log.Info("canary started", "model", want.Candidate, "url", s.url)
	}
	if err := e.save(want); err != nil {
		if started != nil {
			// Not routed yet, so nothing is lost; keeping it would leave a
			// canary the desired state does not know.
			e.canary = nil
			err = errors.Join(err, started.stop(ctx))
		}
		return err
	}
	return e.route(ctx, want)
}

// startStable starts the stable variant on the champion, or returns nil
// when the model has none yet.
func (e *env) startStable(ctx context.Context) (*modelServer, error) {
	reg, ws, err := e.l.openRegistry(ctx)
	if err != nil {
		return nil, fmt.Errorf("start stable: %w", err)
	}
	store := ws.Store()
	if _, err := reg.Resolve(ctx, e.name, registry.Champion); errors.Is(err, registry.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("start stable: %w", err)
	}
	src := serving.RegistrySource{Registry: reg, Store: store, Model: e.name, Ref: registry.Champion, CacheDir: filepath.Join(e.dir, "cache")}
	s, err := e.startServer(ctx, Stable, registry.Champion, src)
	if err != nil {
		return nil, fmt.Errorf("start stable: %w", err)
	}
	e.log.Info("stable started", "version", s.srv.Model().Ref.Version, "url", s.url)
	return s, nil
}

// startCanary serves the candidate from the host's cache, holding it there
// until the server stops. A desired.json written before candidates were
// artifact pointers names an absolute directory, served where it is.
func (e *env) startCanary(ctx context.Context, candidate string) (*modelServer, error) {
	if filepath.IsAbs(candidate) {
		return e.startServer(ctx, Canary, candidate, serving.DirSource{Dir: candidate, Name: e.name})
	}
	p, err := artifact.ParsePointer(candidate)
	if err != nil {
		return nil, err
	}
	_, ws, err := e.l.openRegistry(ctx)
	if err != nil {
		return nil, err
	}
	lease, err := ws.Cache().Get(ctx, ws.Store(), p)
	if err != nil {
		return nil, err
	}
	s, err := e.startServer(ctx, Canary, candidate, serving.DirSource{Dir: lease.Path(), Name: e.name})
	if err != nil {
		lease.Release()
		return nil, err
	}
	s.lease = lease
	return s, nil
}

// targets are the router variants for want, given the servers running: the
// canary only if it serves want's candidate.
func (e *env) targets(want desired) []router.Variant {
	var vs []router.Variant
	canaryWeight := 0
	if e.canary != nil && e.canary.model == want.Candidate {
		canaryWeight = want.Weight
		if e.stable == nil {
			// At weight 0 with nothing beside it every request would be
			// answered 503.
			canaryWeight = 100
		}
		vs = append(vs, router.Variant{Name: Canary, URL: e.canary.url, Weight: canaryWeight})
	}
	if e.stable != nil {
		vs = append(vs, router.Variant{Name: Stable, URL: e.stable.url, Weight: 100 - canaryWeight})
	}
	return vs
}

// route makes the router send traffic to targets(want). The first variants
// make the router; later changes go through its admin API.
func (e *env) route(ctx context.Context, want desired) error {
	vs := e.targets(want)
	r := e.front.router.Load()
	switch {
	case len(vs) == 0:
		// A router needs a variant: without one the front answers 503.
		if r != nil {
			e.front.router.Store(nil)
			e.log.Info("nothing deployed")
		}
		return nil
	case r == nil:
		nr, err := router.New(router.Options{Variants: vs, AdminToken: e.token, Transport: e.upstream, Logger: e.log.With("component", "router")})
		if err != nil {
			return fmt.Errorf("start router: %w", err)
		}
		e.front.router.Store(nr)
		e.log.Info("routing", "weights", weights(vs))
		return nil
	}
	cur := r.State().Variants
	if sameVariants(cur, vs) {
		return nil
	}
	keep := map[string]bool{}
	for _, v := range vs {
		keep[v.Name] = true
	}
	var remove []string
	for _, v := range cur {
		if !keep[v.Name] {
			remove = append(remove, v.Name)
		}
	}
	c := router.Client{BaseURL: e.front.url, Token: e.token, HTTP: e.l.admin}
	if _, err := c.UpdateVariants(ctx, router.VariantsUpdate{Set: vs, Remove: remove}); err != nil {
		return fmt.Errorf("route: %w", err)
	}
	e.log.Info("routing", "weights", weights(vs))
	return nil
}

func sameVariants(a, b []router.Variant) bool {
	if len(a) != len(b) {
		return false
	}
	byName := map[string]router.Variant{}
	for _, v := range a {
		byName[v.Name] = v
	}
	for _, v := range b {
		if byName[v.Name] != v {
			return false
		}
	}
	return true
}

func weights(vs []router.Variant) map[string]int {
	w := make(map[string]int, len(vs))
	for _, v := range vs {
		w[v.Name] = v.Weight
	}
	return w
}

func (e *env) sampleDir(variant string) string { return filepath.Join(e.dir, variant, "samples") }

// startServer loads src and serves it on an ephemeral port of 127.0.0.1.
func (e *env) startServer(ctx context.Context, variant, model string, src serving.Source) (*modelServer, error) {
	opts := e.l.opts.Serving
	opts.Sample.Dir = e.sampleDir(variant)
	if opts.Sample.Rate == 0 {
		opts.Sample.Rate = 1
	}
	// Servers in one process cannot share a metrics registry (their
	// collectors have the same names); the Local reloads in process, so the
	// servers' own admin API stays off and holds no second secret.
	opts.Registry = nil
	opts.AdminToken = ""
	opts.Logger = e.log.With("variant", variant)
	srv, err := serving.New(ctx, src, opts)
	if err != nil {
		return nil, err
	}
	ln, err := listen(ctx)
	if err != nil {
		srv.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &modelServer{
		variant: variant, model: model, url: "http://" + ln.Addr().String(), sampleDir: opts.Sample.Dir,
		srv: srv, cancel: cancel, done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := srv.Serve(sctx, ln); err != nil {
			opts.Logger.Warn("model server stopped", "err", err)
		}
	}()
	return s, nil
}

// shutdown stops everything, routers first.
func (e *env) shutdown(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return nil
	}
	e.stopped = true
	e.view.Store(nil)
	var errs []error
	if e.front != nil {
		if err := e.front.stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("deploy %s: stop router: %w", e.name, err))
		}
	}
	e.upstream.CloseIdleConnections()
	for _, s := range []*modelServer{e.stable, e.canary} {
		if s == nil {
			continue
		}
		if err := s.stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("deploy %s: stop %s: %w", e.name, s.variant, err))
		}
	}
	e.front, e.stable, e.canary = nil, nil, nil
	return errors.Join(errs...)
}

func (e *env) publish() {
	if e.front == nil {
		return
	}
	e.view.Store(&view{name: e.name, front: e.front, stable: e.stable, canary: e.canary})
}

func (e *env) describe() Environment { return e.view.Load().environment() }

// view is a snapshot of the servers of an environment; what they serve and
// the weights are read live.
type view struct {
	name           string
	front          *front
	stable, canary *modelServer
}

func (v *view) environment() Environment {
	env := Environment{
		Name: v.name, Target: Embedded, RouterURL: v.front.url, RouterMetricsURL: v.front.url + "/metrics",
		Variants: []VariantInfo{}, Weights: map[string]int{},
	}
	for _, s := range []*modelServer{v.stable, v.canary} {
		if s != nil {
			env.Variants = append(env.Variants, s.info())
		}
	}
	if r := v.front.router.Load(); r != nil {
		st := r.State()
		for _, rv := range st.Variants {
			env.Weights[rv.Name] = rv.Weight
		}
		env.Faults = st.Faults
	}
	return env
}

// modelServer is one running model server; its fields do not change.
type modelServer struct {
	variant   string
	model     string
	url       string
	sampleDir string
	srv       *serving.Server
	cancel    context.CancelFunc
	done      chan struct{}
	// lease keeps a candidate in the cache while it is served.
	lease *cache.Lease
}

func (s *modelServer) info() VariantInfo {
	m := s.srv.Model()
	return VariantInfo{
		Name: s.variant, URL: s.url, MetricsURL: s.url + "/metrics",
		Model: s.model, Version: m.Ref.Version, Digest: m.Digest, SampleDir: s.sampleDir,
	}
}

// stop drains the server and flushes its sample log. If ctx ends first the
// server still stops, on its own.
func (s *modelServer) stop(ctx context.Context) error {
	s.cancel()
	select {
	case <-s.done:
		if s.lease != nil {
			s.lease.Release()
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("drain: %w", ctx.Err())
	}
}

// front is the environment's listener. It outlives the routers behind it,
// so the router URL stays the same while nothing is deployed, and answers
// 503 while there is no router.
type front struct {
	name   string
	url    string
	router atomic.Pointer[router.Router]
	srv    *http.Server
	done   chan struct{}
}

func startFront(ctx context.Context, name string, log *slog.Logger) (*front, error) {
	ln, err := listen(ctx)
	if err != nil {
		return nil, err
	}
	f := &front{name: name, url: "http://" + ln.Addr().String(), done: make(chan struct{})}
	f.srv = &http.Server{
		Handler:           f,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(f.done)
		if err := f.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Warn("router stopped", "err", err)
		}
	}()
	return f, nil
}

func (f *front) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r := f.router.Load(); r != nil {
		r.ServeHTTP(w, req)
		return
	}
	b, _ := json.Marshal(map[string]string{"error": fmt.Sprintf("%s: nothing deployed: the model has no champion and no canary", f.name)})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(append(b, '\n'))
}

// stop stops accepting and waits for the requests in flight, or closes
// their connections once ctx ends.
func (f *front) stop(ctx context.Context) error {
	err := f.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, f.srv.Close())
	}
	<-f.done
	return err
}

func listen(ctx context.Context) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

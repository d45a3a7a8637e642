package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
	"github.com/gauntlet-ml/gauntlet/internal/router"
	"github.com/gauntlet-ml/gauntlet/internal/serving"
)

const fleetToken = "fleet-admin-token-4b1d"

// swappable is a server address whose handler a test can replace: a model
// server that has not loaded its model yet (503 until then, as a `gauntlet
// serve` waiting for its alias is not ready), or a router that restarts.
type swappable struct {
	h   atomic.Pointer[http.Handler]
	url string
}

func (s *swappable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := s.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, `{"status":"waiting for its model"}`)
}

func (s *swappable) set(h http.Handler) { s.h.Store(&h) }

func newSwappable(t *testing.T) *swappable {
	t.Helper()
	s := &swappable{}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	s.url = ts.URL
	return s
}

// fleetFixture is a model's fleet in process: a router with stable and
// canary variants in front of two model servers following the champion and
// challenger aliases of the fixture's store, as `gauntlet serve` and
// `gauntlet router` run them.
type fleetFixture struct {
	*fixture
	router         *swappable
	stable, canary *swappable
	fleet          *Fleet
}

func newFleetFixture(t *testing.T, champion int) *fleetFixture {
	t.Helper()
	ff := &fleetFixture{fixture: newFixture(t)}
	if champion != 0 {
		ff.promote(t, champion)
	}
	ff.stable, ff.canary = newSwappable(t), newSwappable(t)
	// The stable server polls and has no admin API; the canary server is
	// told to reload. Both come up once their alias exists.
	ff.serveAlias(t, ff.stable, registry.Champion, serving.Options{PollInterval: 10 * time.Millisecond})
	ff.serveAlias(t, ff.canary, registry.Challenger, serving.Options{PollInterval: -1, AdminToken: fleetToken})
	ff.router = newSwappable(t)
	ff.startRouter(t)
	f, err := NewFleet(FleetOptions{
		Routers: map[string]string{modelName: ff.router.url}, AdminToken: fleetToken, Store: ff.ws.Store(),
		Prometheus:   Prometheus{URL: "http://127.0.0.1:9090", RouterMatchers: `job="r"`},
		ReadyTimeout: 20 * time.Second, PollInterval: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(lockedWriter{ff.logsMu, ff.logs}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ff.fleet = f
	if champion != 0 {
		deadline := time.Now().Add(20 * time.Second)
		for !f.readyz(context.Background(), ff.stable.url).ready {
			if time.Now().After(deadline) {
				t.Fatal("the stable server did not load the champion")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return ff
}

// startRouter starts a router as its command line does: all traffic to
// stable.
func (ff *fleetFixture) startRouter(t *testing.T) {
	t.Helper()
	r, err := router.New(router.Options{AdminToken: fleetToken, Variants: []router.Variant{
		{Name: Stable, URL: ff.stable.url, Weight: 100}, {Name: Canary, URL: ff.canary.url, Weight: 0},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ff.router.set(r)
}

// serveAlias loads NAME@alias once it resolves, and then serves it at s
// (polling when opts says so, as Serve does).
func (ff *fleetFixture) serveAlias(t *testing.T, s *swappable, alias string, opts serving.Options) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	store := ff.ws.Store()
	src := serving.RegistrySource{Registry: registry.New(store), Store: store, Model: modelName, Ref: alias, CacheDir: filepath.Join(t.TempDir(), alias)}
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			srv, err := serving.New(ctx, src, opts)
			if err != nil {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			defer srv.Close()
			s.set(srv.Handler())
			if opts.PollInterval <= 0 {
				<-ctx.Done()
				return
			}
			for ctx.Err() == nil {
				_, _ = srv.Reload(ctx)
				time.Sleep(opts.PollInterval)
			}
			return
		}
	}()
}

func (ff *fleetFixture) register(t *testing.T, i int) Candidate {
	t.Helper()
	mv, err := ff.reg.Register(context.Background(), registry.RegisterRequest{
		Model: modelName, Artifact: ff.ptrs[i].Digest, Lineage: registry.Lineage{RunID: "run", StepID: fmt.Sprint("canary", i)}, CreatedAt: time.Unix(0, 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	return Candidate{Model: ff.ptrs[i], Version: mv.Version}
}

func (ff *fleetFixture) routerState(t *testing.T) router.State {
	t.Helper()
	st, err := (&router.Client{BaseURL: ff.router.url, Token: fleetToken}).State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func weightsOf(st router.State) string {
	w := map[string]int{}
	for _, v := range st.Variants {
		w[v.Name] = v.Weight
	}
	return fmt.Sprint(w)
}

func versionOf(env Environment, variant string) string {
	v, _ := env.Variant(variant)
	return v.Version
}

func (ff *fleetFixture) alias(t *testing.T, alias string) int {
	t.Helper()
	mv, err := ff.reg.Resolve(context.Background(), modelName, alias)
	if errors.Is(err, registry.ErrNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return mv.Version
}

func TestFleetCanaryPromotion(t *testing.T) {
	ctx := context.Background()
	ff := newFleetFixture(t, 1)
	f := ff.fleet
	cand := Candidate{Model: ff.ptrs[1], Version: 2}

	env, err := f.StartCanary(ctx, modelName, cand)
	if err != nil {
		t.Fatal(err)
	}
	if env.Target != FleetKind || env.Samples != SamplesInStore || env.Prometheus == nil || env.Prometheus.RouterMatchers != `job="r"` {
		t.Errorf("environment %+v: want the fleet's kind, samples in the store and its Prometheus", env)
	}
	if versionOf(env, Stable) != "v1" || versionOf(env, Canary) != "v2" || fmt.Sprint(env.Weights) != "map[canary:0 stable:100]" {
		t.Fatalf("after StartCanary: %+v", env)
	}
	if got := ff.alias(t, registry.Challenger); got != 2 {
		t.Fatalf("challenger is v%d, want v2", got)
	}
	if _, err := f.StartCanary(ctx, modelName, cand); err != nil {
		t.Fatalf("StartCanary again: %v", err)
	}
	other := ff.register(t, 2)
	if _, err := f.StartCanary(ctx, modelName, other); !errors.Is(err, ErrCanaryInProgress) {
		t.Fatalf("another candidate: %v, want ErrCanaryInProgress", err)
	}
	if env, err = f.SetCanaryWeight(ctx, modelName, 40); err != nil || fmt.Sprint(env.Weights) != "map[canary:40 stable:60]" {
		t.Fatalf("SetCanaryWeight 40: %+v, %v", env.Weights, err)
	}
	a, err := predict(ff.router.url, ff.body, Canary)
	if err != nil || a.code != 200 || a.version != "v2" {
		t.Fatalf("canary through the router: %+v, %v", a, err)
	}
	if env, err = f.SetFault(ctx, modelName, Canary, 100, 0); err != nil || env.Faults[Canary].AbortPercent != 100 {
		t.Fatalf("SetFault: %+v, %v", env.Faults, err)
	}

	ff.promote(t, 2)
	if env, err = f.EndCanary(ctx, modelName); err != nil {
		t.Fatal(err)
	}
	if versionOf(env, Stable) != "v2" || fmt.Sprint(env.Weights) != "map[canary:0 stable:100]" || len(env.Faults) != 0 {
		t.Fatalf("after the promotion: %+v", env)
	}
	if a, err := predict(ff.router.url, ff.body, ""); err != nil || a.code != 200 || a.version != "v2" || a.variant != Stable {
		t.Fatalf("after the promotion the router answered %+v, %v; want stable serving v2", a, err)
	}
	if got := ff.alias(t, registry.Challenger); got != 0 {
		t.Errorf("challenger is still v%d after the canary", got)
	}
	if d, _, err := f.load(ctx, modelName); err != nil || d != (fleetDesired{}) {
		t.Errorf("desired state after the canary: %+v, %v", d, err)
	}
	if _, err := f.EndCanary(ctx, modelName); err != nil {
		t.Fatalf("EndCanary again: %v", err)
	}
	if _, err := f.SetCanaryWeight(ctx, modelName, 10); !errors.Is(err, ErrNoCanary) {
		t.Fatalf("SetCanaryWeight without a canary: %v", err)
	}

	// A monitor's rollback moves the alias back; stable follows at once.
	if err := ff.reg.Rollback(ctx, modelName, 2, registry.Audit{At: time.Unix(2, 0), Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if env, err = f.FollowChampion(ctx, modelName); err != nil || versionOf(env, Stable) != "v1" {
		t.Fatalf("FollowChampion after a rollback: %+v, %v", env, err)
	}
	if strings.Contains(ff.logs.String(), fleetToken) {
		t.Error("the admin token is in the log")
	}
}

// The router is a process of its own: one restarted with its command line's
// weights is brought back to the canary's by Ensure; a canary that ends
// without a promotion leaves the champion serving.
func TestFleetEnsureAndRollback(t *testing.T) {
	ctx := context.Background()
	ff := newFleetFixture(t, 1)
	f := ff.fleet
	cand := ff.register(t, 2)
	if _, err := f.StartCanary(ctx, modelName, cand); err != nil {
		t.Fatal(err)
	}
	if _, err := f.SetCanaryWeight(ctx, modelName, 25); err != nil {
		t.Fatal(err)
	}
	ff.startRouter(t)
	if got := weightsOf(ff.routerState(t)); got != "map[canary:0 stable:100]" {
		t.Fatalf("restarted router: %s", got)
	}
	env, err := f.Ensure(ctx, modelName)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(env.Weights) != "map[canary:25 stable:75]" || versionOf(env, Canary) != fmt.Sprint("v", cand.Version) {
		t.Fatalf("Ensure after the router restarted: %+v", env)
	}
	if env, err = f.EndCanary(ctx, modelName); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(env.Weights) != "map[canary:0 stable:100]" || versionOf(env, Stable) != "v1" || ff.alias(t, registry.Champion) != 1 {
		t.Fatalf("rolled back: %+v", env)
	}
}

// A model's first version has no champion: the canary takes all traffic
// until it is promoted, and stable comes up on it after.
func TestFleetFirstDeployment(t *testing.T) {
	ctx := context.Background()
	ff := newFleetFixture(t, 0)
	f := ff.fleet
	env, err := f.StartCanary(ctx, modelName, Candidate{Model: ff.ptrs[0], Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(env.Weights) != "map[canary:100 stable:0]" {
		t.Fatalf("first canary: %+v", env.Weights)
	}
	if _, has := env.Variant(Stable); has {
		t.Fatalf("stable serves with no champion: %+v", env)
	}
	ff.promote(t, 1)
	if env, err = f.EndCanary(ctx, modelName); err != nil {
		t.Fatal(err)
	}
	if versionOf(env, Stable) != "v1" || fmt.Sprint(env.Weights) != "map[canary:0 stable:100]" {
		t.Fatalf("after the first promotion: %+v", env)
	}

	// A first candidate rejected leaves nothing to serve.
	ff2 := newFleetFixture(t, 0)
	if _, err := ff2.fleet.StartCanary(ctx, modelName, Candidate{Model: ff2.ptrs[0], Version: 1}); err != nil {
		t.Fatal(err)
	}
	if env, err = ff2.fleet.EndCanary(ctx, modelName); err != nil || fmt.Sprint(env.Weights) != "map[canary:0 stable:0]" {
		t.Fatalf("rejected first candidate: %+v, %v", env.Weights, err)
	}
	if a, err := predict(ff2.router.url, ff2.body, ""); err != nil || a.code != http.StatusServiceUnavailable {
		t.Fatalf("router with nothing deployed: %+v, %v", a, err)
	}
}

func TestFleetRefusesWhatItCannotDrive(t *testing.T) {
	ctx := context.Background()
	ff := newFleetFixture(t, 1)
	wrong, err := NewFleet(FleetOptions{
		Routers: map[string]string{modelName: ff.router.url, "other": ff.router.url}, AdminToken: "not-the-token", Store: ff.ws.Store(),
		Prometheus: Prometheus{URL: "http://127.0.0.1:9090"},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = wrong.Ensure(ctx, modelName)
	if !IsConfigError(err) || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "not-the-token") {
		t.Errorf("a wrong token: %v; want a ConfigError saying 401, without the token", err)
	}
	if _, err := ff.fleet.Ensure(ctx, "unknown"); !IsConfigError(err) || !strings.Contains(err.Error(), "--fleet-router unknown=URL") {
		t.Errorf("a model without a router: %v", err)
	}
	// The router of another model serves credit-risk.
	right, err := NewFleet(FleetOptions{Routers: map[string]string{"other": ff.router.url}, AdminToken: fleetToken, Store: ff.ws.Store(), Prometheus: Prometheus{URL: "http://127.0.0.1:9090"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := right.Ensure(ctx, "other"); !IsConfigError(err) || !strings.Contains(err.Error(), "serves model "+modelName) {
		t.Errorf("servers of another model: %v", err)
	}
	// A router without the two variants.
	r, err := router.New(router.Options{AdminToken: fleetToken, Variants: []router.Variant{{Name: "blue", URL: ff.stable.url, Weight: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	ff.router.set(r)
	if _, err := ff.fleet.Ensure(ctx, modelName); !IsConfigError(err) || !strings.Contains(err.Error(), "[blue]") {
		t.Errorf("a router without stable and canary: %v", err)
	}
	ff.startRouter(t)
	// A candidate from another store.
	elsewhere := ff.ptrs[1]
	elsewhere.Store = "file:///elsewhere"
	if _, err := ff.fleet.StartCanary(ctx, modelName, Candidate{Model: elsewhere, Version: 2}); !IsConfigError(err) || !errors.Is(err, artifact.ErrOtherStore) {
		t.Errorf("a candidate in another store: %v", err)
	}

	for _, o := range []FleetOptions{
		{Routers: map[string]string{modelName: ff.router.url}, Store: ff.ws.Store(), Prometheus: Prometheus{URL: "http://p:9090"}},
		{Routers: map[string]string{modelName: "router:8080"}, AdminToken: "t", Store: ff.ws.Store(), Prometheus: Prometheus{URL: "http://p:9090"}},
		{Routers: map[string]string{modelName: ff.router.url}, AdminToken: "t", Store: ff.ws.Store()},
		{AdminToken: "t", Store: ff.ws.Store(), Prometheus: Prometheus{URL: "http://p:9090"}},
	} {
		if _, err := NewFleet(o); err == nil {
			t.Errorf("NewFleet(%+v) accepted", o)
		}
	}
}

func TestReadAdminToken(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "token")
	if err := os.WriteFile(good, []byte("s3cr3t-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := ReadAdminToken(good); err != nil || tok != "s3cr3t-value" {
		t.Fatalf("ReadAdminToken: %q, %v", tok, err)
	}
	empty := filepath.Join(dir, "empty")
	two := filepath.Join(dir, "two")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(two, []byte("s3cr3t one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"", filepath.Join(dir, "missing"), empty, two} {
		_, err := ReadAdminToken(path)
		if err == nil || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("ReadAdminToken(%q): %v", path, err)
		}
	}
}

func TestSet(t *testing.T) {
	f := newFixture(t)
	l := f.local(t)
	s, err := NewSet(Embedded, l)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(""); err != nil || got != Target(l) {
		t.Errorf("default: %v, %v", got, err)
	}
	if _, err := s.Get(FleetKind); !IsConfigError(err) || !strings.Contains(err.Error(), "--fleet-router") {
		t.Errorf("an unconfigured fleet: %v", err)
	}
	if _, err := s.Get("cloud"); !IsConfigError(err) || !strings.Contains(err.Error(), "want embedded or fleet") {
		t.Errorf("an unknown target: %v", err)
	}
	if _, err := NewSet(FleetKind, l); err == nil {
		t.Error("a default that is not configured was accepted")
	}
	if _, err := NewSet(Embedded, l, l); err == nil {
		t.Error("two embedded targets accepted")
	}
}

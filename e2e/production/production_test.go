package production

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/fleettest"
	"github.com/gauntlet-ml/gauntlet/internal/promtest"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
	"github.com/gauntlet-ml/gauntlet/internal/router"
	"github.com/gauntlet-ml/gauntlet/internal/searchattr"
	"github.com/gauntlet-ml/gauntlet/internal/traffic"
)

const (
	model    = "credit-risk"
	storeURL = "s3://artifacts/production"
	port     = 8080
	promPort = 9090
	// The population the models were trained on, and the same one after
	// a shift the monitor must catch.
	population = "builtin:credit-risk?rows=2000&seed=11&bias=0.3"
	drifted    = "builtin:credit-risk?rows=2000&seed=11&bias=0.3&drift=1.5"
)

type binaries struct{ worker, gauntlet string }

var (
	buildOnce sync.Once
	built     binaries
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// build compiles the worker and the CLI once per test binary. Both link
// the Temporal server's dependencies: set GAUNTLET_BUILD_LOCK to a lock
// file to take turns with other builds of such binaries.
func build(t *testing.T) binaries {
	t.Helper()
	buildOnce.Do(func() {
		root, err := fleettest.RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		if buildDir, buildErr = os.MkdirTemp("", "production-bin-"); buildErr != nil {
			return
		}
		built = binaries{worker: filepath.Join(buildDir, "worker"), gauntlet: filepath.Join(buildDir, "gauntlet")}
		for _, b := range []struct{ out, pkg string }{{built.worker, "./worker"}, {built.gauntlet, "./starter"}} {
			args := []string{"go", "build", "-o", b.out, b.pkg}
			if lock := os.Getenv("GAUNTLET_BUILD_LOCK"); lock != "" {
				args = append([]string{"flock", lock}, args...)
			}
			start := time.Now()
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
				return
			}
			t.Logf("go build %s: %s", b.pkg, time.Since(start).Round(100*time.Millisecond))
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

func repoPath(t *testing.T, rel string) string {
	t.Helper()
	root, err := fleettest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, rel)
}

// stack is docker-compose.yml's production services, each on a host of
// its own.
type stack struct {
	t         *testing.T
	bins      binaries
	tp        *fleettest.Temporal
	s3        *fleettest.S3
	token     string
	tokenFile string
	pipelines string

	routerHost, championHost, candidateHost, promHost, workerHost, cli *fleettest.Host
	procs                                                              []*fleettest.Proc
	worker                                                             *fleettest.Proc

	c     client.Client
	http  *http.Client
	admin *router.Client
}

func (s *stack) storeEnv() []string { return append(s.s3.Env(), "GAUNTLET_STORE="+storeURL) }

func (s *stack) start(h *fleettest.Host, name string, args ...string) *fleettest.Proc {
	s.t.Helper()
	p, err := h.Start(name, fleettest.Spec{Args: args, Env: s.storeEnv()}, syscall.SIGTERM)
	if err != nil {
		s.t.Fatal(err)
	}
	s.procs = append(s.procs, p)
	return p
}

func url(h *fleettest.Host, port uint16) string { return "http://" + h.Addr(port) }

func startStack(t *testing.T, ctx context.Context) *stack {
	t.Helper()
	for _, tool := range []string{"temporal-server", "temporal-sql-tool", "versitygw"} {
		fleettest.Tool(t, tool)
	}
	promBin := promtest.Binary(t)
	s := &stack{t: t, bins: build(t), pipelines: repoPath(t, "e2e/production/testdata/pipelines")}
	f := fleettest.New(t)
	server := f.AddHost("temporal")
	s.routerHost, s.championHost, s.candidateHost = f.AddHost("router"), f.AddHost("model-champion"), f.AddHost("model-candidate")
	s.promHost, s.workerHost, s.cli = f.AddHost("prometheus"), f.AddHost("worker"), f.AddHost("cli")

	began := time.Now()
	pg := fleettest.StartPostgres(t, server)
	s.tp = fleettest.StartTemporal(t, server, pg, fleettest.TemporalOptions{
		Namespace: "default", SearchAttributes: searchattr.Definitions(),
		DynamicConfig: repoPath(t, "deploy/temporal/dynamicconfig.yaml"),
	})
	s.s3 = fleettest.StartS3(t, server, "artifacts")
	t.Logf("Temporal on PostgreSQL and the S3 store: %s", time.Since(began).Round(time.Millisecond))

	// The compose secret: one admin token for the router and the servers,
	// in a file the worker reads too.
	s.token = "adm-" + rand.Text()
	s.tokenFile = filepath.Join(f.ConfDir("secrets"), "gauntlet-admin-token")
	if err := os.WriteFile(s.tokenFile, []byte(s.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		h     *fleettest.Host
		alias string
	}{{s.championHost, registry.Champion}, {s.candidateHost, registry.Challenger}} {
		s.start(m.h, "serve", s.bins.gauntlet, "serve", "--addr", m.h.Addr(port), "--model", model+"@"+m.alias, "--wait-for-alias",
			"--store", storeURL, "--cache-dir", filepath.Join(m.h.Dir(), "cache"), "--poll", "1s",
			"--ship-samples", "--replica", m.h.Name, "--ship-interval", "1s", "--admin-token-file", s.tokenFile)
	}
	s.start(s.routerHost, "router", s.bins.gauntlet, "router", "--addr", s.routerHost.Addr(port),
		"--variant", "stable="+url(s.championHost, port)+"=100", "--variant", "canary="+url(s.candidateHost, port)+"=0",
		"--admin-token-file", s.tokenFile)
	conf := promConfig(t, f.ConfDir("prometheus"), map[string][]string{
		"gauntlet-router":        {s.routerHost.Addr(port)},
		"gauntlet-model-servers": {s.championHost.Addr(port), s.candidateHost.Addr(port)},
	})
	s.start(s.promHost, "prometheus", promBin, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(s.promHost.Dir(), "prometheus"),
		"--web.listen-address="+s.promHost.Addr(promPort), "--log.level=warn")
	s.startWorker()

	s.http = &http.Client{Transport: &http.Transport{DialContext: s.cli.DialContext, MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
	s.admin = &router.Client{BaseURL: url(s.routerHost, port), Token: s.token, HTTP: s.http}
	eventually(t, ctx, "the router and Prometheus answer", func() error {
		if _, err := s.admin.State(ctx); err != nil {
			return err
		}
		return s.get(ctx, url(s.promHost, promPort)+"/-/ready")
	})
	var err error
	if s.c, err = s.tp.Dial(ctx, s.cli, "default"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.c.Close)
	t.Logf("the stack is up: %s", time.Since(began).Round(time.Millisecond))
	return s
}

func (s *stack) startWorker() {
	s.t.Helper()
	s.worker = s.start(s.workerHost, "worker", s.bins.worker, "--address", s.tp.Addr(),
		"--state-dir", filepath.Join(s.workerHost.Dir(), "state"), "--pipelines", s.pipelines,
		"--deploy-target", "fleet", "--fleet-router", model+"="+url(s.routerHost, port),
		"--fleet-admin-token-file", s.tokenFile, "--fleet-prometheus", url(s.promHost, promPort), "--fleet-ready-timeout", "60s")
}

func (s *stack) get(ctx context.Context, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}

// promConfig writes a Prometheus configuration with the shipped jobs
// (deploy/prometheus/prometheus.yml) named in targets, each scraping those
// addresses every second instead of the compose host names.
func promConfig(t *testing.T, dir string, targets map[string][]string) string {
	t.Helper()
	b, err := os.ReadFile(repoPath(t, "deploy/prometheus/prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []map[string]any `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	var jobs []any
	for _, sc := range cfg.ScrapeConfigs {
		tg, ok := targets[fmt.Sprint(sc["job_name"])]
		if !ok {
			continue
		}
		sc["static_configs"] = []any{map[string]any{"targets": tg}}
		sc["scrape_interval"], sc["scrape_timeout"] = "1s", "1s"
		jobs = append(jobs, sc)
	}
	if len(jobs) != len(targets) {
		t.Fatalf("deploy/prometheus/prometheus.yml lacks some of the jobs %v", targets)
	}
	out, err := yaml.Marshal(map[string]any{"scrape_configs": jobs})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func eventually(t *testing.T, ctx context.Context, what string, cond func() error) {
	t.Helper()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// cliRun starts a pipeline run with the CLI, from its own host.
func (s *stack) cliRun(ctx context.Context, id, pipeline string, params ...string) {
	s.t.Helper()
	args := []string{s.bins.gauntlet, "run", pipeline, "--address", s.tp.Addr(), "--id", id, "--pipelines", s.pipelines}
	for _, p := range params {
		args = append(args, "-p", p)
	}
	if out, err := s.cli.OutputContext(ctx, fleettest.Spec{Args: args, Env: s.storeEnv()}); err != nil {
		s.t.Fatalf("gauntlet run %s: %v\n%s", pipeline, err, out)
	}
}

// wait returns the run's final status, or its error.
func (s *stack) wait(ctx context.Context, id string) (contract.Status, error) {
	var st contract.Status
	err := s.c.GetWorkflow(ctx, id, "").Get(ctx, &st)
	return st, err
}

func (s *stack) mustSucceed(ctx context.Context, id string) contract.Status {
	s.t.Helper()
	st, err := s.wait(ctx, id)
	if err != nil {
		s.t.Fatalf("run %s: %v\nworker:\n%s", id, err, s.worker.Output())
	}
	return st
}

func stepOf(t *testing.T, st contract.Status, id string) contract.StepStatus {
	t.Helper()
	for _, s := range st.Steps {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no step %s in %+v", id, st.Steps)
	return contract.StepStatus{}
}

// aliases are the registry's aliases of the model, as `gauntlet models
// show` reads them from the store.
func (s *stack) aliases(ctx context.Context) map[string]int {
	s.t.Helper()
	out, err := s.cli.OutputContext(ctx, fleettest.Spec{Args: []string{s.bins.gauntlet, "models", "show", model, "-o", "json"}, Env: s.storeEnv()})
	if err != nil {
		s.t.Fatalf("gauntlet models show: %v\n%s", err, out)
	}
	var m registry.Model
	if err := json.Unmarshal(out, &m); err != nil {
		s.t.Fatalf("gauntlet models show: %v\n%s", err, out)
	}
	return m.Aliases
}

// stableServes asks the router, pinned to stable, which version answers.
func (s *stack) stableServes(ctx context.Context, body []byte) (string, error) {
	r := s.post(ctx, body, router.HeaderVariant, "stable")
	if r.code != http.StatusOK {
		return "", fmt.Errorf("stable answered %d %s", r.code, r.err)
	}
	return r.version, nil
}

// result is one prediction the client asked for.
type result struct {
	at      time.Time
	code    int // 0: no answer
	variant string
	version string
	err     string
}

func (s *stack) post(ctx context.Context, body []byte, header ...string) result {
	r := result{at: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url(s.routerHost, port)+"/v1/predict", bytes.NewReader(body))
	if err != nil {
		r.err = err.Error()
		return r
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := s.http.Do(req)
	if err != nil {
		r.err = err.Error()
		return r
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var ans struct {
		Model struct{ Version string }
		Error string
	}
	_ = json.Unmarshal(b, &ans)
	r.code, r.variant, r.version, r.err = resp.StatusCode, resp.Header.Get(router.HeaderVariant), ans.Model.Version, ans.Error
	return r
}

// load is a client sending one-record predictions to the router at a
// steady rate, from the population or, once drift is set, the drifted
// one; it keeps every answer.
type load struct {
	drift   atomic.Bool
	mu      sync.Mutex
	results []result
	stop    func()
}

func encode(t *testing.T, src string) [][]byte {
	t.Helper()
	recs, err := traffic.LoadRecords(src, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, len(recs))
	for i, r := range recs {
		if out[i], err = json.Marshal(map[string]any{"records": []any{r}}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func (s *stack) startLoad(t *testing.T, rate int) *load {
	normal, shifted := encode(t, population), encode(t, drifted)
	l := &load{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		sem := make(chan struct{}, 32)
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			body := normal[i%len(normal)]
			if l.drift.Load() {
				body = shifted[i%len(shifted)]
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() { <-sem }()
				r := s.post(context.Background(), body)
				l.mu.Lock()
				l.results = append(l.results, r)
				l.mu.Unlock()
			})
		}
	})
	l.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(l.stop)
	return l
}

// between returns the answers to requests sent from from to to.
func (l *load) between(from, to time.Time) []result {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []result
	for _, r := range l.results {
		if !r.at.Before(from) && r.at.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

func failed(rs []result) []result {
	var out []result
	for _, r := range rs {
		if r.code != http.StatusOK {
			out = append(out, r)
		}
	}
	return out
}

func history(ctx context.Context, t *testing.T, c client.Client, id string) []*historypb.HistoryEvent {
	t.Helper()
	var events []*historypb.HistoryEvent
	it := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	return events
}

// activity is one activity of a run's history.
type activity struct {
	name      string
	input     []byte
	completed bool
	by        string // the identity of the worker that completed it
	after     int    // index of the completion in the history
}

func activities(events []*historypb.HistoryEvent) []*activity {
	byID := map[int64]*activity{}
	var out []*activity
	for i, ev := range events {
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			act := &activity{name: a.GetActivityType().GetName()}
			if p := a.GetInput().GetPayloads(); len(p) > 0 {
				act.input = p[0].GetData()
			}
			byID[ev.GetEventId()] = act
			out = append(out, act)
		}
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil {
			if act := byID[a.GetScheduledEventId()]; act != nil {
				act.completed, act.by, act.after = true, a.GetIdentity(), i
			}
		}
	}
	return out
}

// TestProductionFleet is the production scenario on the compose
// topology: the first model, a good candidate promoted, one failing 20 %
// of its requests rolled back, the worker killed in the middle of a canary
// and restarted (the run resumes at its weight, and the router fails no
// request meanwhile), and drift that makes the monitor roll production
// back and start one retraining run. The admin token never appears in a
// history or a log.
func TestProductionFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	s := startStack(t, ctx)
	probe := encode(t, population)[0]
	phase := func(name string, began time.Time) { t.Logf("%s: %s", name, time.Since(began).Round(time.Millisecond)) }

	// 1. The first model has no champion: the canary serves everything
	// until it is promoted, and stable then comes up on it.
	began := time.Now()
	s.cliRun(ctx, "release-1", "release", "seed=1")
	st := s.mustSucceed(ctx, "release-1")
	if out := stepOf(t, st, "canary").Outputs; out["decision"] != "promoted" || !strings.Contains(fmt.Sprint(out["reason"]), "no champion") {
		t.Fatalf("first release: %+v", out)
	}
	if v, err := s.stableServes(ctx, probe); err != nil || v != "v1" {
		t.Fatalf("stable after the first release: %q, %v", v, err)
	}
	phase("first model", began)

	l := s.startLoad(t, 50)

	// 2. A good candidate passes both weights, judged through Prometheus,
	// and is promoted.
	began = time.Now()
	s.cliRun(ctx, "release-2", "release", "seed=2")
	st = s.mustSucceed(ctx, "release-2")
	out := stepOf(t, st, "canary").Outputs
	if out["decision"] != "promoted" || out["version"] != float64(2) {
		t.Fatalf("good candidate: %+v", out)
	}
	for _, iv := range out["intervals"].([]any) {
		if o := iv.(map[string]any)["outcome"]; o != "pass" {
			t.Errorf("good candidate: an interval was %v: %+v", o, iv)
		}
	}
	if a := s.aliases(ctx); a[registry.Champion] != 2 || a[registry.Challenger] != 0 {
		t.Fatalf("aliases after the promotion: %v", a)
	}
	if bad := failed(l.between(began, time.Now())); len(bad) > 0 {
		t.Errorf("%d requests failed during the good canary, first %+v", len(bad), bad[0])
	}
	phase("good candidate promoted", began)

	// 3. A candidate failing 20 % of its requests (the router's fault
	// injection, a game day's drill) is rolled back by the analysis.
	began = time.Now()
	if _, err := s.admin.SetFaults(ctx, map[string]router.Fault{"canary": {AbortPercent: 20}}); err != nil {
		t.Fatal(err)
	}
	s.cliRun(ctx, "release-3", "release", "seed=3")
	if _, err := s.wait(ctx, "release-3"); err == nil || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("failing candidate: %v, want a rollback", err)
	}
	if a := s.aliases(ctx); a[registry.Champion] != 2 || a[registry.Challenger] != 0 {
		t.Fatalf("aliases after the rollback: %v", a)
	}
	rs, err := s.admin.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if w := weights(rs); w != "map[canary:0 stable:100]" || len(rs.Faults) != 0 {
		t.Fatalf("router after the rollback: %s, faults %v", w, rs.Faults)
	}
	during := l.between(began, time.Now())
	bad := failed(during)
	if len(bad) == 0 {
		t.Errorf("no request failed during the failing canary of %d", len(during))
	}
	for _, r := range bad {
		if r.variant != "canary" || r.code != http.StatusServiceUnavailable {
			t.Fatalf("a request the champion would have answered failed: %+v", r)
		}
	}
	phase("failing candidate rolled back", began)

	// 4. The worker dies in the middle of a canary and comes back: the
	// router serves every request meanwhile, and the run goes on from the
	// weight it was on.
	began = time.Now()
	s.cliRun(ctx, "release-4", "release", "seed=4", "interval=8s")
	var weightedBy string
	eventually(t, ctx, "release-4 waits at 50%", func() error {
		events := history(ctx, t, s.c, "release-4")
		for _, a := range activities(events) {
			if a.name != contract.CanaryWeightName || !a.completed || !strings.Contains(string(a.input), `"percent":50`) {
				continue
			}
			for _, ev := range events[a.after:] {
				if ev.GetTimerStartedEventAttributes() != nil {
					weightedBy = a.by
					return nil
				}
			}
		}
		return errors.New("not yet")
	})
	killed := time.Now()
	if err := s.workerHost.Kill(); err != nil {
		t.Fatal(err)
	}
	<-s.worker.Done()
	time.Sleep(3 * time.Second)
	rs, err = s.admin.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if w := weights(rs); w != "map[canary:50 stable:50]" {
		t.Fatalf("router with the worker down: %s, want the canary's 50%%", w)
	}
	s.startWorker()
	st = s.mustSucceed(ctx, "release-4")
	ended := time.Now()
	out = stepOf(t, st, "canary").Outputs
	var ws []any
	for _, iv := range out["intervals"].([]any) {
		ws = append(ws, iv.(map[string]any)["weight"])
	}
	if out["decision"] != "promoted" || fmt.Sprint(ws) != "[20 50]" {
		t.Fatalf("release-4 after the restart: %+v", out)
	}
	var weightsSet []string
	var measures []*activity
	var promote *activity
	for _, a := range activities(history(ctx, t, s.c, "release-4")) {
		switch a.name {
		case contract.CanaryWeightName:
			weightsSet = append(weightsSet, string(a.input))
		case contract.CanaryMeasureName:
			measures = append(measures, a)
		case contract.CanaryPromoteName:
			promote = a
		}
	}
	// The measurement at 50% and the promotion came after the kill: the
	// new worker did them.
	if len(measures) != 2 || measures[1].by == weightedBy || promote == nil || promote.by == weightedBy {
		t.Errorf("after the kill, measured by %v and promoted by %v; want a worker other than %s", measures, promote, weightedBy)
	}
	if len(weightsSet) != 2 {
		t.Errorf("traffic was moved %d times (%v); want 20 then 50, not again after the restart", len(weightsSet), weightsSet)
	}
	during = l.between(began, ended)
	if bad := failed(during); len(bad) > 0 {
		t.Errorf("%d of %d requests failed while the worker was killed and restarted, first %+v", len(bad), len(during), bad[0])
	}
	down := l.between(killed, killed.Add(3*time.Second))
	if len(down) == 0 {
		t.Error("no request was sent while the worker was down")
	}
	t.Logf("while the worker was down: %d requests, all answered", len(down))
	if a := s.aliases(ctx); a[registry.Champion] != 4 || a[registry.Previous] != 2 {
		t.Fatalf("aliases after release-4: %v", a)
	}
	phase("worker killed mid-canary, run resumed", began)

	// 5. The population drifts: the monitor reads the servers' samples from
	// the store, rolls production back and starts one retraining run.
	began = time.Now()
	l.drift.Store(true)
	s.cliRun(ctx, "watch-1", "watch")
	st = s.mustSucceed(ctx, "watch-1")
	out = stepOf(t, st, "monitor").Outputs
	retrains, _ := out["retrain_runs"].([]any)
	if out["rolled_back"] != true || len(retrains) != 1 {
		t.Fatalf("monitor: %+v; want one rollback and one retraining run", out)
	}
	if a := s.aliases(ctx); a[registry.Champion] != 2 {
		t.Fatalf("aliases after the monitor's rollback: %v", a)
	}
	if v, err := s.stableServes(ctx, probe); err != nil || v != "v2" {
		t.Fatalf("stable after the monitor's rollback: %q, %v", v, err)
	}
	retrain := fmt.Sprint(retrains[0])
	if _, err := s.wait(ctx, retrain); err != nil {
		t.Fatalf("retraining run %s: %v", retrain, err)
	}
	phase("drift rolled back and retrained", began)
	l.stop()

	// 6. The admin token is in no history and no log.
	ids := []string{"release-1", "release-2", "release-3", "release-4", "watch-1", fmt.Sprint(out["monitor_id"]), retrain}
	for _, id := range ids {
		for _, ev := range history(ctx, t, s.c, id) {
			b, err := protojson.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte(s.token)) {
				t.Fatalf("the admin token is in the history of %s", id)
			}
		}
	}
	for _, p := range s.procs {
		b, err := os.ReadFile(p.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(s.token)) {
			t.Fatalf("the admin token is in the log of %s", p)
		}
	}
}

func weights(st router.State) string {
	w := map[string]int{}
	for _, v := range st.Variants {
		w[v.Name] = v.Weight
	}
	return fmt.Sprint(w)
}

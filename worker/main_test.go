package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/testkit"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commonpb "go.temporal.io/api/common/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/gauntlet-ml/gauntlet/internal/metrics"
	"github.com/gauntlet-ml/gauntlet/internal/spot"
	"github.com/gauntlet-ml/gauntlet/internal/workerhost"
)

var metricsLine = regexp.MustCompile(`metrics on (http://\S+)`)

// TestMetricsServedBeforeTemporalAnswers starts the worker against an
// address that accepts connections and never answers: /metrics must
// already serve the domain metrics and the SDK's (its dial attempt) while
// the dial waits.
func TestMetricsServedBeforeTemporalAnswers(t *testing.T) {
	nowhere := blackHole(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout testkit.Buffer
	code := make(chan int, 1)
	args := []string{"--address", nowhere, "--metrics-addr", "127.0.0.1:0", "--pipelines", "../pipelines", "--state-dir", t.TempDir()}
	go func() { code <- run(ctx, args, &stdout, io.Discard, func(string) string { return "" }) }()

	wants := []string{
		`gauntlet_runs_total{pipeline="smoke",status="failed"} 0`,
		`temporal_request_total{`,
		`go_goroutines `,
	}
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if m := metricsLine.FindStringSubmatch(stdout.String()); m != nil {
			body = get(t, m[1])
			if containsAll(body, wants) {
				break
			}
		}
		select {
		case c := <-code:
			t.Fatalf("worker exited with %d before /metrics showed %q; stdout %q; last body:\n%s", c, wants, stdout.String(), body)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed all of %q; stdout %q; last body:\n%s", wants, stdout.String(), body)
		}
	}
	cancel()
	if c := <-code; c != 6 {
		t.Errorf("exit code %d, want 6 (Temporal unreachable)", c)
	}
}

// blackHole listens and holds every connection without a word, as a
// frontend that hangs does; a refused connection would fail the dial at
// once and leave no time to scrape.
func blackHole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	return l.Addr().String()
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(b)
}

// fakeVisibility answers ListWorkflow from pages and QueryWorkflow from
// statuses; a run missing from statuses fails its query.
type fakeVisibility struct {
	client.Client
	pages    [][]string
	statuses map[string]contract.Status

	mu      sync.Mutex
	queries []string
}

func (f *fakeVisibility) ListWorkflow(_ context.Context, req *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error) {
	f.mu.Lock()
	f.queries = append(f.queries, req.GetQuery())
	f.mu.Unlock()
	page := 0
	if len(req.GetNextPageToken()) > 0 {
		page = int(req.GetNextPageToken()[0])
	}
	resp := &workflowservice.ListWorkflowExecutionsResponse{}
	for _, id := range f.pages[page] {
		resp.Executions = append(resp.Executions, &workflowpb.WorkflowExecutionInfo{Execution: &commonpb.WorkflowExecution{WorkflowId: id, RunId: "r-" + id}})
	}
	if page+1 < len(f.pages) {
		resp.NextPageToken = []byte{byte(page + 1)}
	}
	return resp, nil
}

func (f *fakeVisibility) QueryWorkflow(_ context.Context, id, _, query string, _ ...any) (converter.EncodedValue, error) {
	st, ok := f.statuses[id]
	if !ok || query != contract.StatusQuery {
		return nil, errors.New("workflow task failed")
	}
	b, err := json.Marshal(st)
	return jsonValue(b), err
}

type jsonValue []byte

func (v jsonValue) HasValue() bool    { return len(v) > 0 }
func (v jsonValue) Get(ptr any) error { return json.Unmarshal(v, ptr) }

func waitingRun(pipeline string, now time.Time, waits map[string]time.Duration) contract.Status {
	st := contract.Status{Pipeline: pipeline, State: contract.RunWaiting}
	st.Steps = append(st.Steps, contract.StepStatus{ID: "train", State: contract.StateSucceeded})
	for step, d := range waits {
		began := now.Add(-d)
		st.Steps = append(st.Steps, contract.StepStatus{ID: step, State: contract.StateWaiting, StartedAt: &began})
	}
	return st
}

func TestApprovalsWatchCountsWaitingSteps(t *testing.T) {
	now := time.Now()
	fake := &fakeVisibility{
		pages: [][]string{{"run-a", "run-broken"}, {"run-c"}},
		statuses: map[string]contract.Status{
			"run-a": waitingRun("credit-risk", now, map[string]time.Duration{"approve": 2 * time.Hour}),
			"run-c": waitingRun("credit-risk", now, map[string]time.Duration{"approve": 30 * time.Minute, "sign-off": 10 * time.Minute}),
		},
	}
	var logs testkit.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))

	got, err := workerhost.CountApprovals(context.Background(), fake, now, logger)
	if err != nil {
		t.Fatal(err)
	}
	want := []metrics.WaitingApproval{
		{Pipeline: "credit-risk", Step: "approve", Count: 2, Oldest: 2 * time.Hour},
		{Pipeline: "credit-risk", Step: "sign-off", Count: 1, Oldest: 10 * time.Minute},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	if !strings.Contains(logs.String(), "run-broken") {
		t.Errorf("the run whose query failed was not logged: %q", logs.String())
	}
	for _, q := range fake.queries {
		if !containsAll(q, []string{"WorkflowType = 'Pipeline'", "ExecutionStatus = 'Running'", "GauntletStatus = 'waiting'"}) {
			t.Errorf("visibility query %q", q)
		}
	}

	reg := prometheus.NewRegistry()
	m := metrics.NewMetrics(reg)
	stop := workerhost.WatchApprovals(context.Background(), fake, m, time.Hour, logger)
	defer stop()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if gaugeValue(t, reg, "gauntlet_approvals_waiting", "approve") == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watch never published the first count")
		}
	}
	if oldest := gaugeValue(t, reg, "gauntlet_approval_oldest_wait_seconds", "approve"); oldest < 7200 {
		t.Errorf("oldest wait %vs, want at least 7200", oldest)
	}
}

// gaugeValue is the gauge name of step; -1 when there is none.
func gaugeValue(t *testing.T, g prometheus.Gatherer, name, step string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "step" && l.GetValue() == step {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// A worker whose key ring cannot be read stops before it dials: joining the
// cluster without it would write plain payloads or fail on every encrypted
// one.
func TestBadCodecKeysStopTheStart(t *testing.T) {
	nowhere := blackHole(t)
	missing := filepath.Join(t.TempDir(), "codec.keys")
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		wants []string
	}{
		{"flag", []string{"--codec-keys", missing}, nil, []string{"--codec-keys", missing}},
		{"env file", nil, map[string]string{workerhost.EnvCodecKeysFile: missing}, []string{workerhost.EnvCodecKeysFile, missing}},
		{"env keys", nil, map[string]string{workerhost.EnvCodecKeys: "k1:bm90IGEga2V5"}, []string{workerhost.EnvCodecKeys, `"k1"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			began := time.Now()
			args := append([]string{"--address", nowhere, "--state-dir", t.TempDir()}, tc.args...)
			code := run(context.Background(), args, io.Discard, &stderr, func(k string) string { return tc.env[k] })
			if code != 1 || time.Since(began) > 5*time.Second {
				t.Fatalf("exit %d after %s, want 1 before any dial: %s", code, time.Since(began), stderr.String())
			}
			for _, want := range tc.wants {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr %q lacks %q", stderr.String(), want)
				}
			}
		})
	}
}

// stopRecorder stands in for the Temporal worker ServeUntil stops.
type stopRecorder struct{ stopped chan struct{} }

func (s *stopRecorder) Stop() { close(s.stopped) }

// tokenIMDS serves IMDSv2 as EC2 does: metadata only with a token from
// PUT /latest/api/token, 401 without one; the interruption is scheduled
// once quiet polls have been answered 404.
func tokenIMDS(t *testing.T, quiet int) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	polls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			if r.Header.Get(spot.HeaderTokenTTL) == "" {
				http.Error(w, "missing TTL", http.StatusBadRequest)
				return
			}
			io.WriteString(w, "t0ken")
		case r.Method == http.MethodGet && r.URL.Path == "/latest/meta-data/spot/instance-action":
			if r.Header.Get(spot.HeaderToken) != "t0ken" {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			if polls++; polls <= quiet {
				http.NotFound(w, r)
				return
			}
			io.WriteString(w, `{"action": "terminate", "time": "2026-11-29T11:00:00Z"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestSpotNoticeStopsTheWorkerAndExitsNonZero(t *testing.T) {
	srv := tokenIMDS(t, 3)
	var logs testkit.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	notices, stopWatch := workerhost.WatchSpot(context.Background(), srv.URL, time.Millisecond, logger)
	defer stopWatch()
	w := &stopRecorder{stopped: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- workerhost.ServeUntil(context.Background(), w, notices, logger) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("no spot notice acted on within 20s")
	}
	select {
	case <-w.stopped:
	default:
		t.Error("the worker was not stopped")
	}
	var si *workerhost.SpotInterrupted
	if !errors.As(err, &si) || si.Notice.Action != "terminate" {
		t.Fatalf("ServeUntil = %v, want the terminate notice", err)
	}
	if code := exitCode(fmt.Errorf("serve: %w", err)); code != exitSpotInterrupted || code == 0 {
		t.Errorf("exit code %d, want %d", code, exitSpotInterrupted)
	}
	if !strings.Contains(logs.String(), "spot interruption notice") || strings.Contains(logs.String(), "metadata service") {
		t.Errorf("log: want the notice and no metadata errors:\n%s", logs.String())
	}
}

func TestServeUntilShutdownIsNotAnInterruption(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := &stopRecorder{stopped: make(chan struct{})}
	if err := workerhost.ServeUntil(ctx, w, nil, slog.New(slog.DiscardHandler)); err != nil {
		t.Errorf("ServeUntil on shutdown = %v, want nil", err)
	}
	select {
	case <-w.stopped:
	default:
		t.Error("the worker was not stopped")
	}
}

func TestBadGPUIntervalStopsTheStart(t *testing.T) {
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"--gpu-interval", "often"}, io.Discard, &stderr, func(string) string { return "" })
	if code == 0 || !strings.Contains(stderr.String(), "gpu-interval") {
		t.Errorf("exit %d, stderr %q: want a failure naming --gpu-interval", code, stderr.String())
	}
}

func TestNegativePollersStopTheStartBeforeDialing(t *testing.T) {
	var stderr bytes.Buffer
	// A frontend that never answers: a worker that dialled first would
	// hang here instead of failing at once.
	args := []string{"--pollers", "-1", "--address", blackHole(t), "--state-dir", t.TempDir()}
	code := run(context.Background(), args, io.Discard, &stderr, func(string) string { return "" })
	if code != 1 || !strings.Contains(stderr.String(), "--pollers -1") {
		t.Errorf("exit %d, stderr %q: want 1 and a message naming --pollers", code, stderr.String())
	}
}

func TestMissingPrometheusTargetsDirStopsTheStart(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "targets")
	for _, c := range []struct {
		args []string
		env  map[string]string
	}{
		{args: []string{"--prometheus-targets-dir", missing}},
		{env: map[string]string{"GAUNTLET_PROMETHEUS_TARGETS": missing}},
	} {
		var stderr bytes.Buffer
		args := append([]string{"--address", blackHole(t), "--state-dir", t.TempDir()}, c.args...)
		code := run(context.Background(), args, io.Discard, &stderr, func(k string) string { return c.env[k] })
		if code != 1 || !strings.Contains(stderr.String(), "--prometheus-targets-dir") || !strings.Contains(stderr.String(), missing) {
			t.Errorf("%v %v: exit %d, stderr %q: want 1 and a message naming the flag and the directory", c.args, c.env, code, stderr.String())
		}
	}
}

// A worker told to deploy to a fleet it cannot drive stops before it joins
// the cluster, naming what is missing, and never prints the token.
func TestFleetTargetSettingsStopTheStart(t *testing.T) {
	nowhere := blackHole(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty-token")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("fleet-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"no settings", []string{"--deploy-target", "fleet"}, []string{"--fleet-router", "--fleet-admin-token-file", "--fleet-prometheus"}},
		{"empty token", []string{"--deploy-target", "fleet", "--fleet-router", "m=http://r:1", "--fleet-prometheus", "http://p:1", "--fleet-admin-token-file", empty}, []string{empty, "is empty"}},
		{"router not a URL", []string{"--deploy-target", "fleet", "--fleet-router", "m=r:1", "--fleet-prometheus", "http://p:1", "--fleet-admin-token-file", token}, []string{`"r:1" is not an http(s) URL`}},
		{"unknown target", []string{"--deploy-target", "k8s"}, []string{`"k8s": want embedded or fleet`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			args := append([]string{"--address", nowhere, "--state-dir", t.TempDir()}, tc.args...)
			code := run(context.Background(), args, io.Discard, &stderr, func(string) string { return "" })
			if code != 1 {
				t.Fatalf("exit %d, want 1: %s", code, stderr.String())
			}
			for _, want := range tc.wants {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr %q lacks %q", stderr.String(), want)
				}
			}
			if strings.Contains(stderr.String(), "fleet-s3cret") {
				t.Errorf("stderr holds the token: %s", stderr.String())
			}
		})
	}
}

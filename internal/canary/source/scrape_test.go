package source

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gauntlet-ml/gauntlet/internal/canary"
	"github.com/gauntlet-ml/gauntlet/internal/router"
	"github.com/gauntlet-ml/gauntlet/internal/serving"
)

// swappable serves whatever handler it holds, so that a test can restart
// the process behind a URL.
type swappable struct{ h atomic.Pointer[http.Handler] }

func (s *swappable) set(h http.Handler)                               { s.h.Store(&h) }
func (s *swappable) ServeHTTP(w http.ResponseWriter, r *http.Request) { (*s.h.Load()).ServeHTTP(w, r) }

func serve(t *testing.T, h http.Handler) (*swappable, *httptest.Server) {
	t.Helper()
	s := &swappable{}
	s.set(h)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func measure(t *testing.T, p canary.Provider, w canary.Window) canary.Measurement {
	t.Helper()
	m, err := p.Measure(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestScrapeRouter measures through a real router in front of two
// upstreams that answer the status code a request asks for.
func TestScrapeRouter(t *testing.T) {
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil {
			code = http.StatusOK
		}
		w.WriteHeader(code)
	})
	champion, candidate := httptest.NewServer(upstream), httptest.NewServer(upstream)
	t.Cleanup(champion.Close)
	t.Cleanup(candidate.Close)
	newRouter := func() http.Handler {
		rt, err := router.New(router.Options{Variants: []router.Variant{
			{Name: "champion", URL: champion.URL, Weight: 90},
			{Name: "candidate", URL: candidate.URL, Weight: 10},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	front, srv := serve(t, newRouter())

	type batch struct {
		variant string
		code, n int
	}
	send := func(b batch) {
		for range b.n {
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/predict?code="+strconv.Itoa(b.code), strings.NewReader(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set(router.HeaderVariant, b.variant)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != b.code {
				t.Fatalf("%s answered %d, want %d", b.variant, resp.StatusCode, b.code)
			}
		}
	}

	p := &ScrapeProvider{URLs: []string{srv.URL + "/metrics"}, Source: RouterSource, HTTP: srv.Client()}
	w := canary.Window{Champion: "champion", Candidate: "candidate"}
	steps := []struct {
		name    string
		restart bool
		send    []batch
		// requests and errors of champion, then candidate
		want [4]float64
	}{
		{"baseline before any traffic", false, nil, [4]float64{0, 0, 0, 0}},
		// Every non-2xx counts: 1 400 and 2 503 of the candidate's 10.
		{"first interval", false, []batch{{"champion", 200, 10}, {"candidate", 200, 7}, {"candidate", 400, 1}, {"candidate", 503, 2}},
			[4]float64{10, 0, 10, 3}},
		{"only what is new", false, []batch{{"champion", 200, 5}}, [4]float64{5, 0, 0, 0}},
		// The restarted router's champion counter reads 3, below the 15
		// scraped before: the 3 are new, not -12.
		{"router restarted", true, []batch{{"champion", 200, 3}, {"candidate", 200, 3}, {"candidate", 502, 1}},
			[4]float64{3, 0, 4, 1}},
	}
	for _, st := range steps {
		if st.restart {
			front.set(newRouter())
		}
		for _, b := range st.send {
			send(b)
		}
		m := measure(t, p, w)
		got := [4]float64{m.Champion.Requests, m.Champion.Errors, m.Candidate.Requests, m.Candidate.Errors}
		if got != st.want {
			t.Errorf("%s: got requests, errors %v, want %v", st.name, got, st.want)
		}
		// Latency is real time here: only its presence is checked.
		for _, s := range []canary.Sample{m.Champion, m.Candidate} {
			if hasLatency := s.Requests > 0; hasLatency == math.IsNaN(s.P99Latency) || s.P99Latency <= 0 {
				t.Errorf("%s: %s served %v requests with p99 %v", st.name, s.Variant, s.Requests, s.P99Latency)
			}
			if len(s.Scores.Counts) != 0 {
				t.Errorf("%s: the router has no scores, got %+v", st.name, s.Scores)
			}
		}
	}
}

// servingCollectors registers the model server's collectors with reg
// through serving.NewMetrics and returns them to drive: serving.Metrics
// records only from inside a running server's handlers, and registering a
// collector of the same description again hands back the one registered
// first. A change to a name, a label or a help string in serving makes this
// fail rather than drift.
func servingCollectors(t *testing.T, reg *prometheus.Registry) (requests *prometheus.CounterVec, latency, scores *prometheus.HistogramVec) {
	t.Helper()
	serving.NewMetrics(reg)
	requests = existing(t, reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: serving.MetricRequests, Help: "Prediction requests by model version and status code.",
	}, []string{"version", "code"}))
	latency = existing(t, reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: serving.MetricLatency, Help: "Prediction request latency by model version and status code.",
	}, []string{"version", "code"}))
	scores = existing(t, reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: serving.MetricScore, Help: "Predicted P(positive) by model version.",
	}, []string{"version"}))
	return requests, latency, scores
}

func existing[C prometheus.Collector](t *testing.T, reg *prometheus.Registry, c C) C {
	t.Helper()
	var are prometheus.AlreadyRegisteredError
	if err := reg.Register(c); !errors.As(err, &are) {
		t.Fatalf("registering a copy of a serving collector: %v; want the one serving.NewMetrics registered", err)
	}
	got, ok := are.ExistingCollector.(C)
	if !ok {
		t.Fatalf("serving registered a %T", are.ExistingCollector)
	}
	return got
}

// modelServer is one model server's /metrics page.
type modelServer struct {
	version  string
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	scores   *prometheus.HistogramVec
}

func newModelServer(t *testing.T, version string) (*modelServer, http.Handler) {
	reg := prometheus.NewRegistry()
	ms := &modelServer{version: version}
	ms.requests, ms.latency, ms.scores = servingCollectors(t, reg)
	return ms, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

func (ms *modelServer) serve(code, n int, seconds float64) {
	c := strconv.Itoa(code)
	ms.requests.WithLabelValues(ms.version, c).Add(float64(n))
	for range n {
		ms.latency.WithLabelValues(ms.version, c).Observe(seconds)
	}
}

func (ms *modelServer) score(n int, score float64) {
	for range n {
		ms.scores.WithLabelValues(ms.version).Observe(score)
	}
}

// TestScrapeModelServers measures two model servers, one page each, with
// the serving metrics driven to hand-computed values.
func TestScrapeModelServers(t *testing.T) {
	v1, h1 := newModelServer(t, "v1")
	v2, h2 := newModelServer(t, "v2")
	_, srv1 := serve(t, h1)
	page2, srv2 := serve(t, h2)
	p := &ScrapeProvider{URLs: []string{srv1.URL, srv2.URL}, Source: ServingSource}
	w := canary.Window{Champion: "v1", Candidate: "v2"}
	analysis := canary.Analysis{Checks: []canary.Check{
		{Name: "errors", Metric: canary.ErrorRate, Max: 0.02},
		{Name: "latency", Metric: canary.P99Latency, Max: 0.5},
		{Name: "shift", Metric: canary.ScoreShift, Max: 0.1},
	}}

	// The champion's traffic before the canary is not the interval's.
	v1.serve(200, 500, 0.004)
	if m := measure(t, p, w); m.Champion.Requests != 0 || m.Candidate.Requests != 0 {
		t.Fatalf("baseline measured %+v, want nothing", m)
	}

	// Champion: 200 requests, all in (0.0025, 0.005]; rank 0.99*200 = 198:
	// p99 = 0.0025 + 0.0025*198/200 = 0.004975.
	v1.serve(200, 200, 0.004)
	// Candidate: 100 requests, 5 not 2xx (3 500s, 2 400s): error rate 0.05.
	// 90 in (0.0025, 0.005], 8 in (0.01, 0.025], 2 in (0.25, 0.5]; rank 99
	// is 1 of the last 2: p99 = 0.25 + 0.25*1/2 = 0.375.
	v2.serve(200, 90, 0.004)
	v2.serve(200, 5, 0.02)
	v2.serve(500, 3, 0.02)
	v2.serve(400, 2, 0.3)
	// Scores, buckets of 0.1 up to 0.9: the champion puts 10 in each of the
	// 10; the candidate 5 in the first, 15 above 0.9 and 10 in the rest:
	// PSI = (.05-.1)*ln(.05/.1) + (.15-.1)*ln(.15/.1)
	//     = (-.05)(-0.6931472) + (.05)(0.4054651) = 0.0549306.
	candidateScores := []float64{5, 10, 10, 10, 10, 10, 10, 10, 10, 15}
	for i, n := range candidateScores {
		s := 0.05 + 0.1*float64(i)
		v1.score(10, s)
		v2.score(int(n), s)
	}
	m := measure(t, p, w)
	if got := [4]float64{m.Champion.Requests, m.Champion.Errors, m.Candidate.Requests, m.Candidate.Errors}; got != [4]float64{200, 0, 100, 5} {
		t.Errorf("requests, errors: got %v, want [200 0 100 5]", got)
	}
	if !near(m.Champion.P99Latency, 0.004975) || !near(m.Candidate.P99Latency, 0.375) {
		t.Errorf("p99: got %v and %v, want 0.004975 and 0.375", m.Champion.P99Latency, m.Candidate.P99Latency)
	}
	if !slices.Equal(m.Candidate.Scores.Counts, candidateScores) {
		t.Errorf("candidate scores %v, want %v", m.Candidate.Scores.Counts, candidateScores)
	}
	r := canary.Evaluate(analysis, m)
	wantChecks := []struct {
		value   float64
		outcome canary.Outcome
	}{{0.05, canary.Fail}, {0.375, canary.Pass}, {0.0549306, canary.Pass}}
	for i, want := range wantChecks {
		if got := r.Checks[i]; math.Abs(got.Value-want.value) > 1e-7 || got.Outcome != want.outcome {
			t.Errorf("check %s: got %v %s, want %v %s", got.Name, got.Value, got.Outcome, want.value, want.outcome)
		}
	}
	if r.Outcome != canary.Fail {
		t.Errorf("interval %s, want fail", r.Outcome)
	}

	// The candidate's server restarts and serves 10; its counters read
	// less than before, so the 10 are the interval's.
	v2, h2 = newModelServer(t, "v2")
	page2.set(h2)
	v2.serve(200, 10, 0.004)
	v2.score(10, 0.55)
	m = measure(t, p, w)
	if got := [4]float64{m.Champion.Requests, m.Champion.Errors, m.Candidate.Requests, m.Candidate.Errors}; got != [4]float64{0, 0, 10, 0} {
		t.Errorf("after restart: requests, errors %v, want [0 0 10 0]", got)
	}
	// rank 9.9 of 10 in (0.0025, 0.005]: 0.0025 + 0.0025*9.9/10.
	if !math.IsNaN(m.Champion.P99Latency) || !near(m.Candidate.P99Latency, 0.004975) {
		t.Errorf("after restart: p99 %v and %v, want NaN and 0.004975", m.Champion.P99Latency, m.Candidate.P99Latency)
	}
	if want := []float64{0, 0, 0, 0, 0, 10, 0, 0, 0, 0}; !slices.Equal(m.Candidate.Scores.Counts, want) {
		t.Errorf("after restart: candidate scores %v, want all 10 in (0.5, 0.6]", m.Candidate.Scores.Counts)
	}
	// No champion scores this interval: the shift cannot be judged.
	if got := canary.Evaluate(analysis, m).Checks[2].Outcome; got != canary.Inconclusive {
		t.Errorf("score shift without champion scores: %s, want inconclusive", got)
	}
}

func TestScrapeErrors(t *testing.T) {
	text := func(body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			_, _ = io.WriteString(w, body)
		})
	}
	tests := []struct {
		name    string
		handler http.Handler
		want    string
	}{
		{"HTTP status", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }), "HTTP 503"},
		{"not exposition text", text("gauntlet_router_requests_total{variant=\"a\" 1\n"), "text format parsing error"},
		{"wrong type", text("# TYPE gauntlet_router_requests_total gauge\ngauntlet_router_requests_total{variant=\"a\",code=\"200\"} 1\n"),
			"gauntlet_router_requests_total is a gauge, want a counter"},
		{"not a count", text("# TYPE gauntlet_router_requests_total counter\ngauntlet_router_requests_total{variant=\"a\",code=\"200\"} NaN\n"),
			"is not a count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := serve(t, tt.handler)
			p := &ScrapeProvider{URLs: []string{srv.URL + "/metrics"}, Source: RouterSource}
			_, err := p.Measure(context.Background(), canary.Window{Champion: "a", Candidate: "b"})
			if err == nil || !strings.Contains(err.Error(), "canary: scrape "+srv.URL+"/metrics: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want a scrape error naming the URL and saying %q", err, tt.want)
			}
		})
	}

	invalid := []struct {
		name string
		p    *ScrapeProvider
		w    canary.Window
	}{
		{"no URLs", &ScrapeProvider{Source: RouterSource}, canary.Window{Champion: "a", Candidate: "b"}},
		{"no source", &ScrapeProvider{URLs: []string{"http://127.0.0.1:1"}}, canary.Window{Champion: "a", Candidate: "b"}},
		{"unnamed variant", &ScrapeProvider{URLs: []string{"http://127.0.0.1:1"}, Source: RouterSource}, canary.Window{Champion: "a"}},
		{"same variant twice", &ScrapeProvider{URLs: []string{"http://127.0.0.1:1"}, Source: RouterSource}, canary.Window{Champion: "a", Candidate: "a"}},
		{"unreachable", &ScrapeProvider{URLs: []string{"http://127.0.0.1:1/metrics"}, Source: RouterSource}, canary.Window{Champion: "a", Candidate: "b"}},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.p.Measure(context.Background(), tt.w); err == nil || !strings.HasPrefix(err.Error(), "canary: ") {
				t.Errorf("got %v, want a canary error", err)
			}
		})
	}
}

// A failed scrape leaves the baseline alone: the next measurement covers
// both intervals rather than losing the first.
func TestScrapeFailureKeepsBaseline(t *testing.T) {
	v1, h1 := newModelServer(t, "v1")
	page, srv := serve(t, h1)
	p := &ScrapeProvider{URLs: []string{srv.URL}, Source: ServingSource}
	w := canary.Window{Champion: "v1", Candidate: "v2"}
	measure(t, p, w)

	v1.serve(200, 4, 0.004)
	page.set(http.NotFoundHandler())
	if _, err := p.Measure(context.Background(), w); err == nil {
		t.Fatal("a 404 page measured")
	}
	page.set(h1)
	v1.serve(200, 3, 0.004)
	if got := measure(t, p, w).Champion.Requests; got != 7 {
		t.Errorf("got %v requests, want 4+3", got)
	}
}

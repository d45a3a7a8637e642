package source

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"

	"github.com/gauntlet-ml/gauntlet/internal/canary"
)

// fakePrometheus answers /api/v1/query as Prometheus does, from a table of
// PromQL to result, and records what it was asked.
type fakePrometheus struct {
	answers map[string]string // query -> the JSON of data.result, or an error body
	mu      sync.Mutex
	queries []string
	times   []string
}

func (f *fakePrometheus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/query" || r.ParseForm() != nil {
		http.NotFound(w, r)
		return
	}
	q := r.Form.Get("query")
	f.mu.Lock()
	f.queries = append(f.queries, q)
	f.times = append(f.times, r.Form.Get("time"))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	answer, ok := f.answers[q]
	switch {
	case !ok:
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"status":"error","errorType":"bad_data","error":"unexpected query %q"}`, q)
	case strings.HasPrefix(answer, `{"status":"error"`):
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, answer)
	case strings.HasPrefix(answer, "matrix:"):
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"matrix","result":%s}}`, strings.TrimPrefix(answer, "matrix:"))
	default:
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":%s}}`, answer)
	}
}

func (f *fakePrometheus) provider(t *testing.T, src Source, matchers string) *PrometheusProvider {
	t.Helper()
	_, srv := serve(t, f)
	p, err := NewPrometheusProvider(api.Config{Address: srv.URL, Client: srv.Client()}, src, matchers)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// at is a vector sample's time and value, as the HTTP API writes them.
func at(labels, value string) string {
	return fmt.Sprintf(`{"metric":{%s},"value":[1700000000,%q]}`, labels, value)
}

func vector(samples ...string) string { return "[" + strings.Join(samples, ",") + "]" }

// measured is the interval canary's Evaluate tests judge (its
// analysis_test.go), which the fake server's answers add up to.
var measured = canary.Measurement{
	Champion: canary.Sample{Variant: "v1", Requests: 1000, Errors: 5, P99Latency: 0.120,
		Scores: canary.Histogram{Bounds: []float64{0.3, 0.6}, Counts: []float64{50, 30, 20}}},
	Candidate: canary.Sample{Variant: "v2", Requests: 200, Errors: 6, P99Latency: 0.180,
		Scores: canary.Histogram{Bounds: []float64{0.3, 0.6}, Counts: []float64{30, 30, 40}}},
}

// scoreShift is PSI(candidate, champion) of measured, derived in canary's
// analysis_test.go.
const scoreShift = 0.2407945609

// near compares within 1e-9, and NaN with NaN.
func near(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b))
}

func TestPrometheusProvider(t *testing.T) {
	sel := func(v string) string { return `{version="` + v + `",job="serving"}` }
	requests := func(v string) string {
		return "sum by (code) (increase(gauntlet_serve_requests_total" + sel(v) + "[5m]))"
	}
	p99 := func(v string) string {
		return "histogram_quantile(0.99, sum by (le) (rate(gauntlet_serve_request_duration_seconds_bucket" + sel(v) + "[5m])))"
	}
	scores := func(v string) string {
		return "sum by (le) (increase(gauntlet_serve_score_bucket" + sel(v) + "[5m]))"
	}
	// The answers add up to the measurement canary's Evaluate tests judge.
	f := &fakePrometheus{answers: map[string]string{
		requests("v1"): vector(at(`"code":"200"`, "995"), at(`"code":"500"`, "5")),
		p99("v1"):      vector(at("", "0.12")),
		scores("v1"):   vector(at(`"le":"0.3"`, "50"), at(`"le":"0.6"`, "80"), at(`"le":"+Inf"`, "100")),
		requests("v2"): vector(at(`"code":"200"`, "194"), at(`"code":"503"`, "4"), at(`"code":"400"`, "2")),
		p99("v2"):      vector(at("", "0.18")),
		scores("v2"):   vector(at(`"le":"+Inf"`, "100"), at(`"le":"0.6"`, "60"), at(`"le":"0.3"`, "30")),
	}}
	p := f.provider(t, ServingSource, `job="serving"`)
	end := time.Unix(1700000000, 0)
	m := measure(t, p, canary.Window{Champion: "v1", Candidate: "v2", Duration: 5 * time.Minute, End: end})

	wantQueries := []string{requests("v1"), p99("v1"), scores("v1"), requests("v2"), p99("v2"), scores("v2")}
	if !slices.Equal(f.queries, wantQueries) {
		t.Errorf("queries:\n%s\nwant:\n%s", strings.Join(f.queries, "\n"), strings.Join(wantQueries, "\n"))
	}
	for _, ts := range f.times {
		if ts != "1700000000" {
			t.Errorf("query time %q, want the window's end 1700000000", ts)
		}
	}
	for _, s := range []struct{ got, want canary.Sample }{{m.Champion, measured.Champion}, {m.Candidate, measured.Candidate}} {
		if s.got.Requests != s.want.Requests || s.got.Errors != s.want.Errors || s.got.P99Latency != s.want.P99Latency ||
			!slices.Equal(s.got.Scores.Bounds, s.want.Scores.Bounds) || !slices.Equal(s.got.Scores.Counts, s.want.Scores.Counts) {
			t.Errorf("%s: got %+v, want %+v", s.got.Variant, s.got, s.want)
		}
	}
	if r := canary.Evaluate(canary.Analysis{Checks: []canary.Check{{Name: "shift", Metric: canary.ScoreShift, Max: 0.25}}}, m); !near(r.Checks[0].Value, scoreShift) {
		t.Errorf("score shift %v, want %v", r.Checks[0].Value, scoreShift)
	}
}

// Through the router there are no scores to ask for, and a quiet variant
// answers empty vectors or NaN.
func TestPrometheusProviderRouterNoData(t *testing.T) {
	f := &fakePrometheus{answers: map[string]string{
		`sum by (code) (increase(gauntlet_router_requests_total{variant="champion"}[1m30s]))`:                                       vector(at(`"code":"200"`, "12.5")),
		`histogram_quantile(0.99, sum by (le) (rate(gauntlet_router_request_duration_seconds_bucket{variant="champion"}[1m30s])))`:  vector(at("", "NaN")),
		`sum by (code) (increase(gauntlet_router_requests_total{variant="candidate"}[1m30s]))`:                                      vector(),
		`histogram_quantile(0.99, sum by (le) (rate(gauntlet_router_request_duration_seconds_bucket{variant="candidate"}[1m30s])))`: vector(),
	}}
	p := f.provider(t, RouterSource, "")
	m := measure(t, p, canary.Window{Champion: "champion", Candidate: "candidate", Duration: 90 * time.Second})
	if len(f.queries) != 4 {
		t.Errorf("asked %d queries, want 4 and none for scores: %q", len(f.queries), f.queries)
	}
	// A window without an end asks for now, which Prometheus takes as the
	// default.
	if f.times[0] != "" {
		t.Errorf("query time %q, want none", f.times[0])
	}
	if m.Champion.Requests != 12.5 || !math.IsNaN(m.Champion.P99Latency) || m.Candidate.Requests != 0 || !math.IsNaN(m.Candidate.P99Latency) {
		t.Errorf("got %+v", m)
	}
	r := canary.Evaluate(canary.Analysis{Checks: []canary.Check{
		{Name: "errors", Metric: canary.ErrorRate, Max: 0.01},
		{Name: "latency", Metric: canary.P99Latency, Max: 0.5},
		{Name: "shift", Metric: canary.ScoreShift, Max: 0.1},
	}}, m)
	for _, c := range r.Checks {
		if c.Outcome != canary.Inconclusive {
			t.Errorf("%s: %s, want inconclusive", c.Name, c.Outcome)
		}
	}
}

func TestPrometheusProviderErrors(t *testing.T) {
	const q = `sum by (code) (increase(gauntlet_router_requests_total{variant="a"}[1m]))`
	tests := []struct {
		name   string
		answer string
		window canary.Window
		want   string
	}{
		{"error answer", `{"status":"error","errorType":"bad_data","error":"1:2: parse error: unexpected"}`,
			canary.Window{Champion: "a", Candidate: "b", Duration: time.Minute}, "canary: query " + fmt.Sprintf("%q", q) + ": bad_data: 1:2: parse error"},
		{"not a vector", `matrix:[]`, canary.Window{Champion: "a", Candidate: "b", Duration: time.Minute}, "want a vector"},
		{"not a count", vector(at(`"code":"200"`, "-3")), canary.Window{Champion: "a", Candidate: "b", Duration: time.Minute}, "not a count"},
		{"no duration", "", canary.Window{Champion: "a", Candidate: "b"}, "positive duration"},
		{"unnamed candidate", "", canary.Window{Champion: "a", Duration: time.Minute}, "must be named"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakePrometheus{answers: map[string]string{q: tt.answer}}
			_, err := f.provider(t, RouterSource, "").Measure(context.Background(), tt.window)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestNewPrometheusProviderRefusesEmptySource(t *testing.T) {
	if _, err := NewPrometheusProvider(api.Config{Address: "http://127.0.0.1:9090"}, Source{Requests: "x"}, ""); err == nil {
		t.Error("a source without latency or label was accepted")
	}
}

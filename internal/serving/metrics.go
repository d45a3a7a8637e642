package serving

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, for the canary and monitor analyses that read them.
const (
	MetricRequests       = "gauntlet_serve_requests_total"
	MetricLatency        = "gauntlet_serve_request_duration_seconds"
	MetricScore          = "gauntlet_serve_score"
	MetricRecords        = "gauntlet_serve_records_total"
	MetricInFlight       = "gauntlet_serve_in_flight_requests"
	MetricModelInfo      = "gauntlet_serve_model_info"
	MetricSwaps          = "gauntlet_serve_model_swaps_total"
	MetricSampled        = "gauntlet_serve_samples_written_total"
	MetricSampleDropped  = "gauntlet_serve_samples_dropped_total"
	MetricSamplesShipped = "gauntlet_serve_samples_shipped_total"
	MetricShipFailures   = "gauntlet_serve_sample_ship_failures_total"
)

// Metrics are the server's Prometheus collectors. Requests and latency are
// labelled by model version and status code, so a canary analysis can tell
// the versions apart even across a swap.
type Metrics struct {
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	scores        *prometheus.HistogramVec
	records       *prometheus.CounterVec
	inFlight      prometheus.Gauge
	info          *prometheus.GaugeVec
	swaps         *prometheus.CounterVec
	sampled       prometheus.Counter
	sampleDropped prometheus.Counter
	// samplesShipped and sampleShipFailures follow shipping to the store.
	samplesShipped     prometheus.Counter
	sampleShipFailures prometheus.Counter

	// Looking up a labelled child hashes its labels; the children of the
	// few (version, code) pairs a server sees are cached instead.
	mu       sync.RWMutex
	children map[childKey]*children
	versions map[string]*versionMetrics
}

type versionMetrics struct {
	scores  prometheus.Observer
	records prometheus.Counter
}

type childKey struct {
	version string
	code    int
}

type children struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// NewMetrics registers the collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRequests, Help: "Prediction requests by model version and status code.",
		}, []string{"version", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: MetricLatency, Help: "Prediction request latency by model version and status code.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"version", "code"}),
		scores: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: MetricScore, Help: "Predicted P(positive) by model version.",
			Buckets: prometheus.LinearBuckets(0.1, 0.1, 9),
		}, []string{"version"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRecords, Help: "Records scored by model version.",
		}, []string{"version"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricInFlight, Help: "Prediction requests being served.",
		}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricModelInfo, Help: "1 for the model being served.",
		}, []string{"name", "version", "digest"}),
		swaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricSwaps, Help: "Model loads by result (ok, error).",
		}, []string{"result"}),
		sampled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricSampled, Help: "Records written to the sample log.",
		}),
		sampleDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricSampleDropped, Help: "Sampled records dropped because the writer fell behind or failed.",
		}),
		samplesShipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricSamplesShipped, Help: "Sampled records stored in the artifact store.",
		}),
		sampleShipFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricShipFailures, Help: "Shipments of sampled records to the artifact store that failed (kept and tried again).",
		}),
		children: map[childKey]*children{},
		versions: map[string]*versionMetrics{},
	}
	reg.MustRegister(m.requests, m.latency, m.scores, m.records, m.inFlight, m.info, m.swaps, m.sampled, m.sampleDropped, m.samplesShipped, m.sampleShipFailures)
	return m
}

func (m *Metrics) child(version string, code int) *children {
	k := childKey{version, code}
	m.mu.RLock()
	c := m.children[k]
	m.mu.RUnlock()
	if c != nil {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c = m.children[k]; c == nil {
		codeStr := strconv.Itoa(code)
		c = &children{requests: m.requests.WithLabelValues(version, codeStr), latency: m.latency.WithLabelValues(version, codeStr)}
		m.children[k] = c
	}
	return c
}

func (m *Metrics) version(version string) *versionMetrics {
	m.mu.RLock()
	v := m.versions[version]
	m.mu.RUnlock()
	if v != nil {
		return v
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if v = m.versions[version]; v == nil {
		v = &versionMetrics{scores: m.scores.WithLabelValues(version), records: m.records.WithLabelValues(version)}
		m.versions[version] = v
	}
	return v
}

func (m *Metrics) observe(version string, code int, seconds float64) {
	c := m.child(version, code)
	c.requests.Inc()
	c.latency.Observe(seconds)
}

// serving marks mod as the one served: one info series at a time.
func (m *Metrics) serving(mod *Model) {
	m.info.Reset()
	m.info.WithLabelValues(mod.Ref.Name, mod.Ref.Version, mod.Digest).Set(1)
}

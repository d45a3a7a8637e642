package metrics

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

// sdkBuckets span the SDK's timers: RPC latencies of milliseconds, long
// polls of about a minute, activities of up to hours.
var sdkBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600}

// NewSDKHandler returns a Temporal SDK metrics handler (the client.Options
// MetricsHandler) that exports the SDK's metrics on reg, without the tally
// dependency. Names follow Prometheus conventions: counters get a _total
// suffix (temporal_request_total), timers become histograms in seconds with
// a _seconds suffix (temporal_activity_execution_latency_seconds), gauges
// keep their name; characters Prometheus does not allow become '_'.
func NewSDKHandler(reg prometheus.Registerer) (client.MetricsHandler, error) {
	c := &sdkCollector{vecs: map[string]prometheus.Collector{}}
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("register Temporal SDK metrics: %w", err)
	}
	return &sdkHandler{c: c}, nil
}

// sdkCollector owns one Vec per (metric name, sorted tag keys), created on
// first use because the SDK only reveals its names and tags as it emits.
// It describes nothing, which makes it an unchecked collector: the SDK emits
// one name with different tag sets (temporal_request with and without
// operation-specific tags), which a registry refuses for checked collectors
// but accepts at gather time as one family.
type sdkCollector struct {
	mu   sync.Mutex
	vecs map[string]prometheus.Collector
}

func (c *sdkCollector) Describe(chan<- *prometheus.Desc) {}

func (c *sdkCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	vecs := slices.Collect(maps.Values(c.vecs))
	c.mu.Unlock()
	for _, v := range vecs {
		v.Collect(ch)
	}
}

type kind int

const (
	counterKind kind = iota
	gaugeKind
	timerKind
)

// vec returns the Vec for name and the given label keys, creating it once.
func (c *sdkCollector) vec(k kind, name string, keys []string) prometheus.Collector {
	id := fmt.Sprintf("%d\x00%s\x00%s", k, name, strings.Join(keys, "\x00"))
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.vecs[id]; ok {
		return v
	}
	// One help string per name: a family whose members disagree on help
	// fails the whole gather.
	help := "Temporal SDK metric " + name + "."
	var v prometheus.Collector
	switch k {
	case counterKind:
		v = prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, keys)
	case gaugeKind:
		v = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, keys)
	case timerKind:
		v = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: sdkBuckets}, keys)
	}
	c.vecs[id] = v
	return v
}

type sdkHandler struct {
	c    *sdkCollector
	tags map[string]string
}

// WithTags returns a handler whose tags are h's overlaid with tags, as the
// SDK expects; h is unchanged.
func (h *sdkHandler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := make(map[string]string, len(h.tags)+len(tags))
	for k, v := range h.tags {
		merged[k] = v
	}
	for k, v := range tags {
		merged[sanitize(k)] = v
	}
	return &sdkHandler{c: h.c, tags: merged}
}

// labels returns the sorted label keys and the matching prometheus.Labels.
func (h *sdkHandler) labels() ([]string, prometheus.Labels) {
	keys := slices.Sorted(maps.Keys(h.tags))
	return keys, prometheus.Labels(h.tags)
}

func (h *sdkHandler) Counter(name string) client.MetricsCounter {
	keys, l := h.labels()
	ctr := h.c.vec(counterKind, sanitize(name)+"_total", keys).(*prometheus.CounterVec).With(l)
	return counterFunc(func(d int64) {
		// A Prometheus counter cannot go down; the SDK never decrements, and
		// a negative delta would panic the worker.
		if d > 0 {
			ctr.Add(float64(d))
		}
	})
}

func (h *sdkHandler) Gauge(name string) client.MetricsGauge {
	keys, l := h.labels()
	g := h.c.vec(gaugeKind, sanitize(name), keys).(*prometheus.GaugeVec).With(l)
	return gaugeFunc(g.Set)
}

func (h *sdkHandler) Timer(name string) client.MetricsTimer {
	keys, l := h.labels()
	o := h.c.vec(timerKind, sanitize(name)+"_seconds", keys).(*prometheus.HistogramVec).With(l)
	return timerFunc(func(d time.Duration) { o.Observe(d.Seconds()) })
}

type counterFunc func(int64)

func (f counterFunc) Inc(d int64) { f(d) }

type gaugeFunc func(float64)

func (f gaugeFunc) Update(v float64) { f(v) }

type timerFunc func(time.Duration)

func (f timerFunc) Record(d time.Duration) { f(d) }

// sanitize maps a name onto [a-zA-Z_][a-zA-Z0-9_]*, valid both as a metric
// and as a label name. Colons are replaced too: they are reserved for
// recording rules.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		ok := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

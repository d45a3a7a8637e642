package workflows

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/canary"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
)

// Defaults of the canary-deploy step, documented in its step type.
var (
	defaultCanaryWeights  = []int{10, 25, 50}
	defaultCanaryInterval = time.Minute
)

// canaryConfig is a canary-deploy step's resolved inputs.
type canaryConfig struct {
	model    string
	name     string
	weights  []int
	interval time.Duration
	analysis canary.Analysis
	// prometheus is where the analysis reads the router's metrics; nil
	// means the worker scrapes them itself.
	prometheus *contract.CanaryPrometheus
}

// newCanaryConfig reads a canary-deploy step's inputs; pipeline is the
// registered model name used when the step names none.
func newCanaryConfig(sr *stepRun, pipeline string) (canaryConfig, error) {
	w := sr.with
	c := canaryConfig{name: pipeline, weights: defaultCanaryWeights, interval: defaultCanaryInterval}
	var ok bool
	if c.model, ok = w["model"].(string); !ok || c.model == "" {
		return c, fmt.Errorf("canary-deploy %s: with.model must name the candidate model directory", sr.spec.ID)
	}
	if v, ok := w["name"].(string); ok && v != "" {
		c.name = v
	}
	if v, ok := w["weights"]; ok && v != nil {
		list, ok := v.([]any)
		if !ok || len(list) == 0 {
			return c, fmt.Errorf("canary-deploy %s: with.weights must be a list of percentages such as [10, 25, 50, 100]", sr.spec.ID)
		}
		c.weights = nil
		prev := 0
		for i, x := range list {
			f, ok := x.(float64)
			if !ok || f != float64(int(f)) || int(f) <= prev || f > 100 {
				return c, fmt.Errorf("canary-deploy %s: with.weights[%d] = %v: weights are whole percentages, rising, at most 100", sr.spec.ID, i, x)
			}
			prev = int(f)
			c.weights = append(c.weights, prev)
		}
	}
	var err error
	if c.interval, err = durationIn(w, "interval", defaultCanaryInterval); err != nil {
		return c, fmt.Errorf("canary-deploy %s: %w", sr.spec.ID, err)
	}
	if c.analysis, err = analysisIn(w["analysis"]); err != nil {
		return c, fmt.Errorf("canary-deploy %s: with.analysis: %w", sr.spec.ID, err)
	}
	if c.prometheus, err = prometheusIn(w["analysis"]); err != nil {
		return c, fmt.Errorf("canary-deploy %s: with.analysis: %w", sr.spec.ID, err)
	}
	return c, nil
}

// prometheusIn reads prometheus_url and prometheus_matchers of the
// analysis block, which analysisIn has checked is a mapping.
func prometheusIn(v any) (*contract.CanaryPrometheus, error) {
	m, _ := v.(map[string]any)
	raw, ok := m["prometheus_url"]
	if !ok || raw == nil {
		if x, ok := m["prometheus_matchers"]; ok && x != nil {
			return nil, errors.New("prometheus_matchers without prometheus_url")
		}
		return nil, nil
	}
	s, ok := raw.(string)
	u, err := url.Parse(s)
	if !ok || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("prometheus_url must be the http(s) URL of a Prometheus server, not %v", raw)
	}
	p := &contract.CanaryPrometheus{URL: s}
	if x, ok := m["prometheus_matchers"]; ok && x != nil {
		if p.Matchers, ok = x.(string); !ok {
			return nil, fmt.Errorf("prometheus_matchers must be PromQL label matchers such as 'job=\"gauntlet-router\"', not %v", x)
		}
	}
	return p, nil
}

// analysisIn reads the analysis block: thresholds a person writes in
// Flagger's terms, turned into the checks canary.Evaluate runs.
func analysisIn(v any) (canary.Analysis, error) {
	a := canary.Analysis{FailureLimit: 2, InconclusiveLimit: 3}
	m := map[string]any{}
	if v != nil {
		var ok bool
		if m, ok = v.(map[string]any); !ok {
			return a, fmt.Errorf("must be a mapping, not %v", v)
		}
	}
	known := map[string]bool{"max_error_rate": true, "max_p99_latency": true, "max_score_psi": true, "min_requests": true, "failure_limit": true, "inconclusive_limit": true,
		"prometheus_url": true, "prometheus_matchers": true}
	var unknown []string
	// Sorted below: the error names the same key on every replay.
	//workflowcheck:ignore
	for k := range m {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return a, fmt.Errorf("unknown key %q (known: max_error_rate, max_p99_latency, max_score_psi, min_requests, failure_limit, inconclusive_limit, prometheus_url, prometheus_matchers)", unknown[0])
	}
	num := func(key string, def float64) (float64, error) {
		x, ok := m[key]
		if !ok || x == nil {
			return def, nil
		}
		f, ok := x.(float64)
		if !ok || f < 0 {
			return 0, fmt.Errorf("%s must be a non-negative number, not %v", key, x)
		}
		return f, nil
	}
	whole := func(key string, def int) (int, error) {
		f, err := num(key, float64(def))
		if err != nil || f != float64(int(f)) {
			return 0, fmt.Errorf("%s must be a whole number, not %v", key, m[key])
		}
		return int(f), nil
	}
	errRate, err := num("max_error_rate", 0.01)
	if err != nil {
		return a, err
	}
	psi, err := num("max_score_psi", 0.25)
	if err != nil {
		return a, err
	}
	minReq, err := whole("min_requests", 20)
	if err != nil {
		return a, err
	}
	if a.FailureLimit, err = whole("failure_limit", a.FailureLimit); err != nil {
		return a, err
	}
	if a.InconclusiveLimit, err = whole("inconclusive_limit", a.InconclusiveLimit); err != nil {
		return a, err
	}
	p99, err := durationIn(m, "max_p99_latency", 500*time.Millisecond)
	if err != nil {
		return a, err
	}
	a.Checks = []canary.Check{
		{Name: "error rate", Metric: canary.ErrorRate, Max: errRate, MinRequests: minReq},
		{Name: "p99 latency", Metric: canary.P99Latency, Max: p99.Seconds(), MinRequests: minReq},
		{Name: "score shift", Metric: canary.ScoreShift, Max: psi, MinRequests: minReq},
	}
	return a, a.Validate()
}

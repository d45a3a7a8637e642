package workflows

import (
	"fmt"
	"net/url"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/gauntlet-ml/gauntlet/internal/canary"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
	"github.com/gauntlet-ml/gauntlet/internal/wfsteps"
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
	// target is the deployment target the step names; empty means the
	// worker's default.
	target string
}

// newCanaryConfig reads a canary-deploy step's inputs; pipeline is the
// registered model name used when the step names none.
func newCanaryConfig(sr *stepRun, pipeline string, version workflow.Version) (canaryConfig, error) {
	if version < typedInputsVersion {
		return newCanaryConfigV2(sr, pipeline)
	}
	in := wfsteps.Canary()
	in.Name = pipeline
	fail := func(err error) (canaryConfig, error) {
		return canaryConfig{}, fmt.Errorf("canary-deploy %s: %w", sr.spec.ID, err)
	}
	if err := stepio.Decode(sr.with, &in); err != nil {
		return fail(err)
	}
	if len(in.Weights) == 0 {
		return fail(&stepio.Error{Path: "weights", Msg: "want a list of percentages such as [10, 25, 50, 100]"})
	}
	prev := 0
	for i, w := range in.Weights {
		if w <= prev || w > 100 {
			return fail(&stepio.Error{Path: fmt.Sprintf("weights[%d]", i), Msg: fmt.Sprintf("%d: weights are whole percentages, rising, at most 100", w)})
		}
		prev = w
	}
	a, err := canaryAnalysis(in.Analysis)
	if err != nil {
		return fail(err)
	}
	p, err := canaryPrometheus(in.Analysis)
	if err != nil {
		return fail(err)
	}
	if err := checkTarget(in.Target); err != nil {
		return fail(err)
	}
	return canaryConfig{model: in.Model, name: in.Name, weights: in.Weights, interval: time.Duration(in.Interval), analysis: a, prometheus: p, target: in.Target}, nil
}

// checkTarget reads a step's deployment target. No version gates it: the
// definition's validation refused the input before it existed, so no
// recorded run reached a step that has it.
func checkTarget(target string) error {
	switch target {
	case "", contract.TargetEmbedded, contract.TargetFleet:
		return nil
	}
	return &stepio.Error{Path: "target", Msg: fmt.Sprintf("%q: want %s or %s", target, contract.TargetEmbedded, contract.TargetFleet)}
}

// canaryAnalysis turns thresholds a person writes in Flagger's terms into
// the checks canary.Evaluate runs.
func canaryAnalysis(in wfsteps.CanaryAnalysis) (canary.Analysis, error) {
	for _, f := range []struct {
		key string
		v   float64
	}{{"max_error_rate", in.MaxErrorRate}, {"max_score_psi", in.MaxScorePSI}, {"min_requests", float64(in.MinRequests)},
		{"failure_limit", float64(in.FailureLimit)}, {"inconclusive_limit", float64(in.InconclusiveLimit)}} {
		if f.v < 0 {
			return canary.Analysis{}, &stepio.Error{Path: "analysis." + f.key, Msg: fmt.Sprintf("want a number of at least 0, got %v", f.v)}
		}
	}
	a := canary.Analysis{FailureLimit: in.FailureLimit, InconclusiveLimit: in.InconclusiveLimit, Checks: []canary.Check{
		{Name: "error rate", Metric: canary.ErrorRate, Max: in.MaxErrorRate, MinRequests: in.MinRequests},
		{Name: "p99 latency", Metric: canary.P99Latency, Max: time.Duration(in.MaxP99Latency).Seconds(), MinRequests: in.MinRequests},
		{Name: "score shift", Metric: canary.ScoreShift, Max: in.MaxScorePSI, MinRequests: in.MinRequests},
	}}
	if err := a.Validate(); err != nil {
		return a, &stepio.Error{Path: "analysis", Msg: err.Error()}
	}
	return a, nil
}

// canaryPrometheus reads where the analysis asks Prometheus, if it does.
func canaryPrometheus(in wfsteps.CanaryAnalysis) (*contract.CanaryPrometheus, error) {
	if in.PrometheusURL == "" {
		if in.PrometheusMatchers != "" {
			return nil, &stepio.Error{Path: "analysis.prometheus_matchers", Msg: "given without prometheus_url"}
		}
		return nil, nil
	}
	// The URL may carry credentials: the error does not repeat it.
	u, err := url.Parse(in.PrometheusURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &stepio.Error{Path: "analysis.prometheus_url", Msg: "want the http(s) URL, with a host, of a Prometheus server"}
	}
	return &contract.CanaryPrometheus{URL: in.PrometheusURL, Matchers: in.PrometheusMatchers}, nil
}

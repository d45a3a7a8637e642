package workflows

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/canary"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/monitor"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
)

// The parsers of this file read the inputs of approval, canary-deploy and
// monitor steps as runs recorded before typedInputsVersion did: the values
// they give (a non-string on_timeout read as reject, a forbid_self_approval
// of "true" read as false, names kept with their spaces) decide timers,
// child workflow ids and activity inputs, so a replay of such a run must get
// them again. They must not change, and no new run reaches them.

// Defaults as they were.
var (
	defaultCanaryWeightsV2 = []int{10, 25, 50}
)

const (
	defaultCanaryIntervalV2  = time.Minute
	defaultMonitorIntervalV2 = 5 * time.Minute
	defaultMonitorCooldownV2 = 6 * time.Hour
)

// newGateV2 reads an approval step's resolved inputs.
func newGateV2(sr *stepRun, startedBy string, now time.Time) (*gate, error) {
	w := sr.with
	reviewers, err := stringListV2(w["reviewers"])
	if err != nil || len(reviewers) == 0 {
		return nil, fmt.Errorf("approval %s: with.reviewers must list at least one reviewer", sr.spec.ID)
	}
	escalate, err := stringListV2(w["escalate_to"])
	if err != nil {
		return nil, fmt.Errorf("approval %s: with.escalate_to: %w", sr.spec.ID, err)
	}
	required := 1
	if v, ok := w["required"]; ok && v != nil {
		f, ok := v.(float64)
		if !ok || f != float64(int(f)) || f < 1 {
			return nil, fmt.Errorf("approval %s: with.required must be a whole number ≥ 1, not %v", sr.spec.ID, v)
		}
		required = int(f)
	}
	if required > len(reviewers) {
		return nil, fmt.Errorf("approval %s: with.required is %d but only %d reviewers are listed", sr.spec.ID, required, len(reviewers))
	}
	timeout, err := durationInV2(w, "timeout", defaultApprovalT)
	if err != nil {
		return nil, fmt.Errorf("approval %s: %w", sr.spec.ID, err)
	}
	reminder, err := durationInV2(w, "reminder", 0)
	if err != nil {
		return nil, fmt.Errorf("approval %s: %w", sr.spec.ID, err)
	}
	onTimeout, _ := w["on_timeout"].(string)
	switch onTimeout {
	case "":
		onTimeout = "reject"
	case "reject", "approve":
	case "escalate":
		if len(escalate) == 0 {
			return nil, fmt.Errorf("approval %s: on_timeout: escalate needs with.escalate_to", sr.spec.ID)
		}
	default:
		return nil, fmt.Errorf("approval %s: with.on_timeout must be reject, approve or escalate, not %q", sr.spec.ID, onTimeout)
	}
	self, _ := w["forbid_self_approval"].(bool)
	requireSig, err := boolInV2(w, "require_signatures")
	if err != nil {
		return nil, fmt.Errorf("approval %s: %w", sr.spec.ID, err)
	}
	maxSkew, err := durationInV2(w, "signature_max_skew", defaultSignatureSkew)
	if err != nil {
		return nil, fmt.Errorf("approval %s: %w", sr.spec.ID, err)
	}
	url, _ := w["notify_url"].(string)
	evidence, _ := w["evidence"].(map[string]any)
	return &gate{
		req: contract.ApprovalRequest{
			Step: sr.spec.ID, Reviewers: reviewers, Required: required, Deadline: now.Add(timeout),
			OnTimeout: onTimeout, StartedBy: startedBy, Votes: []contract.Vote{}, Evidence: evidence, SelfForbid: self,
			RequireSignatures: requireSig,
		},
		requireSig: requireSig,
		maxSkew:    maxSkew,
		escalateTo: escalate,
		timeout:    timeout,
		notifyURL:  url,
		reminder:   reminder,
		open:       true,
	}, nil
}

func stringListV2(v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		var out []string
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok || strings.TrimSpace(s) == "" {
				return nil, fmt.Errorf("want names, got %v", e)
			}
			out = append(out, strings.TrimSpace(s))
		}
		return out, nil
	default:
		return nil, fmt.Errorf("want a list of names, got %v", v)
	}
}

// boolInV2 reads a flag given literally or through a template, which renders
// it as a string.
func boolInV2(w map[string]any, key string) (bool, error) {
	switch v := w[key].(type) {
	case nil:
		return false, nil
	case bool:
		return v, nil
	case string:
		switch v {
		case "true":
			return true, nil
		case "false", "":
			return false, nil
		}
	}
	return false, fmt.Errorf("with.%s must be true or false, not %v", key, w[key])
}

func durationInV2(w map[string]any, key string, def time.Duration) (time.Duration, error) {
	v, ok := w[key]
	if !ok || v == nil {
		return def, nil
	}
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("with.%s must be a duration such as 48h, not %v", key, v)
	}
	d, err := spec.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("with.%s: %q is not a positive duration", key, s)
	}
	return time.Duration(d), nil
}

// newCanaryConfigV2 reads a canary-deploy step's inputs; pipeline is the
// registered model name used when the step names none.
func newCanaryConfigV2(sr *stepRun, pipeline string) (canaryConfig, error) {
	w := sr.with
	c := canaryConfig{name: pipeline, weights: defaultCanaryWeightsV2, interval: defaultCanaryIntervalV2}
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
	if c.interval, err = durationInV2(w, "interval", defaultCanaryIntervalV2); err != nil {
		return c, fmt.Errorf("canary-deploy %s: %w", sr.spec.ID, err)
	}
	if c.analysis, err = analysisInV2(w["analysis"]); err != nil {
		return c, fmt.Errorf("canary-deploy %s: with.analysis: %w", sr.spec.ID, err)
	}
	if c.prometheus, err = prometheusInV2(w["analysis"]); err != nil {
		return c, fmt.Errorf("canary-deploy %s: with.analysis: %w", sr.spec.ID, err)
	}
	return c, nil
}

// prometheusInV2 reads prometheus_url and prometheus_matchers of the
// analysis block, which analysisInV2 has checked is a mapping.
func prometheusInV2(v any) (*contract.CanaryPrometheus, error) {
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

// analysisInV2 reads the analysis block: thresholds a person writes in
// Flagger's terms, turned into the checks canary.Evaluate runs.
func analysisInV2(v any) (canary.Analysis, error) {
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
	//workflowcheck:ignore the first unknown key found only words the error; nothing else depends on the order
	for k := range m {
		if !known[k] {
			return a, fmt.Errorf("unknown key %q (known: max_error_rate, max_p99_latency, max_score_psi, min_requests, failure_limit, inconclusive_limit, prometheus_url, prometheus_matchers)", k)
		}
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
	p99, err := durationInV2(m, "max_p99_latency", 500*time.Millisecond)
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

// newMonitorInputV2 reads the monitor step's inputs.
func newMonitorInputV2(sr *stepRun, pipeline string, params map[string]any) (contract.MonitorInput, time.Duration, error) {
	w := sr.with
	fail := func(err error) (contract.MonitorInput, time.Duration, error) {
		return contract.MonitorInput{}, 0, fmt.Errorf("monitor %s: %w", sr.spec.ID, err)
	}
	in := contract.MonitorInput{Name: pipeline, RetrainPipeline: pipeline, RetrainParams: params}
	if v, ok := w["name"].(string); ok && v != "" {
		in.Name = v
	}
	var err error
	if in.Interval, err = durationInV2(w, "interval", defaultMonitorIntervalV2); err != nil {
		return fail(err)
	}
	if in.Window, err = durationInV2(w, "window", time.Hour); err != nil {
		return fail(err)
	}
	duration, err := durationInV2(w, "duration", 0)
	if err != nil {
		return fail(err)
	}
	cooldown, err := durationInV2(w, "cooldown", defaultMonitorCooldownV2)
	if err != nil {
		return fail(err)
	}
	in.Policy = monitor.Policy{Cooldown: cooldown, OnBreach: []monitor.Action{monitor.Rollback, monitor.Retrain}}
	if v, ok := w["on_breach"]; ok && v != nil {
		list, err := stringListV2(v)
		if err != nil {
			return fail(fmt.Errorf("with.on_breach: %w", err))
		}
		in.Policy.OnBreach = nil
		for _, a := range list {
			switch monitor.Action(a) {
			case monitor.Rollback, monitor.Retrain:
				in.Policy.OnBreach = append(in.Policy.OnBreach, monitor.Action(a))
			default:
				return fail(fmt.Errorf("with.on_breach: %q is not an action (rollback, retrain)", a))
			}
		}
	}
	if v, ok := w["retrain_pipeline"].(string); ok && v != "" {
		in.RetrainPipeline, in.RetrainParams = v, nil
	}
	if v, ok := w["retrain_params"]; ok && v != nil {
		m, ok := v.(map[string]any)
		if !ok {
			return fail(fmt.Errorf("with.retrain_params must be a mapping, not %v", v))
		}
		in.RetrainParams = m
	}
	in.Reference, _ = w["reference"].(string)
	in.Labels, _ = w["labels"].(string)
	num := func(key string) (float64, error) {
		v, ok := w[key]
		if !ok || v == nil {
			return 0, nil
		}
		f, ok := v.(float64)
		if !ok || f < 0 {
			return 0, fmt.Errorf("with.%s must be a non-negative number, not %v", key, v)
		}
		return f, nil
	}
	// A list, not a map: workflow code must not depend on map order.
	for _, f := range []struct {
		key string
		dst *float64
	}{{"psi_threshold", &in.Config.PSIThreshold}, {"alpha", &in.Config.Alpha}, {"max_error_rate", &in.Config.MaxErrorRate},
		{"min_accuracy", &in.Config.MinAccuracy}, {"max_accuracy_drop", &in.Config.MaxAccuracyDrop}} {
		if *f.dst, err = num(f.key); err != nil {
			return fail(err)
		}
	}
	ms, err := num("min_samples")
	if err != nil || ms != float64(int(ms)) {
		return fail(fmt.Errorf("with.min_samples must be a whole number, not %v", w["min_samples"]))
	}
	in.Config.MinSamples = int(ms)
	if in.Config.MaxP99Latency, err = durationInV2(w, "max_p99_latency", 0); err != nil {
		return fail(err)
	}
	return in, duration, nil
}

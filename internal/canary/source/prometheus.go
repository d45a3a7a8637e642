package source

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/gauntlet-ml/gauntlet/internal/canary"
)

// PrometheusProvider measures with PromQL, asking a Prometheus server that
// scrapes the router or the model servers. Its counts come from increase
// rather than rate so that MinRequests compares with requests, not with
// requests per second.
type PrometheusProvider struct {
	api      v1.API
	source   Source
	matchers string
}

// NewPrometheusProvider asks the server at cfg.Address about src's metrics.
// matchers, when not empty, are PromQL label matchers added to every
// selector, such as `job="gauntlet-router"`, to keep the series of other
// deployments of the same variant names out.
func NewPrometheusProvider(cfg api.Config, src Source, matchers string) (*PrometheusProvider, error) {
	if err := src.validate(); err != nil {
		return nil, err
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("canary: prometheus %s: %w", cfg.Address, err)
	}
	return &PrometheusProvider{api: v1.NewAPI(c), source: src, matchers: matchers}, nil
}

// Measure measures the Duration before w.End.
func (p *PrometheusProvider) Measure(ctx context.Context, w canary.Window) (canary.Measurement, error) {
	if err := w.Validate(); err != nil {
		return canary.Measurement{}, err
	}
	if w.Duration <= 0 {
		return canary.Measurement{}, errors.New("canary: window: a Prometheus range needs a positive duration")
	}
	champion, err := p.sample(ctx, w, w.Champion)
	if err != nil {
		return canary.Measurement{}, err
	}
	candidate, err := p.sample(ctx, w, w.Candidate)
	if err != nil {
		return canary.Measurement{}, err
	}
	return canary.Measurement{Champion: champion, Candidate: candidate}, nil
}

func (p *PrometheusProvider) sample(ctx context.Context, w canary.Window, variant string) (canary.Sample, error) {
	src := p.source
	sel := "{" + src.Label + "=" + strconv.Quote(variant)
	if p.matchers != "" {
		sel += "," + p.matchers
	}
	sel += "}"
	rng := model.Duration(w.Duration).String()
	s := canary.Sample{Variant: variant, P99Latency: math.NaN()}

	q := fmt.Sprintf("sum by (code) (increase(%s%s[%s]))", src.Requests, sel, rng)
	byCode, err := p.counts(ctx, q, w.End)
	if err != nil {
		return canary.Sample{}, err
	}
	for _, v := range byCode {
		n := float64(v.Value)
		s.Requests += n
		if isError(string(v.Metric["code"])) {
			s.Errors += n
		}
	}

	q = fmt.Sprintf("histogram_quantile(0.99, sum by (le) (rate(%s_bucket%s[%s])))", src.Latency, sel, rng)
	p99, err := p.query(ctx, q, w.End)
	if err != nil {
		return canary.Sample{}, err
	}
	// No series means no observations; a NaN from histogram_quantile
	// means the same and is kept.
	if len(p99) > 0 {
		s.P99Latency = float64(p99[0].Value)
	}

	if src.Scores == "" {
		return s, nil
	}
	q = fmt.Sprintf("sum by (le) (increase(%s_bucket%s[%s]))", src.Scores, sel, rng)
	byLe, err := p.counts(ctx, q, w.End)
	if err != nil {
		return canary.Sample{}, err
	}
	cum := map[float64]float64{}
	for _, v := range byLe {
		le, err := strconv.ParseFloat(string(v.Metric["le"]), 64)
		if err != nil {
			return canary.Sample{}, fmt.Errorf("canary: query %q: le %q: %w", q, v.Metric["le"], err)
		}
		cum[le] = float64(v.Value)
	}
	s.Scores = canary.FromCumulative(cum)
	return s, nil
}

// query runs an instant query that must answer a vector. Warnings (a
// partial answer from a federated or remote-read setup) are not errors.
func (p *PrometheusProvider) query(ctx context.Context, q string, at time.Time) (model.Vector, error) {
	val, _, _, err := p.api.Query(ctx, q, at)
	if err != nil {
		return nil, fmt.Errorf("canary: query %q: %w", q, err)
	}
	vec, ok := val.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("canary: query %q: got %T, want a vector", q, val)
	}
	return vec, nil
}

// counts is query for answers that are counts, refusing any that is not.
func (p *PrometheusProvider) counts(ctx context.Context, q string, at time.Time) (model.Vector, error) {
	vec, err := p.query(ctx, q, at)
	if err != nil {
		return nil, err
	}
	for _, v := range vec {
		if f := float64(v.Value); !(f >= 0) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("canary: query %q: %s is %v, not a count", q, v.Metric, f)
		}
	}
	return vec, nil
}

// Package traffic is the load generator behind `gauntlet traffic`: it
// replays the records of a data set against a model server or router at a
// fixed rate for a fixed time, optionally shifting a numeric feature to
// inject drift, and reports what came back.
package traffic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
)

// Drift shifts one numeric feature: value+Delta, or value*Delta when Scale.
type Drift struct {
	Feature string  `json:"feature"`
	Delta   float64 `json:"delta"`
	Scale   bool    `json:"scale,omitempty"`
}

// ParseDrift reads "age+10", "age-5", "income*1.5" or "x+1e-3". The split is
// at the first operator followed by a number, so feature names may hold '-'
// ("education-num+2").
func ParseDrift(s string) (Drift, error) {
	for i := 1; i < len(s)-1; i++ {
		op := s[i]
		if op != '+' && op != '-' && op != '*' {
			continue
		}
		v, err := strconv.ParseFloat(s[i+1:], 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		d := Drift{Feature: strings.TrimSpace(s[:i]), Delta: v}
		switch op {
		case '-':
			d.Delta = -v
		case '*':
			d.Scale = true
		}
		return d, nil
	}
	return Drift{}, fmt.Errorf("drift %q: want FEATURE+DELTA, FEATURE-DELTA or FEATURE*FACTOR", s)
}

func (d Drift) apply(v float64) float64 {
	if d.Scale {
		return v * d.Delta
	}
	return v + d.Delta
}

// Options configure Run.
type Options struct {
	// Target is the server's base URL; requests go to /v1/predict unless it
	// has a path of its own.
	Target string
	// Data is a CSV path or a builtin: URI.
	Data string
	// Label names the label column of a CSV, which is dropped (builtin
	// sources know theirs). Schema, when set, is used to read the data
	// instead, e.g. a model manifest's, so every column has the model's type.
	Label  string
	Schema *dataset.Schema
	// Rate is requests per second, Duration how long to send for.
	Rate     float64
	Duration time.Duration
	// Batch is records per request. Default 1.
	Batch int
	// Concurrency bounds the requests in flight. Default 32.
	Concurrency int
	Drift       []Drift
	// Header is added to every request.
	Header http.Header
	Client *http.Client

	clock clock
}

// Result is what a run did.
type Result struct {
	Target  string `json:"target"`
	Sent    int    `json:"sent"`
	Records int    `json:"records"`
	OK      int    `json:"ok"`
	// Errors counts failed requests by HTTP status; 0 is a request that got
	// no answer (connection refused, timeout).
	Errors  map[int]int   `json:"errors"`
	P50     time.Duration `json:"p50"`
	P99     time.Duration `json:"p99"`
	Elapsed time.Duration `json:"elapsed"`
	// Rate is the achieved rate of sent requests per second.
	Rate float64 `json:"rate"`
}

// clock is time, replaceable in tests.
type clock interface {
	Now() time.Time
	Ticker(d time.Duration) (<-chan time.Time, func())
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) Ticker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// LoadRecords reads the records of src keyed by feature name, without the
// label, with drift applied. Missing values are nil.
func LoadRecords(src, label string, schema *dataset.Schema, drift []Drift) ([]map[string]any, error) {
	var opts []dataset.Option
	builtin := strings.HasPrefix(src, "builtin:")
	switch {
	case schema != nil:
		opts = append(opts, dataset.WithSchema(*schema))
		if !builtin {
			opts = append(opts, dataset.WithHeader(true))
		}
	case label != "":
		opts = append(opts, dataset.WithLabel(label))
	case !builtin:
		return nil, fmt.Errorf("traffic: %s: name the label column to drop (or give the model's schema)", src)
	}
	d, err := dataset.Load(src, opts...)
	if err != nil {
		return nil, fmt.Errorf("traffic: %w", err)
	}
	for _, dr := range drift {
		col, ok := d.Numeric[dr.Feature]
		if !ok {
			return nil, fmt.Errorf("traffic: drift: %q is not a numeric column of %s", dr.Feature, src)
		}
		for i, v := range col {
			col[i] = dr.apply(v)
		}
	}
	out := make([]map[string]any, d.Len())
	for r := range out {
		rec := make(map[string]any, len(d.Schema.Columns))
		for _, c := range d.Schema.Columns {
			switch c.Kind {
			case dataset.Numeric:
				if v := d.Numeric[c.Name][r]; !math.IsNaN(v) {
					rec[c.Name] = v
				} else {
					rec[c.Name] = nil
				}
			case dataset.Categorical, dataset.Sensitive:
				src := d.Categorical
				if c.Kind == dataset.Sensitive {
					src = d.Sensitive
				}
				if v := src[c.Name][r]; v != "" {
					rec[c.Name] = v
				} else {
					rec[c.Name] = nil
				}
			}
		}
		out[r] = rec
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("traffic: %s has no records", src)
	}
	return out, nil
}

// Run sends the data at opts.Rate for opts.Duration. It stops by itself:
// at most Rate×Duration requests, never faster than Rate (a tick that comes
// while all Concurrency requests are in flight waits, and the ticks missed
// meanwhile are dropped, not caught up). ctx cancels it early.
func Run(ctx context.Context, opts Options) (Result, error) {
	if opts.Rate <= 0 || math.IsInf(opts.Rate, 0) || math.IsNaN(opts.Rate) {
		return Result{}, fmt.Errorf("traffic: rate %v: want a positive number of requests per second", opts.Rate)
	}
	if opts.Duration <= 0 {
		return Result{}, fmt.Errorf("traffic: duration %v: want a positive duration", opts.Duration)
	}
	target, err := endpoint(opts.Target)
	if err != nil {
		return Result{}, err
	}
	if opts.Batch <= 0 {
		opts.Batch = 1
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 32
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.clock == nil {
		opts.clock = realClock{}
	}
	recs, err := LoadRecords(opts.Data, opts.Label, opts.Schema, opts.Drift)
	if err != nil {
		return Result{}, err
	}
	bodies, sizes, err := encodeBatches(recs, opts.Batch)
	if err != nil {
		return Result{}, err
	}

	limit := int(opts.Rate * opts.Duration.Seconds())
	res := Result{Target: target, Errors: map[int]int{}}
	var mu sync.Mutex
	var lat []time.Duration
	sem := make(chan struct{}, opts.Concurrency)
	var wg sync.WaitGroup
	send := func(body []byte) {
		t0 := time.Now()
		code, err := post(ctx, opts.Client, target, body, opts.Header)
		d := time.Since(t0)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil && ctx.Err() != nil:
			// Cut off by the caller: neither an answer nor a server fault.
		case err != nil:
			res.Errors[0]++
		case code == 200:
			res.OK++
			lat = append(lat, d)
		default:
			res.Errors[code]++
			lat = append(lat, d)
		}
	}

	start := opts.clock.Now()
	deadline := start.Add(opts.Duration)
	ticks, stop := opts.clock.Ticker(time.Duration(float64(time.Second) / opts.Rate))
	defer stop()
loop:
	for res.Sent < limit {
		select {
		case <-ctx.Done():
			break loop
		case now := <-ticks:
			if !now.Before(deadline) {
				break loop
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		i := res.Sent % len(bodies)
		res.Sent++
		res.Records += sizes[i]
		wg.Go(func() {
			defer func() { <-sem }()
			send(bodies[i])
		})
	}
	wg.Wait()
	res.Elapsed = opts.clock.Now().Sub(start)
	if s := res.Elapsed.Seconds(); s > 0 {
		res.Rate = float64(res.Sent) / s
	}
	slices.Sort(lat)
	res.P50, res.P99 = quantile(lat, 0.50), quantile(lat, 0.99)
	return res, nil
}

func endpoint(target string) (string, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("traffic: target %q: want an http(s) URL", target)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/predict"
	}
	return u.String(), nil
}

func encodeBatches(recs []map[string]any, batch int) ([][]byte, []int, error) {
	var bodies [][]byte
	var sizes []int
	for i := 0; i < len(recs); i += batch {
		chunk := recs[i:min(i+batch, len(recs))]
		b, err := json.Marshal(map[string]any{"records": chunk})
		if err != nil {
			return nil, nil, fmt.Errorf("traffic: encode records: %w", err)
		}
		bodies = append(bodies, b)
		sizes = append(sizes, len(chunk))
	}
	return bodies, sizes, nil
}

func post(ctx context.Context, c *http.Client, target string, body []byte, h http.Header) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	// Drain so the connection is reused.
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	return resp.StatusCode, nil
}

// quantile of sorted durations (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

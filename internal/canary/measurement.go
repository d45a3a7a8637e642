package canary

import (
	"context"
	"errors"
	"math"
	"strconv"
	"time"
)

// Provider measures the champion and the candidate over a window.
type Provider interface {
	Measure(ctx context.Context, w Window) (Measurement, error)
}

// Window names the two variants, as the Source's label spells them, and the
// interval to measure.
type Window struct {
	Champion  string `json:"champion"`
	Candidate string `json:"candidate"`
	// Duration is the PromQL range of a PrometheusProvider. A
	// ScrapeProvider measures since its previous scrape, and waits Duration
	// between two scrapes when it has none.
	Duration time.Duration `json:"duration"`
	// End is when the window ends for a PrometheusProvider; zero means now.
	End time.Time `json:"end,omitzero"`
}

// Validate checks that the window names two variants and a duration.
func (w Window) Validate() error {
	if w.Champion == "" || w.Candidate == "" {
		return errors.New("canary: window: champion and candidate must be named")
	}
	if w.Champion == w.Candidate {
		return errors.New("canary: window: champion and candidate are both " + strconv.Quote(w.Champion))
	}
	if w.Duration < 0 {
		return errors.New("canary: window: negative duration")
	}
	return nil
}

// Measurement is both variants over one interval.
type Measurement struct {
	Champion  Sample `json:"champion"`
	Candidate Sample `json:"candidate"`
}

// Sample is one variant over one interval. Counts are float64 because
// PromQL's increase extrapolates to the window's edges.
type Sample struct {
	Variant  string  `json:"variant"`
	Requests float64 `json:"requests"`
	// Errors are the non-2xx responses among Requests.
	Errors float64 `json:"errors"`
	// P99Latency is in seconds; NaN (null in JSON) without observations.
	P99Latency float64 `json:"p99_latency_seconds"`
	// Scores is empty when the Source has no score histogram.
	Scores Histogram `json:"scores"`
}

// ErrorRate is Errors/Requests, NaN without requests.
func (s Sample) ErrorRate() float64 {
	if s.Requests == 0 {
		return math.NaN()
	}
	return s.Errors / s.Requests
}

package source

import "github.com/gauntlet-ml/gauntlet/internal/canary"

// since is what s gained after prev. A count that fell means the process
// restarted and its counters began again at zero, so all of s is new; a
// histogram restarts as a whole (any bucket fell, or its layout changed).
func (s series) since(prev series, seen bool) series {
	if !seen {
		return s
	}
	if s.buckets == nil {
		if s.value < prev.value {
			return s
		}
		s.value -= prev.value
		return s
	}
	if len(s.buckets) != len(prev.buckets) {
		return s
	}
	d := make(map[float64]float64, len(s.buckets))
	for b, c := range s.buckets {
		pc, ok := prev.buckets[b]
		if !ok || c < pc {
			return s
		}
		d[b] = c - pc
	}
	s.buckets = d
	return s
}

// delta measures w from two scrapes.
func (src Source) delta(w canary.Window, prev, cur map[string]series) canary.Measurement {
	type acc struct {
		requests, errors float64
		latency, scores  map[float64]float64
	}
	accs := map[string]*acc{
		w.Champion:  {latency: map[float64]float64{}, scores: map[float64]float64{}},
		w.Candidate: {latency: map[float64]float64{}, scores: map[float64]float64{}},
	}
	for k, s := range cur {
		a := accs[s.variant]
		if a == nil {
			continue
		}
		p, seen := prev[k]
		d := s.since(p, seen)
		switch {
		case d.buckets == nil:
			a.requests += d.value
			if isError(d.code) {
				a.errors += d.value
			}
		case d.family == src.Latency:
			addBuckets(a.latency, d.buckets)
		default:
			addBuckets(a.scores, d.buckets)
		}
	}
	sample := func(name string) canary.Sample {
		a := accs[name]
		return canary.Sample{
			Variant:    name,
			Requests:   a.requests,
			Errors:     a.errors,
			P99Latency: canary.FromCumulative(a.latency).Quantile(0.99),
			Scores:     canary.FromCumulative(a.scores),
		}
	}
	return canary.Measurement{Champion: sample(w.Champion), Candidate: sample(w.Candidate)}
}

// addBuckets sums by upper bound, as PromQL's sum by (le) does.
func addBuckets(into, from map[float64]float64) {
	for b, c := range from {
		into[b] += c
	}
}

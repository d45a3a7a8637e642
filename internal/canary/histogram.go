package canary

import (
	"math"
	"slices"
)

// Histogram is what a Prometheus histogram observed over one interval:
// Counts[i] observations fell at or below Bounds[i] and above the bound
// before it, and Counts[len(Bounds)] above the last bound. The +Inf bound is
// left implied because JSON cannot hold it.
type Histogram struct {
	Bounds []float64 `json:"bounds,omitempty"`
	Counts []float64 `json:"counts,omitempty"`
}

// Total is the number of observations.
func (h Histogram) Total() float64 {
	t := 0.0
	for _, c := range h.Counts {
		t += c
	}
	return t
}

// valid guards the methods against a histogram decoded from bad JSON.
func (h Histogram) valid() bool {
	if len(h.Counts) != len(h.Bounds)+1 {
		return false
	}
	for i, b := range h.Bounds {
		if math.IsNaN(b) || math.IsInf(b, 0) || i > 0 && b <= h.Bounds[i-1] {
			return false
		}
	}
	for _, c := range h.Counts {
		if !(c >= 0) || math.IsInf(c, 0) {
			return false
		}
	}
	return true
}

// Quantile estimates the q-quantile as PromQL's histogram_quantile does:
// it finds the bucket holding the rank q*Total and interpolates linearly
// within it, taking 0 as the lower edge of the first bucket when its bound
// is positive. A rank in the bucket above the last bound gives the last
// bound, since nothing is known of how far above it the observations lie.
// NaN without observations or finite bounds.
func (h Histogram) Quantile(q float64) float64 {
	switch {
	case math.IsNaN(q):
		return math.NaN()
	case q < 0:
		return math.Inf(-1)
	case q > 1:
		return math.Inf(1)
	}
	total := h.Total()
	if !h.valid() || len(h.Bounds) == 0 || total == 0 {
		return math.NaN()
	}
	rank := q * total
	below := 0.0 // observations in the buckets before bucket i
	for i, c := range h.Counts {
		if below+c < rank && i < len(h.Bounds) {
			below += c
			continue
		}
		if i == len(h.Bounds) {
			return h.Bounds[i-1]
		}
		start := 0.0
		if i > 0 {
			start = h.Bounds[i-1]
		} else if h.Bounds[0] <= 0 {
			return h.Bounds[0]
		}
		return start + (h.Bounds[i]-start)*((rank-below)/c)
	}
	return math.NaN()
}

// psiFloor stands in for the proportion of an empty bucket.
const psiFloor = 1e-4

// PSI is the population stability index of candidate against champion:
// the sum over buckets of (p-q)*ln(p/q), p and q the candidate's and the
// champion's share of their observations in the bucket. Only the bounds
// both histograms have are used, so histograms from servers with different
// bucket layouts still compare, on coarser buckets. An empty bucket would
// make its term infinite, so a share below 0.0001 counts as 0.0001, as most
// PSI implementations do: 5% of the candidate's scores in a bucket the
// champion never reached adds about 0.31, a large shift but a finite one.
// NaN when either side has no observations or no bound is shared.
func PSI(candidate, champion Histogram) float64 {
	if !candidate.valid() || !champion.valid() {
		return math.NaN()
	}
	var shared []float64
	for _, b := range candidate.Bounds {
		if _, ok := slices.BinarySearch(champion.Bounds, b); ok {
			shared = append(shared, b)
		}
	}
	p, q := candidate.rebucket(shared), champion.rebucket(shared)
	pt, qt := candidate.Total(), champion.Total()
	if len(shared) == 0 || pt == 0 || qt == 0 {
		return math.NaN()
	}
	psi := 0.0
	for i := range p {
		pi, qi := max(p[i]/pt, psiFloor), max(q[i]/qt, psiFloor)
		psi += (pi - qi) * math.Log(pi/qi)
	}
	return psi
}

// rebucket merges h's buckets into those of bounds, a sorted subset of
// h.Bounds, plus the one above the last.
func (h Histogram) rebucket(bounds []float64) []float64 {
	out := make([]float64, len(bounds)+1)
	j := 0
	for i, c := range h.Counts {
		for j < len(bounds) && i < len(h.Bounds) && h.Bounds[i] > bounds[j] {
			j++
		}
		if i == len(h.Bounds) {
			j = len(bounds)
		}
		out[j] += c
	}
	return out
}

// FromCumulative builds a Histogram from cumulative counts by upper bound,
// the shape of Prometheus's le buckets; +Inf, when present, is the total,
// and without it nothing is above the last bound.
// Counts that fall with a rising bound (PromQL's increase extrapolates each
// bucket on its own) are raised to the count before, as histogram_quantile
// does, so no bucket is negative.
func FromCumulative(cum map[float64]float64) Histogram {
	var h Histogram
	if len(cum) == 0 {
		return h
	}
	for b := range cum {
		if !math.IsInf(b, 1) && !math.IsNaN(b) {
			h.Bounds = append(h.Bounds, b)
		}
	}
	slices.Sort(h.Bounds)
	prev := 0.0
	for _, b := range h.Bounds {
		c := max(cum[b], prev)
		h.Counts = append(h.Counts, c-prev)
		prev = c
	}
	h.Counts = append(h.Counts, max(cum[math.Inf(1)], prev)-prev)
	return h
}

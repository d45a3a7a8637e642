package drift

import (
	"errors"
	"fmt"
	"math"
)

// JensenShannon is scipy.spatial.distance.jensenshannon(p, q, base): both
// vectors are normalised to sum to one, and the result is the square root
// of the Jensen–Shannon divergence. base <= 0 means the natural logarithm;
// with base 2 the distance lies in [0, 1].
func JensenShannon(p, q []float64, base float64) (float64, error) {
	if len(p) != len(q) {
		return 0, fmt.Errorf("jensen-shannon: lengths differ (%d vs %d)", len(p), len(q))
	}
	if len(p) == 0 {
		return 0, errors.New("jensen-shannon: empty distributions")
	}
	var sp, sq float64
	for i := range p {
		if !(p[i] >= 0) || !(q[i] >= 0) || math.IsInf(p[i], 0) || math.IsInf(q[i], 0) {
			return 0, fmt.Errorf("jensen-shannon: entry %d is negative or not finite", i)
		}
		sp += p[i]
		sq += q[i]
	}
	if sp == 0 || sq == 0 {
		return 0, errors.New("jensen-shannon: a distribution sums to zero")
	}
	var js float64
	for i := range p {
		pi, qi := p[i]/sp, q[i]/sq
		m := (pi + qi) / 2
		js += relEntr(pi, m) + relEntr(qi, m)
	}
	if base > 0 {
		js /= math.Log(base)
	}
	// Rounding can leave a tiny negative divergence for identical inputs.
	return math.Sqrt(math.Max(js, 0) / 2), nil
}

// relEntr is scipy.special.rel_entr for the non-negative finite arguments
// JensenShannon passes.
func relEntr(x, y float64) float64 {
	if x == 0 {
		return 0
	}
	return x * math.Log(x/y)
}

// Wasserstein1 is scipy.stats.wasserstein_distance(u, v) for unweighted
// samples: the integral of |U(t) - V(t)| over the real line, where U and V
// are the empirical CDFs, computed exactly on the merged sorted values.
func Wasserstein1(u, v []float64) (float64, error) {
	x, err := sortedFinite(u)
	if err != nil {
		return 0, fmt.Errorf("wasserstein: first sample: %w", err)
	}
	y, err := sortedFinite(v)
	if err != nil {
		return 0, fmt.Errorf("wasserstein: second sample: %w", err)
	}
	return wassersteinSorted(x, y), nil
}

func wassersteinSorted(x, y []float64) float64 {
	n1, n2 := float64(len(x)), float64(len(y))
	var i, j int
	var dist float64
	// Walk every merged value (ties included, as scipy does); the CDFs are
	// evaluated at the current value and weighted by the gap to the next.
	prev, started := 0.0, false
	var cu, cv float64
	for i < len(x) || j < len(y) {
		var t float64
		if j >= len(y) || (i < len(x) && x[i] <= y[j]) {
			t = x[i]
		} else {
			t = y[j]
		}
		if started {
			dist += math.Abs(cu-cv) * (t - prev)
		}
		for i < len(x) && x[i] <= t {
			i++
		}
		for j < len(y) && y[j] <= t {
			j++
		}
		cu, cv = float64(i)/n1, float64(j)/n2
		prev, started = t, true
	}
	return dist
}

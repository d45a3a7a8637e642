package drift

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// KSMethod names how a KS p-value was obtained.
type KSMethod string

// The p-value methods of scipy.stats.ks_2samp.
const (
	KSExact      KSMethod = "exact"
	KSAsymptotic KSMethod = "asymp"
)

// maxExactN mirrors scipy's MAX_AUTO_N: with method='auto' the exact
// distribution is attempted only when both samples have at most this many
// observations.
const maxExactN = 10000

// KSResult is the two-sided two-sample Kolmogorov–Smirnov test.
type KSResult struct {
	Statistic float64  `json:"statistic"`
	PValue    float64  `json:"pvalue"`
	Method    KSMethod `json:"method"`
}

// KS2Samp runs the two-sided two-sample Kolmogorov–Smirnov test with the
// semantics of scipy.stats.ks_2samp(a, b) (alternative='two-sided',
// method='auto'): the exact null distribution when both samples have at most
// 10000 observations, the kstwo distribution with n = round(n1*n2/(n1+n2))
// otherwise, and the asymptotic path as a fallback when the exact computation
// overflows. Ties are handled the way scipy does, by evaluating both
// empirical CDFs (right-continuous) at every observed value.
//
// The inputs are not modified. Empty samples and NaN values are errors
// (scipy would return NaN for the latter, which is useless for a verdict).
func KS2Samp(a, b []float64) (KSResult, error) {
	if len(a) == 0 || len(b) == 0 {
		return KSResult{}, errors.New("ks: both samples must be non-empty")
	}
	// The two sorts are independent: on two cores they take the time of one.
	var y []float64
	var errB error
	done := make(chan struct{})
	go func() {
		y, errB = sortedCopy(b)
		close(done)
	}()
	x, errA := sortedCopy(a)
	<-done
	if errA != nil {
		return KSResult{}, fmt.Errorf("ks: first sample: %w", errA)
	}
	if errB != nil {
		return KSResult{}, fmt.Errorf("ks: second sample: %w", errB)
	}
	return ksSorted(x, y), nil
}

func sortedCopy(v []float64) ([]float64, error) {
	out := make([]float64, len(v))
	for i, f := range v {
		if math.IsNaN(f) {
			return nil, fmt.Errorf("value %d is NaN", i)
		}
		out[i] = f
	}
	slices.Sort(out)
	return out, nil
}

// ksStatistic returns sup |F1 - F2| for sorted samples. Walking the merged
// distinct values is equivalent to scipy's searchsorted(side='right') over
// the concatenated data, and computes each CDF difference with the same
// floating-point operations, so the statistic matches bit for bit.
func ksStatistic(x, y []float64) float64 {
	n1, n2 := float64(len(x)), float64(len(y))
	var i, j int
	maxS, minS := math.Inf(-1), math.Inf(1)
	for i < len(x) || j < len(y) {
		var v float64
		switch {
		case j >= len(y):
			v = x[i]
		case i >= len(x):
			v = y[j]
		default:
			v = min(x[i], y[j])
		}
		for i < len(x) && x[i] <= v {
			i++
		}
		for j < len(y) && y[j] <= v {
			j++
		}
		diff := float64(i)/n1 - float64(j)/n2
		maxS = max(maxS, diff)
		minS = min(minS, diff)
	}
	neg := math.Min(math.Max(-minS, 0), 1)
	if neg > maxS {
		return neg
	}
	return maxS
}

func ksSorted(x, y []float64) KSResult {
	d := ksStatistic(x, y)
	n1, n2 := len(x), len(y)
	if max(n1, n2) <= maxExactN {
		if dd, p, ok := ksExact(n1, n2, d); ok {
			return KSResult{Statistic: dd, PValue: clip01(p), Method: KSExact}
		}
	}
	m, n := float64(max(n1, n2)), float64(min(n1, n2))
	en := m * n / (m + n)
	p := kstwoSF(int(math.RoundToEven(en)), d)
	return KSResult{Statistic: d, PValue: clip01(p), Method: KSAsymptotic}
}

func clip01(p float64) float64 { return math.Min(math.Max(p, 0), 1) }

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// ksExact ports scipy's _attempt_exact_2kssamp for the two-sided case. It
// snaps d to the lattice h/lcm(n1, n2) and returns that snapped statistic,
// as scipy does. ok is false when the computation is not trustworthy (an
// overflow or a probability outside [0, 1]); the caller then falls back to
// the asymptotic distribution exactly as scipy does.
func ksExact(n1, n2 int, d float64) (float64, float64, bool) {
	g := gcd(n1, n2)
	lcm := (n1 / g) * n2
	h := int(math.RoundToEven(d * float64(lcm)))
	d = float64(h) / float64(lcm)
	if h == 0 {
		return d, 1, true
	}
	var p float64
	if n1 == n2 {
		p = probOutsideSquare(n1, h)
	} else {
		p = outerProbInside(n1, n2, g, h)
	}
	if math.IsNaN(p) || math.IsInf(p, 0) || p < 0 || p > 1 {
		return d, p, false
	}
	return d, p, true
}

// probOutsideSquare is scipy's _compute_prob_outside_square: P(D_{n,n} >=
// h/n) as an alternating series evaluated Horner-style to avoid the
// cancellation of the textbook binomial form.
func probOutsideSquare(n, h int) float64 {
	var p float64
	for k := n / h; k >= 0; k-- {
		p1 := 1.0
		for j := range h {
			p1 = float64(n-k*h-j) * p1 / float64(n+k*h+j+1)
		}
		p = p1 * (1 - p)
	}
	return 2 * p
}

// outerProbInside is scipy's _compute_outer_prob_inside_method: the share
// of lattice paths from (0,0) to (m,n) that leave the band |x/m - y/n| <
// h/lcm, computed with Viehmann's recursion for 1-p so that small p-values
// keep their precision. Only a sliding window of one column is kept.
func outerProbInside(m, n, g, h int) float64 {
	if m < n {
		m, n = n, m
	}
	mg, ng := m/g, n/g
	minj, maxj := 0, min(int(math.Ceil(float64(h)/float64(mg))), n+1)
	curlen := maxj - minj
	lenA := min(2*maxj+2, n+1)
	a := make([]float64, lenA)
	for i := range a {
		a[i] = 1
	}
	for i := minj; i < min(maxj, lenA); i++ {
		a[i] = 0
	}
	for i := 1; i <= m; i++ {
		lastminj, lastlen := minj, curlen
		minj = max(int(math.Floor(float64(ng*i-h)/float64(mg)))+1, 0)
		minj = min(minj, n)
		maxj = min(int(math.Ceil(float64(ng*i+h)/float64(mg))), n+1)
		if maxj <= minj {
			return 1
		}
		val := 1.0
		if minj == 0 {
			val = 0
		}
		for jj := range maxj - minj {
			j := jj + minj
			src := jj + minj - lastminj
			if src < 0 || src >= lenA || jj >= lenA {
				return math.NaN()
			}
			val = (a[src]*float64(i) + val*float64(j)) / float64(i+j)
			a[jj] = val
		}
		curlen = maxj - minj
		if lastlen > curlen {
			for k := maxj - minj; k < min(maxj-minj+lastlen-curlen, lenA); k++ {
				a[k] = 1
			}
		}
	}
	if maxj-minj-1 < 0 || maxj-minj-1 >= lenA {
		return math.NaN()
	}
	return a[maxj-minj-1]
}

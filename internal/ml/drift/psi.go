package drift

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// DefaultPSIBins is the number of reference quantile bins PSI uses unless
// told otherwise; ten deciles is the convention the usual PSI thresholds
// (0.1 moderate, 0.2 significant) were calibrated with.
const DefaultPSIBins = 10

// DefaultPSIEpsilon is the floor applied to an empty bin's proportion.
const DefaultPSIEpsilon = 1e-4

// QuantileEdges returns the interior bin edges of the reference sample: its
// quantiles at k/bins for k = 1..bins-1 (numpy's default 'linear'
// interpolation), with duplicates removed so that heavily tied data yields
// fewer, non-empty bins instead of zero-width ones. A value x falls into bin
// i when edges[i-1] < x <= edges[i]; the outer bins are open-ended, so
// values outside the reference range still land somewhere.
func QuantileEdges(reference []float64, bins int) ([]float64, error) {
	if bins < 2 {
		return nil, fmt.Errorf("psi: need at least 2 bins, got %d", bins)
	}
	if err := checkFinite(reference); err != nil {
		return nil, fmt.Errorf("psi: reference: %w", err)
	}
	// Only a few order statistics are needed, so partial selection (as
	// numpy.quantile does) replaces a full sort.
	work := slices.Clone(reference)
	var need []int
	for k := 1; k < bins; k++ {
		lo, hi := quantileIndex(len(work), float64(k)/float64(bins))
		need = append(need, lo, hi)
	}
	slices.Sort(need)
	selectPositions(work, slices.Compact(need))
	return edgesFrom(work, bins), nil
}

// edgesFrom reads the quantile edges from s, which must be sorted at least
// at the positions quantileIndex names.
func edgesFrom(s []float64, bins int) []float64 {
	edges := make([]float64, 0, bins-1)
	for k := 1; k < bins; k++ {
		q := quantileSorted(s, float64(k)/float64(bins))
		if len(edges) == 0 || q != edges[len(edges)-1] {
			edges = append(edges, q)
		}
	}
	return edges
}

// quantileIndex returns the two order statistics numpy's linear quantile
// interpolates between.
func quantileIndex(n int, p float64) (int, int) {
	lo := int(math.Floor(p * float64(n-1)))
	return lo, min(lo+1, n-1)
}

// selectPositions partially sorts a so that a[p] holds the p-th smallest
// value for every p in the ascending list pos, and everything before p is
// <= a[p]. Each selection only scans what lies past the previous one.
func selectPositions(a []float64, pos []int) {
	start := 0
	for _, p := range pos {
		if p < start {
			continue
		}
		nthElement(a[start:], p-start)
		start = p + 1
	}
}

// nthElement is introselect: Hoare partitioning around a median-of-three
// pivot, falling back to a full sort of the remaining range if the
// partitions keep coming out lopsided, so the worst case stays n log n.
func nthElement(a []float64, k int) {
	lo, hi := 0, len(a)-1
	budget := 2 * (bits.Len(uint(len(a))) + 1)
	for hi > lo {
		if budget == 0 {
			slices.Sort(a[lo : hi+1])
			return
		}
		budget--
		mid := lo + (hi-lo)/2
		if a[mid] < a[lo] {
			a[mid], a[lo] = a[lo], a[mid]
		}
		if a[hi] < a[lo] {
			a[hi], a[lo] = a[lo], a[hi]
		}
		if a[hi] < a[mid] {
			a[hi], a[mid] = a[mid], a[hi]
		}
		pivot := a[mid]
		i, j := lo, hi
		for i <= j {
			for a[i] < pivot {
				i++
			}
			for a[j] > pivot {
				j--
			}
			if i <= j {
				a[i], a[j] = a[j], a[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return
		}
	}
}

func sortedFinite(v []float64) ([]float64, error) {
	if len(v) == 0 {
		return nil, errors.New("empty sample")
	}
	out := make([]float64, len(v))
	for i, f := range v {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("value %d is not finite (%v)", i, f)
		}
		out[i] = f
	}
	slices.Sort(out)
	return out, nil
}

// quantileSorted reproduces numpy.quantile(method='linear'), including its
// two-sided lerp, so that edges coincide with numpy's to the last bit.
func quantileSorted(s []float64, p float64) float64 {
	idx := p * float64(len(s)-1)
	lo := math.Floor(idx)
	i := int(lo)
	if i >= len(s)-1 {
		return s[len(s)-1]
	}
	t := idx - lo
	a, b := s[i], s[i+1]
	if t >= 0.5 {
		return b - (b-a)*(1-t)
	}
	return a + (b-a)*t
}

// binProportions assigns each value to its bin and returns the share of
// values per bin (len(edges)+1 bins).
func binProportions(values, edges []float64) []float64 {
	counts := make([]float64, len(edges)+1)
	if len(edges) <= 16 {
		// Counting the edges below v without branching beats a binary
		// search, whose branches random data mispredicts half the time.
		n := make([]int, len(edges)+1)
		for _, v := range values {
			k := 0
			for _, e := range edges {
				k += b2i(e < v)
			}
			n[k]++
		}
		for i, c := range n {
			counts[i] = float64(c) / float64(len(values))
		}
		return counts
	}
	for _, v := range values {
		// Number of edges strictly below v.
		lo, hi := 0, len(edges)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if edges[m] < v {
				lo = m + 1
			} else {
				hi = m
			}
		}
		counts[lo]++
	}
	for i := range counts {
		counts[i] /= float64(len(values))
	}
	return counts
}

// PSI is the population stability index of current against reference over
// DefaultPSIBins reference quantile bins, with empty bins floored at
// DefaultPSIEpsilon.
func PSI(reference, current []float64) (float64, error) {
	edges, err := QuantileEdges(reference, DefaultPSIBins)
	if err != nil {
		return 0, err
	}
	return PSIWithEdges(reference, current, edges, DefaultPSIEpsilon)
}

// PSIWithEdges computes sum_i (c_i - r_i) * ln(c_i / r_i) over the bins the
// edges define. A bin with no observations on one side would make the log
// infinite; its proportion is raised to epsilon instead (no renormalisation:
// the shift is at most bins*epsilon and keeps every term finite and
// non-negative). epsilon must be positive.
func PSIWithEdges(reference, current, edges []float64, epsilon float64) (float64, error) {
	if !(epsilon > 0) {
		return 0, fmt.Errorf("psi: epsilon must be positive, got %v", epsilon)
	}
	if !slices.IsSorted(edges) {
		return 0, errors.New("psi: edges must be sorted")
	}
	if err := checkFinite(reference); err != nil {
		return 0, fmt.Errorf("psi: reference: %w", err)
	}
	if err := checkFinite(current); err != nil {
		return 0, fmt.Errorf("psi: current: %w", err)
	}
	// The two samples are binned independently, on two cores at once.
	var c []float64
	done := make(chan struct{})
	go func() {
		c = binProportions(current, edges)
		close(done)
	}()
	r := binProportions(reference, edges)
	<-done
	return psiFromProportions(r, c, epsilon), nil
}

func psiFromProportions(r, c []float64, epsilon float64) float64 {
	var psi float64
	for i := range r {
		ri, ci := math.Max(r[i], epsilon), math.Max(c[i], epsilon)
		psi += (ci - ri) * math.Log(ci/ri)
	}
	return psi
}

func checkFinite(v []float64) error {
	if len(v) == 0 {
		return errors.New("empty sample")
	}
	for i, f := range v {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("value %d is not finite (%v)", i, f)
		}
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

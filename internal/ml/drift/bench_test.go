package drift

import (
	"math/rand/v2"
	"testing"
)

// benchRows matches bench/stats/ks_psi_vs_scipy.sh, which times scipy and
// numpy on the same sizes.
const benchRows = 1_000_000

func benchSamples() (ref, cur []float64) {
	r := rand.New(rand.NewPCG(1, 2))
	ref = make([]float64, benchRows)
	cur = make([]float64, benchRows)
	for i := range ref {
		ref[i] = r.NormFloat64()
		cur[i] = r.NormFloat64()*1.02 + 0.01
	}
	return ref, cur
}

func BenchmarkKS2Samp1M(b *testing.B) {
	ref, cur := benchSamples()
	b.ResetTimer()
	for b.Loop() {
		if _, err := KS2Samp(ref, cur); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPSI1M(b *testing.B) {
	ref, cur := benchSamples()
	b.ResetTimer()
	for b.Loop() {
		if _, err := PSI(ref, cur); err != nil {
			b.Fatal(err)
		}
	}
}

// Command driftbench is Gauntlet's side of bench/stats/drift_vs_scipy.sh:
// it draws a reference and a current sample of ROWS rows each, a numeric
// column (N(0, 1) against N(0.01, 1.02), float64) and a categorical one
// (ten categories, one-byte codes, slightly shifted weights), and times the
// two-sample KS test, PSI over ten reference deciles, and the chi-square
// test on the category counts. It prints one JSON line for
// bench/lib/pairs.py; drift_scipy.py does the same with numpy and scipy.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/ml/drift"
)

func main() {
	rows := flag.Int("rows", 10_000_000, "rows per sample")
	flag.Parse()
	if err := run(*rows); err != nil {
		fmt.Fprintln(os.Stderr, "driftbench:", err)
		os.Exit(1)
	}
}

// weights of the ten categories in the reference and the current sample.
var (
	refWeights = []float64{0.2, 0.15, 0.12, 0.1, 0.1, 0.09, 0.08, 0.07, 0.05, 0.04}
	curWeights = []float64{0.19, 0.15, 0.12, 0.1, 0.1, 0.09, 0.08, 0.07, 0.055, 0.045}
)

func draw(r *rand.Rand, cum []float64) uint8 {
	u := r.Float64()
	for k, c := range cum {
		if u < c {
			return uint8(k)
		}
	}
	return uint8(len(cum) - 1)
}

func cumulative(w []float64) []float64 {
	out := make([]float64, len(w))
	var s float64
	for i, v := range w {
		s += v
		out[i] = s
	}
	return out
}

func run(rows int) error {
	r := rand.New(rand.NewPCG(1, 2))
	ref, cur := make([]float64, rows), make([]float64, rows)
	refCat, curCat := make([]uint8, rows), make([]uint8, rows)
	rc, cc := cumulative(refWeights), cumulative(curWeights)
	for i := range rows {
		ref[i] = r.NormFloat64()
		cur[i] = r.NormFloat64()*1.02 + 0.01
		refCat[i] = draw(r, rc)
		curCat[i] = draw(r, cc)
	}
	start := time.Now()
	ks, err := drift.KS2Samp(ref, cur)
	if err != nil {
		return err
	}
	ksDone := time.Now()
	psi, err := drift.PSI(ref, cur)
	if err != nil {
		return err
	}
	psiDone := time.Now()
	counts := func(codes []uint8) []float64 {
		n := make([]float64, len(refWeights))
		for _, c := range codes {
			n[c]++
		}
		return n
	}
	chi, err := drift.ChiSquare(counts(refCat), counts(curCat))
	if err != nil {
		return err
	}
	end := time.Now()
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"seconds": end.Sub(start).Seconds(), "ks_seconds": ksDone.Sub(start).Seconds(),
		"psi_seconds": psiDone.Sub(ksDone).Seconds(), "chi2_seconds": end.Sub(psiDone).Seconds(),
		"ks_statistic": ks.Statistic, "psi": psi, "chi2": chi.Statistic,
	})
}

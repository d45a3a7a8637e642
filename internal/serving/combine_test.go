package serving

import (
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

// Rows scored together for many concurrent callers come back to each
// caller as its own rows' scores, the same as scored alone, and one
// caller's rows never reach another.
func TestCombinerGivesEachCallerItsOwnScores(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	trainModel(t, dir, 1)
	sm, err := scoring.Open(dir, scoring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sm.Close()
	w := sm.Encoder().Width()
	c := newCombiner(sm, w)
	defer c.stop()

	const callers, calls = 24, 60
	var wg sync.WaitGroup
	errs := make(chan string, callers)
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			j := combineJob{done: make(chan struct{}, 1)}
			for range calls {
				n := 1 + rng.IntN(4)
				x := make([]float64, n*w)
				for i := range x {
					x[i] = rng.NormFloat64()
				}
				want, err := sm.PredictProba(mat.NewDense(n, w, x))
				if err != nil {
					errs <- err.Error()
					return
				}
				j.x = x
				c.score(&j)
				if j.err != nil || len(j.scores) != n {
					errs <- "combined call failed or returned the wrong count"
					return
				}
				for r := range want {
					if j.scores[r] != want[r] {
						errs <- "combined scores differ from the rows' own"
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// A call that fails fails every caller whose rows were in it, with its error.
func TestCombinerReportsTheModelsError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	trainModel(t, dir, 1)
	sm, err := scoring.Open(dir, scoring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sm.Close()
	w := sm.Encoder().Width()
	c := newCombiner(sm, w+1) // rows one value too wide: the model refuses them
	defer c.stop()
	j := combineJob{x: make([]float64, w+1), done: make(chan struct{}, 1)}
	c.score(&j)
	if j.err == nil {
		t.Fatal("a call the model refuses returned no error")
	}
}

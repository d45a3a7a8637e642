package model

import (
	"runtime"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/mat"

	"github.com/gauntlet-ml/gauntlet/internal/ml/matrix"
)

// float is the element type of a feature matrix: float64 (gonum's
// mat.Dense) or float32 (matrix.Dense32, for large data sets). Arithmetic is
// float64 whatever the storage.
type float interface{ ~float32 | ~float64 }

// rows is a read-only row-major view of a feature matrix.
type rows[T float] struct {
	data         []T
	n, d, stride int
}

func (r rows[T]) row(i int) []T { return r.data[i*r.stride : i*r.stride+r.d] }

func viewDense(x *mat.Dense) rows[float64] {
	raw := x.RawMatrix()
	return rows[float64]{data: raw.Data, n: raw.Rows, d: raw.Cols, stride: raw.Stride}
}

func view32(x *matrix.Dense32) rows[float32] {
	n, d := x.Dims()
	return rows[float32]{data: x.Raw(), n: n, d: d, stride: d}
}

// team runs numbered parts of a job on a fixed set of goroutines, each part
// taken by whichever worker is free (on a shared machine one core is often
// slower than the other). Callers give every part its own output and
// combine the outputs in part order, so results do not depend on how many
// workers there are or which one ran a part.
type team struct {
	workers int
	fn      func(worker, part int)
	parts   int
	next    atomic.Int64
	start   []chan struct{}
	wg      sync.WaitGroup
}

// newTeam starts workers-1 goroutines (the caller of run is the first
// worker); workers ≤ 0 means GOMAXPROCS. close stops them.
func newTeam(workers int, fn func(worker, part int)) *team {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	t := &team{workers: workers, fn: fn, start: make([]chan struct{}, workers)}
	for w := 1; w < workers; w++ {
		t.start[w] = make(chan struct{})
		go func() {
			for range t.start[w] {
				t.drain(w)
				t.wg.Done()
			}
		}()
	}
	return t
}

func (t *team) drain(worker int) {
	for {
		p := int(t.next.Add(1)) - 1
		if p >= t.parts {
			return
		}
		t.fn(worker, p)
	}
}

// run calls fn for parts 0..parts-1 and returns when all are done.
func (t *team) run(parts int) {
	t.parts = parts
	t.next.Store(0)
	helpers := min(t.workers, parts) - 1
	t.wg.Add(helpers)
	for w := 1; w <= helpers; w++ {
		t.start[w] <- struct{}{}
	}
	t.drain(0)
	t.wg.Wait()
}

func (t *team) close() {
	for _, c := range t.start[1:] {
		close(c)
	}
}

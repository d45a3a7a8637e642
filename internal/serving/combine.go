package serving

import (
	"runtime"

	"gonum.org/v1/gonum/mat"

	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

// combiner scores the rows of concurrent requests in one call of the
// model. An ONNX Runtime call costs microseconds whatever its rows (and
// its long code path evicts the server's own from the caches), so under
// load the requests that are ready share one call; an idle server still
// scores each request at once. One scoring goroutine per processor keeps
// heavy models on every core.
type combiner struct {
	s    scoring.Model
	w    int
	jobs chan *combineJob
}

// combineJob is one request's rows and, once done is signalled, their
// scores or the call's error.
type combineJob struct {
	x      []float64
	scores []float64
	err    error
	done   chan struct{}
}

// maxCombinedRows bounds one combined call.
const maxCombinedRows = 256

func newCombiner(s scoring.Model, width int) *combiner {
	c := &combiner{s: s, w: width, jobs: make(chan *combineJob, 1024)}
	for range runtime.GOMAXPROCS(0) {
		go c.loop()
	}
	return c
}

// stop ends the scoring goroutines; nothing may call score afterwards
// (the model is closed only once no request holds it).
func (c *combiner) stop() { close(c.jobs) }

// score scores j.x, rows of c.w values, into j.scores or j.err, together
// with the rows of whatever other requests are waiting.
func (c *combiner) score(j *combineJob) {
	if len(j.x) == 0 {
		j.scores, j.err = j.scores[:0], nil
		return
	}
	c.jobs <- j
	<-j.done
}

func (c *combiner) loop() {
	var x []float64
	var held []*combineJob
	for j := range c.jobs {
		held = append(held[:0], j)
		rows := len(j.x) / c.w
		// The requests whose bytes have arrived get to run up to here
		// before the call, rather than after it.
		runtime.Gosched()
	drain:
		for rows < maxCombinedRows {
			select {
			case next, ok := <-c.jobs:
				if !ok {
					break drain
				}
				held = append(held, next)
				rows += len(next.x) / c.w
			default:
				break drain
			}
		}
		x = x[:0]
		for _, h := range held {
			x = append(x, h.x...)
		}
		s, err := c.s.PredictProba(mat.NewDense(rows, c.w, x))
		off := 0
		for _, h := range held {
			n := len(h.x) / c.w
			h.err = err
			if err == nil {
				h.scores = append(h.scores[:0], s[off:off+n]...)
			}
			off += n
			h.done <- struct{}{}
		}
	}
}

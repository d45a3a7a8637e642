package model

import "math"

// logRegBlock is the number of rows whose loss and gradient are summed
// together; blocks are the unit of parallel work and are added up in
// order, so a fit is bit-identical for any number of workers.
const logRegBlock = 4096

// logRegProblem evaluates the weighted log loss and its gradient over row
// blocks. One-hot encoded data are mostly zeros: when at most a quarter of
// the entries are non-zero, each row's non-zero entries are copied once into
// a compressed list (their columns and values, side by side) and the
// products run over those only, reading a fraction of the memory the dense
// rows take.
type logRegProblem[T float] struct {
	x       rows[T]
	y       []T
	w       []float64
	sumW    float64
	blocks  int
	start   []int   // non-zero entries of row i: cols[start[i]:start[i+1]]
	cols    []int32 // nil when the data are dense
	vals    []T     // the values of the entries cols lists
	partial []float64
	theta   []float64
	total   []float64
}

func newLogRegProblem[T float](x rows[T], y []T, w []float64) *logRegProblem[T] {
	p := &logRegProblem[T]{x: x, y: y, w: w, sumW: float64(x.n)}
	if w != nil {
		p.sumW = 0
		for _, v := range w {
			p.sumW += v
		}
	}
	p.blocks = (x.n + logRegBlock - 1) / logRegBlock
	p.partial = make([]float64, p.blocks*(x.d+2))
	p.total = make([]float64, x.d+2)
	nnz := 0
	for i := range x.n {
		for _, v := range x.row(i) {
			if v != 0 {
				nnz++
			}
		}
	}
	if nnz <= x.n*x.d/4 {
		p.start = make([]int, x.n+1)
		p.cols = make([]int32, 0, nnz)
		p.vals = make([]T, 0, nnz)
		for i := range x.n {
			for j, v := range x.row(i) {
				if v != 0 {
					p.cols = append(p.cols, int32(j))
					p.vals = append(p.vals, v)
				}
			}
			p.start[i+1] = len(p.cols)
		}
	}
	return p
}

// block sums the weighted loss and gradient of block b at p.theta into its
// slot of p.partial: d coefficient entries, the intercept's, then the loss.
func (p *logRegProblem[T]) block(b int) {
	d := p.x.d
	lo, hi := b*logRegBlock, min((b+1)*logRegBlock, p.x.n)
	out := p.partial[b*(d+2) : (b+1)*(d+2)]
	clear(out)
	g := out[:d]
	beta, b0 := p.theta[:d], p.theta[d]
	var loss, gb float64
	// The log loss is softplus(z) - y·z, softplus(z) = max(z, 0) + log(1 +
	// e^-|z|). Unweighted rows multiply their 1 + e^-|z| (each in (1, 2]) into
	// prod and take one logarithm per logProducts rows instead of one per
	// row, the costliest part of a pass over sparse data; the product stays
	// below 2^logProducts, far from overflow.
	prod, inProd := 1.0, 0
	for i := lo; i < hi; i++ {
		var row []T
		var cols []int32
		var z float64
		if p.cols != nil {
			cols = p.cols[p.start[i]:p.start[i+1]]
			row = p.vals[p.start[i]:p.start[i+1]]
			row = row[:len(cols)]
			for k, j := range cols {
				z += beta[j] * float64(row[k])
			}
		} else {
			row = p.x.row(i)
			z = dotMixed(beta, row)
		}
		z += b0
		yi := float64(p.y[i])
		e := math.Exp(-math.Abs(z))
		s := 1 / (1 + e)
		if z < 0 {
			s *= e
		}
		l, r := math.Max(z, 0)-yi*z, s-yi
		if p.w != nil {
			l = (l + math.Log1p(e)) * p.w[i]
			r *= p.w[i]
		} else {
			prod *= 1 + e
			if inProd++; inProd == logProducts {
				l += math.Log(prod)
				prod, inProd = 1, 0
			}
		}
		loss += l
		gb += r
		if cols != nil {
			for k, j := range cols {
				g[j] += r * float64(row[k])
			}
		} else {
			axpyMixed(r, row, g)
		}
	}
	out[d] = gb
	out[d+1] = loss + math.Log(prod)
}

// logProducts is how many factors 1 + e^-|z| block multiplies before it
// takes their logarithm.
const logProducts = 256

// reduce adds the blocks' sums in block order and returns the loss and the
// gradient (coefficients, then intercept), both unscaled.
func (p *logRegProblem[T]) reduce() (float64, []float64) {
	clear(p.total)
	k := len(p.total)
	for b := range p.blocks {
		for j, v := range p.partial[b*k : (b+1)*k] {
			p.total[j] += v
		}
	}
	return p.total[k-1], p.total[:k-1]
}

// dotMixed is Σ a[i]·b[i] with four accumulators, which lets the processor
// overlap the additions.
func dotMixed[T float](a []float64, b []T) float64 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * float64(b[i])
		s1 += a[i+1] * float64(b[i+1])
		s2 += a[i+2] * float64(b[i+2])
		s3 += a[i+3] * float64(b[i+3])
	}
	for ; i < len(a); i++ {
		s0 += a[i] * float64(b[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// axpyMixed adds alpha·x to y.
func axpyMixed[T float](alpha float64, x []T, y []float64) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * float64(v)
	}
}

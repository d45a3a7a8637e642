package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The compressed rows of sparse data and the loss's one logarithm per
// logProducts rows must give what the textbook sum gives: per row, the
// dense dot product and softplus(z) - y·z with its own log1p.
func TestLogRegLossAndGradientMatchThePlainSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n, d = 2*logRegBlock + 777, 40 // a partial block and partial products
	for _, sparse := range []bool{true, false} {
		for _, weighted := range []bool{false, true} {
			data := make([]float64, n*d)
			y := make([]float64, n)
			for i := range n {
				if sparse { // one-hot groups of 10 and a scaled numeric column
					for g := 0; g < d-1; g += 10 {
						data[i*d+g+rng.IntN(10)] = 1
					}
					data[i*d+d-1] = rng.NormFloat64() * 3
				} else {
					for j := range d {
						data[i*d+j] = rng.NormFloat64()
					}
				}
				y[i] = float64(rng.IntN(2))
			}
			var w []float64
			if weighted {
				w = make([]float64, n)
				for i := range w {
					w[i] = 0.5 + rng.Float64()
				}
			}
			x := rows[float64]{data: data, n: n, d: d, stride: d}
			p := newLogRegProblem(x, y, w)
			if (p.cols != nil) != sparse {
				t.Fatalf("sparse=%v: compressed rows %v", sparse, p.cols != nil)
			}
			theta := make([]float64, d+1)
			for j := range theta {
				theta[j] = rng.NormFloat64() * 2 // logits up to about ±30: tiny and large e^-|z|
			}
			p.theta = theta
			for b := range p.blocks {
				p.block(b)
			}
			loss, grad := p.reduce()

			var wantLoss float64
			wantGrad := make([]float64, d+1)
			for i := range n {
				z := theta[d]
				for j := range d {
					z += theta[j] * data[i*d+j]
				}
				l := math.Max(z, 0) + math.Log1p(math.Exp(-math.Abs(z))) - y[i]*z
				r := 1/(1+math.Exp(-z)) - y[i]
				wi := 1.0
				if w != nil {
					wi = w[i]
				}
				wantLoss += wi * l
				for j := range d {
					wantGrad[j] += wi * r * data[i*d+j]
				}
				wantGrad[d] += wi * r
			}
			if math.Abs(loss-wantLoss) > 1e-11*math.Abs(wantLoss) {
				t.Errorf("sparse=%v weighted=%v: loss %.17g, plain sum %.17g", sparse, weighted, loss, wantLoss)
			}
			for j := range grad {
				if math.Abs(grad[j]-wantGrad[j]) > 1e-9*(1+math.Abs(wantGrad[j])) {
					t.Errorf("sparse=%v weighted=%v: gradient[%d] %.17g, plain sum %.17g", sparse, weighted, j, grad[j], wantGrad[j])
				}
			}
		}
	}
}

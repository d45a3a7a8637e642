// Package model trains and scores binary classifiers on dense feature
// matrices: L2 logistic regression (L-BFGS) and a small ReLU MLP (Adam).
// Both are a stack of dense layers with ReLU between them and a sigmoid at
// the end; logistic regression is the one-layer case.
package model

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/mat"

	"github.com/gauntlet-ml/gauntlet/internal/ml/matrix"
)

// Kind names a model family.
type Kind string

// Model kinds.
const (
	LogReg Kind = "logreg"
	MLP    Kind = "mlp"
)

// Scorer is what evaluation, quantization and serving need from any model.
type Scorer interface {
	// PredictProba returns P(positive) for each row of x.
	PredictProba(x *mat.Dense) ([]float64, error)
}

// Tensor is a named weight array, row-major, as saved in a model file. Data
// holds the values whatever the storage type; DType ("F64", "F32" or "I8")
// says how a model file stores them, and the values must be exactly
// representable in it.
type Tensor struct {
	Name  string
	DType string
	Shape []int
	Data  []float64
}

// Storage types of tensors.
const (
	F64 = "F64"
	F32 = "F32"
	I8  = "I8"
)

// Dense is one fully connected layer: out = W·in + B, W is Out×In row-major.
type Dense struct {
	In, Out int
	W, B    []float64
}

// Network is a trained model.
type Network struct {
	Kind   Kind
	Layers []Dense
}

// NumFeatures is the input width the network expects.
func (n *Network) NumFeatures() int { return n.Layers[0].In }

// Tensors names the parameters "layers.<i>.weight" ([out, in]) and
// "layers.<i>.bias" ([out]), as PyTorch would.
func (n *Network) Tensors() []Tensor {
	var ts []Tensor
	for i, l := range n.Layers {
		ts = append(ts,
			Tensor{Name: fmt.Sprintf("layers.%d.weight", i), DType: F64, Shape: []int{l.Out, l.In}, Data: l.W},
			Tensor{Name: fmt.Sprintf("layers.%d.bias", i), DType: F64, Shape: []int{l.Out}, Data: l.B})
	}
	return ts
}

// FromTensors rebuilds a network from the tensors Tensors returned.
func FromTensors(kind Kind, ts []Tensor) (*Network, error) {
	if kind != LogReg && kind != MLP {
		return nil, fmt.Errorf("model: unknown kind %q", kind)
	}
	byName := map[string]Tensor{}
	for _, t := range ts {
		byName[t.Name] = t
	}
	n := &Network{Kind: kind}
	for i := 0; ; i++ {
		w, okW := byName["layers."+strconv.Itoa(i)+".weight"]
		b, okB := byName["layers."+strconv.Itoa(i)+".bias"]
		if !okW && !okB {
			break
		}
		if !okW || !okB {
			return nil, fmt.Errorf("model: layer %d lacks its weight or bias tensor", i)
		}
		if len(w.Shape) != 2 || len(b.Shape) != 1 || w.Shape[0] != b.Shape[0] || w.Shape[0] <= 0 || w.Shape[1] <= 0 ||
			len(w.Data) != w.Shape[0]*w.Shape[1] || len(b.Data) != b.Shape[0] {
			return nil, fmt.Errorf("model: layer %d: inconsistent shapes weight %v bias %v", i, w.Shape, b.Shape)
		}
		if i > 0 && w.Shape[1] != n.Layers[i-1].Out {
			return nil, fmt.Errorf("model: layer %d takes %d inputs but layer %d gives %d", i, w.Shape[1], i-1, n.Layers[i-1].Out)
		}
		n.Layers = append(n.Layers, Dense{In: w.Shape[1], Out: w.Shape[0], W: w.Data, B: b.Data})
	}
	if len(n.Layers) == 0 {
		return nil, fmt.Errorf("model: no layers.0.weight tensor")
	}
	if n.Layers[len(n.Layers)-1].Out != 1 {
		return nil, fmt.Errorf("model: last layer has %d outputs, want 1", n.Layers[len(n.Layers)-1].Out)
	}
	if kind == LogReg && len(n.Layers) != 1 {
		return nil, fmt.Errorf("model: logistic regression has %d layers, want 1", len(n.Layers))
	}
	if len(byName) != 2*len(n.Layers) {
		var extra []string
		for name := range byName {
			if !strings.HasPrefix(name, "layers.") {
				extra = append(extra, name)
			}
		}
		return nil, fmt.Errorf("model: unexpected tensors %v", extra)
	}
	return n, nil
}

// PredictProba scores each row of x.
func (n *Network) PredictProba(x *mat.Dense) ([]float64, error) {
	rows, cols := x.Dims()
	if cols != n.NumFeatures() {
		return nil, fmt.Errorf("model: input has %d features, model wants %d", cols, n.NumFeatures())
	}
	out := make([]float64, rows)
	bufs := n.buffers()
	for r := range rows {
		out[r] = Sigmoid(n.forward(x.RawRowView(r), bufs))
	}
	return out, nil
}

// PredictProbaF32 scores each row of a float32 matrix.
func (n *Network) PredictProbaF32(x *matrix.Dense32) ([]float64, error) {
	rows, cols := x.Dims()
	if cols != n.NumFeatures() {
		return nil, fmt.Errorf("model: input has %d features, model wants %d", cols, n.NumFeatures())
	}
	out := make([]float64, rows)
	bufs := n.buffers()
	in := make([]float64, cols)
	for r := range rows {
		for j, v := range x.Row(r) {
			in[j] = float64(v)
		}
		out[r] = Sigmoid(n.forward(in, bufs))
	}
	return out, nil
}

func (n *Network) buffers() [][]float64 {
	b := make([][]float64, len(n.Layers))
	for i, l := range n.Layers {
		b[i] = make([]float64, l.Out)
	}
	return b
}

// forward returns the output logit; acts[i] receives layer i's output after
// its activation (ReLU for hidden layers).
func (n *Network) forward(in []float64, acts [][]float64) float64 {
	for i, l := range n.Layers {
		out := acts[i]
		for o := range l.Out {
			out[o] = l.B[o] + dot(l.W[o*l.In:(o+1)*l.In], in)
		}
		if i < len(n.Layers)-1 {
			for o, v := range out {
				out[o] = max(v, 0)
			}
		}
		in = out
	}
	return in[0]
}

func dot(a, b []float64) float64 {
	var s float64
	b = b[:len(a)]
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

// Sigmoid is the logistic function, stable for large |z|.
func Sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}

// logLoss is the binary cross-entropy of logit z for label y, computed as a
// softplus so large logits do not overflow.
func logLoss(z, y float64) float64 {
	if y > 0.5 {
		z = -z
	}
	if z > 0 {
		return z + math.Log1p(math.Exp(-z))
	}
	return math.Log1p(math.Exp(z))
}

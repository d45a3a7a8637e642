package model

import (
	"fmt"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// New returns the untrained network Train would start from: He-initialised
// layers for an MLP, zeros for logistic regression. Training loops outside
// this package (differentially private SGD) start here.
func New(features int, cfg Config) (*Network, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if features <= 0 {
		return nil, fmt.Errorf("model: want at least one feature, got %d", features)
	}
	if cfg.Kind == LogReg {
		return &Network{Kind: LogReg, Layers: []Dense{{In: features, Out: 1, W: make([]float64, features), B: make([]float64, 1)}}}, nil
	}
	return initMLP(features, cfg), nil
}

// Params returns the network's parameter slices in Tensors order (weight,
// bias, weight, bias, …); writing to them changes the network.
func (n *Network) Params() [][]float64 { return params(n) }

// ExampleGradients calls fn with the gradient of the log loss of each row
// in rows, in Params layout. The slices passed to fn are reused between
// calls: fn must copy what it keeps.
func (n *Network) ExampleGradients(x *mat.Dense, y []float64, rows []int, fn func(row int, loss float64, grads [][]float64)) error {
	r, d := x.Dims()
	if d != n.NumFeatures() || r != len(y) {
		return fmt.Errorf("model: %d×%d rows and %d labels for a network of %d features", r, d, len(y), n.NumFeatures())
	}
	t := newTrainer[float64](n, 1)
	grads := zerosLike(params(n))
	xv := viewDense(x)
	idx := make([]int, 1)
	for _, row := range rows {
		if row < 0 || row >= r {
			return fmt.Errorf("model: row %d out of range [0, %d)", row, r)
		}
		for _, g := range grads {
			clear(g)
		}
		idx[0] = row
		loss, _ := t.batch(xv, y, nil, idx, grads)
		fn(row, loss, grads)
	}
	return nil
}

// WithInitialNetwork makes MLP training start from a copy of net's weights
// instead of a fresh initialisation (fine-tuning). Its hidden widths must be
// the config's.
func WithInitialNetwork(net *Network) TrainOption {
	return func(o *trainOptions) { o.initial = net }
}

// WithStepHook calls fn after each MLP optimiser step with the 0-based epoch
// and the parameters in Params layout, which fn may change (pruning masks
// re-zero the weights they remove).
func WithStepHook(fn func(epoch int, params [][]float64)) TrainOption {
	return func(o *trainOptions) { o.stepHook = fn }
}

// startFrom copies initial's weights into net after checking the shapes.
func startFrom(net, initial *Network) error {
	if len(initial.Layers) != len(net.Layers) {
		return fmt.Errorf("model: initial network has %d layers, config gives %d", len(initial.Layers), len(net.Layers))
	}
	for i, l := range initial.Layers {
		nl := &net.Layers[i]
		if l.In != nl.In || l.Out != nl.Out || len(l.W) != len(nl.W) || len(l.B) != len(nl.B) {
			return fmt.Errorf("model: initial layer %d is %d×%d, config gives %d×%d", i, l.Out, l.In, nl.Out, nl.In)
		}
		nl.W, nl.B = slices.Clone(l.W), slices.Clone(l.B)
	}
	return nil
}

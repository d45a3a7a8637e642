// Package prune removes the smallest-magnitude weights of a network, in one
// shot or gradually over fine-tuning epochs on the cubic schedule of Zhu &
// Gupta (2017), and measures what that saves. Pruning is per layer (each
// hidden weight matrix loses the same share); biases and the output layer
// are left alone: they are a few dozen parameters, each of which the
// decision depends on directly (a single-layer network is pruned whole).
package prune

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"gonum.org/v1/gonum/mat"
)

// Schedules.
const (
	OneShot = "oneshot"
	Gradual = "gradual"
)

// Options configure Prune.
type Options struct {
	Sparsity float64 // target share of zero weights, in [0, 1)
	Schedule string  // OneShot (default) or Gradual
	// Epochs of fine-tuning with the mask held; Gradual needs at least one
	// and raises the sparsity at the start of each.
	Epochs int
	// InitialSparsity is where the gradual schedule starts (default 0).
	InitialSparsity float64
	LearningRate    float64 // Adam, default 1e-3
	BatchSize       int     // default 128
	Seed            uint64
}

// Masks says which weights survive: Masks[i][j] for weight j of layer i.
type Masks [][]bool

// MagnitudeMasks keeps, in each prunable layer, all but the
// round(sparsity × size) weights of smallest magnitude.
func MagnitudeMasks(net *model.Network, sparsity float64) (Masks, error) {
	if !(sparsity >= 0 && sparsity < 1) {
		return nil, fmt.Errorf("prune: sparsity must be in [0, 1), got %v", sparsity)
	}
	masks := make(Masks, len(net.Layers))
	for i, l := range net.Layers {
		idx := make([]int, len(l.W))
		for j := range idx {
			idx[j] = j
		}
		// Ties broken by position keep the mask deterministic.
		sort.SliceStable(idx, func(a, b int) bool { return math.Abs(l.W[idx[a]]) < math.Abs(l.W[idx[b]]) })
		k := int(math.Round(sparsity * float64(len(l.W))))
		if i == len(net.Layers)-1 && i > 0 {
			k = 0
		}
		m := make([]bool, len(l.W))
		for _, j := range idx[k:] {
			m[j] = true
		}
		masks[i] = m
	}
	return masks, nil
}

// Apply zeroes the weights masks remove.
func (m Masks) Apply(net *model.Network) {
	for i, l := range net.Layers {
		for j, keep := range m[i] {
			if !keep {
				l.W[j] = 0
			}
		}
	}
}

// applyParams zeroes removed weights in model.Params layout.
func (m Masks) applyParams(ps [][]float64) {
	for i, mask := range m {
		w := ps[2*i]
		for j, keep := range mask {
			if !keep {
				w[j] = 0
			}
		}
	}
}

// CubicSparsity is the target after step of steps on the schedule
// s = final + (initial − final)·(1 − step/steps)³, which prunes fast while
// there is redundancy and slowly as the network thins.
func CubicSparsity(initial, final float64, step, steps int) float64 {
	if steps <= 0 || step >= steps {
		return final
	}
	f := 1 - float64(step)/float64(steps)
	return final + (initial-final)*f*f*f
}

// Prune returns a pruned copy of net: one shot to the target, then Epochs of
// fine-tuning on x, y with the mask re-applied after every optimiser step so
// pruned weights stay zero; or gradually, the mask tightening at each epoch.
func Prune(ctx context.Context, net *model.Network, x *mat.Dense, y []float64, o Options) (*model.Network, error) {
	if o.Schedule == "" {
		o.Schedule = OneShot
	}
	switch {
	case o.Schedule != OneShot && o.Schedule != Gradual:
		return nil, fmt.Errorf("prune: unknown schedule %q (known: %s, %s)", o.Schedule, OneShot, Gradual)
	case o.Epochs < 0:
		return nil, fmt.Errorf("prune: epochs must not be negative, got %d", o.Epochs)
	case o.Schedule == Gradual && o.Epochs == 0:
		return nil, fmt.Errorf("prune: the gradual schedule needs fine-tuning epochs")
	case o.Epochs > 0 && net.Kind != model.MLP:
		return nil, fmt.Errorf("prune: fine-tuning needs an MLP, got %s", net.Kind)
	case !(o.InitialSparsity >= 0 && o.InitialSparsity <= o.Sparsity):
		return nil, fmt.Errorf("prune: initial sparsity %v must be in [0, %v]", o.InitialSparsity, o.Sparsity)
	}
	out := clone(net)
	masks, err := MagnitudeMasks(out, o.Sparsity)
	if err != nil {
		return nil, err
	}
	if o.Epochs == 0 {
		masks.Apply(out)
		return out, nil
	}
	var hidden []int
	for _, l := range out.Layers[:len(out.Layers)-1] {
		hidden = append(hidden, l.Out)
	}
	cfg := model.Config{Kind: model.MLP, Seed: o.Seed, Hidden: hidden, Epochs: o.Epochs, LearningRate: o.LearningRate, BatchSize: o.BatchSize}
	maskEpoch := -1
	var hookErr error
	hook := func(epoch int, ps [][]float64) {
		if o.Schedule == Gradual && epoch != maskEpoch {
			// The last epoch trains at the final sparsity.
			s := CubicSparsity(o.InitialSparsity, o.Sparsity, epoch+1, max(1, o.Epochs-1))
			tmp := &model.Network{Kind: model.MLP, Layers: layersOf(out, ps)}
			masks, hookErr = MagnitudeMasks(tmp, s)
			maskEpoch = epoch
		}
		if hookErr == nil {
			masks.applyParams(ps)
		}
	}
	if o.Schedule == OneShot {
		masks.Apply(out)
	}
	tuned, err := model.Train(ctx, x, y, cfg, model.WithInitialNetwork(out), model.WithStepHook(hook))
	if err != nil {
		return nil, fmt.Errorf("prune: fine-tune: %w", err)
	}
	if hookErr != nil {
		return nil, hookErr
	}
	final, err := MagnitudeMasks(tuned, o.Sparsity)
	if err != nil {
		return nil, err
	}
	if o.Schedule == OneShot {
		final = masks
	}
	final.Apply(tuned)
	return tuned, nil
}

// layersOf views params ps (model.Params layout) as net's layer shapes.
func layersOf(net *model.Network, ps [][]float64) []model.Dense {
	ls := make([]model.Dense, len(net.Layers))
	for i, l := range net.Layers {
		ls[i] = model.Dense{In: l.In, Out: l.Out, W: ps[2*i], B: ps[2*i+1]}
	}
	return ls
}

func clone(net *model.Network) *model.Network {
	out := &model.Network{Kind: net.Kind, Layers: make([]model.Dense, len(net.Layers))}
	for i, l := range net.Layers {
		out.Layers[i] = model.Dense{In: l.In, Out: l.Out, W: slices.Clone(l.W), B: slices.Clone(l.B)}
	}
	return out
}

// Stats measures a network's sparsity and size.
type Stats struct {
	Weights  int     `json:"weights"` // weight-matrix entries (biases excluded)
	NonZero  int     `json:"nonzero"` // non-zero weight entries
	Sparsity float64 `json:"sparsity"`
	// DenseBytes is the float64 storage of all parameters; SparseBytes
	// stores weight matrices as CSR (8-byte value and 4-byte column index
	// per non-zero, 4-byte row pointers) plus dense biases.
	DenseBytes  int `json:"dense_bytes"`
	SparseBytes int `json:"sparse_bytes"`
}

// Measure counts the zero weights of net.
func Measure(net *model.Network) Stats {
	var s Stats
	for _, l := range net.Layers {
		s.Weights += len(l.W)
		nz := 0
		for _, w := range l.W {
			if w != 0 {
				nz++
			}
		}
		s.NonZero += nz
		s.DenseBytes += 8 * (len(l.W) + len(l.B))
		s.SparseBytes += 12*nz + 4*(l.Out+1) + 8*len(l.B)
	}
	if s.Weights > 0 {
		s.Sparsity = 1 - float64(s.NonZero)/float64(s.Weights)
	}
	return s
}

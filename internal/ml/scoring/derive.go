package scoring

import (
	"context"
	"fmt"

	"gonum.org/v1/gonum/mat"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/ort"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/qdq"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnxmodel"
	"github.com/gauntlet-ml/gauntlet/internal/ml/prune"
	"github.com/gauntlet-ml/gauntlet/internal/ml/quantize"
)

// What model-producing code does with a model of any format: save a copy
// under a new manifest (a fairness mitigation's policy in its lineage),
// quantize it, or read about it without running it. Like Open, these are
// the places that know the formats; their callers never ask which one a
// model is.

// ErrNoRuntime is matched (errors.Is) when an ONNX model cannot run
// because ONNX Runtime is not installed on this host (or the library
// given is not it); the error says how to install it. Another attempt on
// the same host fails the same way.
var ErrNoRuntime = ort.ErrNoLibrary

// Describe reads and verifies the model in dir, of either format, without
// starting ONNX Runtime: its Info (for ONNX, Provider empty) and its preprocessing
// as an encoder. It is for code that reads about a model rather than
// scoring it: registration, monitoring.
func Describe(dir string) (*Info, *dataset.Encoder, error) {
	f, err := Format(dir)
	if err != nil {
		return nil, nil, err
	}
	if f == ONNX {
		mf, digest, err := onnxmodel.ReadManifest(dir)
		if err != nil {
			return nil, nil, err
		}
		return onnxInfo(dir, digest, mf), mf.Encoder(), nil
	}
	a, err := modelfile.Load(dir)
	if err != nil {
		return nil, nil, err
	}
	g, err := newGauntlet(a)
	if err != nil {
		return nil, nil, err
	}
	return g.info, g.Encoder(), nil
}

// Amend is what a model derived from another (same weights, or weights
// derived from them) records anew in its manifest.
type Amend struct {
	Metrics map[string]float64
	Lineage modelfile.Lineage
	// Files are written beside the model's own, in the same rename: the
	// held-out split its lineage records.
	Files map[string][]byte
}

// Derive saves m into dir, which must not exist, in m's format with m's
// weights or graph and the metrics and lineage a gives, and returns the
// new model's digest. The directory appears complete or not at all.
func Derive(m Model, dir string, a Amend) (string, error) {
	switch x := m.(type) {
	case *GauntletModel:
		mf := *x.Artifact.Manifest
		mf.Metrics, mf.Lineage = a.Metrics, a.Lineage
		return modelfile.SaveWith(dir, &mf, x.Artifact.Tensors, a.Files)
	case *ONNXModel:
		mf := *x.Model.Manifest
		mf.Metrics, mf.Lineage = a.Metrics, a.Lineage
		return onnxmodel.SaveWith(dir, &mf, x.Model.GraphBytes(), a.Files)
	case *Int8:
		return Derive(x.Model, dir, a)
	}
	return "", fmt.Errorf("scoring: save %s: %T is not a model of a known format", dir, m)
}

// QuantizeOptions configure QuantizeInt8.
type QuantizeOptions struct {
	// Prune, when positive, magnitude-prunes the hidden layers of an MLP
	// in Gauntlet's format to this sparsity before quantizing.
	Prune float64
	// Scoring runs the int8 copy of an ONNX model.
	Scoring Options
}

// Int8 is an int8 copy of a float model, running but not saved: the
// caller compares it with the float model and saves it (Derive) only when
// it is good enough. Its Info has no directory or digest.
type Int8 struct {
	Model
	// Sparsity is the share of zero hidden-layer weights of a network in
	// Gauntlet's format (after Prune); 0 for an ONNX graph.
	Sparsity float64
	// Pruning records a pruning (target sparsity, schedule, statistics);
	// nil without one.
	Pruning map[string]any
	// Weights says which weights of an ONNX graph became int8; nil for
	// Gauntlet's format, whose every layer is quantized.
	Weights *qdq.Stats
}

// QuantizeInt8 makes the int8 copy of m, a float model: Gauntlet's own
// networks through package quantize (weights per output unit, activation
// scales calibrated on the encoded rows calib), ONNX graphs through
// onnxmodel.Int8 (QDQ weights per output channel, which ONNX Runtime
// executes). Pruning applies to Gauntlet's own MLPs only.
func QuantizeInt8(ctx context.Context, m Model, calib *mat.Dense, o QuantizeOptions) (*Int8, error) {
	info := m.Info()
	if info.Quantization != modelfile.Float {
		return nil, fmt.Errorf("scoring: %s is already quantized (%s)", info.Dir, info.Quantization)
	}
	switch x := m.(type) {
	case *GauntletModel:
		return quantizeGauntlet(ctx, x, calib, o)
	case *ONNXModel:
		if o.Prune > 0 {
			return nil, fmt.Errorf("scoring: %s is an ONNX graph; pruning applies to Gauntlet's own MLPs", info.Dir)
		}
		q, st, err := onnxmodel.Int8(x.Model, onnxmodel.Options{Library: o.Scoring.ONNXRuntime, Session: ort.Options{Provider: o.Scoring.Provider, IntraOpThreads: o.Scoring.Threads}})
		if err != nil {
			return nil, err
		}
		return &Int8{Model: newONNX(q), Weights: st}, nil
	}
	return nil, fmt.Errorf("scoring: quantize %s: %T is not a model of a known format", info.Dir, m)
}

func quantizeGauntlet(ctx context.Context, g *GauntletModel, calib *mat.Dense, o QuantizeOptions) (*Int8, error) {
	a := g.Artifact
	net, err := model.FromTensors(a.Manifest.Kind, a.Tensors)
	if err != nil {
		return nil, fmt.Errorf("scoring: %s: %w", a.Dir, err)
	}
	out := &Int8{}
	if o.Prune > 0 {
		if net.Kind != model.MLP {
			return nil, fmt.Errorf("scoring: %s is %s; pruning applies to MLPs", a.Dir, net.Kind)
		}
		if net, err = prune.Prune(ctx, net, nil, nil, prune.Options{Sparsity: o.Prune}); err != nil {
			return nil, fmt.Errorf("scoring: prune %s: %w", a.Dir, err)
		}
		out.Pruning = map[string]any{"target_sparsity": o.Prune, "schedule": prune.OneShot, "stats": prune.Measure(net)}
	}
	out.Sparsity = prune.Measure(net).Sparsity
	q, err := quantize.Quantize(net, calib, quantize.Options{})
	if err != nil {
		return nil, fmt.Errorf("scoring: quantize %s: %w", a.Dir, err)
	}
	mf := *a.Manifest
	mf.Quantization = modelfile.Int8
	mf.Lineage.ParentModel = a.Digest
	out.Model, err = newGauntlet(&modelfile.Artifact{Manifest: &mf, Tensors: q.Tensors()})
	if err != nil {
		return nil, fmt.Errorf("scoring: quantize %s: %w", a.Dir, err)
	}
	return out, nil
}

// Network is the float network of a model in Gauntlet's format, for tools
// that change its weights (pruning). An ONNX graph is not one: the error
// says so.
func Network(m Model) (*model.Network, error) {
	g, ok := m.(*GauntletModel)
	if !ok {
		return nil, fmt.Errorf("scoring: %s is an ONNX graph; this needs a network in Gauntlet's own format", m.Info().Dir)
	}
	if g.info.Quantization != modelfile.Float {
		return nil, fmt.Errorf("scoring: %s is quantized (%s); this needs the float network", g.info.Dir, g.info.Quantization)
	}
	return model.FromTensors(g.Artifact.Manifest.Kind, g.Artifact.Tensors)
}

// Reweighted is m, a float model in Gauntlet's format, with net's weights
// (a network of the same kind and shape, e.g. pruned), running but not
// saved: Derive saves it.
func Reweighted(m Model, net *model.Network) (Model, error) {
	g, ok := m.(*GauntletModel)
	if !ok {
		return nil, fmt.Errorf("scoring: %s is an ONNX graph; new weights need a network in Gauntlet's own format", m.Info().Dir)
	}
	mf := *g.Artifact.Manifest
	mf.Lineage.ParentModel = g.info.Digest
	r, err := newGauntlet(&modelfile.Artifact{Manifest: &mf, Tensors: net.Tensors()})
	if err != nil {
		return nil, fmt.Errorf("scoring: new weights for %s: %w", g.info.Dir, err)
	}
	return r, nil
}

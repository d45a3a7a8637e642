package onnxmodel

import (
	"slices"

	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxpb"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/ort"
)

// Linear is the model as a float logistic regression when its graph is
// exactly one (see linear), nil otherwise.
func (m *Model) Linear() *model.Network { return m.linear }

// linear recognises the graph of a float logistic regression — a Gemm of
// the input with one row (transB=1, as PyTorch's Linear exports) or one
// column of weights plus a bias, then the Sigmoid that is the output — and
// returns it as a network, so that it can be explained exactly rather than
// by sampling. Any other graph gives nil.
func linear(m *Manifest, g *onnx.Graph) *model.Network {
	nodes := g.Proto.GetGraph().GetNode()
	if m.Quantization != "" || len(nodes) != 2 || m.Output.Column != 0 {
		return nil
	}
	gemm, sig := nodes[0], nodes[1]
	ins := g.Inputs()
	if gemm.GetOpType() != "Gemm" || sig.GetOpType() != "Sigmoid" || len(ins) != 1 ||
		len(gemm.GetInput()) < 2 || gemm.GetInput()[0] != ins[0].Name || len(gemm.GetOutput()) != 1 ||
		len(sig.GetInput()) != 1 || sig.GetInput()[0] != gemm.GetOutput()[0] || len(sig.GetOutput()) != 1 || sig.GetOutput()[0] != m.Output.Name {
		return nil
	}
	transB := false
	for _, a := range gemm.GetAttribute() {
		switch a.GetName() {
		case "transB":
			transB = a.GetI() != 0
		case "transA":
			if a.GetI() != 0 {
				return nil
			}
		case "alpha", "beta":
			if a.GetF() != 1 {
				return nil
			}
		default:
			return nil
		}
	}
	n := len(m.Features)
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.Proto.GetGraph().GetInitializer() {
		inits[t.GetName()] = t
	}
	values := func(name string, shapes ...[]int64) []float64 {
		p := inits[name]
		if p == nil {
			return nil
		}
		t, err := onnx.TensorFromProto(p)
		if err != nil || t.Type != ort.Float && t.Type != ort.Double {
			return nil
		}
		for _, s := range shapes {
			if slices.Equal(t.Shape, s) {
				v, err := t.Float64s()
				if err != nil {
					return nil
				}
				return v
			}
		}
		return nil
	}
	wShape := []int64{int64(n), 1}
	if transB {
		wShape = []int64{1, int64(n)}
	}
	w := values(gemm.GetInput()[1], wShape)
	b := []float64{0}
	if len(gemm.GetInput()) > 2 && gemm.GetInput()[2] != "" {
		b = values(gemm.GetInput()[2], []int64{1}, []int64{1, 1}, []int64{})
	}
	if w == nil || len(b) != 1 {
		return nil
	}
	return &model.Network{Kind: model.LogReg, Layers: []model.Dense{{In: n, Out: 1, W: w, B: b}}}
}

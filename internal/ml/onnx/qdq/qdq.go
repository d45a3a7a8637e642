// Package qdq quantizes the weights of an ONNX graph to int8 in QDQ form:
// each float weight matrix of a MatMul or Gemm becomes an int8 initializer
// with one symmetric scale per output channel, and a DequantizeLinear node
// (per-axis, opset 13) turns it back into floats where the node reads it.
// ONNX Runtime runs the graph as it is, or fuses the pair into an integer
// kernel; either way the file stores a quarter of the weight bytes.
// Activations and biases stay float: tabular inputs mix one-hot columns with
// wide numeric ranges, which per-tensor activation scales handle badly (see
// package quantize), and the size is in the weights.
package qdq

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxpb"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/ort"
)

// MinOpset is the first operator set whose DequantizeLinear takes an axis.
const MinOpset = 13

// Stats says what Quantize changed.
type Stats struct {
	Nodes        int `json:"nodes"`         // MatMul and Gemm nodes whose weights were quantized
	Weights      int `json:"weights"`       // weight values now int8
	FloatBytes   int `json:"float_bytes"`   // those weights as float32 before
	Int8Bytes    int `json:"int8_bytes"`    // after: int8 values plus float32 scales
	SkippedNodes int `json:"skipped_nodes"` // MatMul/Gemm whose B input is not a float matrix initializer
}

// Quantize returns a copy of g with int8 weights.
func Quantize(g *onnx.Graph) (*onnx.Graph, *Stats, error) {
	if g.Opset < MinOpset {
		return nil, nil, fmt.Errorf("qdq: operator set %d; per-channel DequantizeLinear needs %d or newer (re-export with opset_version=13)", g.Opset, MinOpset)
	}
	m := proto.Clone(g.Proto).(*onnxpb.ModelProto)
	gr := m.GetGraph()
	inits := map[string]*onnxpb.TensorProto{}
	uses := map[string]int{}
	for _, t := range gr.GetInitializer() {
		inits[t.GetName()] = t
	}
	for _, n := range gr.GetNode() {
		for _, in := range n.GetInput() {
			uses[in]++
		}
	}
	for _, out := range gr.GetOutput() {
		uses[out.GetName()]++
	}
	st := &Stats{}
	var nodes []*onnxpb.NodeProto
	drop := map[string]bool{}
	for _, n := range gr.GetNode() {
		op := n.GetOpType()
		if op != "MatMul" && op != "Gemm" {
			nodes = append(nodes, n)
			continue
		}
		w := inits[n.GetInput()[1]]
		axis, ok := outputAxis(n, w)
		if !ok || uses[w.GetName()] != 1 {
			st.SkippedNodes++
			nodes = append(nodes, n)
			continue
		}
		qw, scale, err := quantizeWeight(w, axis)
		if err != nil {
			return nil, nil, fmt.Errorf("qdq: initializer %q: %w", w.GetName(), err)
		}
		base := w.GetName()
		// Short names and no node name: in a small model the names are a
		// visible share of the file.
		deq := base + "_dq"
		gr.Initializer = append(gr.Initializer, qw, scale)
		nodes = append(nodes, &onnxpb.NodeProto{
			OpType: proto.String("DequantizeLinear"),
			Input:  []string{qw.GetName(), scale.GetName()}, Output: []string{deq},
			Attribute: []*onnxpb.AttributeProto{{Name: proto.String("axis"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(int64(axis))}},
		})
		n.Input[1] = deq
		nodes = append(nodes, n)
		drop[base] = true
		count := len(qw.GetRawData())
		st.Nodes++
		st.Weights += count
		st.FloatBytes += 4 * count
		st.Int8Bytes += count + 4*len(scale.GetFloatData())
	}
	gr.Node = nodes
	kept := gr.Initializer[:0]
	for _, t := range gr.GetInitializer() {
		if !drop[t.GetName()] {
			kept = append(kept, t)
		}
	}
	gr.Initializer = kept
	// Older exporters also list initializers as graph inputs.
	inputs := gr.Input[:0]
	for _, v := range gr.GetInput() {
		if !drop[v.GetName()] {
			inputs = append(inputs, v)
		}
	}
	gr.Input = inputs
	if st.Nodes == 0 {
		return nil, nil, fmt.Errorf("qdq: no MatMul or Gemm reads a float weight matrix initializer: nothing to quantize")
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, nil, fmt.Errorf("qdq: %w", err)
	}
	q, err := onnx.Parse(b)
	if err != nil {
		return nil, nil, fmt.Errorf("qdq: the quantized graph: %w", err)
	}
	return q, st, nil
}

// outputAxis is the axis of w that indexes the node's output channels: 0
// for Gemm with transB=1 (weights [out, in], as PyTorch's Linear exports),
// 1 for Gemm without it and for MatMul (weights [in, out]).
func outputAxis(n *onnxpb.NodeProto, w *onnxpb.TensorProto) (int, bool) {
	if w == nil || w.GetDataType() != int32(ort.Float) || len(w.GetDims()) != 2 {
		return 0, false
	}
	if n.GetOpType() == "MatMul" {
		return 1, true
	}
	for _, a := range n.GetAttribute() {
		if a.GetName() == "transA" && a.GetI() != 0 {
			return 0, false
		}
		if a.GetName() == "transB" && a.GetI() != 0 {
			return 0, true
		}
	}
	return 1, true
}

// quantizeWeight maps each output channel of w onto [-127, 127] with scale
// max|w|/127 (1 for an all-zero channel), symmetric, so no zero point is
// stored (DequantizeLinear's default zero point is 0).
func quantizeWeight(w *onnxpb.TensorProto, axis int) (q, scale *onnxpb.TensorProto, err error) {
	t, err := onnx.TensorFromProto(w)
	if err != nil {
		return nil, nil, err
	}
	v, err := t.Float64s()
	if err != nil {
		return nil, nil, err
	}
	rows, cols := int(t.Shape[0]), int(t.Shape[1])
	channels := []int{rows, cols}[axis]
	at := func(c, k int) int { // element k of channel c
		if axis == 0 {
			return c*cols + k
		}
		return k*cols + c
	}
	per := len(v) / max(channels, 1)
	scales := make([]float32, channels)
	data := make([]byte, len(v))
	for c := range channels {
		var m float64
		for k := range per {
			m = max(m, math.Abs(v[at(c, k)]))
		}
		s := float32(m / 127)
		if !(s > 0) || math.IsInf(float64(s), 0) {
			s = 1
		}
		scales[c] = s
		for k := range per {
			i := at(c, k)
			data[i] = byte(int8(max(-127, min(127, math.Round(v[i]/float64(s))))))
		}
	}
	q = &onnxpb.TensorProto{Name: proto.String(w.GetName() + "_q"), DataType: proto.Int32(int32(ort.Int8)), Dims: append([]int64{}, t.Shape...), RawData: data}
	scale = &onnxpb.TensorProto{Name: proto.String(w.GetName() + "_s"), DataType: proto.Int32(int32(ort.Float)), Dims: []int64{int64(channels)}, FloatData: scales}
	return q, scale, nil
}

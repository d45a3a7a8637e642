// Package qdq quantizes the weights of an ONNX graph to int8 in QDQ form:
// each float weight matrix of a MatMul or Gemm becomes an int8 initializer
// with one symmetric scale per output channel, and a DequantizeLinear node
// (per-axis, opset 13) turns it back into floats where the node reads it.
// A Gemm's bias becomes int8 too, on its weights' scales, when every value
// fits: it then costs a byte per channel and no scales of its own. ONNX
// Runtime runs the graph as it is, or fuses the pairs into integer kernels;
// either way the file stores about a quarter of the parameter bytes.
// Activations stay float: tabular inputs mix one-hot columns with wide
// numeric ranges, which per-tensor activation scales handle badly (see
// package quantize), and the size is in the parameters.
//
// In a model of a few thousand parameters the graph's own bytes (names,
// nodes) are a visible share of the file, so the tensors Quantize adds have
// short names (q0, q0s, …; the nodes reading them keep theirs) and weights
// are stored [in out], where DequantizeLinear's default axis is the output
// channel and Gemm needs no transB.
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
	Biases       int `json:"biases"`        // Gemm bias values now int8
	FloatBytes   int `json:"float_bytes"`   // those weights and biases as float32 before
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
	names := map[string]bool{}
	for _, t := range gr.GetInitializer() {
		inits[t.GetName()] = t
		names[t.GetName()] = true
	}
	for _, n := range gr.GetNode() {
		for _, in := range n.GetInput() {
			uses[in]++
			names[in] = true
		}
		for _, out := range n.GetOutput() {
			names[out] = true
		}
	}
	for _, v := range append(gr.GetInput(), gr.GetOutput()...) {
		names[v.GetName()] = true
	}
	for _, out := range gr.GetOutput() {
		uses[out.GetName()]++
	}
	// fresh returns an unused name built on base.
	fresh := func(base string) string {
		name := base
		for names[name] {
			name += "_"
		}
		names[name] = true
		return name
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
		q := fmt.Sprintf("q%d", st.Nodes)
		qw, scale, err := quantizeWeight(w, axis, fresh(q), fresh(q+"s"))
		if err != nil {
			return nil, nil, fmt.Errorf("qdq: initializer %q: %w", w.GetName(), err)
		}
		if axis == 0 {
			// Stored transposed: Gemm reads B as given.
			attrs := n.Attribute[:0]
			for _, a := range n.GetAttribute() {
				if a.GetName() != "transB" {
					attrs = append(attrs, a)
				}
			}
			n.Attribute = attrs
		}
		deq := fresh(q + "w")
		gr.Initializer = append(gr.Initializer, qw, scale)
		nodes = append(nodes, &onnxpb.NodeProto{
			OpType: proto.String("DequantizeLinear"),
			Input:  []string{qw.GetName(), scale.GetName()}, Output: []string{deq},
		})
		n.Input[1] = deq
		drop[w.GetName()] = true
		count := len(qw.GetRawData())
		st.Nodes++
		st.Weights += count
		st.FloatBytes += 4 * count
		st.Int8Bytes += count + 4*len(scale.GetFloatData())
		if op == "Gemm" && len(n.GetInput()) > 2 {
			if b := inits[n.GetInput()[2]]; b != nil && uses[b.GetName()] == 1 {
				if qb := quantizeBias(b, scale.GetFloatData(), fresh(q+"b")); qb != nil {
					deqB := fresh(q + "c")
					gr.Initializer = append(gr.Initializer, qb)
					nodes = append(nodes, &onnxpb.NodeProto{
						OpType: proto.String("DequantizeLinear"),
						Input:  []string{qb.GetName(), scale.GetName()}, Output: []string{deqB},
						Attribute: []*onnxpb.AttributeProto{{Name: proto.String("axis"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(0)}},
					})
					n.Input[2] = deqB
					drop[b.GetName()] = true
					st.Biases += len(qb.GetRawData())
					st.FloatBytes += 4 * len(qb.GetRawData())
					st.Int8Bytes += len(qb.GetRawData())
				}
			}
		}
		nodes = append(nodes, n)
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
// stored (DequantizeLinear's default zero point is 0). The int8 matrix is
// stored [in out] whatever w's layout, so that the output channels lie
// along axis 1, DequantizeLinear's default.
func quantizeWeight(w *onnxpb.TensorProto, axis int, qName, sName string) (q, scale *onnxpb.TensorProto, err error) {
	t, err := onnx.TensorFromProto(w)
	if err != nil {
		return nil, nil, err
	}
	v, err := t.Float64s()
	if err != nil {
		return nil, nil, err
	}
	rows, cols := int(t.Shape[0]), int(t.Shape[1])
	channels, per := cols, rows
	at := func(c, k int) int { return k*cols + c } // element k of channel c in w
	if axis == 0 {
		channels, per = rows, cols
		at = func(c, k int) int { return c*cols + k }
	}
	scales := make([]float32, channels)
	data := make([]byte, len(v)) // [per channels]: [in out]
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
			data[k*channels+c] = byte(int8(max(-127, min(127, math.Round(v[at(c, k)]/float64(s))))))
		}
	}
	q = &onnxpb.TensorProto{Name: proto.String(qName), DataType: proto.Int32(int32(ort.Int8)), Dims: []int64{int64(per), int64(channels)}, RawData: data}
	scale = &onnxpb.TensorProto{Name: proto.String(sName), DataType: proto.Int32(int32(ort.Float)), Dims: []int64{int64(channels)}, FloatData: scales}
	return q, scale, nil
}

// quantizeBias puts a float bias of one value per output channel on its
// weights' scales, as int8, when every value fits in [-127, 127] steps; nil
// otherwise (the bias stays float). Each value is then within half its
// channel's weight step, the precision every weight of the channel has.
func quantizeBias(b *onnxpb.TensorProto, scales []float32, name string) *onnxpb.TensorProto {
	if b.GetDataType() != int32(ort.Float) || len(b.GetDims()) != 1 || b.GetDims()[0] != int64(len(scales)) {
		return nil
	}
	t, err := onnx.TensorFromProto(b)
	if err != nil {
		return nil
	}
	v, err := t.Float64s()
	if err != nil || len(v) != len(scales) {
		return nil
	}
	data := make([]byte, len(v))
	for c, x := range v {
		r := math.Round(x / float64(scales[c]))
		if !(math.Abs(r) <= 127) {
			return nil
		}
		data[c] = byte(int8(r))
	}
	return &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(ort.Int8)), Dims: []int64{int64(len(v))}, RawData: data}
}

package qdq_test

import (
	"math"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxpb"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxtest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/ort"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/qdq"
)

// matmul is y = x·W with W [4 3]: the output channels are W's columns.
func matmul(t *testing.T, opset int64, w []float32) *onnx.Graph {
	vi := func(name string, cols int64) *onnxpb.ValueInfoProto {
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(ort.Float)), Shape: &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{
				{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}},
				{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: cols}}}}}}}}
	}
	m := &onnxpb.ModelProto{IrVersion: proto.Int64(8), OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(opset)}},
		Graph: &onnxpb.GraphProto{Name: proto.String("mm"),
			Node:        []*onnxpb.NodeProto{{OpType: proto.String("MatMul"), Input: []string{"x", "W"}, Output: []string{"y"}}},
			Initializer: []*onnxpb.TensorProto{onnx.TensorToProto("W", ort.NewFloat([]int64{4, 3}, w))},
			Input:       []*onnxpb.ValueInfoProto{vi("x", 4)}, Output: []*onnxpb.ValueInfoProto{vi("y", 3)}}}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	g, err := onnx.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestMatMulPerColumn quantizes a MatMul whose columns have very different
// ranges: with one scale per output column each column keeps its own
// precision, so every output is within half a step of its column's scale
// per input.
func TestMatMulPerColumn(t *testing.T) {
	rt := onnxtest.Runtime(t)
	w := []float32{
		1000, 0.010, 3,
		-500, 0.020, -2,
		250, -0.013, 1,
		-125, 0.001, 0.5,
	}
	g := matmul(t, 13, w)
	q, st, err := qdq.Quantize(g)
	if err != nil {
		t.Fatal(err)
	}
	if st.Nodes != 1 || st.Weights != 12 || st.FloatBytes != 48 || st.Int8Bytes != 12+12 {
		t.Errorf("stats %+v", st)
	}
	x := []float32{1, 1, 1, 1, 0.5, -1, 2, 0}
	run := func(g *onnx.Graph) []float64 {
		b, _ := g.Marshal()
		s, err := rt.NewSession(b, ort.Options{IntraOpThreads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		out, err := s.Run([]ort.Tensor{ort.NewFloat([]int64{2, 4}, x)})
		if err != nil {
			t.Fatal(err)
		}
		v, _ := out[0].Float64s()
		return v
	}
	want, got := run(g), run(q)
	for i := range want {
		col := i % 3
		var colMax float64
		for r := range 4 {
			colMax = max(colMax, math.Abs(float64(w[r*3+col])))
		}
		bound := 4 * 2 * 0.5 * colMax / 127 // |x| ≤ 2, 4 inputs, half a step each
		if math.Abs(got[i]-want[i]) > bound {
			t.Errorf("output %d (column %d): %v, float %v, bound %v", i, col, got[i], want[i], bound)
		}
	}
	if _, _, err := qdq.Quantize(matmul(t, 11, w)); err == nil {
		t.Error("opset 11 quantized: DequantizeLinear has no axis there")
	}
}

// gemm is y = x·Wᵀ + b with W [3 4] (transB=1, as PyTorch's Linear
// exports).
func gemm(t *testing.T, w, b []float32) *onnx.Graph {
	vi := func(name string, cols int64) *onnxpb.ValueInfoProto {
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(ort.Float)), Shape: &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{
				{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}},
				{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: cols}}}}}}}}
	}
	m := &onnxpb.ModelProto{IrVersion: proto.Int64(8), OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}},
		Graph: &onnxpb.GraphProto{Name: proto.String("gemm"),
			Node: []*onnxpb.NodeProto{{OpType: proto.String("Gemm"), Input: []string{"x", "W", "b"}, Output: []string{"y"},
				Attribute: []*onnxpb.AttributeProto{{Name: proto.String("transB"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(1)}}}},
			Initializer: []*onnxpb.TensorProto{onnx.TensorToProto("W", ort.NewFloat([]int64{3, 4}, w)), onnx.TensorToProto("b", ort.NewFloat([]int64{3}, b))},
			Input:       []*onnxpb.ValueInfoProto{vi("x", 4)}, Output: []*onnxpb.ValueInfoProto{vi("y", 3)}}}
	bs, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	g, err := onnx.Parse(bs)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestGemmBiasOnWeightScales: a Gemm's weights are stored [in out] without
// transB and its bias goes int8 on the weights' scales when it fits,
// staying float when one value would not; either way ONNX Runtime's
// outputs stay within the rounding of weights and bias.
func TestGemmBiasOnWeightScales(t *testing.T) {
	rt := onnxtest.Runtime(t)
	w := []float32{
		1, -2, 0.5, 3, // channel 0: step 3/127
		0.01, 0.02, -0.03, 0.04, // channel 1: step 0.04/127
		-8, 4, 2, 1, // channel 2: step 8/127
	}
	x := []float32{1, 0, -1, 2, 0.5, 0.5, 0.5, 0.5}
	run := func(g *onnx.Graph) []float64 {
		b, _ := g.Marshal()
		s, err := rt.NewSession(b, ort.Options{IntraOpThreads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		out, err := s.Run([]ort.Tensor{ort.NewFloat([]int64{2, 4}, x)})
		if err != nil {
			t.Fatal(err)
		}
		v, _ := out[0].Float64s()
		return v
	}
	for _, c := range []struct {
		name   string
		b      []float32
		biases int
	}{
		{"fits", []float32{2.5, -0.03, 6}, 3},
		{"too large for channel 1", []float32{2.5, 7, 6}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := gemm(t, w, c.b)
			q, st, err := qdq.Quantize(g)
			if err != nil {
				t.Fatal(err)
			}
			if st.Nodes != 1 || st.Weights != 12 || st.Biases != c.biases {
				t.Errorf("stats %+v, want %d bias values int8", st, c.biases)
			}
			for _, n := range q.Proto.GetGraph().GetNode() {
				if n.GetOpType() == "Gemm" && len(n.GetAttribute()) != 0 {
					t.Errorf("Gemm keeps attributes %v", n.GetAttribute())
				}
			}
			want, got := run(g), run(q)
			for i := range want {
				ch := i % 3
				var step float64
				for k := range 4 {
					step = max(step, math.Abs(float64(w[ch*4+k]))/127)
				}
				// Half a step per weight times |x| ≤ 2 over 4 inputs, and
				// half a step for the bias.
				if bound := 4*2*0.5*step + 0.5*step + 1e-6; math.Abs(got[i]-want[i]) > bound {
					t.Errorf("output %d: %v, float %v, bound %v", i, got[i], want[i], bound)
				}
			}
		})
	}
}

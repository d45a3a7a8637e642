package onnx_test

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxpb"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxtest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/ort"
)

// tabularOps are the operators a tabular model (an MLP, a logistic
// regression, their quantized QDQ forms, and the preprocessing exporters put
// in front of them) is made of. Every backend test case whose graph uses
// only these runs.
var tabularOps = []string{
	"MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "Sigmoid", "Tanh",
	"Softmax", "LogSoftmax", "Cast", "Concat", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
	"Identity", "Clip", "Transpose", "Gather", "Slice", "Exp", "Sum", "Neg", "Abs", "Sqrt",
	"Max", "Min", "ReduceMax", "ReduceSum", "Where", "Greater", "Less", "ArgMax",
	"QuantizeLinear", "DequantizeLinear",
}

// runtimeGaps are cases ONNX Runtime itself cannot load: it has no kernel
// for them. Gauntlet's code is not involved, and tabular models do not use
// 16-bit integers.
var runtimeGaps = map[string]string{
	"test_max_int16":  "no int16 kernel for Max",
	"test_max_uint16": "no uint16 kernel for Max",
	"test_min_int16":  "no int16 kernel for Min",
	"test_min_uint16": "no uint16 kernel for Min",
}

// mustCover are operators that at least this many cases must exercise, so
// that a change to the data or the filter cannot empty the test.
var mustCover = map[string]int{
	"MatMul": 3, "Gemm": 10, "Add": 3, "Relu": 1, "Sigmoid": 2, "Softmax": 6,
	"Cast": 4, "Concat": 10, "DequantizeLinear": 2, "QuantizeLinear": 2,
}

// TestBackendNodeCases runs the ONNX project's own operator test cases
// (model.onnx with reference inputs and outputs in test_data_set_*/) through
// Parse, TensorFromProto and ONNX Runtime, and compares with the references
// at the ONNX backend's tolerance (rtol 1e-3, atol 1e-7).
func TestBackendNodeCases(t *testing.T) {
	root := onnxtest.NodeTests(t)
	rt := onnxtest.Runtime(t)
	cases, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]int{}
	ran := 0
	for _, c := range cases {
		dir := filepath.Join(root, c.Name())
		b, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
		if err != nil {
			continue
		}
		var m onnxpb.ModelProto
		if err := proto.Unmarshal(b, &m); err != nil {
			t.Errorf("%s: %v", c.Name(), err)
			continue
		}
		var ops []string
		for _, n := range m.GetGraph().GetNode() {
			ops = append(ops, n.GetOpType())
		}
		if !allIn(ops, tabularOps) || !tabularValues(&m) || runtimeGaps[c.Name()] != "" {
			continue
		}
		t.Run(c.Name(), func(t *testing.T) {
			runCase(t, rt, dir, b)
		})
		ran++
		for _, op := range slices.Compact(slices.Sorted(slices.Values(ops))) {
			covered[op]++
		}
	}
	for op, n := range mustCover {
		if covered[op] < n {
			t.Errorf("%s: %d cases ran, want at least %d", op, covered[op], n)
		}
	}
	t.Logf("%d backend cases ran; cases per operator: %v", ran, covered)
}

// tabularValues says whether every graph input and output is a tensor whose
// elements Gauntlet moves: not strings, bfloat16, sequences or optionals.
func tabularValues(m *onnxpb.ModelProto) bool {
	for _, v := range append(slices.Clone(m.GetGraph().GetInput()), m.GetGraph().GetOutput()...) {
		tt := v.GetType().GetTensorType()
		if tt == nil || ort.ElemType(tt.GetElemType()).Size() == 0 {
			return false
		}
	}
	return true
}

func allIn(ops, set []string) bool {
	for _, op := range ops {
		if !slices.Contains(set, op) {
			return false
		}
	}
	return len(ops) > 0
}

func runCase(t *testing.T, rt *ort.Runtime, dir string, model []byte) {
	g, err := onnx.Parse(model)
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.NewSession(model, ort.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if want := names(g.Inputs()); !slices.Equal(s.Inputs(), want) {
		t.Fatalf("runtime inputs %q, graph inputs %q", s.Inputs(), want)
	}
	sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
	if len(sets) == 0 {
		t.Fatal("no test_data_set_*")
	}
	for _, set := range sets {
		in := readTensors(t, set, "input", len(s.Inputs()))
		want := readTensors(t, set, "output", len(s.Outputs()))
		got, err := s.Run(in)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(set), err)
		}
		for i := range want {
			if err := same(got[i], want[i]); err != "" {
				t.Errorf("%s: output %q: %s", filepath.Base(set), s.Outputs()[i], err)
			}
		}
	}
}

func names(vs []onnx.Value) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}

func readTensors(t *testing.T, dir, kind string, n int) []ort.Tensor {
	var out []ort.Tensor
	for i := range n {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%s_%d.pb", kind, i)))
		if err != nil {
			t.Fatal(err)
		}
		var tp onnxpb.TensorProto
		if err := proto.Unmarshal(b, &tp); err != nil {
			t.Fatal(err)
		}
		x, err := onnx.TensorFromProto(&tp)
		if err != nil {
			t.Fatalf("%s_%d.pb: %v", kind, i, err)
		}
		out = append(out, x)
	}
	return out
}

// same compares two tensors: exactly for integers and booleans, within the
// ONNX backend's tolerance for floating point, NaN equal to NaN.
func same(got, want ort.Tensor) string {
	if got.Type != want.Type {
		return "type " + got.Type.String() + ", want " + want.Type.String()
	}
	if !slices.Equal(got.Shape, want.Shape) {
		return "shape mismatch"
	}
	if got.Type != ort.Float && got.Type != ort.Double {
		if !bytes.Equal(got.Data, want.Data) {
			return "values differ"
		}
		return ""
	}
	g, _ := got.Float64s()
	w, _ := want.Float64s()
	for i := range w {
		if math.IsNaN(w[i]) && math.IsNaN(g[i]) {
			continue
		}
		if !(math.Abs(g[i]-w[i]) <= 1e-7+1e-3*math.Abs(w[i])) {
			return fmt.Sprintf("element %d: got %v, want %v", i, g[i], w[i])
		}
	}
	return ""
}

func TestSameDetectsDifferences(t *testing.T) {
	a := ort.NewFloat([]int64{2}, []float32{1, 2})
	for _, b := range []ort.Tensor{
		ort.NewFloat([]int64{2}, []float32{1, 2.01}),
		ort.NewFloat([]int64{1, 2}, []float32{1, 2}),
		ort.NewDouble([]int64{2}, []float64{1, 2}),
	} {
		if same(a, b) == "" {
			t.Errorf("%v and %v compare equal", a, b)
		}
	}
	if msg := same(a, ort.NewFloat([]int64{2}, []float32{1, 2.0001})); msg != "" {
		t.Errorf("within tolerance: %s", msg)
	}
}

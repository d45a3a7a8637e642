package ort

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxpb"
	"github.com/gauntlet-ml/gauntlet/internal/testkit"
)

func library(t *testing.T) *Runtime {
	t.Helper()
	p := os.Getenv(EnvLibrary)
	if p == "" {
		_, file, _, _ := runtime.Caller(0)
		p = filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "bin", "onnxruntime", "libonnxruntime.so.1")
	}
	if _, err := os.Stat(p); err != nil {
		testkit.Need(t, "ONNX Runtime library %s: %v; run `make tools`", p, err)
	}
	r, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestMissingLibrarySaysHowToInstall(t *testing.T) {
	_, err := open(filepath.Join(t.TempDir(), "libonnxruntime.so.1"))
	if !errors.Is(err, ErrNoLibrary) {
		t.Fatalf("err = %v, want ErrNoLibrary", err)
	}
	for _, want := range []string{EnvLibrary, "release archive", "scripts/install-onnxruntime.sh"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := open("libm.so.6"); !errors.Is(err, ErrNoLibrary) || !strings.Contains(err.Error(), "OrtGetApiBase") {
		t.Errorf("a library that is not ONNX Runtime: %v", err)
	}
}

// addModel is y = a + b over float vectors of any length.
func addModel(t *testing.T) []byte {
	vec := func(name string) *onnxpb.ValueInfoProto {
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(Float)), Shape: &onnxpb.TensorShapeProto{
				Dim: []*onnxpb.TensorShapeProto_Dimension{{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "n"}}}}}}}}
	}
	m := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}},
		Graph: &onnxpb.GraphProto{
			Name:   proto.String("add"),
			Node:   []*onnxpb.NodeProto{{OpType: proto.String("Add"), Input: []string{"a", "b"}, Output: []string{"y"}}},
			Input:  []*onnxpb.ValueInfoProto{vec("a"), vec("b")},
			Output: []*onnxpb.ValueInfoProto{vec("y")},
		},
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSession(t *testing.T) {
	r := library(t)
	if r.Version() == "" || !slices.Contains(r.Providers(), CPU) {
		t.Fatalf("version %q, providers %v", r.Version(), r.Providers())
	}
	t.Logf("ONNX Runtime %s from %s, providers %v", r.Version(), r.Path(), r.Providers())
	if _, err := Load(r.Path() + ".other"); err == nil || !strings.Contains(err.Error(), "already loaded") {
		t.Errorf("second library: %v", err)
	}
	s, err := r.NewSession(addModel(t), Options{Provider: ProviderAuto, IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Inputs(), []string{"a", "b"}) || !slices.Equal(s.Outputs(), []string{"y"}) {
		t.Errorf("inputs %q, outputs %q", s.Inputs(), s.Outputs())
	}
	switch s.Provider() {
	case CPU:
		if s.Fallback() == "" {
			t.Error("auto chose the CPU and says not why")
		}
		t.Logf("auto: CPU, because %s", s.Fallback())
	case CUDA:
		if s.Fallback() != "" {
			t.Errorf("auto chose CUDA with fallback %q", s.Fallback())
		}
	default:
		t.Errorf("provider %q", s.Provider())
	}
	out, err := s.Run([]Tensor{NewFloat([]int64{3}, []float32{1, 2, 3}), NewFloat([]int64{3}, []float32{10, 20, 30.5})})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := out[0].Float64s()
	if !slices.Equal(got, []float64{11, 22, 33.5}) || !slices.Equal(out[0].Shape, []int64{3}) {
		t.Errorf("a + b = %v shape %v", got, out[0].Shape)
	}
	// Empty batches go through too.
	if out, err := s.Run([]Tensor{NewFloat([]int64{0}, nil), NewFloat([]int64{0}, nil)}); err != nil || len(out[0].Data) != 0 {
		t.Errorf("empty: %v %v", out, err)
	}
	for name, in := range map[string][]Tensor{
		"one input":   {NewFloat([]int64{1}, []float32{1})},
		"short data":  {NewFloat([]int64{3}, []float32{1}), NewFloat([]int64{1}, []float32{1})},
		"wrong type":  {NewDouble([]int64{1}, []float64{1}), NewDouble([]int64{1}, []float64{1})},
		"wrong shape": {NewFloat([]int64{2}, []float32{1, 2}), NewFloat([]int64{3}, []float32{1, 2, 3})},
	} {
		if _, err := s.Run(in); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(nil); err == nil {
		t.Error("Run after Close: no error")
	}
	if _, err := s.Run([]Tensor{NewFloat([]int64{1}, []float32{1}), NewFloat([]int64{1}, []float32{1})}); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v", err)
	}
}

func TestProviderChoice(t *testing.T) {
	r := library(t)
	// The npm build lists CUDA but lacks its provider library, so a
	// session that requires CUDA is refused here; where CUDA starts, it
	// must say so.
	s, err := r.NewSession(addModel(t), Options{Provider: ProviderCUDA})
	switch {
	case err != nil && !strings.Contains(err.Error(), "CUDA"):
		t.Errorf("CUDA refused without saying so: %v", err)
	case err != nil:
		t.Logf("CUDA: %v", err)
	case s.Provider() != CUDA:
		t.Errorf("CUDA session runs on %q", s.Provider())
	default:
		s.Close()
	}
	if _, err := r.NewSession(addModel(t), Options{Provider: "tpu"}); err == nil {
		t.Error("unknown provider accepted")
	}
	if _, err := r.NewSession([]byte("not a model"), Options{}); err == nil {
		t.Error("garbage accepted")
	}
}

// TestRunIntoAndSlots: the two allocation-free ways to run give what Run
// gives, refuse what does not fit, and stop after Close.
func TestRunIntoAndSlots(t *testing.T) {
	r := library(t)
	s, err := r.NewSession(addModel(t), Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	a, b := []float32{1, 2, 3}, []float32{10, 20, 30.5}
	y := make([]float32, 3)
	if err := s.RunInto([]Tensor{FloatsOf([]int64{3}, a), FloatsOf([]int64{3}, b)}, 0, FloatsOf([]int64{3}, y)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(y, []float32{11, 22, 33.5}) {
		t.Errorf("RunInto: a + b = %v", y)
	}
	for name, c := range map[string]struct {
		in     []Tensor
		output int
		out    Tensor
	}{
		"one input":          {[]Tensor{FloatsOf([]int64{3}, a)}, 0, FloatsOf([]int64{3}, y)},
		"no such output":     {[]Tensor{FloatsOf([]int64{3}, a), FloatsOf([]int64{3}, b)}, 1, FloatsOf([]int64{3}, y)},
		"output shape":       {[]Tensor{FloatsOf([]int64{3}, a), FloatsOf([]int64{3}, b)}, 0, FloatsOf([]int64{2}, y[:2])},
		"short data":         {[]Tensor{FloatsOf([]int64{3}, a[:1]), FloatsOf([]int64{3}, b)}, 0, FloatsOf([]int64{3}, y)},
		"output of the type": {[]Tensor{FloatsOf([]int64{3}, a), FloatsOf([]int64{3}, b)}, 0, DoublesOf([]int64{3}, make([]float64, 3))},
	} {
		if err := s.RunInto(c.in, c.output, c.out); err == nil {
			t.Errorf("RunInto, %s: no error", name)
		}
	}

	// The add graph takes two inputs; a slot feeds graphs of one.
	if _, err := s.NewSlot(Tensor{Type: Float, Shape: []int64{3}}, 0, Tensor{Type: Float, Shape: []int64{3}}); err == nil {
		t.Error("a slot for a graph of two inputs")
	}
	neg, err := r.NewSession(negModel(t), Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	sl, err := neg.NewSlot(Tensor{Type: Float, Shape: []int64{4}}, 0, Tensor{Type: Float, Shape: []int64{4}})
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		in := ViewFloat(sl.In)
		for i := range in {
			in[i] = float32(round*10 + i)
		}
		if err := sl.Run(); err != nil {
			t.Fatal(err)
		}
		if got := ViewFloat(sl.Out); !slices.Equal(got, []float32{float32(-round * 10), float32(-round*10 - 1), float32(-round*10 - 2), float32(-round*10 - 3)}) {
			t.Fatalf("round %d: -x = %v", round, got)
		}
	}
	bad, err := neg.NewSlot(Tensor{Type: Float, Shape: []int64{4}}, 0, Tensor{Type: Float, Shape: []int64{5}})
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Run(); err == nil {
		t.Error("a slot whose output does not fit the graph ran")
	}
	bad.Close()
	if _, err := neg.NewSlot(Tensor{Type: Float, Shape: []int64{0}}, 0, Tensor{Type: Float, Shape: []int64{0}}); err == nil {
		t.Error("an empty slot")
	}
	neg.Close()
	if err := sl.Run(); !errors.Is(err, ErrClosed) {
		t.Errorf("slot after Close: %v", err)
	}
	sl.Close()
	s.Close()
	if err := s.RunInto([]Tensor{FloatsOf([]int64{3}, a), FloatsOf([]int64{3}, b)}, 0, FloatsOf([]int64{3}, y)); !errors.Is(err, ErrClosed) {
		t.Errorf("RunInto after Close: %v", err)
	}
}

// negModel is y = -x over a float vector of any length.
func negModel(t *testing.T) []byte {
	vec := func(name string) *onnxpb.ValueInfoProto {
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(Float)), Shape: &onnxpb.TensorShapeProto{
				Dim: []*onnxpb.TensorShapeProto_Dimension{{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "n"}}}}}}}}
	}
	b, err := proto.Marshal(&onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}},
		Graph: &onnxpb.GraphProto{
			Name:   proto.String("neg"),
			Node:   []*onnxpb.NodeProto{{OpType: proto.String("Neg"), Input: []string{"x"}, Output: []string{"y"}}},
			Input:  []*onnxpb.ValueInfoProto{vec("x")},
			Output: []*onnxpb.ValueInfoProto{vec("y")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDroppedSessionsAreFreed: sessions and slots dropped without Close
// are freed by the garbage collector. (Go memory pinned for a session used
// to make the runtime panic when such a session was collected.)
func TestDroppedSessionsAreFreed(t *testing.T) {
	r := library(t)
	for range 5 {
		s, err := r.NewSession(negModel(t), Options{IntraOpThreads: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.NewSlot(Tensor{Type: Float, Shape: []int64{2}}, 0, Tensor{Type: Float, Shape: []int64{2}}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		runtime.GC()
	}
	s, err := r.NewSession(negModel(t), Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Run([]Tensor{NewFloat([]int64{1}, []float32{2})}); err != nil {
		t.Fatal(err)
	}
}

// An empty path is the library the process loaded (a flag given at start),
// whatever the environment says; another path is refused.
func TestEmptyPathIsTheLoadedLibrary(t *testing.T) {
	r := library(t)
	t.Setenv(EnvLibrary, filepath.Join(t.TempDir(), "elsewhere.so"))
	got, err := Load("")
	if err != nil || got != r {
		t.Fatalf("Load(\"\") = %v, %v; want the runtime loaded from %s", got, err, r.Path())
	}
	if _, err := Load(filepath.Join(t.TempDir(), "other.so")); err == nil || !strings.Contains(err.Error(), "already loaded from") {
		t.Fatalf("another path: %v", err)
	}
}

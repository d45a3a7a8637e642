package ort

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// ElemType is a tensor element type, numbered as ONNX's
// TensorProto.DataType (which ONNX Runtime's enum copies).
type ElemType int32

// Element types Gauntlet moves in and out of ONNX Runtime.
const (
	Float   ElemType = 1
	Uint8   ElemType = 2
	Int8    ElemType = 3
	Uint16  ElemType = 4
	Int16   ElemType = 5
	Int32   ElemType = 6
	Int64   ElemType = 7
	String  ElemType = 8
	Bool    ElemType = 9
	Float16 ElemType = 10
	Double  ElemType = 11
	Uint32  ElemType = 12
	Uint64  ElemType = 13
)

var elemNames = map[ElemType]string{
	Float: "float", Uint8: "uint8", Int8: "int8", Uint16: "uint16", Int16: "int16",
	Int32: "int32", Int64: "int64", String: "string", Bool: "bool", Float16: "float16",
	Double: "double", Uint32: "uint32", Uint64: "uint64",
}

func (t ElemType) String() string {
	if s, ok := elemNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type %d", int32(t))
}

// Size is the bytes one element takes, 0 for types this package cannot
// move (strings, and types it does not know).
func (t ElemType) Size() int {
	switch t {
	case Uint8, Int8, Bool:
		return 1
	case Uint16, Int16, Float16:
		return 2
	case Float, Int32, Uint32:
		return 4
	case Int64, Double, Uint64:
		return 8
	}
	return 0
}

// Tensor is a dense tensor: row-major elements, little-endian.
type Tensor struct {
	Type  ElemType
	Shape []int64
	Data  []byte
}

// NewFloat returns a float tensor of shape holding v.
func NewFloat(shape []int64, v []float32) Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return Tensor{Type: Float, Shape: shape, Data: b}
}

// NewDouble returns a double tensor of shape holding v.
func NewDouble(shape []int64, v []float64) Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return Tensor{Type: Double, Shape: shape, Data: b}
}

// Float64s returns the elements of a float or double tensor as float64.
func (t Tensor) Float64s() ([]float64, error) {
	switch t.Type {
	case Float:
		out := make([]float64, len(t.Data)/4)
		for i := range out {
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:])))
		}
		return out, nil
	case Double:
		out := make([]float64, len(t.Data)/8)
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:]))
		}
		return out, nil
	}
	return nil, fmt.Errorf("ort: a %s tensor is not float or double", t.Type)
}

// nativeLittle is whether this host stores numbers little-endian, as
// Tensor.Data holds them; Load refuses a host that does not (ONNX Runtime
// ships builds for none), so a tensor can share a slice's memory.
var nativeLittle = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// FloatsOf returns a float tensor of shape over v's own memory, not a copy,
// so that what RunInto writes into the tensor lands in v.
func FloatsOf(shape []int64, v []float32) Tensor {
	return Tensor{Type: Float, Shape: shape, Data: unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 4*len(v))}
}

// DoublesOf is FloatsOf for double tensors.
func DoublesOf(shape []int64, v []float64) Tensor {
	return Tensor{Type: Double, Shape: shape, Data: unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 8*len(v))}
}

// ViewFloat views b, float elements in memory the runtime allocated (and so
// aligned), as a []float32 over the same memory.
func ViewFloat(b []byte) []float32 {
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/4)
}

// ViewDouble is ViewFloat for double elements.
func ViewDouble(b []byte) []float64 {
	return unsafe.Slice((*float64)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/8)
}

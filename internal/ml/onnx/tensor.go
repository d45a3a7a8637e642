package onnx

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxpb"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/ort"
)

// TensorFromProto converts an ONNX TensorProto (an initializer, or a test
// case's input or output) into a runtime tensor. Values come from raw_data
// when it is set and from the typed repeated field otherwise, as the ONNX IR
// specifies; the element count must match the dimensions.
func TensorFromProto(t *onnxpb.TensorProto) (ort.Tensor, error) {
	et := ort.ElemType(t.GetDataType())
	size := et.Size()
	if size == 0 {
		return ort.Tensor{}, fmt.Errorf("element type %s is not supported", et)
	}
	if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL || len(t.GetExternalData()) > 0 {
		return ort.Tensor{}, fmt.Errorf("data is stored in an external file, which Gauntlet does not read: save the model as one file")
	}
	if t.GetSegment() != nil {
		return ort.Tensor{}, fmt.Errorf("segmented tensors are not supported")
	}
	n := 1
	for _, d := range t.GetDims() {
		if d < 0 || (d > 0 && n > (1<<40)/int(d)) {
			return ort.Tensor{}, fmt.Errorf("bad dimensions %v", t.GetDims())
		}
		n *= int(d)
	}
	out := ort.Tensor{Type: et, Shape: append([]int64{}, t.GetDims()...), Data: make([]byte, n*size)}
	if raw := t.GetRawData(); raw != nil {
		if len(raw) != len(out.Data) {
			return ort.Tensor{}, fmt.Errorf("raw data holds %d bytes, dimensions %v of %s need %d (truncated?)", len(raw), t.GetDims(), et, len(out.Data))
		}
		copy(out.Data, raw)
		return out, nil
	}
	count := func(got int) error {
		if got != n {
			return fmt.Errorf("holds %d values, dimensions %v need %d (truncated?)", got, t.GetDims(), n)
		}
		return nil
	}
	le := binary.LittleEndian
	switch et {
	case ort.Float:
		v := t.GetFloatData()
		if err := count(len(v)); err != nil {
			return ort.Tensor{}, err
		}
		for i, x := range v {
			le.PutUint32(out.Data[4*i:], math.Float32bits(x))
		}
	case ort.Double:
		v := t.GetDoubleData()
		if err := count(len(v)); err != nil {
			return ort.Tensor{}, err
		}
		for i, x := range v {
			le.PutUint64(out.Data[8*i:], math.Float64bits(x))
		}
	case ort.Int64:
		v := t.GetInt64Data()
		if err := count(len(v)); err != nil {
			return ort.Tensor{}, err
		}
		for i, x := range v {
			le.PutUint64(out.Data[8*i:], uint64(x))
		}
	case ort.Uint32, ort.Uint64:
		v := t.GetUint64Data()
		if err := count(len(v)); err != nil {
			return ort.Tensor{}, err
		}
		for i, x := range v {
			if et == ort.Uint32 {
				le.PutUint32(out.Data[4*i:], uint32(x))
			} else {
				le.PutUint64(out.Data[8*i:], x)
			}
		}
	default:
		// int32, int16, int8, uint16, uint8, bool and float16 (its bits)
		// travel in int32_data, one element per entry.
		v := t.GetInt32Data()
		if err := count(len(v)); err != nil {
			return ort.Tensor{}, err
		}
		for i, x := range v {
			switch size {
			case 1:
				out.Data[i] = byte(x)
			case 2:
				le.PutUint16(out.Data[2*i:], uint16(x))
			case 4:
				le.PutUint32(out.Data[4*i:], uint32(x))
			}
		}
	}
	return out, nil
}

// TensorToProto converts a runtime tensor into a TensorProto with raw data.
func TensorToProto(name string, t ort.Tensor) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{
		Name:     &name,
		DataType: ptr(int32(t.Type)),
		Dims:     append([]int64{}, t.Shape...),
		RawData:  append([]byte{}, t.Data...),
	}
}

func ptr[T any](v T) *T { return &v }

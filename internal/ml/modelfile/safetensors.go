package modelfile

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
)

// maxHeader bounds the safetensors JSON header a reader will accept, as the
// reference implementation does, so a corrupt length cannot exhaust memory.
const maxHeader = 100 << 20

var dtypeSize = map[string]int{model.F64: 8, model.F32: 4, model.I8: 1}

type tensorHeader struct {
	DType       string `json:"dtype"`
	Shape       []int  `json:"shape"`
	DataOffsets [2]int `json:"data_offsets"`
}

// EncodeSafetensors writes tensors in the safetensors format: an 8-byte
// little-endian header length, a JSON header (padded with spaces to a
// multiple of 8 bytes) mapping names to dtype, shape and data offsets plus
// "__metadata__", then the raw little-endian data in name order.
func EncodeSafetensors(ts []model.Tensor, meta map[string]string) ([]byte, error) {
	ts = slices.Clone(ts)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	header := map[string]any{}
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	var data []byte
	for i, t := range ts {
		if t.Name == "" || t.Name == "__metadata__" || (i > 0 && ts[i-1].Name == t.Name) {
			return nil, fmt.Errorf("modelfile: bad or duplicate tensor name %q", t.Name)
		}
		size, ok := dtypeSize[t.DType]
		if !ok {
			return nil, fmt.Errorf("modelfile: tensor %s: unsupported dtype %q", t.Name, t.DType)
		}
		n := 1
		for _, d := range t.Shape {
			n *= d
		}
		if n != len(t.Data) || slices.ContainsFunc(t.Shape, func(d int) bool { return d < 0 }) {
			return nil, fmt.Errorf("modelfile: tensor %s: shape %v does not hold %d values", t.Name, t.Shape, len(t.Data))
		}
		start := len(data)
		for _, v := range t.Data {
			switch t.DType {
			case model.F64:
				data = binary.LittleEndian.AppendUint64(data, math.Float64bits(v))
			case model.F32:
				if float64(float32(v)) != v && !math.IsNaN(v) {
					return nil, fmt.Errorf("modelfile: tensor %s: %v is not exact in F32", t.Name, v)
				}
				data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(v)))
			case model.I8:
				if v != math.Trunc(v) || v < -128 || v > 127 {
					return nil, fmt.Errorf("modelfile: tensor %s: %v is not an int8", t.Name, v)
				}
				data = append(data, byte(int8(v)))
			}
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[t.Name] = tensorHeader{DType: t.DType, Shape: shape, DataOffsets: [2]int{start, start + n*size}}
	}
	h, err := json.Marshal(header)
	if err != nil {
		return nil, fmt.Errorf("modelfile: encode safetensors header: %w", err)
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	out = append(out, h...)
	return append(out, data...), nil
}

// DecodeSafetensors parses what EncodeSafetensors writes (and any
// safetensors file of F64, F32 and I8 tensors), checking that the offsets
// tile the data exactly.
func DecodeSafetensors(b []byte) ([]model.Tensor, map[string]string, error) {
	if len(b) < 8 {
		return nil, nil, fmt.Errorf("file too short (%d bytes)", len(b))
	}
	hlen := binary.LittleEndian.Uint64(b)
	if hlen > maxHeader || hlen > uint64(len(b)-8) {
		return nil, nil, fmt.Errorf("header length %d exceeds the file", hlen)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+hlen], &raw); err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	data := b[8+hlen:]
	var meta map[string]string
	if m, ok := raw["__metadata__"]; ok {
		if err := json.Unmarshal(m, &meta); err != nil {
			return nil, nil, fmt.Errorf("__metadata__: %w", err)
		}
		delete(raw, "__metadata__")
	}
	type span struct {
		start, end int
		name       string
	}
	var spans []span
	var ts []model.Tensor
	for name, r := range raw {
		var h tensorHeader
		if err := json.Unmarshal(r, &h); err != nil {
			return nil, nil, fmt.Errorf("tensor %s: %w", name, err)
		}
		size, ok := dtypeSize[h.DType]
		if !ok {
			return nil, nil, fmt.Errorf("tensor %s: unsupported dtype %q", name, h.DType)
		}
		n := 1
		for _, d := range h.Shape {
			if d < 0 || (d > 0 && n > len(data)/d) {
				return nil, nil, fmt.Errorf("tensor %s: bad shape %v", name, h.Shape)
			}
			n *= d
		}
		start, end := h.DataOffsets[0], h.DataOffsets[1]
		if start < 0 || end < start || end > len(data) || end-start != n*size {
			return nil, nil, fmt.Errorf("tensor %s: offsets %v do not match shape %v of %s in %d data bytes", name, h.DataOffsets, h.Shape, h.DType, len(data))
		}
		t := model.Tensor{Name: name, DType: h.DType, Shape: h.Shape, Data: make([]float64, n)}
		for i := range n {
			p := data[start+i*size:]
			switch h.DType {
			case model.F64:
				t.Data[i] = math.Float64frombits(binary.LittleEndian.Uint64(p))
			case model.F32:
				t.Data[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(p)))
			case model.I8:
				t.Data[i] = float64(int8(p[0]))
			}
		}
		ts = append(ts, t)
		spans = append(spans, span{start, end, name})
	}
	sort.Slice(spans, func(i, j int) bool {
		return spans[i].start < spans[j].start || spans[i].start == spans[j].start && spans[i].end < spans[j].end
	})
	pos := 0
	for _, s := range spans {
		if s.start != pos {
			return nil, nil, fmt.Errorf("tensor %s: data starts at %d, want %d (gap or overlap)", s.name, s.start, pos)
		}
		pos = s.end
	}
	if pos != len(data) {
		return nil, nil, fmt.Errorf("%d trailing data bytes", len(data)-pos)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	return ts, meta, nil
}

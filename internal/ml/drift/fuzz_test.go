package drift

import (
	"encoding/binary"
	"math"
	"testing"
)

// floats decodes little-endian float64s, so the fuzzer reaches NaN, ±Inf,
// subnormals and heavy ties.
func floats(b []byte) []float64 {
	out := make([]float64, 0, len(b)/8)
	for len(b) >= 8 {
		out = append(out, math.Float64frombits(binary.LittleEndian.Uint64(b)))
		b = b[8:]
	}
	return out
}

func encode(v ...float64) []byte {
	b := make([]byte, 0, 8*len(v))
	for _, f := range v {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	}
	return b
}

func FuzzKS2Samp(f *testing.F) {
	f.Add(encode(1, 2, 3), encode(2, 3, 4, 5))
	f.Add(encode(0), encode(0))
	f.Add(encode(math.Inf(-1), 0, math.Inf(1)), encode(math.Inf(1)))
	f.Add(encode(math.NaN(), 1), encode(1))
	f.Add([]byte{}, encode(1))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		x, y := floats(a), floats(b)
		res, err := KS2Samp(x, y)
		if err != nil {
			return
		}
		if !(res.Statistic >= 0 && res.Statistic <= 1) {
			t.Fatalf("statistic %v outside [0, 1] for %v vs %v", res.Statistic, x, y)
		}
		if !(res.PValue >= 0 && res.PValue <= 1) {
			t.Fatalf("p-value %v outside [0, 1] for %v vs %v", res.PValue, x, y)
		}
	})
}

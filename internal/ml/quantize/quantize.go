// Package quantize turns a trained float network into an INT8 one: weights
// symmetric per output unit, activations symmetric per input channel with
// scales calibrated on a sample, integer matrix products accumulated in int32.
//
// Tabular inputs defeat a naive activation scale: a one-hot column (0 or 1)
// and a standardised capital gain (up to 13 in Adult) share the input vector.
// Calibration therefore tries, per layer, a few clipping percentiles and
// SmoothQuant-style migrations (input channel j divided by
// mⱼ = (max|xⱼ| / max|Wⱼ|)^α, the weights absorbing mⱼ) and keeps the one whose
// quantized layer output is closest to the float output on the sample. The
// resulting per-channel input scales are folded into the weights before they
// are quantized, so the product stays one int8 matrix times one int8 vector.
package quantize

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"gonum.org/v1/gonum/mat"
)

// Layer is one quantized dense layer: out[o] = acc[o]·WScale[o] + B[o] where
// acc is the int32 sum of W[o][j]·round(in[j]/InScale[j]) and W[o][j]·WScale[o]
// approximates the float weight times InScale[j].
type Layer struct {
	In, Out int
	W       []int8    // Out×In, row-major
	WScale  []float64 // per output unit
	B       []float64
	InScale []float64 // per input channel
}

// Model is an INT8 network; ReLU between layers, sigmoid at the end, as
// model.Network.
type Model struct {
	Kind   model.Kind
	Layers []Layer
}

// Options tunes calibration.
type Options struct {
	// Percentile, when set, fixes the clipping percentile of |activation|
	// instead of searching 99.9, 99.99 and 100.
	Percentile float64
}

// migrations are the SmoothQuant α values tried; 0 is a plain per-layer scale.
var migrations = []float64{0, 0.25, 0.5}

// maxSearchRows bounds the rows used to score calibration candidates.
const maxSearchRows = 4096

// f32 rounds to float32 so scales and biases survive an F32 model file exactly.
func f32(v float64) float64 { return float64(float32(v)) }

// Quantize converts net, calibrating activation scales on the rows of calib.
func Quantize(net *model.Network, calib *mat.Dense, opts Options) (*Model, error) {
	percentiles := []float64{99.9, 99.99, 100}
	if opts.Percentile != 0 {
		if !(opts.Percentile > 0 && opts.Percentile <= 100) {
			return nil, fmt.Errorf("quantize: percentile %v not in (0, 100]", opts.Percentile)
		}
		percentiles = []float64{opts.Percentile}
	}
	rows, cols := calib.Dims()
	if rows == 0 {
		return nil, fmt.Errorf("quantize: empty calibration sample")
	}
	if cols != net.NumFeatures() {
		return nil, fmt.Errorf("quantize: calibration sample has %d features, model wants %d", cols, net.NumFeatures())
	}
	// Float activations entering each layer, over the calibration sample.
	inputs := make([][]float64, len(net.Layers))
	for r := range rows {
		in := calib.RawRowView(r)
		for li, l := range net.Layers {
			inputs[li] = append(inputs[li], in...)
			out := make([]float64, l.Out)
			for o := range l.Out {
				var s float64
				for j, w := range l.W[o*l.In : (o+1)*l.In] {
					s += w * in[j]
				}
				out[o] = max(s+l.B[o], 0)
			}
			in = out
		}
	}
	q := &Model{Kind: net.Kind}
	for li, l := range net.Layers {
		var best Layer
		bestErr := math.Inf(1)
		for _, ranges := range channelRanges(inputs[li], l.In, percentiles) {
			for _, alpha := range migrations {
				ql := quantizeLayer(l, channelScales(ranges, l, alpha))
				if e := outputError(l, ql, inputs[li]); e < bestErr {
					best, bestErr = ql, e
				}
			}
		}
		q.Layers = append(q.Layers, best)
	}
	return q, nil
}

func quantizeLayer(l model.Dense, inScale []float64) Layer {
	ql := Layer{In: l.In, Out: l.Out, W: make([]int8, len(l.W)), WScale: make([]float64, l.Out), B: make([]float64, l.Out), InScale: inScale}
	folded := make([]float64, l.In)
	for o := range l.Out {
		var m float64
		for j, w := range l.W[o*l.In : (o+1)*l.In] {
			folded[j] = w * inScale[j]
			m = max(m, math.Abs(folded[j]))
		}
		scale := f32(m / 127)
		if !(scale > 0) || math.IsInf(scale, 0) {
			scale = 1
		}
		ql.WScale[o] = scale
		for j, w := range folded {
			ql.W[o*l.In+j] = clamp8(w / scale)
		}
		ql.B[o] = f32(l.B[o])
	}
	return ql
}

// outputError is the mean squared difference between the float and the
// quantized pre-activation outputs over (a stride of) the calibration rows.
func outputError(l model.Dense, ql Layer, acts []float64) float64 {
	rows := len(acts) / l.In
	step := max(1, rows/maxSearchRows)
	qin := make([]int8, l.In)
	var sum float64
	var n int
	for r := 0; r < rows; r += step {
		in := acts[r*l.In : (r+1)*l.In]
		for j, v := range in {
			qin[j] = clamp8(v / ql.InScale[j])
		}
		for o := range l.Out {
			want := l.B[o]
			for j, w := range l.W[o*l.In : (o+1)*l.In] {
				want += w * in[j]
			}
			got := float64(dot8(ql.W[o*l.In:(o+1)*l.In], qin))*ql.WScale[o] + ql.B[o]
			sum += (got - want) * (got - want)
			n++
		}
	}
	return sum / float64(n)
}

// channelRanges returns, per percentile, each channel's |activation| at it.
func channelRanges(acts []float64, width int, percentiles []float64) [][]float64 {
	out := make([][]float64, len(percentiles))
	for i := range out {
		out[i] = make([]float64, width)
	}
	col := make([]float64, len(acts)/width)
	for j := range width {
		for r := range col {
			col[r] = math.Abs(acts[r*width+j])
		}
		slices.Sort(col)
		for i, p := range percentiles {
			k := int(math.Ceil(p/100*float64(len(col)))) - 1
			out[i][j] = col[max(0, min(k, len(col)-1))]
		}
	}
	return out
}

// channelScales returns mⱼ·S per input channel, S mapping the largest
// migrated activation to 127. A channel that was always zero in calibration,
// or whose weights are all zero, keeps mⱼ = 1.
func channelScales(ranges []float64, l model.Dense, alpha float64) []float64 {
	m := make([]float64, l.In)
	var widest float64
	for j, a := range ranges {
		var w float64
		for o := range l.Out {
			w = max(w, math.Abs(l.W[o*l.In+j]))
		}
		m[j] = 1
		if a > 0 && w > 0 {
			m[j] = math.Pow(a/w, alpha)
		}
		widest = max(widest, a/m[j])
	}
	if !(widest > 0) || math.IsInf(widest, 0) {
		widest = 1
	}
	scales := make([]float64, l.In)
	for j := range scales {
		scales[j] = f32(m[j] * widest / 127)
	}
	return scales
}

func clamp8(v float64) int8 {
	return int8(max(-127, min(127, math.Round(v))))
}

// PredictProba scores each row of x through the integer path.
func (m *Model) PredictProba(x *mat.Dense) ([]float64, error) {
	rows, cols := x.Dims()
	if cols != m.Layers[0].In {
		return nil, fmt.Errorf("quantize: input has %d features, model wants %d", cols, m.Layers[0].In)
	}
	width := 0
	for _, l := range m.Layers {
		width = max(width, l.In, l.Out)
	}
	qin := make([]int8, width)
	act := make([]float64, width)
	next := make([]float64, width)
	out := make([]float64, rows)
	last := len(m.Layers) - 1
	inv := make([][]float64, len(m.Layers))
	for li, l := range m.Layers {
		inv[li] = make([]float64, l.In)
		for j, s := range l.InScale {
			inv[li][j] = 1 / s
		}
	}
	for r := range rows {
		in := x.RawRowView(r)
		for li, l := range m.Layers {
			for j, v := range in[:l.In] {
				qin[j] = clamp8(v * inv[li][j])
			}
			for o := range l.Out {
				acc := dot8(l.W[o*l.In:(o+1)*l.In], qin[:l.In])
				v := float64(acc)*l.WScale[o] + l.B[o]
				if li < last {
					v = max(v, 0)
				}
				next[o] = v
			}
			act, next = next, act
			in = act
		}
		out[r] = model.Sigmoid(in[0])
	}
	return out, nil
}

// dot8 is the integer inner product: |w·x| ≤ 127·127·len fits int32 for any
// layer narrower than 133,000 inputs.
func dot8(w, x []int8) int32 {
	var a0, a1, a2, a3 int32
	x = x[:len(w)]
	j := 0
	for ; j+4 <= len(w); j += 4 {
		a0 += int32(w[j]) * int32(x[j])
		a1 += int32(w[j+1]) * int32(x[j+1])
		a2 += int32(w[j+2]) * int32(x[j+2])
		a3 += int32(w[j+3]) * int32(x[j+3])
	}
	for ; j < len(w); j++ {
		a0 += int32(w[j]) * int32(x[j])
	}
	return a0 + a1 + a2 + a3
}

// Tensors names the quantized parameters for a model file: per layer an I8
// weight, F32 per-unit weight scales, an F32 bias and F32 per-channel input
// scales.
func (m *Model) Tensors() []model.Tensor {
	var ts []model.Tensor
	for i, l := range m.Layers {
		p := "layers." + strconv.Itoa(i) + "."
		w := make([]float64, len(l.W))
		for j, v := range l.W {
			w[j] = float64(v)
		}
		ts = append(ts,
			model.Tensor{Name: p + "weight", DType: model.I8, Shape: []int{l.Out, l.In}, Data: w},
			model.Tensor{Name: p + "weight_scale", DType: model.F32, Shape: []int{l.Out}, Data: l.WScale},
			model.Tensor{Name: p + "bias", DType: model.F32, Shape: []int{l.Out}, Data: l.B},
			inputScale(p, l.InScale))
	}
	return ts
}

// inputScale stores a uniform scale as one value, which keeps a small
// logistic regression's file smaller than its float32 original.
func inputScale(prefix string, s []float64) model.Tensor {
	t := model.Tensor{Name: prefix + "input_scale", DType: model.F32, Shape: []int{len(s)}, Data: s}
	if !slices.ContainsFunc(s, func(v float64) bool { return v != s[0] }) {
		t.Shape, t.Data = []int{1}, s[:1]
	}
	return t
}

// FromTensors rebuilds a quantized model from Tensors' output.
func FromTensors(kind model.Kind, ts []model.Tensor) (*Model, error) {
	byName := map[string]model.Tensor{}
	for _, t := range ts {
		byName[t.Name] = t
	}
	m := &Model{Kind: kind}
	for i := 0; ; i++ {
		p := "layers." + strconv.Itoa(i) + "."
		w, ok := byName[p+"weight"]
		if !ok {
			break
		}
		ws, okS := byName[p+"weight_scale"]
		b, okB := byName[p+"bias"]
		is, okI := byName[p+"input_scale"]
		if !okS || !okB || !okI {
			return nil, fmt.Errorf("quantize: layer %d lacks a scale or bias tensor", i)
		}
		if len(w.Shape) != 2 || w.Shape[0] <= 0 || w.Shape[1] <= 0 || len(w.Data) != w.Shape[0]*w.Shape[1] ||
			len(ws.Data) != w.Shape[0] || len(b.Data) != w.Shape[0] || (len(is.Data) != w.Shape[1] && len(is.Data) != 1) {
			return nil, fmt.Errorf("quantize: layer %d: inconsistent tensor shapes", i)
		}
		if i > 0 && w.Shape[1] != m.Layers[i-1].Out {
			return nil, fmt.Errorf("quantize: layer %d takes %d inputs but layer %d gives %d", i, w.Shape[1], i-1, m.Layers[i-1].Out)
		}
		l := Layer{Out: w.Shape[0], In: w.Shape[1], W: make([]int8, len(w.Data)), WScale: ws.Data, B: b.Data, InScale: is.Data}
		if len(is.Data) == 1 {
			l.InScale = slices.Repeat(is.Data, l.In)
		}
		for j, v := range w.Data {
			if v != math.Trunc(v) || v < -128 || v > 127 {
				return nil, fmt.Errorf("quantize: layer %d weight %d is %v, not an int8", i, j, v)
			}
			l.W[j] = int8(v)
		}
		for j, v := range l.InScale {
			if !(v > 0) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("quantize: layer %d input scale %d is %v, want positive", i, j, v)
			}
		}
		m.Layers = append(m.Layers, l)
	}
	if len(m.Layers) == 0 {
		return nil, fmt.Errorf("quantize: no layers.0.weight tensor")
	}
	if m.Layers[len(m.Layers)-1].Out != 1 {
		return nil, fmt.Errorf("quantize: last layer has %d outputs, want 1", m.Layers[len(m.Layers)-1].Out)
	}
	if len(byName) != 4*len(m.Layers) {
		return nil, fmt.Errorf("quantize: %d tensors for %d layers, want 4 per layer", len(byName), len(m.Layers))
	}
	return m, nil
}

// Report compares the INT8 model with the float one on labelled data.
type Report struct {
	Float64Bytes  int     `json:"float64_bytes"` // parameters as stored by the float model
	Float32Bytes  int     `json:"float32_bytes"` // the same parameters as float32
	Int8Bytes     int     `json:"int8_bytes"`    // int8 weights plus float32 scales and biases
	FloatAccuracy float64 `json:"float_accuracy"`
	Int8Accuracy  float64 `json:"int8_accuracy"`
	AccuracyDelta float64 `json:"accuracy_delta"` // int8 − float
	Agreement     float64 `json:"agreement"`      // share of rows with the same decision
	MaxAbsDiff    float64 `json:"max_abs_diff"`   // largest |P_float − P_int8|
}

// Compare scores x with both models and decides positive at threshold.
func Compare(net *model.Network, q *Model, x *mat.Dense, y []float64, threshold float64) (*Report, error) {
	pf, err := net.PredictProba(x)
	if err != nil {
		return nil, err
	}
	pq, err := q.PredictProba(x)
	if err != nil {
		return nil, err
	}
	if len(y) != len(pf) || len(y) == 0 {
		return nil, fmt.Errorf("quantize: %d labels for %d rows", len(y), len(pf))
	}
	r := &Report{}
	for _, t := range net.Tensors() {
		r.Float64Bytes += 8 * len(t.Data)
		r.Float32Bytes += 4 * len(t.Data)
	}
	for _, t := range q.Tensors() {
		if t.DType == model.I8 {
			r.Int8Bytes += len(t.Data)
		} else {
			r.Int8Bytes += 4 * len(t.Data)
		}
	}
	var agree, cf, cq float64
	for i := range y {
		df, dq := pf[i] >= threshold, pq[i] >= threshold
		if df == dq {
			agree++
		}
		if df == (y[i] == 1) {
			cf++
		}
		if dq == (y[i] == 1) {
			cq++
		}
		r.MaxAbsDiff = max(r.MaxAbsDiff, math.Abs(pf[i]-pq[i]))
	}
	n := float64(len(y))
	r.Agreement, r.FloatAccuracy, r.Int8Accuracy = agree/n, cf/n, cq/n
	r.AccuracyDelta = r.Int8Accuracy - r.FloatAccuracy
	return r, nil
}

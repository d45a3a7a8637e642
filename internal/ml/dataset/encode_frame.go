package dataset

import (
	"fmt"
	"math"

	"github.com/gauntlet-ml/gauntlet/internal/ml/matrix"
)

// FitEncoderFrame is FitEncoder on rows idx of f (all rows when idx is
// nil), without converting the frame. Means and deviations are computed
// from the stored values, which for a float32 column may differ from
// FitEncoder's in the eighth significant digit.
func FitEncoderFrame(f *Frame, idx []int, opts EncoderOptions) (*Encoder, error) {
	if opts.Unseen == "" {
		opts.Unseen = UnseenZero
	}
	if opts.Unseen != UnseenZero && opts.Unseen != UnseenOther {
		return nil, fmt.Errorf("dataset: fit encoder: unknown unseen policy %q", opts.Unseen)
	}
	n, row := rowsOf(f, idx)
	e := &Encoder{Unseen: opts.Unseen}
	coded := func(name string, c *CodedColumn, sensitive bool) CategoricalFeature {
		perCode := make([]int, len(c.Values)+1)
		for i := range n {
			perCode[c.Codes[row(i)]]++
		}
		counts := map[string]int{}
		for k, v := range c.Values {
			if perCode[k+1] > 0 {
				counts[v] = perCode[k+1]
			}
		}
		return vocabulary(name, counts, opts, sensitive)
	}
	for _, c := range f.Schema.Columns {
		switch {
		case c.Kind == Numeric:
			col := f.Numeric[c.Name]
			e.Numeric = append(e.Numeric, fitNumericAt(c.Name, n, func(i int) float64 { return col.At(row(i)) }))
		case c.Kind == Categorical:
			e.Categorical = append(e.Categorical, coded(c.Name, f.Categorical[c.Name], false))
		case c.Kind == Sensitive && opts.IncludeSensitive:
			e.Categorical = append(e.Categorical, coded(c.Name, f.Sensitive[c.Name], true))
		}
	}
	if e.Width() == 0 {
		return nil, &Error{File: f.Source, Msg: "no feature columns"}
	}
	return e, nil
}

// TransformFrame encodes rows idx of f (all rows when idx is nil) into a
// float32 matrix, as Transform encodes a Dataset.
func (e *Encoder) TransformFrame(f *Frame, idx []int) (*matrix.Dense32, error) {
	n, row := rowsOf(f, idx)
	w := e.Width()
	if n == 0 || w == 0 {
		return nil, &Error{File: f.Source, Msg: "nothing to encode"}
	}
	x := matrix.NewDense32(n, w, nil)
	data := x.Raw()
	col := 0
	for _, nf := range e.Numeric {
		c, ok := f.Numeric[nf.Name]
		if !ok {
			return nil, &Error{File: f.Source, Column: nf.Name, Msg: "numeric feature column is missing from the data"}
		}
		mean, std := nf.Mean, nf.Std
		switch {
		case idx == nil && c.F32 != nil:
			for i, v := range c.F32 {
				if v == v { // not NaN
					data[i*w+col] = float32((float64(v) - mean) / std)
				}
			}
		default:
			for i := range n {
				if v := c.At(row(i)); !math.IsNaN(v) {
					data[i*w+col] = float32((v - mean) / std)
				}
			}
		}
		col++
	}
	for _, cf := range e.Categorical {
		src := f.Categorical
		if cf.Sensitive {
			src = f.Sensitive
		}
		c, ok := src[cf.Name]
		if !ok {
			return nil, &Error{File: f.Source, Column: cf.Name, Msg: "categorical feature column is missing from the data"}
		}
		index := make(map[string]int, len(cf.Values))
		for i, s := range cf.Values {
			index[s] = i
		}
		other, hasOther := index[OtherCategory]
		// feature[k] is the indicator of code k; -1 sets none.
		feature := make([]int, len(c.Values)+1)
		feature[0] = -1
		for k, s := range c.Values {
			i, ok := index[s]
			switch {
			case ok:
			case hasOther:
				i = other
			default:
				i = -1
			}
			feature[k+1] = i
		}
		if idx == nil {
			for i, k := range c.Codes {
				if j := feature[k]; j >= 0 {
					data[i*w+col+j] = 1
				}
			}
		} else {
			for i, r := range idx {
				if j := feature[c.Codes[r]]; j >= 0 {
					data[i*w+col+j] = 1
				}
			}
		}
		col += len(cf.Values)
	}
	return x, nil
}

// rowsOf returns how many rows idx selects and the frame row of the i-th.
func rowsOf(f *Frame, idx []int) (int, func(int) int) {
	if idx == nil {
		return f.Len(), func(i int) int { return i }
	}
	return len(idx), func(i int) int { return idx[i] }
}

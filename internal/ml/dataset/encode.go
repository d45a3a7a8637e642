package dataset

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// Unseen says how the encoder treats a category it did not see in training.
type Unseen string

const (
	// UnseenZero encodes an unseen (or missing) category as all zeros.
	UnseenZero Unseen = "zero"
	// UnseenOther adds a "<other>" indicator per column that takes unseen
	// categories and categories rarer than MinFrequency in training.
	UnseenOther Unseen = "other"
)

// OtherCategory is the vocabulary entry for unseen and rare categories.
const OtherCategory = "<other>"

// EncoderOptions configures FitEncoder.
type EncoderOptions struct {
	// IncludeSensitive uses the sensitive columns as categorical features.
	IncludeSensitive bool
	// Unseen defaults to UnseenZero.
	Unseen Unseen
	// MinFrequency folds categories seen in fewer training rows into
	// OtherCategory (only with UnseenOther).
	MinFrequency int
}

// NumericFeature holds what the encoder learnt about a numeric column.
type NumericFeature struct {
	Name string  `json:"name"`
	Mean float64 `json:"mean"` // also the imputed value for missing entries
	Std  float64 `json:"std"`  // population std; 1 when the column is constant
	// Imputed counts the training rows whose missing value took the mean.
	Imputed int `json:"imputed"`
}

// CategoricalFeature holds a categorical column's vocabulary, one indicator
// per entry, in order.
type CategoricalFeature struct {
	Name      string   `json:"name"`
	Values    []string `json:"values"`
	Sensitive bool     `json:"sensitive,omitempty"`
}

// Encoder maps a Dataset to a dense matrix: standardised numeric columns
// first, then one-hot categorical columns. Its fields are the preprocessing
// recorded in a model manifest.
type Encoder struct {
	Numeric     []NumericFeature     `json:"numeric"`
	Categorical []CategoricalFeature `json:"categorical"`
	Unseen      Unseen               `json:"unseen"`
}

// FitEncoder learns means, standard deviations and vocabularies from train.
func FitEncoder(train *Dataset, opts EncoderOptions) (*Encoder, error) {
	if opts.Unseen == "" {
		opts.Unseen = UnseenZero
	}
	if opts.Unseen != UnseenZero && opts.Unseen != UnseenOther {
		return nil, fmt.Errorf("dataset: fit encoder: unknown unseen policy %q", opts.Unseen)
	}
	e := &Encoder{Unseen: opts.Unseen}
	for _, c := range train.Schema.Columns {
		switch {
		case c.Kind == Numeric:
			e.Numeric = append(e.Numeric, fitNumeric(c.Name, train.Numeric[c.Name]))
		case c.Kind == Categorical:
			e.Categorical = append(e.Categorical, fitCategorical(c.Name, train.Categorical[c.Name], opts, false))
		case c.Kind == Sensitive && opts.IncludeSensitive:
			e.Categorical = append(e.Categorical, fitCategorical(c.Name, train.Sensitive[c.Name], opts, true))
		}
	}
	if e.Width() == 0 {
		return nil, &Error{File: train.Source, Msg: "no feature columns"}
	}
	return e, nil
}

func fitNumeric(name string, v []float64) NumericFeature {
	return fitNumericAt(name, len(v), func(i int) float64 { return v[i] })
}

// fitNumericAt learns the mean and std of the n values at(0), …, at(n-1).
func fitNumericAt(name string, n int, at func(int) float64) NumericFeature {
	f := NumericFeature{Name: name}
	var sum float64
	present := 0
	for i := range n {
		x := at(i)
		if math.IsNaN(x) {
			f.Imputed++
			continue
		}
		sum += x
		present++
	}
	if present > 0 {
		f.Mean = sum / float64(present)
	}
	var ss float64
	for i := range n {
		if x := at(i); !math.IsNaN(x) {
			ss += (x - f.Mean) * (x - f.Mean)
		}
	}
	n = present
	f.Std = 1
	if n > 0 && ss > 0 {
		f.Std = math.Sqrt(ss / float64(n))
	}
	return f
}

func fitCategorical(name string, v []string, opts EncoderOptions, sensitive bool) CategoricalFeature {
	counts := map[string]int{}
	for _, s := range v {
		if s != "" {
			counts[s]++
		}
	}
	return vocabulary(name, counts, opts, sensitive)
}

func vocabulary(name string, counts map[string]int, opts EncoderOptions, sensitive bool) CategoricalFeature {
	f := CategoricalFeature{Name: name, Sensitive: sensitive}
	for s, n := range counts {
		if opts.Unseen == UnseenOther && n < opts.MinFrequency {
			continue
		}
		f.Values = append(f.Values, s)
	}
	slices.Sort(f.Values)
	if opts.Unseen == UnseenOther {
		f.Values = append(f.Values, OtherCategory)
	}
	return f
}

// Width is the number of encoded features.
func (e *Encoder) Width() int {
	w := len(e.Numeric)
	for _, c := range e.Categorical {
		w += len(c.Values)
	}
	return w
}

// FeatureNames names the encoded columns: "age", "workclass=Private", …
func (e *Encoder) FeatureNames() []string {
	names := make([]string, 0, e.Width())
	for _, f := range e.Numeric {
		names = append(names, f.Name)
	}
	for _, c := range e.Categorical {
		for _, v := range c.Values {
			names = append(names, c.Name+"="+v)
		}
	}
	return names
}

// Transform encodes d with what was learnt in training. Missing numeric values
// take the training mean (0 after standardisation); missing categories encode
// as all zeros.
func (e *Encoder) Transform(d *Dataset) (*mat.Dense, error) {
	n := d.Len()
	w := e.Width()
	if n == 0 || w == 0 {
		return nil, &Error{File: d.Source, Msg: "nothing to encode"}
	}
	x := mat.NewDense(n, w, nil)
	raw := x.RawMatrix()
	col := 0
	for _, f := range e.Numeric {
		v, ok := d.Numeric[f.Name]
		if !ok {
			return nil, &Error{File: d.Source, Column: f.Name, Msg: "numeric feature column is missing from the data"}
		}
		for r, val := range v {
			if !math.IsNaN(val) {
				raw.Data[r*raw.Stride+col] = (val - f.Mean) / f.Std
			}
		}
		col++
	}
	for _, c := range e.Categorical {
		src := d.Categorical
		if c.Sensitive {
			src = d.Sensitive
		}
		v, ok := src[c.Name]
		if !ok {
			return nil, &Error{File: d.Source, Column: c.Name, Msg: "categorical feature column is missing from the data"}
		}
		index := make(map[string]int, len(c.Values))
		for i, s := range c.Values {
			index[s] = i
		}
		other, hasOther := index[OtherCategory]
		for r, s := range v {
			if s == "" {
				continue
			}
			i, ok := index[s]
			if !ok {
				if !hasOther {
					continue
				}
				i = other
			}
			raw.Data[r*raw.Stride+col+i] = 1
		}
		col += len(c.Values)
	}
	return x, nil
}

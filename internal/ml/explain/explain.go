// Package explain says why a model decides as it does: global feature
// importance (permutation importance on held-out data, coefficients of the
// linear model) and per-record attributions on the logit scale (exact for
// logistic regression, sampled Shapley values for any scorer). Features are
// the data's columns: the indicators of a categorical column are one player.
package explain

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
	"gonum.org/v1/gonum/mat"
)

// group is one column's encoded positions.
type group struct {
	name       string
	start, end int
}

func groups(enc *dataset.Encoder) []group {
	var gs []group
	col := 0
	for _, f := range enc.Numeric {
		gs = append(gs, group{f.Name, col, col + 1})
		col++
	}
	for _, c := range enc.Categorical {
		gs = append(gs, group{c.Name, col, col + len(c.Values)})
		col += len(c.Values)
	}
	return gs
}

// Model is what explanations need: a scorer, its preprocessing and a
// background sample of encoded rows that stands for "a typical input".
// For builds one for a model of any format.
type Model struct {
	Scorer     model.Scorer
	Encoder    *dataset.Encoder
	Background *mat.Dense
	// Net, when a float logistic regression, gives exact attributions.
	Net *model.Network
	// Samples is the number of sampled permutations per record (default 500).
	Samples int
	Seed    uint64
}

// For explains m, a model of any format, against background rows encoded
// as m.Encode encodes: exactly when m is a float logistic regression
// (m.Linear), by sampled Shapley values otherwise.
func For(m scoring.Model, background *mat.Dense) *Model {
	return &Model{Scorer: m, Encoder: m.Encoder(), Background: background, Net: m.Linear()}
}

// Attribution is one column's contribution to a record's logit relative to
// the background: the contributions sum to logit(record) − Base.
type Attribution struct {
	Feature string  `json:"feature"`
	Value   float64 `json:"value"`
	// Base is the background's logit: the model's logit at the background
	// mean for the linear model, the mean background logit otherwise.
	Base   float64 `json:"base"`
	Method string  `json:"method"` // "linear" or "sampling_shapley"
}

// Attribute explains one raw record (column name → value, numbers as JSON
// numbers or strings; absent columns are missing values), as the model
// server's POST /v1/explain will.
func Attribute(m *Model, record map[string]any) ([]Attribution, error) {
	x, err := encodeRecord(m.Encoder, record)
	if err != nil {
		return nil, err
	}
	return m.AttributeRow(x)
}

func encodeRecord(enc *dataset.Encoder, record map[string]any) ([]float64, error) {
	d := &dataset.Dataset{Source: "record", Y: []float64{0}, Numeric: map[string][]float64{},
		Categorical: map[string][]string{}, Sensitive: map[string][]string{}}
	for _, f := range enc.Numeric {
		v := math.NaN()
		switch x := record[f.Name].(type) {
		case nil:
		case float64:
			v = x
		case int:
			v = float64(x)
		case json.Number:
			p, err := x.Float64()
			if err != nil {
				return nil, fmt.Errorf("explain: record field %q: %w", f.Name, err)
			}
			v = p
		case string:
			if s := strings.TrimSpace(x); s != "" && !slices.Contains(dataset.DefaultMissing, s) {
				p, err := strconv.ParseFloat(s, 64)
				if err != nil {
					return nil, fmt.Errorf("explain: record field %q: %q is not a number", f.Name, x)
				}
				v = p
			}
		default:
			return nil, fmt.Errorf("explain: record field %q: want a number, got %T", f.Name, x)
		}
		if math.IsInf(v, 0) {
			return nil, fmt.Errorf("explain: record field %q is infinite", f.Name)
		}
		d.Numeric[f.Name] = []float64{v}
	}
	for _, c := range enc.Categorical {
		var s string
		switch x := record[c.Name].(type) {
		case nil:
		case string:
			s = strings.TrimSpace(x)
		case float64:
			s = strconv.FormatFloat(x, 'g', -1, 64)
		default:
			return nil, fmt.Errorf("explain: record field %q: want a string, got %T", c.Name, x)
		}
		dst := d.Categorical
		if c.Sensitive {
			dst = d.Sensitive
		}
		dst[c.Name] = []string{s}
	}
	x, err := enc.Transform(d)
	if err != nil {
		return nil, fmt.Errorf("explain: encode record: %w", err)
	}
	return x.RawRowView(0), nil
}

// AttributeRow explains one encoded row.
func (m *Model) AttributeRow(x []float64) ([]Attribution, error) {
	if m.Encoder == nil || m.Background == nil {
		return nil, fmt.Errorf("explain: model needs an encoder and background rows")
	}
	if len(x) != m.Encoder.Width() {
		return nil, fmt.Errorf("explain: row has %d features, the encoder %d", len(x), m.Encoder.Width())
	}
	if m.Net != nil && m.Net.Kind == model.LogReg && len(m.Net.Layers) == 1 {
		return Linear(m.Net, m.Encoder, m.Background, x)
	}
	return m.Shapley(x)
}

// Linear gives the exact attributions of logistic regression: for each
// column, Σ wₖ·(xₖ − background meanₖ) over its encoded features.
func Linear(net *model.Network, enc *dataset.Encoder, background *mat.Dense, x []float64) ([]Attribution, error) {
	if net.Kind != model.LogReg || len(net.Layers) != 1 {
		return nil, fmt.Errorf("explain: exact attributions need logistic regression, got %s", net.Kind)
	}
	l := net.Layers[0]
	r, c := background.Dims()
	if c != l.In || len(x) != l.In || r == 0 {
		return nil, fmt.Errorf("explain: %d background rows of %d features for a model of %d", r, c, l.In)
	}
	mean := make([]float64, c)
	for i := range r {
		for j, v := range background.RawRowView(i) {
			mean[j] += v / float64(r)
		}
	}
	base := l.B[0]
	for j, w := range l.W {
		base += w * mean[j]
	}
	var out []Attribution
	for _, g := range groups(enc) {
		var v float64
		for k := g.start; k < g.end; k++ {
			v += l.W[k] * (x[k] - mean[k])
		}
		out = append(out, Attribution{Feature: g.name, Value: v, Base: base, Method: "linear"})
	}
	return out, nil
}

func logit(p float64) float64 {
	p = math.Min(math.Max(p, 1e-15), 1-1e-15)
	return math.Log(p / (1 - p))
}

// Shapley estimates Shapley values of the logit by permutation sampling
// (Štrumbelj & Kononenko 2014): each sample draws a background row and an
// order of the columns, switches the columns one by one from the background
// row to x, and credits each with the change of the logit. The estimate is
// unbiased for the interventional Shapley value over the background and its
// contributions sum exactly to logit(x) − the mean logit of the drawn rows.
func (m *Model) Shapley(x []float64) ([]Attribution, error) {
	gs := groups(m.Encoder)
	r, c := m.Background.Dims()
	if c != len(x) || r == 0 {
		return nil, fmt.Errorf("explain: %d background rows of %d features for a row of %d", r, c, len(x))
	}
	samples := m.Samples
	if samples <= 0 {
		samples = 500
	}
	rng := rand.New(rand.NewPCG(m.Seed, 0x5ba9))
	phi := make([]float64, len(gs))
	var base float64
	batch := mat.NewDense(len(gs)+1, c, nil)
	for range samples {
		z := m.Background.RawRowView(rng.IntN(r))
		order := rng.Perm(len(gs))
		cur := slices.Clone(z)
		batch.SetRow(0, cur)
		for i, gi := range order {
			g := gs[gi]
			copy(cur[g.start:g.end], x[g.start:g.end])
			batch.SetRow(i+1, cur)
		}
		p, err := m.Scorer.PredictProba(batch)
		if err != nil {
			return nil, fmt.Errorf("explain: score: %w", err)
		}
		prev := logit(p[0])
		base += prev
		for i, gi := range order {
			v := logit(p[i+1])
			phi[gi] += v - prev
			prev = v
		}
	}
	out := make([]Attribution, len(gs))
	for i, g := range gs {
		out[i] = Attribution{Feature: g.name, Value: phi[i] / float64(samples), Base: base / float64(samples), Method: "sampling_shapley"}
	}
	return out, nil
}

// Coefficient is a logistic regression weight on an encoded feature, in the
// standardised space the model was fitted in: the change of the logit per
// standard deviation of a numeric column, or for a category against rows
// with the column missing.
type Coefficient struct {
	Feature string  `json:"feature"`
	Weight  float64 `json:"weight"`
}

// Coefficients lists a linear model's weights by encoded feature name.
func Coefficients(net *model.Network, enc *dataset.Encoder) ([]Coefficient, error) {
	if net.Kind != model.LogReg || len(net.Layers) != 1 {
		return nil, fmt.Errorf("explain: coefficients need logistic regression, got %s", net.Kind)
	}
	names := enc.FeatureNames()
	if len(names) != len(net.Layers[0].W) {
		return nil, fmt.Errorf("explain: %d encoded features for %d weights", len(names), len(net.Layers[0].W))
	}
	out := make([]Coefficient, len(names))
	for i, n := range names {
		out[i] = Coefficient{Feature: n, Weight: net.Layers[0].W[i]}
	}
	return out, nil
}

// Importance is a column's permutation importance: the drop of ROC AUC when
// the column is shuffled, mean and sample standard deviation over repeats.
type Importance struct {
	Feature string    `json:"feature"`
	Mean    float64   `json:"mean"`
	Std     float64   `json:"std"`
	Drops   []float64 `json:"drops"`
}

// ImportanceOf is the permutation importance of each input column of m, a
// model of any format, on held-out data d: each column is shuffled in turn,
// repeats times with a seeded generator, and the ROC AUC lost is measured.
// Shuffling the raw column moves a categorical column's indicators together.
func ImportanceOf(m scoring.Model, d *dataset.Dataset, repeats int, seed uint64) (base float64, imp []Importance, err error) {
	if repeats <= 0 {
		return 0, nil, fmt.Errorf("explain: repeats must be positive, got %d", repeats)
	}
	auc := func(d *dataset.Dataset) (float64, error) {
		p, err := scoring.ScoreDataset(m, d)
		if err != nil {
			return 0, err
		}
		return evaluate.ROCAUCScore(d.Y, p, nil)
	}
	if base, err = auc(d); err != nil {
		return 0, nil, fmt.Errorf("explain: baseline AUC: %w", err)
	}
	rng := rand.New(rand.NewPCG(seed, 0x9e37))
	for _, g := range groups(m.Encoder()) {
		im := Importance{Feature: g.name}
		for range repeats {
			perm := rng.Perm(d.Len())
			shuffled := *d
			shuffled.Numeric, shuffled.Categorical, shuffled.Sensitive = maps(d.Numeric), maps(d.Categorical), maps(d.Sensitive)
			if col, ok := d.Numeric[g.name]; ok {
				shuffled.Numeric[g.name] = permuted(col, perm)
			} else if col, ok := d.Categorical[g.name]; ok {
				shuffled.Categorical[g.name] = permuted(col, perm)
			} else if col, ok := d.Sensitive[g.name]; ok {
				shuffled.Sensitive[g.name] = permuted(col, perm)
			}
			a, err := auc(&shuffled)
			if err != nil {
				return 0, nil, fmt.Errorf("explain: AUC with %q shuffled: %w", g.name, err)
			}
			im.Drops = append(im.Drops, base-a)
		}
		for _, v := range im.Drops {
			im.Mean += v / float64(repeats)
		}
		if repeats > 1 {
			var ss float64
			for _, v := range im.Drops {
				ss += (v - im.Mean) * (v - im.Mean)
			}
			im.Std = math.Sqrt(ss / float64(repeats-1))
		}
		imp = append(imp, im)
	}
	slices.SortStableFunc(imp, func(a, b Importance) int {
		switch {
		case a.Mean > b.Mean:
			return -1
		case a.Mean < b.Mean:
			return 1
		}
		return 0
	})
	return base, imp, nil
}

func maps[T any](m map[string][]T) map[string][]T {
	out := make(map[string][]T, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func permuted[T any](v []T, perm []int) []T {
	out := make([]T, len(v))
	for i, p := range perm {
		out[i] = v[p]
	}
	return out
}

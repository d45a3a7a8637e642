package serving

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"

	"gonum.org/v1/gonum/mat"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/explain"
	"github.com/gauntlet-ml/gauntlet/internal/ml/fairness"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/predict"
)

// NegativeLabelParam is the key of modelfile.Lineage.Params naming the label
// value of the negative class; a manifest keeps only the positive values, so
// without it predictions answer "not <positive>".
const NegativeLabelParam = "negative_label"

// Ref names a model a Source points at. Digest identifies the content (the
// artifact digest in a registry, the model digest for a directory): a poll
// that sees another digest loads and swaps.
type Ref struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Digest  string `json:"digest"`
	Dir     string `json:"dir,omitempty"`
}

// Model is a loaded, verified model ready to serve. It is immutable once
// built, so requests in flight keep using the one they started with while a
// newer one is swapped in.
type Model struct {
	Ref Ref
	// Digest is the model artifact's own digest (modelfile), reported in
	// every response.
	Digest   string
	Artifact *modelfile.Artifact

	scorer    model.Scorer
	enc       *predict.RowEncoder
	policy    *predict.Policy
	threshold float64
	label     string

	// The explainer is built with the model, so a swap replaces both at
	// once; explainErr says why this model cannot be explained.
	explainer  *explain.Model
	explainErr error

	fields     []field
	fieldIndex map[string]int
	numSlots   int
	strSlots   int
	nEncNum    int // the first nEncNum number slots are the encoder's
	nEncCat    int // the first nEncCat string slots are the encoder's
	groupSlots []int

	header   []byte // response prefix, up to the predictions array
	posLabel []byte // JSON-quoted
	negLabel []byte
	pool     sync.Pool
}

type fieldKind uint8

const (
	fieldNumber fieldKind = iota
	fieldString
	fieldIgnored
)

// field is a schema column a record may carry, and the slot of the batch
// its value goes to.
type field struct {
	name     string
	kind     fieldKind
	slot     int
	required bool
}

// LoadModel loads and verifies the model in ref.Dir.
func LoadModel(ref Ref, negativeLabel string) (*Model, error) {
	a, err := modelfile.Load(ref.Dir)
	if err != nil {
		return nil, err
	}
	return newModel(ref, a, negativeLabel)
}

func newModel(ref Ref, a *modelfile.Artifact, negativeLabel string) (*Model, error) {
	mf := a.Manifest
	s, err := a.Scorer()
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", a.Dir, err)
	}
	p, err := predict.PolicyOf(mf)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", a.Dir, err)
	}
	if ref.Name == "" {
		ref.Name = mf.Schema.Label
	}
	m := &Model{
		Ref: ref, Digest: a.Digest, Artifact: a,
		scorer: s, enc: predict.NewRowEncoder(mf.Preprocessing), policy: p,
		threshold: mf.Threshold, label: mf.Schema.Label,
		fieldIndex: map[string]int{},
	}
	kinds := map[string]dataset.Kind{}
	for _, c := range mf.Schema.Columns {
		kinds[c.Name] = c.Kind
	}
	add := func(name string, kind fieldKind, slot int, required bool) {
		m.fieldIndex[name] = len(m.fields)
		m.fields = append(m.fields, field{name: name, kind: kind, slot: slot, required: required})
	}
	// The encoder's features take the first slots in its order, so a row
	// is encoded straight from the slots.
	for _, f := range mf.Preprocessing.Numeric {
		add(f.Name, fieldNumber, m.numSlots, true)
		m.numSlots++
	}
	for _, f := range mf.Preprocessing.Categorical {
		add(f.Name, fieldString, m.strSlots, true)
		m.strSlots++
	}
	m.nEncNum, m.nEncCat = m.numSlots, m.strSlots
	if p != nil {
		for _, g := range p.Features {
			k := kinds[g]
			if k != dataset.Categorical && k != dataset.Sensitive {
				return nil, fmt.Errorf("model %s: threshold policy groups by %q, not a categorical or sensitive column", a.Dir, g)
			}
			if _, ok := m.fieldIndex[g]; !ok {
				add(g, fieldString, m.strSlots, true)
				m.strSlots++
			}
			m.groupSlots = append(m.groupSlots, m.fields[m.fieldIndex[g]].slot)
		}
	}
	// Other columns are accepted and kept for the sample log (sensitive
	// ones matter to drift and fairness monitoring) but not required.
	for _, c := range mf.Schema.Columns {
		if _, ok := m.fieldIndex[c.Name]; ok {
			continue
		}
		switch c.Kind {
		case dataset.Numeric:
			add(c.Name, fieldNumber, m.numSlots, false)
			m.numSlots++
		case dataset.Categorical, dataset.Sensitive:
			add(c.Name, fieldString, m.strSlots, false)
			m.strSlots++
		case dataset.Ignored:
			add(c.Name, fieldIgnored, 0, false)
		}
	}
	if len(mf.Schema.Positive) == 0 {
		return nil, errors.New("model: schema has no positive label")
	}
	pos := mf.Schema.Positive[0]
	neg := negativeLabel
	if neg == "" {
		if v, ok := mf.Lineage.Params[NegativeLabelParam].(string); ok && v != "" {
			neg = v
		} else {
			neg = "not " + pos
		}
	}
	m.posLabel = strconv.AppendQuote(nil, pos)
	m.negLabel = strconv.AppendQuote(nil, neg)
	h := []byte(`{"model":{"name":`)
	h = strconv.AppendQuote(h, ref.Name)
	h = append(h, `,"version":`...)
	h = strconv.AppendQuote(h, ref.Version)
	h = append(h, `,"digest":`...)
	h = strconv.AppendQuote(h, a.Digest)
	m.header = append(h, `},"predictions":[`...)
	m.pool.New = func() any { return &batch{seen: make([]bool, len(m.fields))} }
	m.explainer, m.explainErr = newExplainer(a, s)
	return m, nil
}

// batch holds one request's decoded records and the buffers to score them;
// batches are pooled per model, so a steady load allocates none.
type batch struct {
	n      int
	nums   []float64 // n × numSlots
	strs   [][]byte  // n × strSlots
	seen   []bool
	x      []float64 // n × width
	scores []float64
	out    []byte
	group  []byte
}

func (m *Model) getBatch() *batch {
	b := m.pool.Get().(*batch)
	b.n = 0
	b.out = b.out[:0]
	return b
}

func (m *Model) putBatch(b *batch) {
	// Strings alias the request body; dropping them lets it be collected.
	clear(b.strs)
	if cap(b.nums) > 1<<20 {
		return
	}
	m.pool.Put(b)
}

// grow makes room for record b.n and returns its slots.
func (b *batch) grow(m *Model) ([]float64, [][]byte) {
	ni, si := b.n*m.numSlots, b.n*m.strSlots
	b.nums = growTo(b.nums, ni+m.numSlots)
	if need := si + m.strSlots; cap(b.strs) < need {
		b.strs = append(b.strs[:cap(b.strs)], make([][]byte, need-cap(b.strs))...)
	}
	b.strs = b.strs[:si+m.strSlots]
	return b.nums[ni : ni+m.numSlots], b.strs[si : si+m.strSlots]
}

func growTo(s []float64, n int) []float64 {
	if cap(s) < n {
		s = append(s[:cap(s)], make([]float64, n-cap(s))...)
	}
	return s[:n]
}

// score fills b.scores for the decoded records, encoding them into one matrix
// so the scorer sees the whole batch at once.
func (m *Model) score(b *batch) error {
	w := m.enc.Width()
	b.x = growTo(b.x, b.n*w)
	for r := range b.n {
		nums := b.nums[r*m.numSlots : r*m.numSlots+m.nEncNum]
		strs := b.strs[r*m.strSlots : r*m.strSlots+m.nEncCat]
		m.enc.Encode(b.x[r*w:(r+1)*w], nums, strs)
	}
	s, err := m.scorer.PredictProba(mat.NewDense(b.n, w, b.x))
	if err != nil {
		return err
	}
	b.scores = s
	return nil
}

// positive decides record r of b: its group's threshold under a fairness
// policy, else the manifest's.
func (m *Model) positive(b *batch, r int) bool {
	th := m.threshold
	if m.policy != nil {
		strs := b.strs[r*m.strSlots : (r+1)*m.strSlots]
		g := b.group[:0]
		for i, slot := range m.groupSlots {
			if i > 0 {
				g = append(g, fairness.IntersectionSep...)
			}
			g = append(g, strs[slot]...)
		}
		b.group = g
		th = m.policy.Threshold(string(g))
	}
	return b.scores[r] >= th
}

// features returns record r of b by field name, for the sample log.
func (m *Model) features(b *batch, r int) map[string]any {
	out := make(map[string]any, len(m.fields))
	nums := b.nums[r*m.numSlots : (r+1)*m.numSlots]
	strs := b.strs[r*m.strSlots : (r+1)*m.strSlots]
	for _, f := range m.fields {
		switch f.kind {
		case fieldNumber:
			if v := nums[f.slot]; !math.IsNaN(v) {
				out[f.name] = v
			} else {
				out[f.name] = nil
			}
		case fieldString:
			if s := strs[f.slot]; len(s) > 0 {
				out[f.name] = string(s)
			} else {
				out[f.name] = nil
			}
		}
	}
	return out
}

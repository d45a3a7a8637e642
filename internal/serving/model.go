package serving

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/mat"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/explain"
	"github.com/gauntlet-ml/gauntlet/internal/ml/fairness"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/predict"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

// NegativeLabelParam is the key of modelfile.Lineage.Params naming the label
// value of the negative class; a manifest keeps only the positive values, so
// without it predictions answer "not <positive>".
const NegativeLabelParam = scoring.NegativeLabelParam

// Ref names a model a Source points at. Digest identifies the content (the
// artifact digest in a registry, the model digest for a directory): a poll
// that sees another digest loads and swaps.
type Ref struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Digest  string `json:"digest"`
	Dir     string `json:"dir,omitempty"`
}

// Model is a loaded, verified model ready to serve, of any format package
// scoring opens. It is immutable once built, so requests in flight keep
// using the one they started with while a newer one is swapped in; the one
// swapped out is closed (its ONNX Runtime session freed) when the last of
// them is done.
type Model struct {
	Ref Ref
	// Digest is the model directory's own digest (of its SHA256SUMS),
	// reported in every response.
	Digest  string
	Scoring scoring.Model

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
	comb     *combiner

	// refs counts the requests using the model; retired is set once it is
	// swapped out, and the last of refs and retire closes it.
	refs    atomic.Int64
	retired atomic.Bool
	closed  sync.Once
}

type fieldKind uint8

const (
	fieldNumber fieldKind = iota
	fieldString
	fieldIgnored
)

// field is a schema column a record may carry, and the slot of the batch
// its value goes to. Required and nullable follow the model's signature
// (MLflow's semantics): a required field must be present, and only a
// nullable one may be null.
type field struct {
	name     string
	kind     fieldKind
	slot     int
	required bool
	nullable bool
}

// LoadModel opens and verifies the model in ref.Dir, of either format.
func LoadModel(ref Ref, negativeLabel string, o scoring.Options) (*Model, error) {
	sm, err := scoring.Open(ref.Dir, o)
	if err != nil {
		return nil, err
	}
	m, err := newModel(ref, sm, negativeLabel)
	if err != nil {
		sm.Close()
		return nil, err
	}
	return m, nil
}

func newModel(ref Ref, sm scoring.Model, negativeLabel string) (*Model, error) {
	info := sm.Info()
	enc := sm.Encoder()
	// The threshold policy a fairness mitigation records lives in the
	// lineage, which both formats keep alike.
	p, err := predict.PolicyOf(&modelfile.Manifest{Lineage: info.Lineage})
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", info.Dir, err)
	}
	if ref.Name == "" {
		ref.Name = info.Schema.Label
	}
	m := &Model{
		Ref: ref, Digest: info.Digest, Scoring: sm,
		enc: predict.NewRowEncoder(enc), policy: p,
		threshold: info.Threshold, label: info.Schema.Label,
		fieldIndex: map[string]int{},
	}
	kinds := map[string]dataset.Kind{}
	for _, c := range info.Schema.Columns {
		kinds[c.Name] = c.Kind
	}
	inputs := map[string]scoring.Field{}
	for _, f := range info.Signature.Inputs {
		inputs[f.Name] = f
	}
	add := func(name string, kind fieldKind, slot int, required, nullable bool) {
		m.fieldIndex[name] = len(m.fields)
		m.fields = append(m.fields, field{name: name, kind: kind, slot: slot, required: required, nullable: nullable})
	}
	input := func(name, typ string) (scoring.Field, error) {
		f, ok := inputs[name]
		if !ok || f.Type != typ {
			return f, fmt.Errorf("model %s: the preprocessing reads %s column %q, which the signature %v does not list as one", info.Dir, typ, name, info.Signature.Inputs)
		}
		return f, nil
	}
	// The encoder's features take the first slots in its order, so a row
	// is encoded straight from the slots.
	for _, f := range enc.Numeric {
		in, err := input(f.Name, scoring.Double)
		if err != nil {
			return nil, err
		}
		add(f.Name, fieldNumber, m.numSlots, in.Required, in.Nullable)
		m.numSlots++
	}
	for _, f := range enc.Categorical {
		in, err := input(f.Name, scoring.String)
		if err != nil {
			return nil, err
		}
		add(f.Name, fieldString, m.strSlots, in.Required, in.Nullable)
		m.strSlots++
	}
	if len(m.fields) != len(inputs) {
		return nil, fmt.Errorf("model %s: the signature lists %d inputs, the preprocessing reads %d", info.Dir, len(inputs), len(m.fields))
	}
	m.nEncNum, m.nEncCat = m.numSlots, m.strSlots
	if p != nil {
		for _, g := range p.Features {
			k := kinds[g]
			if k != dataset.Categorical && k != dataset.Sensitive {
				return nil, fmt.Errorf("model %s: threshold policy groups by %q, not a categorical or sensitive column", info.Dir, g)
			}
			if _, ok := m.fieldIndex[g]; !ok {
				add(g, fieldString, m.strSlots, true, true)
				m.strSlots++
			}
			m.groupSlots = append(m.groupSlots, m.fields[m.fieldIndex[g]].slot)
		}
	}
	// Other columns are accepted and kept for the sample log (sensitive
	// ones matter to drift and fairness monitoring) but not required.
	for _, c := range info.Schema.Columns {
		if _, ok := m.fieldIndex[c.Name]; ok {
			continue
		}
		switch c.Kind {
		case dataset.Numeric:
			add(c.Name, fieldNumber, m.numSlots, false, true)
			m.numSlots++
		case dataset.Categorical, dataset.Sensitive:
			add(c.Name, fieldString, m.strSlots, false, true)
			m.strSlots++
		case dataset.Ignored:
			add(c.Name, fieldIgnored, 0, false, true)
		}
	}
	if len(info.Schema.Positive) == 0 {
		return nil, errors.New("model: schema has no positive label")
	}
	pos, neg := info.Labels()
	if negativeLabel != "" {
		neg = negativeLabel
	}
	m.posLabel = strconv.AppendQuote(nil, pos)
	m.negLabel = strconv.AppendQuote(nil, neg)
	h := []byte(`{"model":{"name":`)
	h = strconv.AppendQuote(h, ref.Name)
	h = append(h, `,"version":`...)
	h = strconv.AppendQuote(h, ref.Version)
	h = append(h, `,"digest":`...)
	h = strconv.AppendQuote(h, info.Digest)
	m.header = append(h, `},"predictions":[`...)
	m.pool.New = func() any { return &batch{seen: make([]bool, len(m.fields))} }
	m.explainer, m.explainErr = newExplainer(sm)
	if info.Format == scoring.ONNX {
		m.comb = newCombiner(sm, enc.Width())
	}
	return m, nil
}

// acquire takes a reference for a request; false means m was retired
// meanwhile and the caller takes the current model instead.
func (m *Model) acquire() bool {
	m.refs.Add(1)
	if m.retired.Load() {
		m.release()
		return false
	}
	return true
}

func (m *Model) release() {
	if m.refs.Add(-1) == 0 && m.retired.Load() {
		m.close()
	}
}

// retire closes m once no request uses it.
func (m *Model) retire() {
	m.retired.Store(true)
	if m.refs.Load() == 0 {
		m.close()
	}
}

func (m *Model) close() {
	m.closed.Do(func() {
		if m.comb != nil {
			m.comb.stop()
		}
		m.Scoring.Close()
	})
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
	job    combineJob
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
	if m.comb != nil {
		if b.job.done == nil {
			b.job.done = make(chan struct{}, 1)
		}
		b.job.x = b.x[:b.n*w]
		m.comb.score(&b.job)
		b.scores = b.job.scores
		return b.job.err
	}
	s, err := m.Scoring.PredictProba(mat.NewDense(b.n, w, b.x))
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

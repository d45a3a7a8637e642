// Package predict holds what turns a model artifact's raw inputs into
// decisions outside training: the per-group threshold policy a fairness
// mitigation records in the manifest, and a one-row encoder for serving that
// gives the same features as dataset.Encoder.Transform without building a
// Dataset per request.
package predict

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/fairness"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
)

// PolicyParam is the key of modelfile.Lineage.Params holding a Policy. The
// manifest is covered by SHA256SUMS, so a policy there is tamper-evident.
const PolicyParam = "fairness_policy"

// Policy is a fairness threshold policy as a manifest records it: the group
// of a row is its value of Features (joined with fairness.IntersectionSep
// when there are several), and the row is positive when its score reaches
// that group's threshold.
type Policy struct {
	Features []string                  `json:"features"`
	Policy   *fairness.ThresholdPolicy `json:"policy"`
}

// PolicyOf returns the policy m records, or nil when it records none.
func PolicyOf(m *modelfile.Manifest) (*Policy, error) {
	raw, ok := m.Lineage.Params[PolicyParam]
	if !ok {
		return nil, nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("manifest %s is malformed: %w", PolicyParam, err)
	}
	var p Policy
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("manifest %s is malformed: %w", PolicyParam, err)
	}
	if p.Policy == nil || p.Policy.Thresholds == nil || len(p.Features) == 0 {
		return nil, fmt.Errorf("manifest %s is malformed: it lacks the features or the thresholds", PolicyParam)
	}
	return &p, nil
}

// Threshold is the decision threshold of a group key; groups the policy was
// not fitted on take its fallback.
func (p *Policy) Threshold(group string) float64 {
	if th, ok := p.Policy.Thresholds[group]; ok {
		return th
	}
	return p.Policy.Fallback
}

// RowEncoder encodes one row at a time as dataset.Encoder.Transform encodes a
// data set: standardised numeric features, then one-hot categories, with
// missing values imputed the same way. It is safe for concurrent use.
type RowEncoder struct {
	numeric []dataset.NumericFeature
	cats    []rowCategory
	width   int
}

type rowCategory struct {
	index  map[string]int
	offset int
	other  int // index of OtherCategory, or -1
}

// NewRowEncoder compiles e. The vocabularies are indexed once here rather
// than per call, which is what makes per-request encoding cheap.
func NewRowEncoder(e *dataset.Encoder) *RowEncoder {
	r := &RowEncoder{numeric: e.Numeric, width: e.Width()}
	off := len(e.Numeric)
	for _, c := range e.Categorical {
		rc := rowCategory{index: make(map[string]int, len(c.Values)), offset: off, other: -1}
		for i, v := range c.Values {
			rc.index[v] = i
			if v == dataset.OtherCategory {
				rc.other = i
			}
		}
		r.cats = append(r.cats, rc)
		off += len(c.Values)
	}
	return r
}

// Width is the number of encoded features.
func (r *RowEncoder) Width() int { return r.width }

// Encode overwrites dst (of length Width) with one encoded row. nums holds
// the numeric features in the encoder's order, NaN when missing; cats the
// categorical ones in the encoder's order, empty when missing.
func (r *RowEncoder) Encode(dst []float64, nums []float64, cats [][]byte) {
	clear(dst[:r.width])
	for i, f := range r.numeric {
		if v := nums[i]; !math.IsNaN(v) {
			dst[i] = (v - f.Mean) / f.Std
		}
	}
	for i, c := range r.cats {
		s := cats[i]
		if len(s) == 0 {
			continue
		}
		// The string conversion in a map index does not allocate.
		j, ok := c.index[string(s)]
		if !ok {
			if c.other < 0 {
				continue
			}
			j = c.other
		}
		dst[c.offset+j] = 1
	}
}

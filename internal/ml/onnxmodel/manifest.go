// Package onnxmodel is Gauntlet's ONNX model format: a directory holding
// manifest.json, the graph as model.onnx and SHA256SUMS (whose own sha256 is
// the model digest), as package modelfile holds Gauntlet's own models.
//
// The manifest records the graph's signature (input and output names,
// element types, shapes), which output holds the positive class's
// probability, and the preprocessing that turns a raw record into the
// graph's input row: Gauntlet's encoder (feature order, standardisation,
// one-hot vocabularies) or none, when the graph takes the raw numeric
// columns. Load checks all of it against the graph, and every scoring call
// checks its rows and the probabilities the graph returns.
package onnxmodel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx"
)

// Format is the manifest's "format" value; Gauntlet's own manifests have
// none.
const Format = "onnx"

// FormatVersion is the manifest format this package writes and reads.
const FormatVersion = 1

// File names inside a model directory.
const (
	ManifestFile = "manifest.json"
	GraphFile    = "model.onnx"
	SumsFile     = "SHA256SUMS"
)

// Preprocessing kinds.
const (
	// Encode standardises numeric columns and one-hot encodes categorical
	// ones as Encoder says, as for Gauntlet's own models.
	Encode = "encoder"
	// Raw feeds the numeric columns Features names, unchanged and in that
	// order: the graph does its own preprocessing. Missing values are
	// refused, since nothing imputes them.
	Raw = "none"
)

// Manifest describes an ONNX model directory.
type Manifest struct {
	FormatVersion int    `json:"format_version"`
	Format        string `json:"format"`
	// Quantization is "" for the graph as exported, "int8" after quantize.
	Quantization  string             `json:"quantization,omitempty"`
	Signature     Signature          `json:"signature"`
	Output        Output             `json:"output"`
	Schema        dataset.Schema     `json:"schema"`
	Preprocessing Preprocessing      `json:"preprocessing"`
	Features      []string           `json:"features"` // columns of the graph's input, in order
	Threshold     float64            `json:"threshold"`
	Metrics       map[string]float64 `json:"metrics,omitempty"`
	Lineage       modelfile.Lineage  `json:"lineage"`
}

// Signature is the graph's inputs and outputs as the manifest records them.
type Signature struct {
	Inputs  []TensorSpec `json:"inputs"`
	Outputs []TensorSpec `json:"outputs"`
}

// TensorSpec is one graph input or output.
type TensorSpec struct {
	Name  string `json:"name"`
	Type  string `json:"type"` // ONNX element type name: "float", "double", …
	Shape []Dim  `json:"shape"`
}

// Dim is a dimension: a number when fixed, its name when symbolic ("batch"),
// null when unknown.
type Dim = onnx.Dim

// Output names the graph output holding P(positive) and, when it has one
// column per class, the positive class's column.
type Output struct {
	Name   string `json:"name"`
	Column int    `json:"column"`
}

// Preprocessing turns raw records into the graph's input rows.
type Preprocessing struct {
	Kind    string           `json:"kind"`
	Encoder *dataset.Encoder `json:"encoder,omitempty"`
}

// DecodeManifest parses and validates manifest JSON.
func DecodeManifest(b []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("onnxmodel: decode manifest: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("onnxmodel: decode manifest: trailing data")
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Manifest) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("onnxmodel: manifest: "+format, args...)
	}
	switch {
	case m.FormatVersion != FormatVersion:
		return bad("format version %d, this code reads %d", m.FormatVersion, FormatVersion)
	case m.Format != Format:
		return bad("format %q, want %q", m.Format, Format)
	case m.Quantization != modelfile.Float && m.Quantization != modelfile.Int8:
		return bad("unknown quantization %q", m.Quantization)
	case m.Schema.Label == "" || len(m.Schema.Positive) == 0:
		return bad("schema lacks the label or its positive values")
	case !(m.Threshold > 0 && m.Threshold < 1):
		return bad("decision threshold %v not in (0, 1)", m.Threshold)
	case m.Lineage.DataDigest == "":
		return bad("lineage lacks the data digest")
	case len(m.Features) == 0:
		return bad("no features")
	case m.Output.Name == "":
		return bad("output.name is empty")
	case m.Output.Column < 0:
		return bad("output.column %d is negative", m.Output.Column)
	}
	kinds := map[string]dataset.Kind{}
	for _, c := range m.Schema.Columns {
		kinds[c.Name] = c.Kind
	}
	if kinds[m.Schema.Label] != dataset.Label {
		return bad("label %q is not a label column of the schema", m.Schema.Label)
	}
	switch m.Preprocessing.Kind {
	case Encode:
		e := m.Preprocessing.Encoder
		if e == nil {
			return bad("preprocessing.kind %q without preprocessing.encoder", Encode)
		}
		if !slices.Equal(m.Features, e.FeatureNames()) {
			return bad("features do not match the preprocessing encoder (%d vs %d features)", len(m.Features), e.Width())
		}
		for _, f := range e.Numeric {
			if kinds[f.Name] != dataset.Numeric {
				return bad("numeric feature %q is not a numeric column of the schema", f.Name)
			}
			if !(f.Std > 0) {
				return bad("numeric feature %q has scale %v, want positive", f.Name, f.Std)
			}
		}
		for _, f := range e.Categorical {
			if kinds[f.Name] != dataset.Categorical && kinds[f.Name] != dataset.Sensitive {
				return bad("categorical feature %q is not a categorical or sensitive column of the schema", f.Name)
			}
			if len(f.Values) == 0 {
				return bad("categorical feature %q has an empty vocabulary", f.Name)
			}
		}
	case Raw:
		if m.Preprocessing.Encoder != nil {
			return bad("preprocessing.kind %q takes no encoder", Raw)
		}
		seen := map[string]bool{}
		for _, f := range m.Features {
			if kinds[f] != dataset.Numeric {
				return bad("feature %q is not a numeric column of the schema (a graph without preprocessing takes numeric columns only)", f)
			}
			if seen[f] {
				return bad("feature %q is listed twice", f)
			}
			seen[f] = true
		}
	default:
		return bad("preprocessing.kind %q, want %q or %q", m.Preprocessing.Kind, Encode, Raw)
	}
	return nil
}

// Encoder is the preprocessing as a dataset.Encoder: the recorded one, or
// for raw features an identity (mean 0, scale 1, no categories), which is
// what steps that reason about features (explanations, drift) need.
func (m *Manifest) Encoder() *dataset.Encoder {
	if m.Preprocessing.Kind == Encode {
		return m.Preprocessing.Encoder
	}
	e := &dataset.Encoder{Unseen: dataset.UnseenZero}
	for _, f := range m.Features {
		e.Numeric = append(e.Numeric, dataset.NumericFeature{Name: f, Std: 1})
	}
	return e
}

// SignatureOf records a graph's inputs and outputs.
func SignatureOf(g *onnx.Graph) Signature {
	var s Signature
	for _, v := range g.Inputs() {
		s.Inputs = append(s.Inputs, specOf(v))
	}
	for _, v := range g.Outputs() {
		s.Outputs = append(s.Outputs, specOf(v))
	}
	return s
}

func specOf(v onnx.Value) TensorSpec {
	return TensorSpec{Name: v.Name, Type: v.Type.String(), Shape: v.Shape}
}

func (s TensorSpec) String() string {
	return strconv.Quote(s.Name) + " " + s.Type + " " + onnx.Value{Shape: s.Shape}.ShapeString()
}

func (s Signature) equal(o Signature) bool {
	eq := func(a, b []TensorSpec) bool {
		return slices.EqualFunc(a, b, func(x, y TensorSpec) bool {
			return x.Name == y.Name && x.Type == y.Type && slices.Equal(x.Shape, y.Shape) && (x.Shape == nil) == (y.Shape == nil)
		})
	}
	return eq(s.Inputs, o.Inputs) && eq(s.Outputs, o.Outputs)
}

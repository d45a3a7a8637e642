// Package scoring is the one way model-consuming code reads a model,
// whatever its format: Open a model directory (Gauntlet's own format or
// ONNX), then encode raw records or a data set and score them into
// positive-class probabilities; Describe, Derive and QuantizeInt8 read a
// model without running it, save a derived one in its parent's format and
// make its int8 copy. Steps never switch on the format; this package is
// the only place that does.
package scoring

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/gonum/mat"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/ort"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnxmodel"
)

// Model formats.
const (
	Gauntlet = "gauntlet"
	ONNX     = "onnx"
)

// Field types of a signature, as MLflow names column types.
const (
	Double = "double"
	String = "string"
)

// Field is one raw input a model reads from a record.
type Field struct {
	Name string `json:"name"`
	Type string `json:"type"` // Double or String
	// Required: a record must carry the field. Nullable: it may be null
	// (missing), which the preprocessing imputes.
	Required bool `json:"required"`
	Nullable bool `json:"nullable"`
}

// Signature is what a model takes and gives: its input fields in the order
// the preprocessing reads them, the encoded features its scorer takes, and
// the output.
type Signature struct {
	Inputs   []Field  `json:"inputs"`
	Features []string `json:"features"`
	Output   string   `json:"output"` // e.g. `P(defaulted in ["yes"])`
}

// Info describes a loaded model.
type Info struct {
	Format       string             `json:"format"` // Gauntlet or ONNX
	Dir          string             `json:"dir"`
	Digest       string             `json:"digest"`
	Kind         string             `json:"kind"` // logreg, mlp, onnx
	Quantization string             `json:"quantization,omitempty"`
	Schema       dataset.Schema     `json:"schema"`
	Signature    Signature          `json:"signature"`
	Threshold    float64            `json:"threshold"`
	Metrics      map[string]float64 `json:"metrics,omitempty"`
	Lineage      modelfile.Lineage  `json:"lineage"`
	// Provider is where scoring runs: "go" for Gauntlet's own code, the
	// ONNX Runtime execution provider otherwise.
	Provider string `json:"provider"`
	// ProviderNote says why an ONNX model runs on the CPU when CUDA was
	// allowed.
	ProviderNote string `json:"provider_note,omitempty"`
	// WeightsFile is the file of Dir holding the weights (the graph, for
	// ONNX): what quantization makes smaller.
	WeightsFile string `json:"weights_file"`
}

// NegativeLabelParam is the key of the lineage's Params naming the label
// value of the negative class: a manifest keeps only the positive values.
const NegativeLabelParam = "negative_label"

// Labels are the labels of a positive and a negative decision: the first
// positive value of the schema, and the lineage's NegativeLabelParam or
// else "not <positive>".
func (i *Info) Labels() (positive, negative string) {
	if len(i.Schema.Positive) > 0 {
		positive = i.Schema.Positive[0]
	}
	if v, ok := i.Lineage.Params[NegativeLabelParam].(string); ok && v != "" {
		return positive, v
	}
	return positive, "not " + positive
}

// Model is a loaded model of any format. Implementations are safe for
// concurrent use.
type Model interface {
	// PredictProba scores encoded rows (the columns Signature.Features
	// names) into P(positive); the row width is checked on every call.
	model.Scorer
	Info() *Info
	// Encoder is the preprocessing as a dataset.Encoder (an identity one
	// for ONNX graphs that take raw features): what explanations, drift
	// and serving need to know about features.
	Encoder() *dataset.Encoder
	// Encode checks and encodes a data set into rows for PredictProba.
	Encode(d *dataset.Dataset) (*mat.Dense, error)
	// Linear is the model as a float logistic regression over the encoded
	// rows when it is exactly one (exact explanations, coefficients), nil
	// otherwise.
	Linear() *model.Network
	// Close frees what the model holds outside Go's heap.
	Close() error
}

// Options configures Open.
type Options struct {
	// ONNXRuntime is the ONNX Runtime shared library; empty means
	// $GAUNTLET_ONNXRUNTIME_LIB, then the dynamic loader's search path.
	ONNXRuntime string
	// Provider is the ONNX execution provider choice (default CPU).
	Provider ort.Provider
	// Threads bounds ONNX Runtime's threads per call (0: one per core).
	Threads int
}

// Format reports the format of the model directory dir from its manifest:
// ONNX manifests say "format": "onnx", Gauntlet's own say nothing.
func Format(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, modelfile.ManifestFile))
	if err != nil {
		return "", fmt.Errorf("scoring: %s: %w", dir, err)
	}
	var head struct {
		Format *string `json:"format"`
	}
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&head); err != nil {
		return "", fmt.Errorf("scoring: %s: %w", filepath.Join(dir, modelfile.ManifestFile), err)
	}
	switch {
	case head.Format == nil || *head.Format == Gauntlet:
		return Gauntlet, nil
	case *head.Format == ONNX:
		return ONNX, nil
	}
	return "", fmt.Errorf("scoring: %s: unknown model format %q (want %s or %s)", filepath.Join(dir, modelfile.ManifestFile), *head.Format, Gauntlet, ONNX)
}

// Open loads and verifies the model in dir.
func Open(dir string, o Options) (Model, error) {
	f, err := Format(dir)
	if err != nil {
		return nil, err
	}
	if f == ONNX {
		m, err := onnxmodel.Load(dir, onnxmodel.Options{Library: o.ONNXRuntime, Session: ort.Options{Provider: o.Provider, IntraOpThreads: o.Threads}})
		if err != nil {
			return nil, err
		}
		return newONNX(m), nil
	}
	a, err := modelfile.Load(dir)
	if err != nil {
		return nil, err
	}
	return newGauntlet(a)
}

// ScoreDataset encodes d and scores it.
func ScoreDataset(m Model, d *dataset.Dataset) ([]float64, error) {
	x, err := m.Encode(d)
	if err != nil {
		return nil, err
	}
	return m.PredictProba(x)
}

// ErrBadRecord is matched (errors.Is) by a record that does not fit the
// model's signature; a server answers it with 400.
var ErrBadRecord = errors.New("record does not fit the model signature")

// RecordError names the record (0-based) and field that do not fit.
type RecordError struct {
	Record int
	Field  string
	Msg    string
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("record %d: field %q: %s", e.Record, e.Field, e.Msg)
}

// Is makes errors.Is(err, ErrBadRecord) true.
func (e *RecordError) Is(target error) bool { return target == ErrBadRecord }

// Records checks raw records (decoded JSON objects) against the model's
// signature with MLflow's semantics: a required field must be present,
// null only where the preprocessing imputes it, a number for a double
// field (integers widen; strings do not convert), a string for a string
// field. Fields the signature does not name are ignored. It returns the
// records as an unlabelled data set.
func Records(m Model, recs []map[string]any) (*dataset.Dataset, error) {
	info := m.Info()
	d := &dataset.Dataset{
		Source: "request", Schema: info.Schema, Y: make([]float64, len(recs)),
		Numeric: map[string][]float64{}, Categorical: map[string][]string{}, Sensitive: map[string][]string{},
	}
	kinds := map[string]dataset.Kind{}
	for _, c := range info.Schema.Columns {
		kinds[c.Name] = c.Kind
	}
	for _, f := range info.Signature.Inputs {
		if f.Type == Double {
			col := make([]float64, len(recs))
			for i, rec := range recs {
				v, err := number(rec, f)
				if err != nil {
					return nil, &RecordError{Record: i, Field: f.Name, Msg: err.Error()}
				}
				col[i] = v
			}
			d.Numeric[f.Name] = col
			continue
		}
		col := make([]string, len(recs))
		for i, rec := range recs {
			v, err := str(rec, f)
			if err != nil {
				return nil, &RecordError{Record: i, Field: f.Name, Msg: err.Error()}
			}
			col[i] = v
		}
		if kinds[f.Name] == dataset.Sensitive {
			d.Sensitive[f.Name] = col
		} else {
			d.Categorical[f.Name] = col
		}
	}
	return d, nil
}

// ScoreRecords checks, encodes and scores raw records.
func ScoreRecords(m Model, recs []map[string]any) ([]float64, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	d, err := Records(m, recs)
	if err != nil {
		return nil, err
	}
	return ScoreDataset(m, d)
}

func present(rec map[string]any, f Field) (any, bool, error) {
	v, ok := rec[f.Name]
	if !ok {
		if f.Required {
			return nil, false, errors.New("missing (the model's signature requires it)")
		}
		return nil, false, nil
	}
	if v == nil {
		if !f.Nullable {
			return nil, false, errors.New("null, but this model imputes nothing for it")
		}
		return nil, false, nil
	}
	return v, true, nil
}

func number(rec map[string]any, f Field) (float64, error) {
	v, ok, err := present(rec, f)
	if err != nil || !ok {
		return math.NaN(), err
	}
	var x float64
	switch n := v.(type) {
	case float64:
		x = n
	case float32:
		x = float64(n)
	case int:
		x = float64(n)
	case int64:
		x = float64(n)
	case json.Number:
		if x, err = n.Float64(); err != nil {
			return 0, fmt.Errorf("want a number, got %q", n.String())
		}
	default:
		return 0, fmt.Errorf("want a number, got %s", describe(v))
	}
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, fmt.Errorf("want a finite number, got %v", x)
	}
	return x, nil
}

func str(rec map[string]any, f Field) (string, error) {
	v, ok, err := present(rec, f)
	if err != nil || !ok {
		return "", err
	}
	s, isStr := v.(string)
	if !isStr {
		return "", fmt.Errorf("want a string, got %s", describe(v))
	}
	return s, nil
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("string %q", x)
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("%T", v)
}

// signature derives the input fields from an encoder: numeric then
// categorical, as the encoder reads them.
func signature(enc *dataset.Encoder, features []string, nullable bool, schema dataset.Schema) Signature {
	s := Signature{Features: features, Output: fmt.Sprintf("P(%s in %q)", schema.Label, schema.Positive)}
	for _, f := range enc.Numeric {
		s.Inputs = append(s.Inputs, Field{Name: f.Name, Type: Double, Required: true, Nullable: nullable})
	}
	for _, f := range enc.Categorical {
		s.Inputs = append(s.Inputs, Field{Name: f.Name, Type: String, Required: true, Nullable: nullable})
	}
	return s
}

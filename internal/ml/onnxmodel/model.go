package onnxmodel

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/gonum/mat"

	"github.com/gauntlet-ml/gauntlet/internal/atomicfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/ort"
)

// shapeOnly are operators that move or retype values without computing new
// ones: a probability stays one through them.
var shapeOnly = map[string]bool{
	"Identity": true, "Reshape": true, "Flatten": true, "Squeeze": true, "Unsqueeze": true,
	"Cast": true, "Slice": true, "Gather": true,
}

// Check verifies that g fits the manifest: the signature the manifest
// records is the graph's; the graph has one input of floating point rows
// with a batch dimension and one column per feature; the output the
// manifest names has a batch dimension, holds the positive class's column
// and is computed by a Sigmoid or a Softmax.
func Check(m *Manifest, g *onnx.Graph) error {
	bad := func(format string, args ...any) error {
		return &onnx.Error{Where: "signature", Msg: fmt.Sprintf(format, args...)}
	}
	sig := SignatureOf(g)
	if !sig.equal(m.Signature) {
		return bad("the manifest records inputs %v and outputs %v, the graph has %v and %v", m.Signature.Inputs, m.Signature.Outputs, sig.Inputs, sig.Outputs)
	}
	ins := g.Inputs()
	if len(ins) != 1 {
		return bad("the graph takes %d inputs %v; Gauntlet feeds one tensor of feature rows", len(ins), sig.Inputs)
	}
	in := ins[0]
	if in.Type != ort.Float && in.Type != ort.Double {
		return bad("input %q holds %s; Gauntlet feeds float or double features", in.Name, in.Type)
	}
	if len(in.Shape) != 2 {
		return bad("input %q has shape %s; Gauntlet feeds a matrix [batch features]", in.Name, in.ShapeString())
	}
	if in.Shape[0].Fixed {
		return bad("input %q has shape %s: its first dimension is fixed at %d, so it has no batch dimension (export with a dynamic batch axis, e.g. torch.onnx.export(..., dynamic_axes={%q: {0: \"batch\"}}))", in.Name, in.ShapeString(), in.Shape[0].Size, in.Name)
	}
	if !in.Shape[1].Fixed || in.Shape[1].Size != int64(len(m.Features)) {
		return bad("input %q has shape %s; the manifest lists %d features", in.Name, in.ShapeString(), len(m.Features))
	}
	var out *onnx.Value
	for _, o := range g.Outputs() {
		if o.Name == m.Output.Name {
			out = &o
		}
	}
	if out == nil {
		return bad("the graph has no output %q (it has %v)", m.Output.Name, sig.Outputs)
	}
	if out.Type != ort.Float && out.Type != ort.Double {
		return bad("output %q holds %s, not a probability", out.Name, out.Type)
	}
	switch {
	case len(out.Shape) == 0 || len(out.Shape) > 2:
		return bad("output %q has shape %s; want [batch] or [batch classes]", out.Name, out.ShapeString())
	case out.Shape[0].Fixed:
		return bad("output %q has shape %s: its first dimension is fixed at %d, so it has no batch dimension", out.Name, out.ShapeString(), out.Shape[0].Size)
	case len(out.Shape) == 2 && !out.Shape[1].Fixed:
		return bad("output %q has shape %s; its class dimension must be fixed", out.Name, out.ShapeString())
	case len(out.Shape) == 2 && int64(m.Output.Column) >= out.Shape[1].Size:
		return bad("output.column %d, but output %q has %d columns", m.Output.Column, out.Name, out.Shape[1].Size)
	case len(out.Shape) == 1 && m.Output.Column != 0:
		return bad("output.column %d, but output %q has one value per row", m.Output.Column, out.Name)
	}
	name := out.Name
	for {
		n := g.Producer(name)
		if n == nil {
			return bad("output %q is a graph input, not a probability computed by the graph", out.Name)
		}
		op := n.GetOpType()
		if op == "Sigmoid" || op == "Softmax" {
			return nil
		}
		if !shapeOnly[op] {
			return bad("output %q is computed by %s, not by a Sigmoid or a Softmax: it is not a probability (export the model with its final Sigmoid or Softmax)", out.Name, op)
		}
		name = n.GetInput()[0]
	}
}

// Model is a loaded ONNX model, ready to score. It is safe for concurrent
// use.
type Model struct {
	Dir      string
	Digest   string // sha256 of SHA256SUMS, hex
	Manifest *Manifest
	Graph    *onnx.Graph

	session *ort.Session
	inType  ort.ElemType
	out     int // index of the probability output among the session's
	columns int // values per row in that output
	linear  *model.Network
}

// Options configures Load.
type Options struct {
	// Library is the ONNX Runtime shared library; empty means
	// $GAUNTLET_ONNXRUNTIME_LIB or the dynamic loader's search path.
	Library string
	Session ort.Options
}

// Load reads, verifies and checks a model directory and starts an ONNX
// Runtime session for it. Files that do not match SHA256SUMS are refused
// (modelfile.ErrTampered); a graph that does not fit its manifest is
// refused with an error matching onnx.ErrBadModel; a missing library gives
// an error matching ort.ErrNoLibrary that says how to install it.
func Load(dir string, o Options) (*Model, error) {
	contents, digest, err := readVerified(dir)
	if err != nil {
		return nil, err
	}
	m, err := DecodeManifest(contents[ManifestFile])
	if err != nil {
		return nil, fmt.Errorf("onnxmodel: load %s: %w", dir, err)
	}
	g, err := onnx.Parse(contents[GraphFile])
	if err != nil {
		return nil, fmt.Errorf("onnxmodel: load %s: %w", filepath.Join(dir, GraphFile), err)
	}
	if err := Check(m, g); err != nil {
		return nil, fmt.Errorf("onnxmodel: load %s: %w", dir, err)
	}
	rt, err := ort.Load(o.Library)
	if err != nil {
		return nil, fmt.Errorf("onnxmodel: load %s: %w", dir, err)
	}
	s, err := rt.NewSession(contents[GraphFile], o.Session)
	if err != nil {
		return nil, fmt.Errorf("onnxmodel: load %s: %w: %w", filepath.Join(dir, GraphFile), onnx.ErrBadModel, err)
	}
	md := &Model{Dir: dir, Digest: digest, Manifest: m, Graph: g, session: s, inType: g.Inputs()[0].Type, out: -1, columns: 1, linear: linear(m, g)}
	for i, name := range s.Outputs() {
		if name == m.Output.Name {
			md.out = i
		}
	}
	for _, v := range g.Outputs() {
		if v.Name == m.Output.Name && len(v.Shape) == 2 {
			md.columns = int(v.Shape[1].Size)
		}
	}
	if md.out < 0 {
		s.Close()
		return nil, fmt.Errorf("onnxmodel: load %s: ONNX Runtime does not list output %q", dir, m.Output.Name)
	}
	if err := md.probe(); err != nil {
		s.Close()
		return nil, fmt.Errorf("onnxmodel: load %s: %w", dir, err)
	}
	return md, nil
}

func readVerified(dir string) (map[string][]byte, string, error) {
	sums, err := os.ReadFile(filepath.Join(dir, SumsFile))
	if err != nil {
		return nil, "", fmt.Errorf("onnxmodel: load %s: %w", dir, err)
	}
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(sums), "\n"), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok || len(sum) != 64 {
			return nil, "", fmt.Errorf("onnxmodel: load %s: %s: malformed line %q", dir, SumsFile, line)
		}
		want[name] = sum
	}
	contents := map[string][]byte{}
	for _, name := range []string{ManifestFile, GraphFile} {
		if want[name] == "" {
			return nil, "", fmt.Errorf("onnxmodel: load %s: %s has no digest for %s", dir, SumsFile, name)
		}
		path := filepath.Join(dir, name)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, "", fmt.Errorf("onnxmodel: load %s: %w", dir, err)
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != want[name] {
			return nil, "", fmt.Errorf("onnxmodel: %s: sha256 %s, %s records %s: %w", path, got, SumsFile, want[name], modelfile.ErrTampered)
		}
		contents[name] = b
	}
	return contents, fmt.Sprintf("%x", sha256.Sum256(sums)), nil
}

// probe scores three rows (all zeros, all ones, all minus ones): the batch
// dimension must work and every value must be a probability. A graph whose
// last operator is a Sigmoid can still be followed by nothing else, but one
// whose Softmax runs over the wrong axis fails here.
func (m *Model) probe() error {
	w := len(m.Manifest.Features)
	x := mat.NewDense(3, w, nil)
	for j := range w {
		x.Set(1, j, 1)
		x.Set(2, j, -1)
	}
	if _, err := m.PredictProba(x); err != nil {
		return fmt.Errorf("probe with 3 rows: %w", err)
	}
	return nil
}

// Provider is the execution provider the session runs on.
func (m *Model) Provider() string { return m.session.Provider() }

// ProviderFallback says why the session runs on the CPU under
// ort.ProviderAuto; empty otherwise.
func (m *Model) ProviderFallback() string { return m.session.Fallback() }

// Close ends the ONNX Runtime session.
func (m *Model) Close() error { return m.session.Close() }

// maxBatch bounds the rows of one Run, so a large data set is scored in
// slices instead of one tensor of its whole size.
const maxBatch = 1 << 16

// ErrNotProbability is matched (errors.Is) when the graph returns a value
// that is not a probability.
var ErrNotProbability = errors.New("model output is not a probability")

// PredictProba returns P(positive) for each encoded row of x.
func (m *Model) PredictProba(x *mat.Dense) ([]float64, error) {
	rows, cols := x.Dims()
	if cols != len(m.Manifest.Features) {
		return nil, fmt.Errorf("onnxmodel: rows have %d features, the model takes %d", cols, len(m.Manifest.Features))
	}
	out := make([]float64, 0, rows)
	for start := 0; start < rows; start += maxBatch {
		n := min(maxBatch, rows-start)
		p, err := m.run(x, start, n)
		if err != nil {
			return nil, err
		}
		out = append(out, p...)
	}
	return out, nil
}

func (m *Model) run(x *mat.Dense, start, n int) ([]float64, error) {
	_, cols := x.Dims()
	shape := []int64{int64(n), int64(cols)}
	var in ort.Tensor
	if m.inType == ort.Double {
		v := make([]float64, 0, n*cols)
		for r := start; r < start+n; r++ {
			v = append(v, x.RawRowView(r)...)
		}
		in = ort.NewDouble(shape, v)
	} else {
		v := make([]float32, 0, n*cols)
		for r := start; r < start+n; r++ {
			for _, f := range x.RawRowView(r) {
				v = append(v, float32(f))
			}
		}
		in = ort.NewFloat(shape, v)
	}
	res, err := m.session.Run([]ort.Tensor{in})
	if err != nil {
		return nil, fmt.Errorf("onnxmodel: %s: %w", m.Dir, err)
	}
	t := res[m.out]
	vals, err := t.Float64s()
	if err != nil {
		return nil, fmt.Errorf("onnxmodel: %s: output %q: %w", m.Dir, m.Manifest.Output.Name, err)
	}
	if len(vals) != n*m.columns {
		return nil, fmt.Errorf("onnxmodel: %s: output %q has shape %v for %d rows, want %d values per row", m.Dir, m.Manifest.Output.Name, t.Shape, n, m.columns)
	}
	p := make([]float64, n)
	for r := range n {
		row := vals[r*m.columns : (r+1)*m.columns]
		v := row[m.Manifest.Output.Column]
		if !(v >= 0 && v <= 1) {
			return nil, fmt.Errorf("onnxmodel: %s: output %q row %d is %v: %w", m.Dir, m.Manifest.Output.Name, start+r, v, ErrNotProbability)
		}
		if m.columns > 1 {
			var sum float64
			for _, c := range row {
				sum += c
			}
			if math.Abs(sum-1) > 1e-3 {
				return nil, fmt.Errorf("onnxmodel: %s: output %q row %d sums to %v over its %d classes: %w", m.Dir, m.Manifest.Output.Name, start+r, sum, m.columns, ErrNotProbability)
			}
		}
		p[r] = v
	}
	return p, nil
}

// Encode turns a data set into the graph's input rows. With raw features a
// missing value is an error naming the row and column, since nothing in
// the graph imputes it.
func (m *Manifest) Encode(d *dataset.Dataset) (*mat.Dense, error) {
	if m.Preprocessing.Kind == Encode {
		return m.Preprocessing.Encoder.Transform(d)
	}
	n := d.Len()
	if n == 0 {
		return nil, &dataset.Error{File: d.Source, Msg: "nothing to encode"}
	}
	x := mat.NewDense(n, len(m.Features), nil)
	for j, f := range m.Features {
		col, ok := d.Numeric[f]
		if !ok {
			return nil, &dataset.Error{File: d.Source, Column: f, Msg: "numeric feature column is missing from the data"}
		}
		for r, v := range col {
			if math.IsNaN(v) {
				return nil, &dataset.Error{File: d.Source, Row: r + 1, Column: f, Msg: "missing value; this model's graph takes raw features and imputes nothing"}
			}
			x.Set(r, j, v)
		}
	}
	return x, nil
}

// Save writes a model directory, which must not exist yet, and returns its
// digest. The graph is checked against the manifest first; the files are
// written into a temporary directory beside dir and renamed into place.
func Save(dir string, m *Manifest, graph []byte) (string, error) {
	return save(dir, m, graph, nil)
}

// save is Save with companion files (see companions) written beside the
// model's own.
func save(dir string, m *Manifest, graph []byte, extra map[string][]byte) (string, error) {
	if m.FormatVersion == 0 {
		m.FormatVersion = FormatVersion
	}
	if m.Format == "" {
		m.Format = Format
	}
	if err := m.validate(); err != nil {
		return "", err
	}
	g, err := onnx.Parse(graph)
	if err != nil {
		return "", fmt.Errorf("onnxmodel: save %s: %w", dir, err)
	}
	if err := Check(m, g); err != nil {
		return "", fmt.Errorf("onnxmodel: save %s: %w", dir, err)
	}
	if _, err := os.Stat(dir); err == nil {
		return "", fmt.Errorf("onnxmodel: save %s: already exists", dir)
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", fmt.Errorf("onnxmodel: encode manifest: %w", err)
	}
	sums := fmt.Sprintf("%x  %s\n%x  %s\n", sha256.Sum256(manifest), ManifestFile, sha256.Sum256(graph), GraphFile)
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("onnxmodel: save %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return "", fmt.Errorf("onnxmodel: save %s: %w", dir, err)
	}
	fail := func(err error) (string, error) {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("onnxmodel: save %s: %w", dir, err)
	}
	files := map[string][]byte{ManifestFile: manifest, GraphFile: graph, SumsFile: []byte(sums)}
	for name, data := range extra {
		if _, own := files[name]; own || !filepath.IsLocal(name) {
			return fail(fmt.Errorf("companion file %q would overwrite the model's own or leave its directory", name))
		}
		files[name] = data
	}
	for name, data := range files {
		if err := atomicfile.Create(filepath.Join(tmp, name), data); err != nil {
			return fail(err)
		}
	}
	if err := syncDir(tmp); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fail(err)
	}
	if err := syncDir(parent); err != nil {
		return "", fmt.Errorf("onnxmodel: save %s: %w", dir, err)
	}
	return fmt.Sprintf("%x", sha256.Sum256([]byte(sums))), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

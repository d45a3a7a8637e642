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
	"sync"

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

	raw     []byte // the graph's bytes
	session *ort.Session
	inType  ort.ElemType
	out     int // index of the probability output among the session's
	outType ort.ElemType
	outRank int // 1: [batch], 2: [batch columns]
	columns int // values per row in that output
	linear  *model.Network
	bufs    sync.Pool // of *runBuffers
	// slots[n] pools ort.Slots of n rows: small calls, a server's, run
	// through them with one call into the runtime.
	slots [slotRows + 1]sync.Pool
}

// slotRows is the most rows scored through a slot; larger calls lend their
// own buffers to the runtime (RunInto).
const slotRows = 64

// runBuffers hold one call's input and output tensors, pooled so that a
// server scoring small requests allocates none of them.
type runBuffers struct {
	in32, out32 []float32
	in64, out64 []float64
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
	m, g, raw, digest, err := read(dir)
	if err != nil {
		return nil, err
	}
	return start(dir, digest, m, g, raw, o)
}

// ReadManifest reads, verifies and checks a model directory as Load does,
// without ONNX Runtime: for code that reads about a model (its schema,
// preprocessing, metrics, lineage) rather than scoring it. It returns the
// manifest and the model digest.
func ReadManifest(dir string) (*Manifest, string, error) {
	m, _, _, digest, err := read(dir)
	return m, digest, err
}

func read(dir string) (*Manifest, *onnx.Graph, []byte, string, error) {
	contents, digest, err := readVerified(dir)
	if err != nil {
		return nil, nil, nil, "", err
	}
	m, err := DecodeManifest(contents[ManifestFile])
	if err != nil {
		return nil, nil, nil, "", fmt.Errorf("onnxmodel: load %s: %w", dir, err)
	}
	g, err := onnx.Parse(contents[GraphFile])
	if err != nil {
		return nil, nil, nil, "", fmt.Errorf("onnxmodel: load %s: %w", filepath.Join(dir, GraphFile), err)
	}
	if err := Check(m, g); err != nil {
		return nil, nil, nil, "", fmt.Errorf("onnxmodel: load %s: %w", dir, err)
	}
	return m, g, contents[GraphFile], digest, nil
}

// start opens an ONNX Runtime session for a checked graph (raw, parsed as
// g) and probes it. dir and digest are empty for a model not saved yet.
func start(dir, digest string, m *Manifest, g *onnx.Graph, raw []byte, o Options) (*Model, error) {
	where := dir
	if where == "" {
		where = "unsaved model"
	}
	rt, err := ort.Load(o.Library)
	if err != nil {
		return nil, fmt.Errorf("onnxmodel: load %s: %w", where, err)
	}
	s, err := rt.NewSession(raw, o.Session)
	if err != nil {
		return nil, fmt.Errorf("onnxmodel: load %s: %w: %w", filepath.Join(where, GraphFile), onnx.ErrBadModel, err)
	}
	md := &Model{Dir: dir, Digest: digest, Manifest: m, Graph: g, raw: raw, session: s, inType: g.Inputs()[0].Type, out: -1, columns: 1, linear: linear(m, g)}
	for i, name := range s.Outputs() {
		if name == m.Output.Name {
			md.out = i
		}
	}
	for _, v := range g.Outputs() {
		if v.Name == m.Output.Name {
			md.outType, md.outRank = v.Type, len(v.Shape)
			if len(v.Shape) == 2 {
				md.columns = int(v.Shape[1].Size)
			}
		}
	}
	md.bufs.New = func() any { return new(runBuffers) }
	if md.out < 0 {
		s.Close()
		return nil, fmt.Errorf("onnxmodel: load %s: ONNX Runtime does not list output %q", where, m.Output.Name)
	}
	if err := md.probe(); err != nil {
		s.Close()
		return nil, fmt.Errorf("onnxmodel: load %s: %w", where, err)
	}
	return md, nil
}

// GraphBytes is the graph as its file holds it (or will, for a model not
// saved yet).
func (m *Model) GraphBytes() []byte { return m.raw }

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
	out := make([]float64, rows)
	for start := 0; start < rows; start += maxBatch {
		n := min(maxBatch, rows-start)
		if err := m.run(x, start, out[start:start+n]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// maxPooled bounds the values a pooled buffer may hold, so that one large
// data set does not stay pinned in the pool.
const maxPooled = 1 << 20

// run scores rows start… of x into p, one ONNX Runtime call over buffers
// the runtime reads and writes in place.
func (m *Model) run(x *mat.Dense, start int, p []float64) error {
	n := len(p)
	if n <= slotRows && n > 0 {
		return m.runSlot(x, start, p)
	}
	_, cols := x.Dims()
	b := m.bufs.Get().(*runBuffers)
	defer func() {
		if max(cap(b.in32), cap(b.in64)) <= maxPooled {
			m.bufs.Put(b)
		}
	}()
	var in, out ort.Tensor
	shape := []int64{int64(n), int64(cols)}
	if m.inType == ort.Double {
		b.in64 = grow(b.in64, n*cols)
		for r := range n {
			copy(b.in64[r*cols:(r+1)*cols], x.RawRowView(start+r))
		}
		in = ort.DoublesOf(shape, b.in64)
	} else {
		b.in32 = grow(b.in32, n*cols)
		for r := range n {
			dst := b.in32[r*cols : (r+1)*cols]
			for j, f := range x.RawRowView(start + r) {
				dst[j] = float32(f)
			}
		}
		in = ort.FloatsOf(shape, b.in32)
	}
	outShape := []int64{int64(n), int64(m.columns)}[:m.outRank]
	if m.outType == ort.Double {
		b.out64 = grow(b.out64, n*m.columns)
		out = ort.DoublesOf(outShape, b.out64)
	} else {
		b.out32 = grow(b.out32, n*m.columns)
		out = ort.FloatsOf(outShape, b.out32)
	}
	if err := m.session.RunInto([]ort.Tensor{in}, m.out, out); err != nil {
		return fmt.Errorf("onnxmodel: %s: output %q: %w", m.Dir, m.Manifest.Output.Name, err)
	}
	return m.probabilities(b.out32, b.out64, start, p)
}

// runSlot is run through a pooled slot of len(p) rows.
func (m *Model) runSlot(x *mat.Dense, start int, p []float64) error {
	n := len(p)
	_, cols := x.Dims()
	pool := &m.slots[n]
	sl, _ := pool.Get().(*ort.Slot)
	if sl == nil {
		in := ort.Tensor{Type: m.inType, Shape: []int64{int64(n), int64(cols)}}
		out := ort.Tensor{Type: m.outType, Shape: []int64{int64(n), int64(m.columns)}[:m.outRank]}
		var err error
		if sl, err = m.session.NewSlot(in, m.out, out); err != nil {
			return fmt.Errorf("onnxmodel: %s: %w", m.Dir, err)
		}
	}
	defer pool.Put(sl)
	if m.inType == ort.Double {
		in := ort.ViewDouble(sl.In)
		for r := range n {
			copy(in[r*cols:(r+1)*cols], x.RawRowView(start+r))
		}
	} else {
		in := ort.ViewFloat(sl.In)
		for r := range n {
			dst := in[r*cols : (r+1)*cols]
			for j, f := range x.RawRowView(start + r) {
				dst[j] = float32(f)
			}
		}
	}
	if err := sl.Run(); err != nil {
		return fmt.Errorf("onnxmodel: %s: output %q: %w", m.Dir, m.Manifest.Output.Name, err)
	}
	if m.outType == ort.Double {
		return m.probabilities(nil, ort.ViewDouble(sl.Out), start, p)
	}
	return m.probabilities(ort.ViewFloat(sl.Out), nil, start, p)
}

// probabilities checks the graph's output (out32 or out64, by its type) and
// writes the positive class's probabilities into p.
func (m *Model) probabilities(out32 []float32, out64 []float64, start int, p []float64) error {
	value := func(i int) float64 {
		if m.outType == ort.Double {
			return out64[i]
		}
		return float64(out32[i])
	}
	for r := range p {
		v := value(r*m.columns + m.Manifest.Output.Column)
		if !(v >= 0 && v <= 1) {
			return fmt.Errorf("onnxmodel: %s: output %q row %d is %v: %w", m.Dir, m.Manifest.Output.Name, start+r, v, ErrNotProbability)
		}
		if m.columns > 1 {
			var sum float64
			for c := range m.columns {
				sum += value(r*m.columns + c)
			}
			if math.Abs(sum-1) > 1e-3 {
				return fmt.Errorf("onnxmodel: %s: output %q row %d sums to %v over its %d classes: %w", m.Dir, m.Manifest.Output.Name, start+r, sum, m.columns, ErrNotProbability)
			}
		}
		p[r] = v
	}
	return nil
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
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

// SaveWith is Save with files written beside the model's own, in the same
// rename: companions such as the held-out split its lineage records.
func SaveWith(dir string, m *Manifest, graph []byte, files map[string][]byte) (string, error) {
	return save(dir, m, graph, files)
}

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

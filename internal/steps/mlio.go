package steps

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/mat"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/atomicfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/fairness"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnxmodel"
	"github.com/gauntlet-ml/gauntlet/internal/ml/predict"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
)

// Shared plumbing of the ML step types: loading models and data, predicting
// with a model's manifest, and writing files atomically. Their `with:`
// values are decoded by package stepio (see Define).

// Error kinds of the ML steps, as `retry.non_retryable` names them.
const (
	kindBadInput   = "BadInput"
	kindGateFailed = "GateFailed"
)

// HoldoutFile is the held-out split train writes into the model directory,
// so evaluate, fairness-gate and quantize can default `data` to it.
const HoldoutFile = "holdout.csv"

// Keys of modelfile.Lineage.Params that the steps read back. The manifest is
// the only file besides the weights that SHA256SUMS covers, so whatever must
// be tamper-evident (the holdout's digest, a fairness threshold policy) lives
// there rather than in a side file.
const (
	paramHoldout = "holdout"
	paramPolicy  = predict.PolicyParam
)

// badInput is a with: value the step refuses after decoding it, named as
// stepio names the values it cannot decode.
func badInput(key string, format string, args ...any) error {
	return Permanent(kindBadInput, &stepio.Error{Path: key, Msg: fmt.Sprintf(format, args...)})
}

// num makes a float JSON-safe: NaN and ±Inf have no JSON form and would fail
// the whole payload, so they become null.
func num(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return f
}

// dataError makes load failures of bad data permanent and names the input.
func dataError(key, src string, err error) error {
	err = fmt.Errorf("with.%s %s: %w", key, src, err)
	if errors.Is(err, dataset.ErrBadData) || errors.Is(err, fs.ErrNotExist) {
		return Permanent(kindBadInput, err)
	}
	return err
}

// loadedModel is a model of either format (package scoring) ready to
// predict: an artifact of the store materialised on this host, or one this
// step just saved. Close it when done: an ONNX model holds a runtime
// session.
type loadedModel struct {
	scoring.Model
	// Ptr names the model in the store; Name, its text, is what messages,
	// evidence and lineage call it.
	Ptr  artifact.Pointer
	Name string
	// Label, when set, names the model on pages instead of its digest.
	Label  string
	policy *thresholdPolicy
}

// thresholdPolicy is the fairness mitigation recorded in a manifest; serving
// reads the same record through package predict.
type thresholdPolicy = predict.Policy

type holdoutRecord struct {
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
	Rows   int    `json:"rows"`
}

// ModelHost is implemented by an Env that says how its host runs models:
// the ONNX Runtime library (--onnxruntime-lib) and execution provider.
// Steps of an Env without it use scoring's defaults.
type ModelHost interface {
	Scoring() scoring.Options
}

// scoringOptions are the host's model options.
func scoringOptions(env Env) scoring.Options {
	if h, ok := env.(ModelHost); ok {
		return h.Scoring()
	}
	return scoring.Options{}
}

// kindNoRuntime is the error kind of an ONNX model on a host without ONNX
// Runtime: not retried, since another attempt on the host fails alike.
const kindNoRuntime = "ONNXRuntimeMissing"

// loadModel materialises the model ref names and loads it.
func loadModel(ctx context.Context, env Env, key string, ref ArtifactRef) (*loadedModel, error) {
	dir, p, err := ref.materialize(ctx, env, key)
	if err != nil {
		return nil, err
	}
	if p.Kind != artifact.KindTree {
		return nil, badInput(key, "%s is a file; a model is a directory (STORE/trees/sha256/HEX)", p)
	}
	m, err := openModel(env, key, dir, p)
	if m != nil {
		m.Label = ref.label
	}
	return m, err
}

// openModel loads the model directory dir, which p names in the store.
func openModel(env Env, key, dir string, p artifact.Pointer) (*loadedModel, error) {
	sm, err := scoring.Open(dir, scoringOptions(env))
	if err != nil {
		return nil, modelError(key, p, err)
	}
	pol, err := predict.PolicyOf(&modelfile.Manifest{Lineage: sm.Info().Lineage})
	if err != nil {
		sm.Close()
		return nil, Permanent(kindBadInput, fmt.Errorf("with.%s %s: %w", key, p, err))
	}
	return &loadedModel{Model: sm, Ptr: p, Name: p.String(), policy: pol}, nil
}

// modelError classifies a model that cannot be opened. A verified artifact
// of the store that does not load (missing, tampered, a graph that does
// not fit its manifest, a format this code does not read) will not heal on
// retry; neither will a host without ONNX Runtime, whose error says how to
// install it.
func modelError(key string, p artifact.Pointer, err error) error {
	err = fmt.Errorf("with.%s %s: %w", key, p, err)
	if errors.Is(err, scoring.ErrNoRuntime) {
		return Permanent(kindNoRuntime, err)
	}
	return Permanent(kindBadInput, err)
}

// digest is the model_digest outputs carry: the sha256 of the model's
// SHA256SUMS, which serving and the scoring interface report too.
func (m *loadedModel) digest() string { return m.Info().Digest }

func remarshal(from, to any) error {
	b, err := json.Marshal(from)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, to)
}

// holdout returns the local path of the model's held-out split, checked
// against the digest its manifest records, with its pointer: the split is a
// file of the model's tree, so it is a blob of the store already.
func (m *loadedModel) holdout() (string, artifact.Pointer, error) {
	raw, ok := m.Info().Lineage.Params[paramHoldout]
	if !ok {
		return "", artifact.Pointer{}, badInput("data", "not given, and model %s records no held-out split: give with.data", m.Name)
	}
	var h holdoutRecord
	if err := remarshal(raw, &h); err != nil || h.File == "" {
		return "", artifact.Pointer{}, badInput("data", "not given, and model %s has a malformed holdout record", m.Name)
	}
	d, err := artifact.ParseDigest(h.SHA256)
	if err != nil {
		return "", artifact.Pointer{}, badInput("data", "not given, and model %s has a malformed holdout record: %v", m.Name, err)
	}
	path := filepath.Join(m.Info().Dir, h.File)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", artifact.Pointer{}, dataError("data", m.Name+"/"+h.File, err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != d.Hex() {
		return "", artifact.Pointer{}, Permanent(kindBadInput, fmt.Errorf("with.data: %s of model %s does not match the sha256 its manifest records: %w", h.File, m.Name, modelfile.ErrTampered))
	}
	return path, artifact.Pointer{Store: m.Ptr.Store, Kind: artifact.KindBlob, Digest: d}, nil
}

// loadData reads src (default: the model's holdout) with the model's schema,
// so every column has the kind the encoder was fitted on. It returns the
// source it settled on, so that another model can be scored on the very
// same rows.
func (m *loadedModel) loadData(ctx context.Context, env Env, key, src string) (*dataset.Dataset, string, error) {
	opts := []dataset.Option{dataset.WithSchema(m.Info().Schema)}
	if !strings.HasPrefix(src, "builtin:") {
		// WithSchema alone would read a header row as data.
		opts = append(opts, dataset.WithHeader(true))
	}
	if src == "" {
		path, p, err := m.holdout()
		if err != nil {
			return nil, "", err
		}
		d, err := dataset.Load(path, opts...)
		if err != nil {
			return nil, "", dataError(key, p.String(), err)
		}
		d.Source = p.String()
		return d, d.Source, nil
	}
	d, _, err := loadDataset(ctx, env, key, src, opts...)
	if err != nil {
		return nil, "", err
	}
	return d, src, nil
}

// scores returns P(positive) for every row of d.
func (m *loadedModel) scores(d *dataset.Dataset) ([]float64, error) {
	x, err := m.encode(d)
	if err != nil {
		return nil, err
	}
	return m.predict(x)
}

// encode encodes d as the model's preprocessing says; data that does not
// fit is refused for good.
func (m *loadedModel) encode(d *dataset.Dataset) (*mat.Dense, error) {
	x, err := m.Encode(d)
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("encode %s for model %s: %w", d.Source, m.Name, err))
	}
	return x, nil
}

// predict scores encoded rows. A graph whose output is not a probability
// will not become one on retry.
func (m *loadedModel) predict(x *mat.Dense) ([]float64, error) {
	p, err := m.PredictProba(x)
	if errors.Is(err, onnxmodel.ErrNotProbability) {
		return nil, Permanent(kindBadInput, fmt.Errorf("model %s: %w", m.Name, err))
	}
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Name, err)
	}
	return p, nil
}

// decide turns scores into decisions as the manifest says: per-group
// thresholds when the model carries a fairness policy (the group is read
// from the data's columns the policy names), else the manifest's threshold.
func (m *loadedModel) decide(d *dataset.Dataset, scores []float64) ([]int, error) {
	if m.policy != nil {
		groups, err := groupKeys(d, m.policy.Features)
		if err != nil {
			return nil, err
		}
		return m.policy.Policy.Predict(scores, groups)
	}
	out := make([]int, len(scores))
	for i, s := range scores {
		if s >= m.Info().Threshold {
			out[i] = 1
		}
	}
	return out, nil
}

// groupColumns returns the named columns of d as group labels: sensitive
// columns first, categorical ones too, so fairness can be asked about any
// discrete column.
func groupColumns(key string, d *dataset.Dataset, names []string) (map[string][]string, error) {
	out := make(map[string][]string, len(names))
	for _, n := range names {
		if col, ok := d.Sensitive[n]; ok {
			out[n] = col
		} else if col, ok := d.Categorical[n]; ok {
			out[n] = col
		} else {
			return nil, badInput(key, "column %q is not a sensitive or categorical column of %s", n, d.Source)
		}
	}
	return out, nil
}

func groupKeys(d *dataset.Dataset, features []string) ([]string, error) {
	cols, err := groupColumns("sensitive", d, features)
	if err != nil {
		return nil, err
	}
	if len(features) == 1 {
		return cols[features[0]], nil
	}
	return fairness.IntersectionKeys(cols, features...)
}

func labels(d *dataset.Dataset) []int {
	y := make([]int, len(d.Y))
	for i, v := range d.Y {
		y[i] = int(v)
	}
	return y
}

func accuracy(y, pred []int) float64 {
	ok := 0
	for i := range y {
		if y[i] == pred[i] {
			ok++
		}
	}
	return float64(ok) / float64(len(y))
}

// rows are the rows of a data set as writeRows reads them: a Dataset, or rows
// of a Frame, which are never copied into one.
type rows interface {
	len() int
	// number is row r of a numeric column, NaN when missing; text is row
	// r of a categorical or sensitive column, "" when missing.
	number(col string, r int) float64
	text(col string, kind dataset.Kind, r int) string
	positive(r int) bool
}

type datasetTable struct{ d *dataset.Dataset }

func (t datasetTable) len() int                         { return t.d.Len() }
func (t datasetTable) number(col string, r int) float64 { return t.d.Numeric[col][r] }
func (t datasetTable) positive(r int) bool              { return t.d.Y[r] == 1 }
func (t datasetTable) text(col string, kind dataset.Kind, r int) string {
	if kind == dataset.Sensitive {
		return t.d.Sensitive[col][r]
	}
	return t.d.Categorical[col][r]
}

// frameTable is rows idx of a frame, in that order.
type frameTable struct {
	f   *dataset.Frame
	idx []int
}

func (t frameTable) len() int                         { return len(t.idx) }
func (t frameTable) number(col string, r int) float64 { return t.f.Numeric[col].Exact(t.idx[r]) }
func (t frameTable) positive(r int) bool              { return t.f.Y[t.idx[r]] == 1 }
func (t frameTable) text(col string, kind dataset.Kind, r int) string {
	if kind == dataset.Sensitive {
		return t.f.Sensitive[col].At(t.idx[r])
	}
	return t.f.Categorical[col].At(t.idx[r])
}

// writeRows writes the rows of t as CSV with the columns of schema s, as
// the held-out split and the folds are stored. Numbers use the shortest
// exact form, so reading the file back gives the same values; ignored
// columns are written empty because the schema still declares them. The
// label is written as the first positive value or negative.
func writeRows(w io.Writer, s dataset.Schema, t rows, negative string) error {
	cw := csv.NewWriter(w)
	cols := s.Columns
	header := make([]string, len(cols))
	for i, c := range cols {
		header[i] = c.Name
	}
	if err := cw.Write(header); err != nil {
		return err
	}
	rec := make([]string, len(cols))
	var num []byte
	for r := range t.len() {
		for i, c := range cols {
			switch c.Kind {
			case dataset.Numeric:
				rec[i] = ""
				if v := t.number(c.Name, r); !math.IsNaN(v) {
					num = strconv.AppendFloat(num[:0], v, 'g', -1, 64)
					rec[i] = string(num)
				}
			case dataset.Categorical, dataset.Sensitive:
				rec[i] = t.text(c.Name, c.Kind, r)
			case dataset.Label:
				rec[i] = negative
				if t.positive(r) {
					rec[i] = s.Positive[0]
				}
			default:
				rec[i] = ""
			}
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// holdoutCSV is d as writeRows writes it, in memory.
func holdoutCSV(d *dataset.Dataset, negative string) ([]byte, error) {
	var buf bytes.Buffer
	err := writeRows(&buf, d.Schema, datasetTable{d}, negative)
	return buf.Bytes(), err
}

// frameCSV is rows idx of f as writeRows writes them, in memory.
func frameCSV(f *dataset.Frame, idx []int) ([]byte, error) {
	var buf bytes.Buffer
	err := writeRows(&buf, f.Schema, frameTable{f, idx}, f.NegativeLabel())
	return buf.Bytes(), err
}

// saveTrainedModel saves a model in Gauntlet's format at dir with rows idx
// of f as its held-out split, streamed to disk rather than built in memory
// (a tenth or a fifth of the data set, as text), and digested on the way.
// The model directory is renamed into place whole, split included.
func saveTrainedModel(dir string, m *modelfile.Manifest, tensors []model.Tensor, f *dataset.Frame, idx []int) (string, error) {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	stage, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".stage-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	split := filepath.Join(stage, HoldoutFile)
	sum, err := writeHoldout(split, f, idx)
	if err != nil {
		return "", fmt.Errorf("write the held-out split: %w", err)
	}
	if m.Lineage.Params == nil {
		m.Lineage.Params = map[string]any{}
	}
	m.Lineage.Params[paramHoldout] = holdoutRecord{File: HoldoutFile, SHA256: sum, Rows: len(idx)}
	tmp := filepath.Join(stage, "model")
	digest, err := modelfile.Save(tmp, m, tensors)
	if err != nil {
		return "", err
	}
	if err := os.Rename(split, filepath.Join(tmp, HoldoutFile)); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	sweepStaging(dir)
	return digest, nil
}

// writeHoldout writes rows idx of f as CSV into a new file at path, synced,
// and returns its hex sha256.
func writeHoldout(path string, f *dataset.Frame, idx []int) (string, error) {
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(file, h), 1<<20)
	err = writeRows(bw, f.Schema, frameTable{f, idx}, f.NegativeLabel())
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = file.Sync()
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	return hex.EncodeToString(h.Sum(nil)), err
}

// sweepStaging removes what saves killed half way (a worker SIGKILLed)
// left beside dir: their temporary directories, which can never be used
// once dir is saved.
func sweepStaging(dir string) {
	for _, pattern := range []string{".tmp-*", ".stage-*"} {
		left, err := filepath.Glob(filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+pattern))
		if err != nil {
			continue
		}
		for _, l := range left {
			_ = os.RemoveAll(l)
		}
	}
}

// saveDerived saves m, a model derived from parent (its int8 copy, its
// mitigation), at dir in m's format with the given metrics and lineage and
// the parent's held-out split, so the derived model's downstream steps can
// default their data the same way.
func saveDerived(dir string, parent *loadedModel, m scoring.Model, metrics map[string]float64, lineage modelfile.Lineage) error {
	holdout, rows, err := parentHoldout(parent)
	if err != nil {
		return err
	}
	if _, err = scoring.Derive(m, dir, scoring.Amend{Metrics: metrics, Lineage: lineage, Files: holdoutFiles(&lineage, holdout, rows)}); err != nil {
		return err
	}
	sweepStaging(dir)
	return nil
}

// holdoutFiles records holdout's digest in the lineage, which SHA256SUMS
// covers, and returns it as the companion file to write; nil without one.
func holdoutFiles(l *modelfile.Lineage, holdout []byte, rows int) map[string][]byte {
	if holdout == nil {
		return nil
	}
	sum := sha256.Sum256(holdout)
	if l.Params == nil {
		l.Params = map[string]any{}
	}
	l.Params[paramHoldout] = holdoutRecord{File: HoldoutFile, SHA256: hex.EncodeToString(sum[:]), Rows: rows}
	return map[string][]byte{HoldoutFile: holdout}
}

// writeJSON writes v to path atomically (temp file and rename), so a reader
// never sees half a report.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := atomicfile.Write(path, append(b, '\n')); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// parentHoldout reads a parent model's holdout for a derived model
// (mitigated, quantized), so its downstream steps can default `data` the
// same way. A parent without one gives nil.
func parentHoldout(m *loadedModel) ([]byte, int, error) {
	raw, ok := m.Info().Lineage.Params[paramHoldout]
	if !ok {
		return nil, 0, nil
	}
	var h holdoutRecord
	if err := remarshal(raw, &h); err != nil {
		return nil, 0, badInput("model", "malformed holdout record in %s: %v", m.Name, err)
	}
	path, _, err := m.holdout()
	if err != nil {
		return nil, 0, err
	}
	b, err := os.ReadFile(path)
	return b, h.Rows, err
}

// derivedParams copies a parent's lineage params for a derived model,
// dropping the holdout record that saveDerived rewrites.
func derivedParams(parent map[string]any) map[string]any {
	out := make(map[string]any, len(parent)+2)
	for k, v := range parent {
		if k != paramHoldout {
			out[k] = v
		}
	}
	return out
}

// safeName makes an identifier usable as one path element.
func safeName(s string) string {
	if s == "" {
		return "_"
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if out := b.String(); out != "." && out != ".." {
		return out
	}
	return "_"
}

// inputsDigest identifies a step's inputs, so a retry (same run, step and
// inputs) finds what the earlier attempt saved while a different invocation
// sharing the run and step ids does not.
func inputsDigest(in Input) string {
	keys := make([]string, 0, len(in.With))
	for k := range in.With {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00", in.RunID, in.StepID, in.Uses)
	for _, k := range keys {
		b, _ := json.Marshal(in.With[k])
		fmt.Fprintf(h, "%s=%s\x00", k, b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

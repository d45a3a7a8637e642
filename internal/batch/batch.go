// Package batch scores a data set with a model of any format (package
// scoring) and writes the predictions to an artifact store, a chunk of rows
// at a time, so that a run that stops — cancelled, its worker lost — resumes
// where it stopped: the core of the batch-predict step.
//
// Each scored chunk is stored as a blob and recorded in a progress ref with
// compare-and-swap before the next chunk is read; a resumed run skips the
// chunks the ref records, so none of them is scored again. Only a chunk whose
// scoring finished while its record could not be written (the process killed
// between the two) is scored a second time, and it gives the same bytes.
// The predictions are one artifact, a tree of the chunk files and a
// manifest, stored after the last chunk: it exists complete or not at all,
// and the progress ref names it once it does.
package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/fairness"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/predict"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

// DefaultChunkRows is the rows of a chunk when a Job does not say.
const DefaultChunkRows = 10000

// ManifestFile is the predictions tree's manifest; the chunks are
// part-00000.csv, part-00001.csv, … beside it.
const ManifestFile = "predictions.json"

// Job is one batch prediction.
type Job struct {
	Store artifact.Store
	// Ref names the job's progress ref in Store, e.g.
	// "batch/<run id>/<step id>": a run with the same Ref resumes.
	Ref   string
	Model scoring.Model
	// Input names the data (its path or reference) in errors and the
	// manifest; InputDigest identifies its content, so that a resumed run
	// refuses data that changed.
	Input       string
	InputDigest string
	// Open opens the data from its first row; Columns says what it must
	// read, and Key (ReadOptions.Key) is copied into the predictions.
	Open      func(cols []Column) (Reader, error)
	Key       string
	ChunkRows int
	// Progress, when set, is called after each chunk is recorded: the
	// place for a heartbeat.
	Progress func(Progress)
}

// Progress is how far a job is.
type Progress struct {
	Chunks  int // recorded, this run's and earlier runs'
	Rows    int
	Resumed int // chunks an earlier run recorded
}

// Result is a finished job.
type Result struct {
	// Output is the predictions tree (artifact.FetchTree materialises it).
	Output artifact.Digest
	Rows   int
	Chunks int
	// Resumed chunks were recorded by earlier runs, Scored by this one.
	Resumed int
	Scored  int
}

// Manifest describes the predictions tree.
type Manifest struct {
	Format string `json:"format"` // ManifestFormat
	Model  struct {
		Digest string `json:"digest"`
		Format string `json:"format"`
		Kind   string `json:"kind"`
		Output string `json:"output"` // what score is, e.g. P(Y in [">50K"])
	} `json:"model"`
	Input struct {
		Name   string `json:"name"`
		Digest string `json:"digest"`
	} `json:"input"`
	Rows      int      `json:"rows"`
	ChunkRows int      `json:"chunk_rows"`
	Columns   []string `json:"columns"`
	Parts     []string `json:"parts"`
	Threshold float64  `json:"threshold"`
	// Policy is set when labels follow a fairness mitigation's per-group
	// thresholds rather than Threshold.
	Policy *predict.Policy `json:"policy,omitempty"`
}

// ManifestFormat is Manifest.Format.
const ManifestFormat = "gauntlet.predictions.v1"

// progress is the progress ref's content.
type progress struct {
	Model     string  `json:"model"`
	Input     string  `json:"input"`
	ChunkRows int     `json:"chunk_rows"`
	Key       string  `json:"key,omitempty"`
	Chunks    []chunk `json:"chunks"`
	// Output is set once the predictions tree is stored.
	Output artifact.Digest `json:"output,omitempty"`
}

type chunk struct {
	Rows   int             `json:"rows"`
	Digest artifact.Digest `json:"digest"`
	Size   int64           `json:"size"`
}

// commitTimeout bounds recording a scored chunk after the job was
// cancelled: the work is kept unless the store does not answer.
const commitTimeout = time.Minute

// Run runs the job, or resumes it from its progress ref.
func Run(ctx context.Context, j Job) (*Result, error) {
	if err := artifact.ValidateRefName(j.Ref); err != nil {
		return nil, fmt.Errorf("batch: %w", err)
	}
	if j.ChunkRows <= 0 {
		j.ChunkRows = DefaultChunkRows
	}
	info := j.Model.Info()
	pol, err := predict.PolicyOf(&modelfile.Manifest{Lineage: info.Lineage})
	if err != nil {
		return nil, fmt.Errorf("batch: model %s: %w", info.Dir, err)
	}
	want := progress{Model: info.Digest, Input: j.InputDigest, ChunkRows: j.ChunkRows, Key: j.Key}
	st, version, err := load(ctx, j.Store, j.Ref)
	if err != nil {
		return nil, err
	}
	if version == "" {
		st = want
	} else if st.Model != want.Model || st.Input != want.Input || st.ChunkRows != want.ChunkRows || st.Key != want.Key {
		return nil, fmt.Errorf("batch: progress ref %s records model %s, input %s, %d rows a chunk, key %q; this run has model %s, input %s, %d rows a chunk, key %q: choose another ref for another job",
			j.Ref, st.Model, st.Input, st.ChunkRows, st.Key, want.Model, want.Input, want.ChunkRows, want.Key)
	}
	resumed := len(st.Chunks)
	res := &Result{Resumed: resumed}
	if st.Output != "" {
		res.Output, res.Chunks = st.Output, len(st.Chunks)
		for _, c := range st.Chunks {
			res.Rows += c.Rows
		}
		return res, nil
	}
	cols, check, err := columns(info, pol)
	if err != nil {
		return nil, err
	}
	r, err := j.Open(cols)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	rows := 0
	for _, c := range st.Chunks {
		rows += c.Rows
	}
	if err := r.Skip(rows); err != nil {
		return nil, err
	}
	sc := scorer{info: info, policy: pol, check: check, key: j.Key != ""}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ch, err := r.Next(j.ChunkRows)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		body, err := sc.score(j.Model, ch, rows)
		if err != nil {
			return nil, err
		}
		// Recorded even when the job was cancelled meanwhile, so that the
		// scoring is not lost.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
		blob, err := j.Store.Put(cctx, bytes.NewReader(body))
		if err == nil {
			st.Chunks = append(st.Chunks, chunk{Rows: ch.Data.Len(), Digest: blob.Digest, Size: blob.Size})
			version, err = save(cctx, j.Store, j.Ref, st, version)
		}
		cancel()
		if err != nil {
			return nil, fmt.Errorf("batch: record chunk %d of %s: %w", len(st.Chunks)-1, j.Input, err)
		}
		rows += ch.Data.Len()
		res.Scored++
		if j.Progress != nil {
			j.Progress(Progress{Chunks: len(st.Chunks), Rows: rows, Resumed: resumed})
		}
	}
	if rows == 0 {
		return nil, &dataset.Error{File: j.Input, Msg: "no data rows"}
	}
	out, err := writeTree(ctx, j, info, pol, sc.header(), st)
	if err != nil {
		return nil, err
	}
	st.Output = out
	if _, err := save(ctx, j.Store, j.Ref, st, version); err != nil {
		return nil, fmt.Errorf("batch: record the predictions of %s: %w", j.Input, err)
	}
	res.Output, res.Rows, res.Chunks = out, rows, len(st.Chunks)
	return res, nil
}

func load(ctx context.Context, s artifact.Store, ref string) (progress, string, error) {
	r, err := s.GetRef(ctx, ref)
	if errors.Is(err, artifact.ErrNotFound) {
		return progress{}, "", nil
	}
	if err != nil {
		return progress{}, "", fmt.Errorf("batch: read progress ref %s: %w", ref, err)
	}
	var p progress
	if err := json.Unmarshal(r.Data, &p); err != nil {
		return progress{}, "", fmt.Errorf("batch: progress ref %s is malformed: %w", ref, err)
	}
	return p, r.Version, nil
}

// save writes the progress ref if nobody moved it since version: a second
// run of the same job at the same time fails here rather than interleave.
func save(ctx context.Context, s artifact.Store, ref string, p progress, version string) (string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return "", err
	}
	v, err := s.PutRef(ctx, ref, b, version)
	if errors.Is(err, artifact.ErrConflict) {
		return "", fmt.Errorf("progress ref %s moved: another run of this job is writing it: %w", ref, err)
	}
	return v, err
}

// columns lists what the reader decodes: the signature's inputs and the
// columns a fairness policy groups by. check lists the inputs that may not
// be missing (MLflow's semantics: not nullable).
func columns(info *scoring.Info, pol *predict.Policy) (cols []Column, check []string, err error) {
	kinds := map[string]dataset.Kind{}
	for _, c := range info.Schema.Columns {
		kinds[c.Name] = c.Kind
	}
	for _, f := range info.Signature.Inputs {
		k := dataset.Numeric
		if f.Type == scoring.String {
			k = kinds[f.Name]
			if k != dataset.Sensitive {
				k = dataset.Categorical
			}
		}
		cols = append(cols, Column{Name: f.Name, Kind: k})
		if !f.Nullable {
			check = append(check, f.Name)
		}
	}
	if pol != nil {
		for _, g := range pol.Features {
			k := kinds[g]
			if k != dataset.Categorical && k != dataset.Sensitive {
				return nil, nil, fmt.Errorf("batch: model %s: threshold policy groups by %q, not a categorical or sensitive column", info.Dir, g)
			}
			if !slices.ContainsFunc(cols, func(c Column) bool { return c.Name == g }) {
				cols = append(cols, Column{Name: g, Kind: k})
			}
		}
	}
	return cols, check, nil
}

// scorer turns chunks into CSV.
type scorer struct {
	info   *scoring.Info
	policy *predict.Policy
	check  []string
	key    bool
}

func (s scorer) header() []string {
	if s.key {
		return []string{"row", "key", "score", "label"}
	}
	return []string{"row", "score", "label"}
}

// score scores a chunk whose first row is row first of the data, as CSV
// with a header.
func (s scorer) score(m scoring.Model, ch *Chunk, first int) ([]byte, error) {
	d := ch.Data
	for _, name := range s.check {
		col := d.Numeric[name]
		for r, v := range col {
			if v != v { // NaN: missing
				return nil, &dataset.Error{File: d.Source, Row: ch.Where[r], Column: name,
					Msg: "missing value; the model's signature does not allow null here (its graph imputes nothing)"}
			}
		}
	}
	x, err := m.Encode(d)
	if err != nil {
		return nil, fmt.Errorf("batch: rows %d to %d of %s: %w", ch.Where[0], ch.Where[len(ch.Where)-1], d.Source, err)
	}
	p, err := m.PredictProba(x)
	if err != nil {
		return nil, fmt.Errorf("batch: rows %d to %d of %s: %w", ch.Where[0], ch.Where[len(ch.Where)-1], d.Source, err)
	}
	pos, neg := s.info.Labels()
	var b bytes.Buffer
	b.Grow(len(p) * 32)
	writeCSVRow(&b, s.header())
	var group []byte
	line := make([]byte, 0, 64)
	for r, v := range p {
		th := s.info.Threshold
		if s.policy != nil {
			group = group[:0]
			for i, g := range s.policy.Features {
				if i > 0 {
					group = append(group, fairness.IntersectionSep...)
				}
				col := d.Categorical[g]
				if col == nil {
					col = d.Sensitive[g]
				}
				group = append(group, col[r]...)
			}
			th = s.policy.Threshold(string(group))
		}
		label := neg
		if v >= th {
			label = pos
		}
		line = strconv.AppendInt(line[:0], int64(first+r), 10)
		b.Write(line)
		if s.key {
			b.WriteByte(',')
			writeCSVField(&b, ch.Keys[r])
		}
		b.WriteByte(',')
		b.Write(strconv.AppendFloat(line[:0], v, 'g', -1, 64))
		b.WriteByte(',')
		writeCSVField(&b, label)
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

func writeCSVRow(b *bytes.Buffer, fields []string) {
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		writeCSVField(b, f)
	}
	b.WriteByte('\n')
}

// writeCSVField quotes a field when CSV needs it to.
func writeCSVField(b *bytes.Buffer, f string) {
	if !strings.ContainsAny(f, ",\"\r\n") && (f == "" || f[0] != ' ' && f[len(f)-1] != ' ') {
		b.WriteString(f)
		return
	}
	b.WriteByte('"')
	for i := range len(f) {
		if f[i] == '"' {
			b.WriteByte('"')
		}
		b.WriteByte(f[i])
	}
	b.WriteByte('"')
}

// writeTree stores the manifest and the tree index naming every chunk.
func writeTree(ctx context.Context, j Job, info *scoring.Info, pol *predict.Policy, header []string, st progress) (artifact.Digest, error) {
	m := Manifest{Format: ManifestFormat, ChunkRows: j.ChunkRows, Columns: header, Threshold: info.Threshold, Policy: pol}
	m.Model.Digest, m.Model.Format, m.Model.Kind, m.Model.Output = info.Digest, info.Format, info.Kind, info.Signature.Output
	m.Input.Name, m.Input.Digest = j.Input, j.InputDigest
	tree := artifact.Tree{MediaType: artifact.TreeMediaType}
	for i, c := range st.Chunks {
		name := fmt.Sprintf("part-%05d.csv", i)
		m.Parts = append(m.Parts, name)
		m.Rows += c.Rows
		tree.Files = append(tree.Files, artifact.TreeFile{Path: name, Digest: c.Digest, Size: c.Size})
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", err
	}
	blob, err := j.Store.Put(ctx, bytes.NewReader(append(mb, '\n')))
	if err != nil {
		return "", fmt.Errorf("batch: store the manifest: %w", err)
	}
	tree.Files = append(tree.Files, artifact.TreeFile{Path: ManifestFile, Digest: blob.Digest, Size: blob.Size})
	// Sorted by path as artifact.PutTree sorts, so the index is the one
	// PutTree would write for the fetched directory.
	slices.SortFunc(tree.Files, func(a, b artifact.TreeFile) int { return strings.Compare(a.Path, b.Path) })
	index, err := json.Marshal(tree)
	if err != nil {
		return "", err
	}
	ib, err := j.Store.Put(ctx, bytes.NewReader(index))
	if err != nil {
		return "", fmt.Errorf("batch: store the predictions tree: %w", err)
	}
	return ib.Digest, nil
}

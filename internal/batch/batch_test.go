package batch

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/artifacttest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/mltest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxtest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnxmodel"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

// writeCreditRisk writes rows of builtin:credit-risk as a CSV file with a
// header; edit, when set, changes records (0 is the header) first.
func writeCreditRisk(t *testing.T, rows int, seed uint64, edit func(recs [][]string)) string {
	t.Helper()
	recs := [][]string{{}}
	for _, c := range dataset.CreditRiskSchema.Columns {
		recs[0] = append(recs[0], c.Name)
	}
	recs = append(recs, dataset.CreditRisk(dataset.CreditRiskParams{Rows: rows, Seed: seed, Bias: 0.3})...)
	if edit != nil {
		edit(recs)
	}
	path := filepath.Join(t.TempDir(), "data.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	if err := w.WriteAll(recs); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// counting counts the scoring calls of a model and may act on each.
type counting struct {
	scoring.Model
	calls  atomic.Int64
	onCall func(n int) // n counts from 1
}

func (c *counting) PredictProba(x *mat.Dense) ([]float64, error) {
	n := c.calls.Add(1)
	if c.onCall != nil {
		c.onCall(int(n))
	}
	return c.Model.PredictProba(x)
}

func job(store artifact.Store, ref string, m scoring.Model, path string, chunkRows int) Job {
	return Job{
		Store: store, Ref: ref, Model: m, Input: path, InputDigest: "sha256-of-" + path, ChunkRows: chunkRows,
		Open: func(cols []Column) (Reader, error) { return OpenCSV(path, cols, m.Info().Schema, ReadOptions{}) },
	}
}

// models opens a logistic regression of credit-risk in each format.
func models(t *testing.T) map[string]scoring.Model {
	t.Helper()
	root := t.TempDir()
	gdir, odir := filepath.Join(root, "gauntlet"), filepath.Join(root, "onnx")
	mltest.SaveLogReg(t, gdir, 1, map[string]any{scoring.NegativeLabelParam: "no"})
	out := map[string]scoring.Model{}
	g, err := scoring.Open(gdir, scoring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	out[scoring.Gauntlet] = g
	if _, err := os.Stat(onnxtest.LibraryPath(t)); err != nil && os.Getenv("CI") != "true" {
		t.Logf("ONNX Runtime missing (%v): Gauntlet's format only", err)
		return out
	}
	a, err := modelfile.Load(gdir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := onnxmodel.Export(a, odir); err != nil {
		t.Fatal(err)
	}
	o, err := scoring.Open(odir, scoring.Options{ONNXRuntime: onnxtest.LibraryPath(t), Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	out[scoring.ONNX] = o
	return out
}

// readOutput fetches the predictions tree and returns its manifest and the
// rows of its parts, in order.
func readOutput(t *testing.T, store artifact.Store, d artifact.Digest) (Manifest, [][]string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "out")
	if err := artifact.FetchTree(context.Background(), store, d, dir); err != nil {
		t.Fatal(err)
	}
	var m Manifest
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var rows [][]string
	for _, p := range m.Parts {
		f, err := os.Open(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(recs[0], ",") != strings.Join(m.Columns, ",") {
			t.Fatalf("%s: header %v, manifest columns %v", p, recs[0], m.Columns)
		}
		rows = append(rows, recs[1:]...)
	}
	return m, rows
}

// TestResumeAfterCancel cancels a run in the middle and resumes it: no
// chunk is scored twice, and the predictions are those of an uninterrupted
// run, every row once, in order, with the scores the model gives the whole
// data set.
func TestResumeAfterCancel(t *testing.T) {
	const rows, chunkRows = 2500, 300
	const chunks = (rows + chunkRows - 1) / chunkRows
	path := writeCreditRisk(t, rows, 5, nil)
	for format, m := range models(t) {
		t.Run(format, func(t *testing.T) {
			store, _ := artifacttest.FileStore(t)
			ctx := context.Background()

			whole := &counting{Model: m}
			want, err := Run(ctx, job(store, "batch/whole", whole, path, chunkRows))
			if err != nil {
				t.Fatal(err)
			}
			if want.Chunks != chunks || want.Rows != rows || want.Scored != chunks || whole.calls.Load() != chunks {
				t.Fatalf("uninterrupted: %+v after %d scoring calls", want, whole.calls.Load())
			}

			cctx, cancel := context.WithCancel(ctx)
			first := &counting{Model: m, onCall: func(n int) {
				if n == 4 {
					cancel() // while chunk 3 is being scored
				}
			}}
			_, err = Run(cctx, job(store, "batch/cut", first, path, chunkRows))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled run: %v", err)
			}
			var progressed []Progress
			second := &counting{Model: m}
			j := job(store, "batch/cut", second, path, chunkRows)
			j.Progress = func(p Progress) { progressed = append(progressed, p) }
			got, err := Run(ctx, j)
			if err != nil {
				t.Fatal(err)
			}
			// The chunk being scored at the cancel was recorded, so the
			// resumed run starts after it.
			if first.calls.Load() != 4 || got.Resumed != 4 || got.Scored != chunks-4 || second.calls.Load() != chunks-4 {
				t.Fatalf("scoring calls: %d before the cancel, %d after; result %+v; want %d chunks scored once each",
					first.calls.Load(), second.calls.Load(), got, chunks)
			}
			if got.Output != want.Output {
				t.Fatalf("resumed run's predictions %s, uninterrupted run's %s", got.Output, want.Output)
			}
			if len(progressed) != chunks-4 || progressed[0] != (Progress{Chunks: 5, Rows: 5 * chunkRows, Resumed: 4}) ||
				progressed[len(progressed)-1] != (Progress{Chunks: chunks, Rows: rows, Resumed: 4}) {
				t.Fatalf("progress reports %+v", progressed)
			}

			// A finished job answers at once.
			again := &counting{Model: m}
			if r, err := Run(ctx, job(store, "batch/cut", again, path, chunkRows)); err != nil || r.Output != want.Output || r.Scored != 0 || again.calls.Load() != 0 {
				t.Fatalf("finished job run again: %+v, %v, %d scoring calls", r, err, again.calls.Load())
			}

			man, out := readOutput(t, store, got.Output)
			if man.Rows != rows || len(man.Parts) != chunks || man.Model.Digest != m.Info().Digest || man.Model.Format != format {
				t.Fatalf("manifest %+v", man)
			}
			d, err := dataset.Load(path, dataset.WithSchema(m.Info().Schema), dataset.WithHeader(true))
			if err != nil {
				t.Fatal(err)
			}
			p, err := scoring.ScoreDataset(m, d)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != rows {
				t.Fatalf("%d predictions for %d rows", len(out), rows)
			}
			for r, rec := range out {
				score, err := strconv.ParseFloat(rec[1], 64)
				label := map[bool]string{true: "yes", false: "no"}[p[r] >= m.Info().Threshold]
				if rec[0] != strconv.Itoa(r) || err != nil || math.Abs(score-p[r]) > 1e-12 || rec[2] != label {
					t.Fatalf("prediction %d: %v; want row %d, score %v, label %s", r, rec, r, p[r], label)
				}
			}
		})
	}
}

// flakyStore fails the PutRef number failAt with an error.
type flakyStore struct {
	artifact.Store
	puts   atomic.Int64
	failAt int64
}

func (f *flakyStore) PutRef(ctx context.Context, name string, data []byte, ifVersion string) (string, error) {
	if f.puts.Add(1) == f.failAt {
		return "", errors.New("store unavailable")
	}
	return f.Store.PutRef(ctx, name, data, ifVersion)
}

// TestLostRecordRescoresOneChunk: a chunk scored whose record could not be
// written (a worker killed between the two) is the one chunk scored again,
// and the predictions are unchanged.
func TestLostRecordRescoresOneChunk(t *testing.T) {
	const rows, chunkRows = 1000, 250
	path := writeCreditRisk(t, rows, 6, nil)
	m := models(t)[scoring.Gauntlet]
	store, _ := artifacttest.FileStore(t)
	want, err := Run(context.Background(), job(store, "batch/whole", m, path, chunkRows))
	if err != nil {
		t.Fatal(err)
	}
	flaky := &flakyStore{Store: store, failAt: 3}
	first := &counting{Model: m}
	if _, err := Run(context.Background(), job(flaky, "batch/lost", first, path, chunkRows)); err == nil || !strings.Contains(err.Error(), "record chunk 2") {
		t.Fatalf("run whose third record fails: %v", err)
	}
	second := &counting{Model: m}
	got, err := Run(context.Background(), job(store, "batch/lost", second, path, chunkRows))
	if err != nil {
		t.Fatal(err)
	}
	if first.calls.Load() != 3 || second.calls.Load() != 2 || got.Resumed != 2 || got.Output != want.Output {
		t.Fatalf("scoring calls %d then %d, result %+v; want 3 then 2 (chunk 2 again) and output %s", first.calls.Load(), second.calls.Load(), got, want.Output)
	}
}

// TestConcurrentRunRefused: a second run of the same job while the first is
// still going makes the first fail at its next record instead of both
// writing the job.
func TestConcurrentRunRefused(t *testing.T) {
	path := writeCreditRisk(t, 900, 7, nil)
	m := models(t)[scoring.Gauntlet]
	store, _ := artifacttest.FileStore(t)
	var inner error
	j := job(store, "batch/twice", m, path, 300)
	j.Progress = func(p Progress) {
		if p.Chunks == 1 {
			_, inner = Run(context.Background(), job(store, "batch/twice", m, path, 300))
		}
	}
	_, err := Run(context.Background(), j)
	if inner != nil || !errors.Is(err, artifact.ErrConflict) || !strings.Contains(err.Error(), "another run of this job") {
		t.Fatalf("outer run: %v (inner run: %v); want the outer run refused", err, inner)
	}
}

// saveRawONNX saves an ONNX logistic regression over credit-risk's raw
// numeric columns: a graph that imputes nothing.
func saveRawONNX(t *testing.T) scoring.Model {
	t.Helper()
	onnxtest.Runtime(t)
	schema := dataset.CreditRiskSchema
	feats := schema.Names(dataset.Numeric)
	net := &model.Network{Kind: model.LogReg, Layers: []model.Dense{{In: len(feats), Out: 1, W: make([]float64, len(feats)), B: []float64{0}}}}
	net.Layers[0].W[0] = 0.01
	graph, err := onnxmodel.Graph(net)
	if err != nil {
		t.Fatal(err)
	}
	g, err := onnx.Parse(graph)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "raw")
	mf := &onnxmodel.Manifest{Signature: onnxmodel.SignatureOf(g), Output: onnxmodel.Output{Name: onnxmodel.OutputName},
		Schema: schema, Preprocessing: onnxmodel.Preprocessing{Kind: onnxmodel.Raw}, Features: feats, Threshold: 0.5,
		Lineage: modelfile.Lineage{DataDigest: "credit-risk"}}
	if _, err := onnxmodel.Save(dir, mf, graph); err != nil {
		t.Fatal(err)
	}
	m, err := scoring.Open(dir, scoring.Options{ONNXRuntime: onnxtest.LibraryPath(t), Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestBadInput: each problem is an error naming the file, line and column,
// and leaves no predictions.
func TestBadInput(t *testing.T) {
	m := models(t)[scoring.Gauntlet]
	col := func(name string) int {
		for i, c := range dataset.CreditRiskSchema.Columns {
			if c.Name == name {
				return i
			}
		}
		t.Fatalf("no column %s", name)
		return -1
	}
	cases := []struct {
		name  string
		model scoring.Model
		edit  func([][]string)
		want  string
	}{
		{"text in a numeric column", m, func(r [][]string) { r[700][col("income")] = "lots" }, `row 701 column "income": text "lots" in a numeric column`},
		{"missing column", m, func(r [][]string) {
			for i := range r {
				r[i] = append(r[i][:col("purpose")], r[i][col("purpose")+1:]...)
			}
		}, `row 1 column "purpose": the model reads this categorical column and the header lacks it`},
		{"short record", m, func(r [][]string) { r[40] = r[40][:3] }, `row 41: 3 fields, the header has 14`},
		{"empty", m, nil, "empty file"},
	}
	if _, err := os.Stat(onnxtest.LibraryPath(t)); err == nil || os.Getenv("CI") == "true" {
		cases = append(cases, struct {
			name  string
			model scoring.Model
			edit  func([][]string)
			want  string
		}{"missing value where nothing imputes", saveRawONNX(t), func(r [][]string) { r[650][col("debt_ratio")] = "?" },
			`row 651 column "debt_ratio": missing value; the model's signature does not allow null here`})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeCreditRisk(t, 800, 8, c.edit)
			if c.edit == nil {
				if err := os.WriteFile(path, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			store, _ := artifacttest.FileStore(t)
			res, err := Run(context.Background(), job(store, "batch/bad", c.model, path, 300))
			if err == nil || !errors.Is(err, dataset.ErrBadData) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("result %+v, error %v; want a bad-data error naming %s and saying %q", res, err, path, c.want)
			}
			if r, err := store.GetRef(context.Background(), "batch/bad"); err == nil && strings.Contains(string(r.Data), `"output"`) {
				t.Fatalf("predictions recorded for bad input: %s", r.Data)
			}
		})
	}

	// A progress ref of another job is not resumed.
	path := writeCreditRisk(t, 600, 9, nil)
	store, _ := artifacttest.FileStore(t)
	if _, err := Run(context.Background(), job(store, "batch/one", m, path, 300)); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), job(store, "batch/one", m, path, 200)); err == nil || !strings.Contains(err.Error(), "choose another ref") {
		t.Fatalf("another job on the same ref: %v", err)
	}
	if _, err := Run(context.Background(), job(store, "batch/../x", m, path, 200)); err == nil {
		t.Fatal("an invalid ref name was accepted")
	}
}

// TestKeyColumn copies a key column into the predictions, quoting it where
// CSV needs it.
func TestKeyColumn(t *testing.T) {
	m := models(t)[scoring.Gauntlet]
	path := writeCreditRisk(t, 50, 10, func(r [][]string) {
		r[0] = append(r[0], "id")
		for i := 1; i < len(r); i++ {
			r[i] = append(r[i], fmt.Sprintf("customer %d, \"vip\"", i))
		}
	})
	store, _ := artifacttest.FileStore(t)
	j := job(store, "batch/key", m, path, 20)
	j.Key = "id"
	j.Open = func(cols []Column) (Reader, error) {
		return OpenCSV(path, cols, m.Info().Schema, ReadOptions{Key: "id"})
	}
	res, err := Run(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	man, out := readOutput(t, store, res.Output)
	if strings.Join(man.Columns, ",") != "row,key,score,label" || len(out) != 50 || out[49][1] != `customer 50, "vip"` {
		t.Fatalf("columns %v, %d rows, last %v", man.Columns, len(out), out[len(out)-1])
	}
}

// TestResumeOnS3: the same cancel and resume against an S3 store (gofakes3
// over HTTP, the real SDK client), whose refs are compare-and-swapped with
// conditional PUTs.
func TestResumeOnS3(t *testing.T) {
	path := writeCreditRisk(t, 1000, 12, nil)
	m := models(t)[scoring.Gauntlet]
	store := artifacttest.NewFakeS3(t).Open(t, "gauntlet")
	ctx := context.Background()
	want, err := Run(ctx, job(store, "batch/whole", m, path, 250))
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	first := &counting{Model: m, onCall: func(n int) {
		if n == 2 {
			cancel()
		}
	}}
	if _, err := Run(cctx, job(store, "batch/cut", first, path, 250)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	second := &counting{Model: m}
	got, err := Run(ctx, job(store, "batch/cut", second, path, 250))
	if err != nil || got.Output != want.Output || first.calls.Load()+second.calls.Load() != 4 {
		t.Fatalf("resumed: %+v, %v; scoring calls %d + %d, want 4 in all", got, err, first.calls.Load(), second.calls.Load())
	}
}

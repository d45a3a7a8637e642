package batch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/artifacttest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/mltest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

// writeCreditRiskParquet writes the rows writeCreditRisk writes as Parquet,
// rowGroup rows per row group.
func writeCreditRiskParquet(t *testing.T, rows int, seed uint64, rowGroup int64, edit func(recs [][]string)) string {
	t.Helper()
	var header []string
	for _, c := range dataset.CreditRiskSchema.Columns {
		header = append(header, c.Name)
	}
	recs := dataset.CreditRisk(dataset.CreditRiskParams{Rows: rows, Seed: seed, Bias: 0.3})
	if edit != nil {
		edit(recs)
	}
	path := filepath.Join(t.TempDir(), "data.parquet")
	mltest.WriteParquet(t, path, header, recs, rowGroup)
	return path
}

// TestParquetAndFrameScoreAsCSV: the same rows as CSV, as Parquet (chunks
// crossing row groups) and as a builtin source's frame give the same
// predictions, and a cancelled Parquet job resumes by seeking past the
// rows it recorded, scoring no chunk twice.
func TestParquetAndFrameScoreAsCSV(t *testing.T) {
	const rows, chunkRows = 2500, 250
	const chunks = rows / chunkRows
	csvPath := writeCreditRisk(t, rows, 5, nil)
	pqPath := writeCreditRiskParquet(t, rows, 5, 700, nil)
	for format, m := range models(t) {
		t.Run(format, func(t *testing.T) {
			store, _ := artifacttest.FileStore(t)
			ctx := context.Background()
			want, err := Run(ctx, job(store, "batch/csv", m, csvPath, chunkRows))
			if err != nil {
				t.Fatal(err)
			}
			_, wantRows := readOutput(t, store, want.Output)

			pq := job(store, "batch/pq", m, pqPath, chunkRows)
			pq.Open = func(cols []Column) (Reader, error) { return Open(pqPath, cols, m.Info().Schema, ReadOptions{}) }
			whole, err := Run(ctx, pq)
			if err != nil {
				t.Fatal(err)
			}
			_, got := readOutput(t, store, whole.Output)
			if !slices.EqualFunc(got, wantRows, slices.Equal) {
				t.Fatalf("Parquet predictions differ from CSV's: first %v vs %v", got[0], wantRows[0])
			}

			frame, err := dataset.LoadFrame("builtin:credit-risk?rows=2500&seed=5&bias=0.3", dataset.WithSchema(m.Info().Schema))
			if err != nil {
				t.Fatal(err)
			}
			fj := job(store, "batch/frame", m, "builtin", chunkRows)
			fj.Open = func(cols []Column) (Reader, error) { return OpenFrame(frame, cols, ReadOptions{}) }
			fres, err := Run(ctx, fj)
			if err != nil {
				t.Fatal(err)
			}
			if _, got := readOutput(t, store, fres.Output); !slices.EqualFunc(got, wantRows, slices.Equal) {
				t.Fatalf("frame predictions differ from CSV's: first %v vs %v", got[0], wantRows[0])
			}

			cctx, cancel := context.WithCancel(ctx)
			first := &counting{Model: m, onCall: func(n int) {
				if n == 4 {
					cancel()
				}
			}}
			cut := job(store, "batch/pq-cut", first, pqPath, chunkRows)
			cut.Open = pq.Open
			if _, err := Run(cctx, cut); !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled run: %v", err)
			}
			second := &counting{Model: m}
			cut.Model = second
			res, err := Run(ctx, cut)
			if err != nil {
				t.Fatal(err)
			}
			if res.Output != whole.Output || res.Resumed != 4 || first.calls.Load()+second.calls.Load() != chunks {
				t.Fatalf("resumed: %+v; scoring calls %d + %d, want %d in all and output %s", res, first.calls.Load(), second.calls.Load(), chunks, whole.Output)
			}
		})
	}
}

// TestParquetBadInput: errors name the file, row and column.
func TestParquetBadInput(t *testing.T) {
	m := models(t)[scoring.Gauntlet]
	col := func(name string) int {
		return slices.IndexFunc(dataset.CreditRiskSchema.Columns, func(c dataset.Column) bool { return c.Name == name })
	}
	open := func(path string) func([]Column) (Reader, error) {
		return func(cols []Column) (Reader, error) { return Open(path, cols, m.Info().Schema, ReadOptions{}) }
	}
	textIncome := writeCreditRiskParquet(t, 800, 8, 300, func(r [][]string) { r[700][col("income")] = "lots" })
	noPurpose := filepath.Join(t.TempDir(), "nopurpose.parquet")
	{
		var header []string
		for _, c := range dataset.CreditRiskSchema.Columns {
			if c.Name != "purpose" {
				header = append(header, c.Name)
			}
		}
		recs := dataset.CreditRisk(dataset.CreditRiskParams{Rows: 50, Seed: 8})
		for i, r := range recs {
			recs[i] = slices.Delete(r, col("purpose"), col("purpose")+1)
		}
		mltest.WriteParquet(t, noPurpose, header, recs, 50)
	}
	whole := writeCreditRiskParquet(t, 200, 8, 100, nil)
	b, err := os.ReadFile(whole)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.parquet")
	if err := os.WriteFile(cut, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{textIncome, `row 701 column "income": text "lots" in a numeric column`},
		{noPurpose, `column "purpose": the model reads this categorical column and the file lacks it`},
		{cut, "not a readable Parquet file"},
	} {
		store, _ := artifacttest.FileStore(t)
		j := job(store, "batch/bad", m, c.path, 300)
		j.Open = open(c.path)
		_, err := Run(context.Background(), j)
		if !errors.Is(err, dataset.ErrBadData) || !strings.Contains(err.Error(), c.path) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want a bad-data error saying %q", filepath.Base(c.path), err, c.want)
		}
	}
}

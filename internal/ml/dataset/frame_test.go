package dataset_test

import (
	"bytes"
	"encoding/csv"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
)

const builtinSmall = "builtin:credit-risk?rows=3000&seed=7&bias=0.3"

// sameData compares two data sets value by value (float64s bit for bit).
func sameData(t *testing.T, what string, a, b *dataset.Dataset) {
	t.Helper()
	if a.Len() != b.Len() || !slices.Equal(a.Y, b.Y) {
		t.Fatalf("%s: %d vs %d rows or other labels", what, a.Len(), b.Len())
	}
	for name, v := range a.Numeric {
		w := b.Numeric[name]
		for i := range v {
			if math.Float64bits(v[i]) != math.Float64bits(w[i]) && !(math.IsNaN(v[i]) && math.IsNaN(w[i])) {
				t.Fatalf("%s: %s row %d: %v vs %v", what, name, i, v[i], w[i])
			}
		}
	}
	for _, m := range [][2]map[string][]string{{a.Categorical, b.Categorical}, {a.Sensitive, b.Sensitive}} {
		for name, v := range m[0] {
			if !slices.Equal(v, m[1][name]) {
				t.Fatalf("%s: column %s differs", what, name)
			}
		}
	}
}

func writeCSV(t *testing.T, path string, header []string, rows [][]string) {
	t.Helper()
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(header)
	_ = w.WriteAll(rows)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func creditHeader() []string {
	var h []string
	for _, c := range dataset.CreditRiskSchema.Columns {
		h = append(h, c.Name)
	}
	return h
}

// The builtin source streams typed values straight into a frame; written
// out as CSV and loaded back, the same rows give the same values.
func TestBuiltinFrameMatchesItsCSV(t *testing.T) {
	b, err := dataset.LoadFrame(builtinSmall)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "credit.csv")
	writeCSV(t, path, creditHeader(), dataset.CreditRisk(dataset.CreditRiskParams{Rows: 3000, Seed: 7, Bias: 0.3}))
	c, err := dataset.LoadFrame(path, dataset.WithSchema(dataset.CreditRiskSchema), dataset.WithHeader(true))
	if err != nil {
		t.Fatal(err)
	}
	sameData(t, "builtin vs CSV", b.Dataset(), c.Dataset())
	for name, col := range b.Numeric {
		if col.F32 == nil || c.Numeric[name].F32 == nil {
			t.Errorf("%s is stored in float64; every generated number fits float32", name)
		}
	}
	if len(b.Labels) != 2 || b.Labels[0].Rows+b.Labels[1].Rows != 3000 {
		t.Errorf("label counts %+v", b.Labels)
	}
}

// A column is kept in float32 only when every value comes back exactly.
func TestFloat32OnlyWherePrecisionAllows(t *testing.T) {
	csvText := "small,money,id,ratio,y\n" +
		"0.123,123456.789,16777217,0.1,yes\n" +
		"-4.5e-3,1.5,3,0.25,no\n" +
		"?,2.25,4,0.33333333,no\n"
	f, err := dataset.ReadFrame(strings.NewReader(csvText), "p.csv", dataset.WithLabel("y", "yes"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"small": true, "money": false, "id": false, "ratio": false}
	for name, f32 := range want {
		if got := f.Numeric[name].F32 != nil; got != f32 {
			t.Errorf("%s: float32 %v, want %v", name, got, f32)
		}
	}
	d, err := dataset.Read(strings.NewReader(csvText), "p.csv", dataset.WithLabel("y", "yes"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Numeric["small"][0] != 0.123 || d.Numeric["small"][1] != -4.5e-3 || !math.IsNaN(d.Numeric["small"][2]) ||
		d.Numeric["money"][0] != 123456.789 || d.Numeric["id"][0] != 16777217 {
		t.Errorf("values not exact: %v %v %v", d.Numeric["small"], d.Numeric["money"], d.Numeric["id"])
	}
}

func TestFrameSplitAndEncodingMatchDataset(t *testing.T) {
	f, err := dataset.LoadFrame(builtinSmall)
	if err != nil {
		t.Fatal(err)
	}
	d := f.Dataset()
	trI, teI, err := f.Split(0.2, 3)
	if err != nil {
		t.Fatal(err)
	}
	tr, te, err := d.Split(0.2, 3)
	if err != nil {
		t.Fatal(err)
	}
	sameData(t, "train split", f.Subset(trI), tr)
	sameData(t, "test split", f.Subset(teI), te)
	opts := dataset.EncoderOptions{Unseen: dataset.UnseenOther, MinFrequency: 5, IncludeSensitive: true}
	ef, err := dataset.FitEncoderFrame(f, trI, opts)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := dataset.FitEncoder(tr, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ef.FeatureNames(), ed.FeatureNames()) {
		t.Fatalf("features %v vs %v", ef.FeatureNames(), ed.FeatureNames())
	}
	x32, err := ef.TransformFrame(f, teI)
	if err != nil {
		t.Fatal(err)
	}
	x64, err := ed.Transform(te)
	if err != nil {
		t.Fatal(err)
	}
	rows, cols := x64.Dims()
	if r, c := x32.Dims(); r != rows || c != cols {
		t.Fatalf("float32 matrix %d×%d, float64 %d×%d", r, c, rows, cols)
	}
	for i := range rows {
		for j := range cols {
			if math.Abs(float64(x32.At(i, j))-x64.At(i, j)) > 1e-5 {
				t.Fatalf("x[%d][%d] = %v (frame) vs %v (dataset)", i, j, x32.At(i, j), x64.At(i, j))
			}
		}
	}
	if y := f.LabelsOf(teI); len(y) != te.Len() || float64(y[0]) != te.Y[0] {
		t.Error("LabelsOf disagrees with the dataset split")
	}
}

// writeParquet writes the builtin rows with typed columns (int64, float64,
// dictionary-free strings) in row groups of 700 rows, with one null.
func writeParquet(t *testing.T, path string, rows [][]string) {
	t.Helper()
	var fields []arrow.Field
	for _, c := range dataset.CreditRiskSchema.Columns {
		typ := arrow.DataType(arrow.BinaryTypes.String)
		if c.Kind == dataset.Numeric {
			typ = arrow.PrimitiveTypes.Float64
			if c.Name == "age" || c.Name == "loan_term_months" {
				typ = arrow.PrimitiveTypes.Int64
			}
		}
		fields = append(fields, arrow.Field{Name: c.Name, Type: typ, Nullable: true})
	}
	schema := arrow.NewSchema(fields, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for r, rec := range rows {
		for c, v := range rec {
			switch fb := b.Field(c).(type) {
			case *array.StringBuilder:
				fb.Append(v)
			case *array.Float64Builder:
				if r == 5 && c == 3 {
					fb.AppendNull()
					continue
				}
				fb.Append(must(strconvParse(v)))
			case *array.Int64Builder:
				fb.Append(int64(must(strconvParse(v))))
			}
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	tbl := array.NewTableFromRecords(schema, []arrow.RecordBatch{rec})
	defer tbl.Release()
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := pqarrow.WriteTable(tbl, out, 700, parquet.NewWriterProperties(), pqarrow.DefaultWriterProps()); err != nil {
		t.Fatal(err)
	}
}

func TestParquetLoadsLikeCSV(t *testing.T) {
	rows := dataset.CreditRisk(dataset.CreditRiskParams{Rows: 3000, Seed: 7, Bias: 0.3})
	dir := t.TempDir()
	pq := filepath.Join(dir, "credit.parquet")
	writeParquet(t, pq, rows)
	rows[5][3] = "" // the null income
	csvPath := filepath.Join(dir, "credit.csv")
	writeCSV(t, csvPath, creditHeader(), rows)
	opts := []dataset.Option{dataset.WithLabel("defaulted", "yes"), dataset.WithSensitive("sex", "age_group")}
	fromPQ, err := dataset.LoadFrame(pq, opts...)
	if err != nil {
		t.Fatal(err)
	}
	fromCSV, err := dataset.LoadFrame(csvPath, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fromPQ.Schema.Columns, fromCSV.Schema.Columns) {
		t.Fatalf("schemas differ:\n%s\n%s", fromPQ.Schema, fromCSV.Schema)
	}
	sameData(t, "Parquet vs CSV", fromPQ.Dataset(), fromCSV.Dataset())
	if fromPQ.Numeric["income"].F32 == nil || len(fromPQ.Digest) != 64 {
		t.Error("income widened to float64 or no digest")
	}
	// Found by its magic bytes when the name says nothing.
	b, err := os.ReadFile(pq)
	if err != nil {
		t.Fatal(err)
	}
	viaReader, err := dataset.Read(bytes.NewReader(b), "upload", opts...)
	if err != nil {
		t.Fatal(err)
	}
	sameData(t, "Parquet by magic", viaReader, fromCSV.Dataset())
	if viaReader.Digest != fromPQ.Digest {
		t.Error("the same Parquet bytes gave another digest")
	}

	_, err = dataset.LoadFrame(pq, append(opts, dataset.WithKind(dataset.Numeric, "purpose"))...)
	var de *dataset.Error
	if !errors.As(err, &de) || de.Column != "purpose" || de.Row != 1 || !strings.Contains(de.Msg, "text") {
		t.Errorf("text declared numeric: err = %v", err)
	}
	if _, err := dataset.Read(bytes.NewReader(b[:len(b)/2]), "cut.parquet", opts...); !errors.Is(err, dataset.ErrBadData) {
		t.Errorf("truncated Parquet: err = %v, want bad data", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func strconvParse(s string) (float64, error) { return strconv.ParseFloat(s, 64) }

// onlyReader hides every method but Read.
type onlyReader struct{ r *strings.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestReaderThatCannotSeekLoadsTheSame(t *testing.T) {
	a, err := dataset.ReadFrame(strings.NewReader(small), "mem.csv", dataset.WithLabel("y", "yes"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := dataset.ReadFrame(onlyReader{strings.NewReader(small)}, "mem.csv", dataset.WithLabel("y", "yes"))
	if err != nil {
		t.Fatal(err)
	}
	sameData(t, "seekable vs not", a.Dataset(), b.Dataset())
	if a.Digest != b.Digest || a.NegativeLabel() != "no" {
		t.Errorf("digests %s %s, negative label %q", a.Digest, b.Digest, a.NegativeLabel())
	}
}

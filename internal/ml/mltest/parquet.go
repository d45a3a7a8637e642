package mltest

import (
	"os"
	"strconv"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// WriteParquet writes rows (as a CSV would hold them) to a Parquet file at
// path, rowGroup rows per row group: a column whose every present value is
// a number is DOUBLE, any other is a string; empty values are nulls.
func WriteParquet(t testing.TB, path string, header []string, rows [][]string, rowGroup int64) {
	t.Helper()
	fields := make([]arrow.Field, len(header))
	for c, name := range header {
		typ := arrow.DataType(arrow.PrimitiveTypes.Float64)
		for _, r := range rows {
			if _, err := strconv.ParseFloat(r[c], 64); r[c] != "" && err != nil {
				typ = arrow.BinaryTypes.String
				break
			}
		}
		fields[c] = arrow.Field{Name: name, Type: typ, Nullable: true}
	}
	schema := arrow.NewSchema(fields, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for _, r := range rows {
		for c, v := range r {
			switch fb := b.Field(c).(type) {
			case *array.StringBuilder:
				if v == "" {
					fb.AppendNull()
				} else {
					fb.Append(v)
				}
			case *array.Float64Builder:
				if v == "" {
					fb.AppendNull()
					continue
				}
				x, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatal(err)
				}
				fb.Append(x)
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
	// WriteTable closes out when it has written the footer.
	if err := pqarrow.WriteTable(tbl, out, rowGroup, parquet.NewWriterProperties(), pqarrow.DefaultWriterProps()); err != nil {
		t.Fatal(err)
	}
}

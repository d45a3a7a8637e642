package batch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
)

// Open opens a CSV or Parquet file as OpenCSV or OpenParquet do: Parquet
// when its name ends in .parquet or .pq or it starts with Parquet's magic
// bytes, as package dataset decides.
func Open(path string, cols []Column, schema dataset.Schema, o ReadOptions) (Reader, error) {
	pq, err := isParquet(path)
	if err != nil {
		return nil, err
	}
	if pq {
		return OpenParquet(path, cols, schema, o)
	}
	return OpenCSV(path, cols, schema, o)
}

func isParquet(path string) (bool, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".parquet", ".pq":
		return true, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("batch: %w", err)
	}
	defer f.Close()
	head := make([]byte, 4)
	n, _ := io.ReadFull(f, head)
	return n == 4 && bytes.Equal(head, []byte("PAR1")), nil
}

// parquetBatch is the rows the record reader decodes at a time.
const parquetBatch = 8192

// parquetReader reads the columns a model needs from a Parquet file, in
// record batches that cross row groups; Skip seeks by the row groups'
// row counts rather than decoding what it passes.
type parquetReader struct {
	path    string
	pf      *file.Reader // closes the file
	rr      pqarrow.RecordReader
	cols    []Column
	index   []int // of each column, then of the key column, among the reader's
	key     bool
	missing []string
	schema  dataset.Schema
	rec     arrow.RecordBatch // the batch being read, nil before the first
	at      int               // next row of rec
	row     int               // rows passed, of the whole file
	// interned holds one copy of each value of a string column, as the CSV
	// reader does: arrow's strings point into buffers that would otherwise
	// stay alive with them.
	interned []map[string]string
}

// OpenParquet opens the Parquet file at path to read cols (and the key
// column), which its schema must hold as flat columns of numbers, strings
// or booleans; other columns are not read. Nulls and the missing tokens
// are missing values.
func OpenParquet(path string, cols []Column, schema dataset.Schema, o ReadOptions) (Reader, error) {
	osf, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("batch: %w", err)
	}
	pf, err := file.NewParquetReader(osf)
	if err != nil {
		osf.Close()
		return nil, &dataset.Error{File: path, Msg: fmt.Sprintf("not a readable Parquet file: %v", err)}
	}
	fail := func(err error) (Reader, error) {
		pf.Close()
		return nil, err
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: parquetBatch}, memory.DefaultAllocator)
	if err != nil {
		return fail(&dataset.Error{File: path, Msg: fmt.Sprintf("Parquet schema: %v", err)})
	}
	as, err := fr.Schema()
	if err != nil {
		return fail(&dataset.Error{File: path, Msg: fmt.Sprintf("Parquet schema: %v", err)})
	}
	if pf.MetaData().Schema.NumColumns() != as.NumFields() {
		return fail(&dataset.Error{File: path, Msg: "nested Parquet columns are not supported"})
	}
	p := &parquetReader{path: path, pf: pf, cols: cols, missing: o.Missing, schema: schema, interned: make([]map[string]string, len(cols))}
	if p.missing == nil {
		p.missing = dataset.DefaultMissing
	}
	var leaves []int
	find := func(name, what string) error {
		i := as.FieldIndices(name)
		if len(i) == 0 {
			return &dataset.Error{File: path, Column: name, Msg: what}
		}
		if t := as.Field(i[0]).Type; !dataset.ParquetNumber(t) && !dataset.ParquetText(t) {
			return &dataset.Error{File: path, Column: name, Msg: fmt.Sprintf("Parquet type %s is not supported", t)}
		}
		p.index = append(p.index, len(leaves))
		leaves = append(leaves, i[0])
		return nil
	}
	for j, c := range cols {
		if err := find(c.Name, fmt.Sprintf("the model reads this %s column and the file lacks it", c.Kind)); err != nil {
			return fail(err)
		}
		if c.Kind == dataset.Numeric && as.Field(leaves[j]).Type.ID() == arrow.BOOL {
			return fail(&dataset.Error{File: path, Column: c.Name, Msg: "a boolean column cannot be numeric"})
		}
		p.interned[j] = map[string]string{}
	}
	if o.Key != "" {
		if err := find(o.Key, "key column is missing from the file"); err != nil {
			return fail(err)
		}
		p.key = true
	}
	// The reader takes each leaf once; a key that is also a model column
	// is read twice by index, not twice from the file.
	uniq := slices.Clone(leaves)
	slices.Sort(uniq)
	uniq = slices.Compact(uniq)
	for k, l := range leaves {
		p.index[k] = slices.Index(uniq, l)
	}
	if p.rr, err = fr.GetRecordReader(context.Background(), uniq, nil); err != nil {
		return fail(&dataset.Error{File: path, Msg: fmt.Sprintf("Parquet columns: %v", err)})
	}
	return p, nil
}

// next makes the next row current, reading a batch when the last one is
// used up; io.EOF at the end of the file.
func (p *parquetReader) next() error {
	for p.rec == nil || p.at >= int(p.rec.NumRows()) {
		if !p.rr.Next() {
			if err := p.rr.Err(); err != nil && !errors.Is(err, io.EOF) {
				return &dataset.Error{File: p.path, Row: p.row + 1, Msg: fmt.Sprintf("Parquet data: %v", err)}
			}
			return io.EOF
		}
		p.rec, p.at = p.rr.RecordBatch(), 0
	}
	return nil
}

func (p *parquetReader) Skip(n int) error {
	total := p.pf.NumRows()
	if int64(p.row+n) > total {
		return fmt.Errorf("batch: %s has %d rows, fewer than the %d an earlier run scored: %w", p.path, total, p.row+n, io.ErrUnexpectedEOF)
	}
	if n == 0 {
		return nil
	}
	if err := p.rr.SeekToRow(int64(p.row + n)); err != nil {
		return &dataset.Error{File: p.path, Row: p.row + n + 1, Msg: fmt.Sprintf("Parquet seek: %v", err)}
	}
	p.rec, p.row = nil, p.row+n
	return nil
}

func (p *parquetReader) Next(n int) (*Chunk, error) {
	d := &dataset.Dataset{Source: p.path, Schema: p.schema, Numeric: map[string][]float64{},
		Categorical: map[string][]string{}, Sensitive: map[string][]string{}}
	nums := make([][]float64, len(p.cols))
	strs := make([][]string, len(p.cols))
	ch := &Chunk{Data: d}
	var buf []byte
	for len(ch.Where) < n {
		if err := p.next(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, err
		}
		p.row++
		ch.Where = append(ch.Where, p.row)
		for j, col := range p.cols {
			arr := p.rec.Column(p.index[j])
			var v float64
			var isNum bool
			buf, v, isNum = dataset.ParquetValue(buf[:0], arr, p.at)
			field := string(buf)
			if !isNum {
				field = strings.TrimSpace(field)
				if slices.Contains(p.missing, field) {
					field = ""
				}
			}
			if col.Kind != dataset.Numeric {
				strs[j] = append(strs[j], p.intern(j, field))
				continue
			}
			switch {
			case field == "":
				v = math.NaN()
			case !isNum:
				x, err := strconv.ParseFloat(field, 64)
				if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
					return nil, &dataset.Error{File: p.path, Row: p.row, Column: col.Name, Msg: fmt.Sprintf("text %q in a numeric column", field)}
				}
				v = x
			}
			nums[j] = append(nums[j], v)
		}
		if p.key {
			buf, _, _ = dataset.ParquetValue(buf[:0], p.rec.Column(p.index[len(p.cols)]), p.at)
			ch.Keys = append(ch.Keys, strings.TrimSpace(string(buf)))
		}
		p.at++
	}
	if len(ch.Where) == 0 {
		return nil, io.EOF
	}
	d.Y = make([]float64, len(ch.Where))
	for j, col := range p.cols {
		switch col.Kind {
		case dataset.Numeric:
			d.Numeric[col.Name] = nums[j]
		case dataset.Sensitive:
			d.Sensitive[col.Name] = strs[j]
		default:
			d.Categorical[col.Name] = strs[j]
		}
	}
	return ch, nil
}

func (p *parquetReader) intern(j int, f string) string {
	m := p.interned[j]
	if v, ok := m[f]; ok {
		return v
	}
	if len(m) < maxInterned {
		m[f] = f
	}
	return f
}

func (p *parquetReader) Close() error {
	p.rr.Release()
	return p.pf.Close()
}

package batch

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
)

// Reader reads a data set in chunks of rows, always in the same order, so
// that chunk k holds the same rows on every run: OpenCSV's, OpenParquet's
// and FrameReader's.
type Reader interface {
	// Next reads the next at most n rows, or returns io.EOF when none are
	// left.
	Next(n int) (*Chunk, error)
	// Skip passes over the next n rows without decoding them (a resumed run
	// skipping the chunks an earlier run scored); io.ErrUnexpectedEOF when
	// fewer are left.
	Skip(n int) error
	Close() error
}

// Column is a column a Reader decodes: numeric, or categorical or sensitive
// (strings).
type Column struct {
	Name string
	Kind dataset.Kind
}

// Chunk is rows of a data set: the columns asked for (missing values as
// dataset.Dataset holds them, NaN and ""), no labels.
type Chunk struct {
	Data *dataset.Dataset
	// Where names each row in the source for error messages: its 1-based
	// line in a CSV file, its 1-based row in a Parquet file or a frame.
	Where []int
	// Keys holds the key column's values, when one was asked for.
	Keys []string
}

// ReadOptions configure OpenCSV and OpenParquet.
type ReadOptions struct {
	// Key is a column copied into the predictions as each row's key; empty
	// for none.
	Key string
	// Missing are the field values read as missing; nil means
	// dataset.DefaultMissing.
	Missing []string
}

// csvReader reads a CSV file with a header row, as dataset.Load reads one
// (fields trimmed, '|' comment lines skipped), a chunk at a time.
type csvReader struct {
	path    string
	f       *os.File
	r       *csv.Reader
	cols    []Column
	index   []int // of each column in the file's records
	key     int   // of the key column, or -1
	width   int
	missing []string
	schema  dataset.Schema
	// interned holds one copy of each value of a string column: a field
	// is a slice of its whole line, which would otherwise stay alive with
	// it, and categories repeat.
	interned []map[string]string
}

// maxInterned bounds the values interned per column; a column of mostly
// distinct values (an identifier) is copied value by value past it.
const maxInterned = 1 << 12

func (c *csvReader) intern(j int, f string) string {
	m := c.interned[j]
	if v, ok := m[f]; ok {
		return v
	}
	v := strings.Clone(f)
	if len(m) < maxInterned {
		m[v] = v
	}
	return v
}

// OpenCSV opens the CSV file at path to read cols (and the key column),
// which its header must name; other columns are ignored. schema is what the
// chunks' data sets carry (the model's).
func OpenCSV(path string, cols []Column, schema dataset.Schema, o ReadOptions) (Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("batch: %w", err)
	}
	r := csv.NewReader(f)
	r.TrimLeadingSpace = true
	r.FieldsPerRecord = -1
	r.Comment = '|'
	r.ReuseRecord = true
	cr := &csvReader{path: path, f: f, r: r, cols: cols, key: -1, missing: o.Missing, schema: schema, interned: make([]map[string]string, len(cols))}
	for j := range cols {
		cr.interned[j] = map[string]string{}
	}
	if cr.missing == nil {
		cr.missing = dataset.DefaultMissing
	}
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		f.Close()
		return nil, &dataset.Error{File: path, Msg: "empty file: want a header row naming the columns"}
	}
	if err != nil {
		f.Close()
		return nil, cr.readError(err)
	}
	cr.width = len(header)
	at := map[string]int{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		if _, dup := at[h]; dup {
			f.Close()
			return nil, &dataset.Error{File: path, Row: 1, Column: h, Msg: "duplicate column name"}
		}
		at[h] = i
	}
	for _, c := range cols {
		i, ok := at[c.Name]
		if !ok {
			f.Close()
			return nil, &dataset.Error{File: path, Row: 1, Column: c.Name, Msg: fmt.Sprintf("the model reads this %s column and the header lacks it", c.Kind)}
		}
		cr.index = append(cr.index, i)
	}
	if o.Key != "" {
		i, ok := at[o.Key]
		if !ok {
			f.Close()
			return nil, &dataset.Error{File: path, Row: 1, Column: o.Key, Msg: "key column is missing from the header"}
		}
		cr.key = i
	}
	return cr, nil
}

func (c *csvReader) readError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &dataset.Error{File: c.path, Row: pe.Line, Msg: pe.Err.Error()}
	}
	return fmt.Errorf("batch: read %s: %w", c.path, err)
}

// record reads the next data record and its line.
func (c *csvReader) record() ([]string, int, error) {
	rec, err := c.r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, 0, io.EOF
		}
		return nil, 0, c.readError(err)
	}
	line, _ := c.r.FieldPos(0)
	if len(rec) != c.width {
		return nil, 0, &dataset.Error{File: c.path, Row: line, Msg: fmt.Sprintf("%d fields, the header has %d", len(rec), c.width)}
	}
	return rec, line, nil
}

func (c *csvReader) Skip(n int) error {
	for range n {
		if _, _, err := c.record(); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("batch: %s ends before the rows an earlier run scored: %w", c.path, io.ErrUnexpectedEOF)
			}
			return err
		}
	}
	return nil
}

func (c *csvReader) Next(n int) (*Chunk, error) {
	d := &dataset.Dataset{Source: c.path, Schema: c.schema, Numeric: map[string][]float64{},
		Categorical: map[string][]string{}, Sensitive: map[string][]string{}}
	nums := make([][]float64, len(c.cols))
	strs := make([][]string, len(c.cols))
	ch := &Chunk{Data: d}
	for len(ch.Where) < n {
		rec, line, err := c.record()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		ch.Where = append(ch.Where, line)
		if c.key >= 0 {
			ch.Keys = append(ch.Keys, strings.Clone(strings.TrimSpace(rec[c.key])))
		}
		for j, col := range c.cols {
			f := strings.TrimSpace(rec[c.index[j]])
			miss := slices.Contains(c.missing, f)
			if col.Kind != dataset.Numeric {
				if miss {
					f = ""
				}
				strs[j] = append(strs[j], c.intern(j, f))
				continue
			}
			v := math.NaN()
			if !miss {
				p, err := strconv.ParseFloat(f, 64)
				if err != nil || math.IsNaN(p) || math.IsInf(p, 0) {
					return nil, &dataset.Error{File: c.path, Row: line, Column: col.Name, Msg: fmt.Sprintf("text %q in a numeric column", f)}
				}
				v = p
			}
			nums[j] = append(nums[j], v)
		}
	}
	if len(ch.Where) == 0 {
		return nil, io.EOF
	}
	d.Y = make([]float64, len(ch.Where))
	for j, col := range c.cols {
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

func (c *csvReader) Close() error { return c.f.Close() }

// frameReader reads a data set loaded whole as a frame (a builtin: source,
// which has no file to stream) a chunk at a time.
type frameReader struct {
	f    *dataset.Frame
	cols []Column
	key  func(r int) string // nil without a key column
	row  int
}

// OpenFrame reads cols (and the key column) of f, whose columns must hold
// them with the kinds asked for.
func OpenFrame(f *dataset.Frame, cols []Column, o ReadOptions) (Reader, error) {
	for _, c := range cols {
		ok := false
		switch c.Kind {
		case dataset.Numeric:
			_, ok = f.Numeric[c.Name]
		case dataset.Sensitive:
			_, ok = f.Sensitive[c.Name]
		default:
			_, ok = f.Categorical[c.Name]
		}
		if !ok {
			return nil, &dataset.Error{File: f.Source, Column: c.Name, Msg: fmt.Sprintf("the model reads this %s column and the data lacks it", c.Kind)}
		}
	}
	fr := &frameReader{f: f, cols: cols}
	if o.Key != "" {
		if c, ok := f.Numeric[o.Key]; ok {
			fr.key = func(r int) string {
				if v := c.Exact(r); !math.IsNaN(v) {
					return strconv.FormatFloat(v, 'g', -1, 64)
				}
				return ""
			}
		} else if c, ok := f.Categorical[o.Key]; ok {
			fr.key = c.At
		} else if c, ok := f.Sensitive[o.Key]; ok {
			fr.key = c.At
		} else {
			return nil, &dataset.Error{File: f.Source, Column: o.Key, Msg: "key column is missing from the data"}
		}
	}
	return fr, nil
}

func (r *frameReader) Skip(n int) error {
	if r.row+n > r.f.Len() {
		return fmt.Errorf("batch: %s has %d rows, fewer than the %d an earlier run scored: %w", r.f.Source, r.f.Len(), r.row+n, io.ErrUnexpectedEOF)
	}
	r.row += n
	return nil
}

func (r *frameReader) Next(n int) (*Chunk, error) {
	end := min(r.row+n, r.f.Len())
	if r.row >= end {
		return nil, io.EOF
	}
	idx := make([]int, end-r.row)
	ch := &Chunk{Where: make([]int, len(idx))}
	for i := range idx {
		idx[i] = r.row + i
		ch.Where[i] = r.row + i + 1
		if r.key != nil {
			ch.Keys = append(ch.Keys, r.key(r.row+i))
		}
	}
	ch.Data = r.f.Subset(idx)
	clear(ch.Data.Y)
	r.row = end
	return ch, nil
}

func (r *frameReader) Close() error { return nil }

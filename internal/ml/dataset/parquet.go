package dataset

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

var parquetMagic = []byte("PAR1")

// isParquet looks at the name and at the first bytes from start, and leaves
// rs at start.
func isParquet(rs seekable, start int64, name string) (bool, error) {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".parquet", ".pq":
		return true, nil
	}
	var head [4]byte
	n, err := rs.ReadAt(head[:], start)
	if err != nil && err != io.EOF {
		return false, fmt.Errorf("dataset: read %s: %w", name, err)
	}
	return n == 4 && bytes.Equal(head[:], parquetMagic), nil
}

// readParquet loads a Parquet file one row group at a time. Columns of
// numeric or boolean or string type are read; a column of any other type
// must be declared ignored. Numbers are numeric and text is categorical
// unless declared otherwise; the digest hashes each value's shortest text.
func readParquet(rs seekable, start int64, name string, o *options, build bool) (*Frame, error) {
	end, err := rs.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("dataset: read %s: %w", name, err)
	}
	pf, err := file.NewParquetReader(io.NewSectionReader(rs, start, end-start))
	if err != nil {
		return nil, &Error{File: name, Msg: fmt.Sprintf("not a readable Parquet file: %v", err)}
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, memory.DefaultAllocator)
	if err != nil {
		return nil, &Error{File: name, Msg: fmt.Sprintf("Parquet schema: %v", err)}
	}
	as, err := fr.Schema()
	if err != nil {
		return nil, &Error{File: name, Msg: fmt.Sprintf("Parquet schema: %v", err)}
	}
	rows := int(pf.NumRows())
	if rows == 0 {
		return nil, &Error{File: name, Msg: "no data rows"}
	}
	names := make([]string, as.NumFields())
	facts := make([]columnFacts, len(names))
	types := make([]arrow.DataType, len(names))
	for i, f := range as.Fields() {
		names[i], types[i] = f.Name, f.Type
		facts[i] = columnFacts{present: -1, natural: Categorical}
		switch {
		case ParquetNumber(f.Type):
			facts[i].natural = Numeric
		case ParquetText(f.Type):
		default:
			if k, ok := o.kinds[f.Name]; !ok || k != Ignored {
				return nil, &Error{File: name, Column: f.Name, Msg: fmt.Sprintf("Parquet type %s is not supported: declare the column ignored", f.Type)}
			}
		}
	}
	if err := checkNames(name, names); err != nil {
		return nil, err
	}
	s, err := resolve(name, names, facts, o, build)
	if err != nil {
		return nil, err
	}
	for c, col := range s.Columns {
		if col.Kind == Numeric && types[c].ID() == arrow.BOOL {
			return nil, &Error{File: name, Column: col.Name, Msg: "a boolean column cannot be numeric"}
		}
	}
	if !build {
		return &Frame{Source: name, Schema: s}, nil
	}
	f32 := make([]bool, len(names))
	for i := range f32 {
		f32[i] = true // widened to float64 at the first value that needs it
	}
	b := newBuilder(name, s, rows, f32, newDigest())
	present := make([]int, len(names))
	ctx := context.Background()
	leaves := make([]int, pf.MetaData().Schema.NumColumns())
	for i := range leaves {
		leaves[i] = i
	}
	if len(leaves) != len(names) {
		return nil, &Error{File: name, Msg: "nested Parquet columns are not supported"}
	}
	row := 0
	var text []byte
	for rg := range pf.NumRowGroups() {
		tbl, err := fr.ReadRowGroups(ctx, leaves, []int{rg})
		if err != nil {
			return nil, &Error{File: name, Msg: fmt.Sprintf("row group %d: %v", rg, err)}
		}
		cur := make([]cursor, len(names))
		for c := range cur {
			cur[c].chunks = tbl.Column(c).Data().Chunks()
		}
		n := int(tbl.NumRows())
		for range n {
			for c := range cur {
				arr, i := cur[c].next()
				var v float64
				var isNum bool
				text, v, isNum = ParquetValue(text[:0], arr, i)
				field := string(text)
				if !isNum {
					field = strings.TrimSpace(field)
					if slices.Contains(o.missing, field) {
						field = ""
					}
				}
				b.digestField(field)
				if field != "" {
					present[c]++
				}
				switch b.cols[c].kind {
				case Numeric:
					switch {
					case field == "":
						v = nan
					case !isNum:
						var ok bool
						if v, ok = parseNumber(field); !ok {
							tbl.Release()
							return nil, &Error{File: name, Row: row + 1, Column: names[c], Msg: fmt.Sprintf("text %q in a numeric column", field)}
						}
					}
					if b.cols[c].num.F32 != nil && field != "" && !fits32(v, field) {
						b.widen(c)
					}
					b.number(c, row, v)
				case Categorical, Sensitive:
					if err := b.category(c, row, field); err != nil {
						tbl.Release()
						return nil, err
					}
				case Label:
					if err := b.labelValue(row, row+1, field); err != nil {
						tbl.Release()
						return nil, err
					}
				}
			}
			b.endRow()
			row++
		}
		tbl.Release()
	}
	for c, col := range s.Columns {
		if col.Kind != Ignored && present[c] == 0 {
			return nil, &Error{File: name, Column: col.Name, Msg: "every value is missing"}
		}
	}
	return b.finish()
}

// ParquetNumber reports whether a Parquet column of arrow type t holds
// numbers Gauntlet reads.
func ParquetNumber(t arrow.DataType) bool {
	switch t.ID() {
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64,
		arrow.FLOAT32, arrow.FLOAT64:
		return true
	}
	return false
}

// ParquetText reports whether a Parquet column of arrow type t holds text
// (strings, booleans, dictionaries of them) Gauntlet reads.
func ParquetText(t arrow.DataType) bool {
	switch t.ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.BOOL:
		return true
	case arrow.DICTIONARY:
		return ParquetText(t.(*arrow.DictionaryType).ValueType)
	}
	return false
}

// cursor walks the chunks of one column of a row group.
type cursor struct {
	chunks []arrow.Array
	ci, i  int
}

func (c *cursor) next() (arrow.Array, int) {
	for c.i >= c.chunks[c.ci].Len() {
		c.ci++
		c.i = 0
	}
	c.i++
	return c.chunks[c.ci], c.i - 1
}

// ParquetValue appends the text of element i of arr to buf (nothing when
// null) and returns the number too when the column holds numbers: the text
// a CSV of the same data would hold.
func ParquetValue(buf []byte, arr arrow.Array, i int) ([]byte, float64, bool) {
	if arr.IsNull(i) {
		return buf, 0, false
	}
	switch a := arr.(type) {
	case *array.Float64:
		v := a.Value(i)
		return strconv.AppendFloat(buf, v, 'g', -1, 64), v, true
	case *array.Float32:
		v := a.Value(i)
		return strconv.AppendFloat(buf, float64(v), 'g', -1, 32), float64(v), true
	case *array.Int64:
		v := a.Value(i)
		return strconv.AppendInt(buf, v, 10), float64(v), true
	case *array.Int32:
		v := a.Value(i)
		return strconv.AppendInt(buf, int64(v), 10), float64(v), true
	case *array.Int16:
		v := a.Value(i)
		return strconv.AppendInt(buf, int64(v), 10), float64(v), true
	case *array.Int8:
		v := a.Value(i)
		return strconv.AppendInt(buf, int64(v), 10), float64(v), true
	case *array.Uint64:
		v := a.Value(i)
		return strconv.AppendUint(buf, v, 10), float64(v), true
	case *array.Uint32:
		v := a.Value(i)
		return strconv.AppendUint(buf, uint64(v), 10), float64(v), true
	case *array.Uint16:
		v := a.Value(i)
		return strconv.AppendUint(buf, uint64(v), 10), float64(v), true
	case *array.Uint8:
		v := a.Value(i)
		return strconv.AppendUint(buf, uint64(v), 10), float64(v), true
	case *array.Boolean:
		return strconv.AppendBool(buf, a.Value(i)), 0, false
	case *array.String:
		return append(buf, a.Value(i)...), 0, false
	case *array.LargeString:
		return append(buf, a.Value(i)...), 0, false
	case *array.Dictionary:
		return ParquetValue(buf, a.Dictionary(), a.GetValueIndex(i))
	}
	return buf, 0, false // an ignored column of another type
}

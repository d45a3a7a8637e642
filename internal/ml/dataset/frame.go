package dataset

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"math"
	"slices"
	"strconv"
)

// Frame is a data set held column by column in compact form, which is how
// every source is loaded: numeric columns as float32 where that loses
// nothing (see NumericColumn), categorical and sensitive columns as codes
// into a per-column dictionary, the label as 0/1. No text of the source is
// kept. Dataset converts it for code that wants strings and float64s.
type Frame struct {
	Source      string
	Schema      Schema
	Y           []float32 // 1 for a positive label, 0 otherwise
	Numeric     map[string]*NumericColumn
	Categorical map[string]*CodedColumn
	Sensitive   map[string]*CodedColumn
	// Labels counts the rows of each label value, in order of first
	// appearance (the holdout file writes the negative class by name).
	Labels []LabelCount
	// Digest is the hex sha256 of the canonical content, as Dataset.Digest.
	Digest string
}

// LabelCount is one label value and its number of rows.
type LabelCount struct {
	Value string
	Rows  int
}

// Len is the number of rows.
func (f *Frame) Len() int { return len(f.Y) }

// NumericColumn holds a numeric column with NaN for missing values: in F32
// when every value's shortest decimal form survives a trip through float32
// (at most six significant digits, or an integer of magnitude up to 2^24,
// which covers most measured data), else in F64. The other slice is nil.
type NumericColumn struct {
	F32 []float32
	F64 []float64
}

// Len is the number of rows.
func (c *NumericColumn) Len() int {
	if c.F64 != nil {
		return len(c.F64)
	}
	return len(c.F32)
}

// At is row i's value for arithmetic.
func (c *NumericColumn) At(i int) float64 {
	if c.F64 != nil {
		return c.F64[i]
	}
	return float64(c.F32[i])
}

// Exact is row i's value as the float64 the source's text parses to: a
// float32 value goes back through its shortest decimal form.
func (c *NumericColumn) Exact(i int) float64 {
	if c.F64 != nil {
		return c.F64[i]
	}
	return exactFrom32(c.F32[i])
}

func exactFrom32(f float32) float64 {
	v := float64(f)
	if v == math.Trunc(v) || math.IsNaN(v) {
		return v
	}
	e, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', -1, 32), 64)
	return e
}

// fits32 says whether v, parsed from text, is stored exactly by float32:
// exactFrom32(float32(v)) == v. Six significant digits always come back
// (FLT_DIG); integers up to 2^24 are exact; anything else is checked.
func fits32(v float64, text string) bool {
	if v == 0 {
		return true
	}
	a := math.Abs(v)
	if a < math.SmallestNonzeroFloat32*(1<<23) || a > math.MaxFloat32 {
		return false
	}
	if v == math.Trunc(v) && a <= 1<<24 {
		return true
	}
	if text != "" && significantDigits(text) <= 6 {
		return true
	}
	return exactFrom32(float32(v)) == v
}

// significantDigits counts the mantissa digits of a decimal number after
// leading zeros (trailing zeros count, which only errs towards float64).
func significantDigits(s string) int {
	n, lead := 0, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 'e' || c == 'E':
			return n
		case c == '0' && lead:
		case c >= '0' && c <= '9':
			lead = false
			n++
		case c == '.' || c == '+' || c == '-' || c == '_':
		default:
			return 99 // hex floats, "Inf" and the like: check them exactly
		}
	}
	return n
}

// CodedColumn holds a categorical column as codes: 0 is a missing value and
// code k is Values[k-1].
type CodedColumn struct {
	Values []string
	Codes  []uint32
}

// At is row i's value, "" when missing.
func (c *CodedColumn) At(i int) string {
	if k := c.Codes[i]; k > 0 {
		return c.Values[k-1]
	}
	return ""
}

// Dataset converts the frame to the map-of-slices form with exact float64
// values and strings.
func (f *Frame) Dataset() *Dataset { return f.Subset(nil) }

// Subset converts rows idx (all rows when idx is nil), in that order, to a
// Dataset. The digest is the frame's only when all rows are taken in order.
func (f *Frame) Subset(idx []int) *Dataset {
	n := len(idx)
	row := func(i int) int { return idx[i] }
	if idx == nil {
		n = f.Len()
		row = func(i int) int { return i }
	}
	d := &Dataset{
		Source:      f.Source,
		Schema:      f.Schema,
		Y:           make([]float64, n),
		Numeric:     make(map[string][]float64, len(f.Numeric)),
		Categorical: make(map[string][]string, len(f.Categorical)),
		Sensitive:   make(map[string][]string, len(f.Sensitive)),
	}
	if idx == nil {
		d.Digest = f.Digest
	}
	for i := range n {
		d.Y[i] = float64(f.Y[row(i)])
	}
	for name, c := range f.Numeric {
		v := make([]float64, n)
		for i := range v {
			v[i] = c.Exact(row(i))
		}
		d.Numeric[name] = v
	}
	strs := func(dst map[string][]string, src map[string]*CodedColumn) {
		for name, c := range src {
			v := make([]string, n)
			for i := range v {
				v[i] = c.At(row(i))
			}
			dst[name] = v
		}
	}
	strs(d.Categorical, f.Categorical)
	strs(d.Sensitive, f.Sensitive)
	return d
}

// Split cuts the rows into train and test index lists, stratified by label,
// exactly as Dataset.Split cuts the same data.
func (f *Frame) Split(testFraction float64, seed uint64) (train, test []int, err error) {
	return splitIndex(f.Source, f.Schema.Label, len(f.Y), func(i int) int { return int(f.Y[i]) }, testFraction, seed)
}

// LabelsOf returns the labels of rows idx (all rows when nil) as float32,
// the label type of model.TrainF32.
func (f *Frame) LabelsOf(idx []int) []float32 {
	if idx == nil {
		return slices.Clone(f.Y)
	}
	y := make([]float32, len(idx))
	for i, r := range idx {
		y[i] = f.Y[r]
	}
	return y
}

// builder fills a Frame of a known number of rows from a source's values,
// column by column in source order, and hashes the canonical content.
type builder struct {
	f        *Frame
	file     string
	cols     []colBuilder
	label    int
	positive []string
	// anyLabel: no positive values were given, so the label must be 0/1
	// and "1" is positive.
	anyLabel bool
	labels   map[string]int // value → index in f.Labels
	hash     hash.Hash
	buf      []byte
}

type colBuilder struct {
	kind Kind
	num  *NumericColumn
	cat  *CodedColumn
	dict map[string]uint32
}

// newBuilder prepares a frame of rows rows for schema s, whose columns are
// the source's in order. f32[c] says whether numeric column c goes to
// float32. A nil hash means the caller sets the digest.
func newBuilder(file string, s Schema, rows int, f32 []bool, h hash.Hash) *builder {
	b := &builder{
		f: &Frame{Source: file, Schema: s, Y: make([]float32, rows),
			Numeric: map[string]*NumericColumn{}, Categorical: map[string]*CodedColumn{}, Sensitive: map[string]*CodedColumn{}},
		file: file, cols: make([]colBuilder, len(s.Columns)), label: -1, positive: s.Positive,
		labels: map[string]int{}, hash: h,
	}
	if len(s.Positive) == 0 {
		b.anyLabel = true
		b.positive = []string{"1"}
		b.f.Schema.Positive = b.positive
		s.Positive = b.positive
	}
	for c, col := range s.Columns {
		cb := &b.cols[c]
		cb.kind = col.Kind
		switch col.Kind {
		case Numeric:
			cb.num = &NumericColumn{}
			if f32 != nil && f32[c] {
				cb.num.F32 = make([]float32, rows)
			} else {
				cb.num.F64 = make([]float64, rows)
			}
			b.f.Numeric[col.Name] = cb.num
		case Categorical, Sensitive:
			cb.cat = &CodedColumn{Codes: make([]uint32, rows)}
			cb.dict = map[string]uint32{}
			if col.Kind == Sensitive {
				b.f.Sensitive[col.Name] = cb.cat
			} else {
				b.f.Categorical[col.Name] = cb.cat
			}
		case Label:
			if col.Name != s.Label {
				cb.kind = Ignored // only the label column is read as one
				continue
			}
			b.label = c
		}
	}
	if h != nil {
		writeSchemaDigest(h, s)
	}
	return b
}

// writeSchemaDigest starts the digest: column names and kinds, label and
// positive values, each length-prefixed so no content can mimic a
// separator.
func writeSchemaDigest(h hash.Hash, s Schema) {
	for _, c := range s.Columns {
		fmt.Fprintf(h, "%d:%s%d:%s", len(c.Name), c.Name, len(c.Kind), c.Kind)
	}
	fmt.Fprintf(h, "%d:%s", len(s.Label), s.Label)
	for _, p := range s.Positive {
		fmt.Fprintf(h, "%d:%s", len(p), p)
	}
	h.Write([]byte{0x1d})
}

// digestField adds one field's canonical text ("" when missing).
func (b *builder) digestField(s string) {
	b.buf = strconv.AppendInt(b.buf, int64(len(s)), 10)
	b.buf = append(b.buf, ':')
	b.buf = append(b.buf, s...)
	if len(b.buf) > 32<<10 {
		b.flush()
	}
}

func (b *builder) endRow() {
	if b.hash != nil {
		b.buf = append(b.buf, 0x1e)
	}
}

func (b *builder) flush() {
	if b.hash != nil {
		b.hash.Write(b.buf)
	}
	b.buf = b.buf[:0]
}

// number sets numeric column c of row r (NaN for missing).
func (b *builder) number(c, r int, v float64) {
	n := b.cols[c].num
	if n.F64 != nil {
		n.F64[r] = v
	} else {
		n.F32[r] = float32(v)
	}
}

// widen moves numeric column c to float64, keeping the values exact.
func (b *builder) widen(c int) {
	n := b.cols[c].num
	n.F64 = make([]float64, len(n.F32))
	for i := range n.F32 {
		n.F64[i] = exactFrom32(n.F32[i])
	}
	n.F32 = nil
}

// category sets categorical column c of row r; "" is missing.
func (b *builder) category(c, r int, s string) error {
	if s == "" {
		return nil
	}
	cb := &b.cols[c]
	k, ok := cb.dict[s]
	if !ok {
		if len(cb.cat.Values) == math.MaxUint32-1 {
			return &Error{File: b.file, Column: b.f.Schema.Columns[c].Name, Msg: "more than 4294967294 distinct values"}
		}
		cb.cat.Values = append(cb.cat.Values, s)
		k = uint32(len(cb.cat.Values))
		cb.dict[s] = k
	}
	cb.cat.Codes[r] = k
	return nil
}

// labelValue sets row r's label; line is the source line for errors.
func (b *builder) labelValue(r, line int, s string) error {
	if s == "" {
		return &Error{File: b.file, Row: line, Column: b.f.Schema.Label, Msg: "missing label"}
	}
	i, ok := b.labels[s]
	if !ok {
		if b.anyLabel && s != "0" && s != "1" {
			return &Error{File: b.file, Column: b.f.Schema.Label, Msg: "positive label values not given and the label is not 0/1"}
		}
		i = len(b.f.Labels)
		b.labels[s] = i
		b.f.Labels = append(b.f.Labels, LabelCount{Value: s})
	}
	b.f.Labels[i].Rows++
	if slices.Contains(b.positive, s) {
		b.f.Y[r] = 1
	}
	return nil
}

// finish checks the label and returns the frame.
func (b *builder) finish() (*Frame, error) {
	f := b.f
	positives := 0
	for _, y := range f.Y {
		if y == 1 {
			positives++
		}
	}
	if positives == 0 || positives == len(f.Y) {
		return nil, &Error{File: b.file, Column: f.Schema.Label, Msg: fmt.Sprintf("label has one class (positive values %q match %d of %d rows)", f.Schema.Positive, positives, len(f.Y))}
	}
	if b.hash != nil {
		b.flush()
		f.Digest = hex.EncodeToString(b.hash.Sum(nil))
	}
	return f, nil
}

func newDigest() hash.Hash { return sha256.New() }

// NegativeLabel is the most frequent label value outside the positive
// class (the smaller one on a tie), which a holdout file writes for
// negative rows; "" when every row is positive.
func (f *Frame) NegativeLabel() string {
	best, n := "", 0
	for _, l := range f.Labels {
		if slices.Contains(f.Schema.Positive, l.Value) {
			continue
		}
		if l.Rows > n || l.Rows == n && l.Value < best {
			best, n = l.Value, l.Rows
		}
	}
	return best
}

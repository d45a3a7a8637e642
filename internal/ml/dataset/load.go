package dataset

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Option configures Load, Read and Infer.
type Option func(*options)

type options struct {
	names    []string
	header   *bool
	kinds    map[string]Kind
	label    string
	positive []string
	missing  []string
}

// DefaultMissing are the field values read as missing.
var DefaultMissing = []string{"", "?", "NA"}

// WithSchema declares every column's kind, the label and the positive values.
// A file without a header takes its column names from the schema.
func WithSchema(s Schema) Option {
	return func(o *options) {
		o.names = o.names[:0]
		for _, c := range s.Columns {
			o.names = append(o.names, c.Name)
			o.kinds[c.Name] = c.Kind
		}
		if s.Label != "" {
			o.label = s.Label
		}
		if len(s.Positive) > 0 {
			o.positive = s.Positive
		}
	}
}

// WithLabel names the label column and the values of the positive class. A
// value may itself be a comma-separated list (">50K,>50K.").
func WithLabel(name string, positive ...string) Option {
	return func(o *options) {
		o.label = name
		o.positive = nil
		for _, p := range positive {
			for _, v := range strings.Split(p, ",") {
				if v = strings.TrimSpace(v); v != "" {
					o.positive = append(o.positive, v)
				}
			}
		}
	}
}

// WithKind declares the kind of the named columns; the rest are inferred.
func WithKind(kind Kind, names ...string) Option {
	return func(o *options) {
		for _, n := range names {
			o.kinds[n] = kind
		}
	}
}

// WithSensitive marks columns as sensitive: carried for fairness analysis and
// not used as features unless the encoder is told to.
func WithSensitive(names ...string) Option { return WithKind(Sensitive, names...) }

// WithIgnored drops columns from the features (they still count in the digest).
func WithIgnored(names ...string) Option { return WithKind(Ignored, names...) }

// WithColumnNames names the columns of a file that has no header row.
func WithColumnNames(names ...string) Option {
	return func(o *options) { o.names = slices.Clone(names) }
}

// WithHeader says whether the first row is a header. By default a file has a
// header unless column names were supplied.
func WithHeader(has bool) Option { return func(o *options) { o.header = &has } }

// WithMissing replaces DefaultMissing.
func WithMissing(tokens ...string) Option {
	return func(o *options) { o.missing = slices.Clone(tokens) }
}

func newOptions(opts []Option) *options {
	o := &options{kinds: map[string]Kind{}, missing: DefaultMissing}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// Load reads a data set from a CSV or Parquet file or a "builtin:" URI, as
// LoadFrame does, and converts it to a Dataset. Large data sets are better
// kept as a Frame.
func Load(src string, opts ...Option) (*Dataset, error) {
	f, err := LoadFrame(src, opts...)
	if err != nil {
		return nil, err
	}
	return f.Dataset(), nil
}

// Read reads CSV or Parquet from r; name is used in errors and as the source.
func Read(r io.Reader, name string, opts ...Option) (*Dataset, error) {
	f, err := ReadFrame(r, name, opts...)
	if err != nil {
		return nil, err
	}
	return f.Dataset(), nil
}

// LoadFrame reads a data set from a file or a "builtin:" URI into a Frame,
// streaming: a CSV file is read twice (once to settle the schema and count
// the rows, once to fill columns of exactly that length), a Parquet file
// one row group at a time, the builtin source row by row. A file is Parquet
// when its name ends in .parquet or .pq or it starts with Parquet's magic
// bytes; otherwise it is CSV.
func LoadFrame(src string, opts ...Option) (*Frame, error) {
	o := newOptions(opts)
	if strings.HasPrefix(src, builtinScheme) {
		return loadBuiltin(src, o, true)
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("dataset: load %s: %w", src, err)
	}
	defer f.Close()
	return readFrame(f, src, o, true)
}

// ReadFrame is LoadFrame for a reader. A reader that cannot seek (and, for
// Parquet, read at an offset) is read into memory first.
func ReadFrame(r io.Reader, name string, opts ...Option) (*Frame, error) {
	return readFrame(r, name, newOptions(opts), true)
}

// Infer reads the source and returns the schema it would be loaded with. A
// label is not required, so the result can be printed before one is chosen.
func Infer(src string, opts ...Option) (Schema, error) {
	o := newOptions(opts)
	if strings.HasPrefix(src, builtinScheme) {
		f, err := loadBuiltin(src, o, false)
		if err != nil {
			return Schema{}, err
		}
		return f.Schema, nil
	}
	f, err := os.Open(src)
	if err != nil {
		return Schema{}, fmt.Errorf("dataset: infer %s: %w", src, err)
	}
	defer f.Close()
	fr, err := readFrame(f, src, o, false)
	if err != nil {
		return Schema{}, err
	}
	return fr.Schema, nil
}

// seekable is what a two-pass or Parquet read needs of its input.
type seekable interface {
	io.ReadSeeker
	io.ReaderAt
}

// readFrame loads r; with build false only the schema is settled (no label
// needed) and the frame returned holds nothing else.
func readFrame(r io.Reader, name string, o *options, build bool) (*Frame, error) {
	rs, ok := r.(seekable)
	if !ok {
		b, err := io.ReadAll(r)
		if err != nil {
			return nil, fmt.Errorf("dataset: read %s: %w", name, err)
		}
		rs = bytes.NewReader(b)
	}
	start, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("dataset: read %s: %w", name, err)
	}
	isPQ, err := isParquet(rs, start, name)
	if err != nil {
		return nil, err
	}
	if isPQ {
		return readParquet(rs, start, name, o, build)
	}
	return readCSV(rs, start, name, o, build)
}

func parseNumber(s string) (float64, bool) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

// columnFacts is what a source knows about a column before its values are
// stored, for settling its kind.
type columnFacts struct {
	present  int    // non-missing values; -1 when not known before loading
	text     string // the first value that is not a number
	textLine int    // its line (0: no such value)
	natural  Kind   // the kind the data suggest when none is declared
}

// resolve settles every column's kind, declared or inferred, and checks the
// declarations against the data.
func resolve(file string, names []string, facts []columnFacts, o *options, needLabel bool) (Schema, error) {
	index := map[string]int{}
	for i, n := range names {
		index[n] = i
	}
	declared := make([]string, 0, len(o.kinds))
	for n := range o.kinds {
		declared = append(declared, n)
	}
	slices.Sort(declared)
	for _, n := range declared {
		if _, ok := index[n]; !ok {
			return Schema{}, &Error{File: file, Column: n, Msg: "declared column is missing from the data"}
		}
		if !o.kinds[n].valid() {
			return Schema{}, &Error{File: file, Column: n, Msg: fmt.Sprintf("unknown column kind %q", o.kinds[n])}
		}
	}
	if o.label != "" {
		if _, ok := index[o.label]; !ok {
			return Schema{}, &Error{File: file, Column: o.label, Msg: "label column is missing from the data"}
		}
	} else if needLabel {
		return Schema{}, &Error{File: file, Msg: "no label column declared"}
	}
	s := Schema{Label: o.label, Positive: o.positive}
	for c, n := range names {
		kind, ok := o.kinds[n]
		if n == o.label {
			kind, ok = Label, true
		}
		if kind == Ignored {
			s.Columns = append(s.Columns, Column{Name: n, Kind: kind})
			continue
		}
		fc := facts[c]
		if fc.present == 0 {
			return Schema{}, &Error{File: file, Column: n, Msg: "every value is missing"}
		}
		if !ok {
			kind = fc.natural
		}
		if kind == Numeric && fc.textLine > 0 {
			return Schema{}, &Error{File: file, Row: fc.textLine, Column: n, Msg: fmt.Sprintf("text %q in a numeric column", fc.text)}
		}
		s.Columns = append(s.Columns, Column{Name: n, Kind: kind})
	}
	return s, nil
}

// checkNames refuses empty and duplicate column names.
func checkNames(file string, names []string) error {
	seen := map[string]bool{}
	for i, n := range names {
		if n == "" {
			return &Error{File: file, Msg: fmt.Sprintf("column %d has an empty name", i+1)}
		}
		if seen[n] {
			return &Error{File: file, Column: n, Msg: "duplicate column name"}
		}
		seen[n] = true
	}
	return nil
}

package dataset

import (
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
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

// Load reads a data set from a CSV file path or a "builtin:" URI.
func Load(src string, opts ...Option) (*Dataset, error) {
	if strings.HasPrefix(src, builtinScheme) {
		return loadBuiltin(src, opts)
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("dataset: load %s: %w", src, err)
	}
	defer f.Close()
	return Read(f, src, opts...)
}

// Read reads CSV from r; name is used in errors and as the source.
func Read(r io.Reader, name string, opts ...Option) (*Dataset, error) {
	o := newOptions(opts)
	names, rows, lines, err := readCSV(r, name, o)
	if err != nil {
		return nil, err
	}
	return build(name, names, rows, lines, o, true)
}

// Infer reads the source and returns the schema it would be loaded with. A
// label is not required, so the result can be printed before one is chosen.
func Infer(src string, opts ...Option) (Schema, error) {
	o := newOptions(opts)
	if strings.HasPrefix(src, builtinScheme) {
		d, err := loadBuiltin(src, opts)
		if err != nil {
			return Schema{}, err
		}
		return d.Schema, nil
	}
	f, err := os.Open(src)
	if err != nil {
		return Schema{}, fmt.Errorf("dataset: infer %s: %w", src, err)
	}
	defer f.Close()
	names, rows, lines, err := readCSV(f, src, o)
	if err != nil {
		return Schema{}, err
	}
	s, _, err := resolve(src, names, rows, lines, o, false)
	return s, err
}

func readCSV(r io.Reader, file string, o *options) (names []string, rows [][]string, lines []int, err error) {
	cr := csv.NewReader(r)
	cr.TrimLeadingSpace = true
	cr.FieldsPerRecord = -1
	// UCI files mark comment lines with '|' (adult.test's "|1x3 Cross validator").
	cr.Comment = '|'
	header := len(o.names) == 0
	if o.header != nil {
		header = *o.header
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, nil, nil, &Error{File: file, Row: pe.Line, Msg: pe.Err.Error()}
			}
			return nil, nil, nil, fmt.Errorf("dataset: read %s: %w", file, err)
		}
		line, _ := cr.FieldPos(0)
		for i := range rec {
			rec[i] = strings.TrimSpace(rec[i])
		}
		if header && names == nil {
			names = rec
			continue
		}
		rows = append(rows, rec)
		lines = append(lines, line)
	}
	if !header || names == nil {
		if header {
			return nil, nil, nil, &Error{File: file, Msg: "empty file"}
		}
		names = o.names
	}
	if len(rows) == 0 {
		return nil, nil, nil, &Error{File: file, Msg: "no data rows"}
	}
	if len(names) == 0 {
		return nil, nil, nil, &Error{File: file, Msg: "no column names: the file has no header and none were supplied"}
	}
	seen := map[string]bool{}
	for i, n := range names {
		if n == "" {
			return nil, nil, nil, &Error{File: file, Msg: fmt.Sprintf("column %d has an empty name", i+1)}
		}
		if seen[n] {
			return nil, nil, nil, &Error{File: file, Column: n, Msg: "duplicate column name"}
		}
		seen[n] = true
	}
	for i, rec := range rows {
		if len(rec) != len(names) {
			return nil, nil, nil, &Error{File: file, Row: lines[i], Msg: fmt.Sprintf("%d fields, want %d", len(rec), len(names))}
		}
	}
	return names, rows, lines, nil
}

func parseNumber(s string) (float64, bool) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

// resolve settles every column's kind, declared or inferred, and checks the
// declarations against the data.
func resolve(file string, names []string, rows [][]string, lines []int, o *options, needLabel bool) (Schema, []bool, error) {
	isMissing := func(s string) bool { return slices.Contains(o.missing, s) }
	missing := make([]bool, len(rows)*len(names))
	for r, rec := range rows {
		for c, f := range rec {
			missing[r*len(names)+c] = isMissing(f)
		}
	}
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
			return Schema{}, nil, &Error{File: file, Column: n, Msg: "declared column is missing from the data"}
		}
		if !o.kinds[n].valid() {
			return Schema{}, nil, &Error{File: file, Column: n, Msg: fmt.Sprintf("unknown column kind %q", o.kinds[n])}
		}
	}
	if o.label != "" {
		if _, ok := index[o.label]; !ok {
			return Schema{}, nil, &Error{File: file, Column: o.label, Msg: "label column is missing from the data"}
		}
	} else if needLabel {
		return Schema{}, nil, &Error{File: file, Msg: "no label column declared"}
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
		present := 0
		numeric := true
		firstText := -1
		for r := range rows {
			if missing[r*len(names)+c] {
				continue
			}
			present++
			if _, isNum := parseNumber(rows[r][c]); !isNum && numeric {
				numeric = false
				firstText = r
			}
		}
		if present == 0 {
			return Schema{}, nil, &Error{File: file, Column: n, Msg: "every value is missing"}
		}
		if !ok {
			kind = Categorical
			if numeric {
				kind = Numeric
			}
		}
		if kind == Numeric && !numeric {
			return Schema{}, nil, &Error{File: file, Row: lines[firstText], Column: n, Msg: fmt.Sprintf("text %q in a numeric column", rows[firstText][c])}
		}
		s.Columns = append(s.Columns, Column{Name: n, Kind: kind})
	}
	return s, missing, nil
}

func build(file string, names []string, rows [][]string, lines []int, o *options, needLabel bool) (*Dataset, error) {
	s, missing, err := resolve(file, names, rows, lines, o, needLabel)
	if err != nil {
		return nil, err
	}
	n, w := len(rows), len(names)
	d := &Dataset{
		Source:      file,
		Numeric:     map[string][]float64{},
		Categorical: map[string][]string{},
		Sensitive:   map[string][]string{},
		Y:           make([]float64, n),
	}
	labelCol := slices.Index(names, s.Label)
	if len(s.Positive) == 0 {
		s.Positive, err = defaultPositive(file, rows, labelCol)
		if err != nil {
			return nil, err
		}
	}
	d.Schema = s
	positives := 0
	for r, rec := range rows {
		if missing[r*w+labelCol] {
			return nil, &Error{File: file, Row: lines[r], Column: s.Label, Msg: "missing label"}
		}
		if slices.Contains(s.Positive, rec[labelCol]) {
			d.Y[r] = 1
			positives++
		}
	}
	if positives == 0 || positives == n {
		return nil, &Error{File: file, Column: s.Label, Msg: fmt.Sprintf("label has one class (positive values %q match %d of %d rows)", s.Positive, positives, n)}
	}
	for c, col := range s.Columns {
		switch col.Kind {
		case Numeric:
			v := make([]float64, n)
			for r, rec := range rows {
				v[r] = math.NaN()
				if !missing[r*w+c] {
					v[r], _ = parseNumber(rec[c])
				}
			}
			d.Numeric[col.Name] = v
		case Categorical, Sensitive:
			v := make([]string, n)
			for r, rec := range rows {
				if !missing[r*w+c] {
					v[r] = rec[c]
				}
			}
			if col.Kind == Sensitive {
				d.Sensitive[col.Name] = v
			} else {
				d.Categorical[col.Name] = v
			}
		}
	}
	d.Digest = digest(s, rows, missing)
	return d, nil
}

func defaultPositive(file string, rows [][]string, labelCol int) ([]string, error) {
	values := map[string]bool{}
	for _, rec := range rows {
		values[rec[labelCol]] = true
		if len(values) > 2 {
			break
		}
	}
	if values["1"] && (len(values) == 1 || values["0"]) && len(values) <= 2 {
		return []string{"1"}, nil
	}
	return nil, &Error{File: file, Msg: "positive label values not given and the label is not 0/1"}
}

// digest hashes the schema and the trimmed fields with missing values blanked;
// every field is length-prefixed so no field content can mimic a separator.
func digest(s Schema, rows [][]string, missing []bool) string {
	h := sha256.New()
	for _, c := range s.Columns {
		fmt.Fprintf(h, "%d:%s%d:%s", len(c.Name), c.Name, len(c.Kind), c.Kind)
	}
	fmt.Fprintf(h, "%d:%s", len(s.Label), s.Label)
	for _, p := range s.Positive {
		fmt.Fprintf(h, "%d:%s", len(p), p)
	}
	h.Write([]byte{0x1d})
	w := len(s.Columns)
	for r, rec := range rows {
		for c, f := range rec {
			if missing[r*w+c] {
				f = ""
			}
			fmt.Fprintf(h, "%d:%s", len(f), f)
		}
		h.Write([]byte{0x1e})
	}
	return hex.EncodeToString(h.Sum(nil))
}

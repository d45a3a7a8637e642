// Package dataset loads tabular data for binary classification: CSV files with
// a declared or inferred schema, and a built-in synthetic credit-risk source.
// It also turns a data set into a dense feature matrix (one-hot encoding,
// imputation, standardisation) with an encoder fitted on training data only.
package dataset

import (
	"errors"
	"fmt"
	"strings"
)

// Kind says what role a column plays.
type Kind string

// Column kinds.
const (
	Numeric     Kind = "numeric"
	Categorical Kind = "categorical"
	Label       Kind = "label"
	Sensitive   Kind = "sensitive"
	Ignored     Kind = "ignored"
)

func (k Kind) valid() bool {
	switch k {
	case Numeric, Categorical, Label, Sensitive, Ignored:
		return true
	}
	return false
}

// Column names a column and its kind.
type Column struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
}

// Schema describes a data set: its columns in file order, the label column and
// the label values counted as the positive class.
type Schema struct {
	Columns  []Column `json:"columns"`
	Label    string   `json:"label"`
	Positive []string `json:"positive"`
}

// Names returns the names of the columns of kind k, in schema order.
func (s Schema) Names(k Kind) []string {
	var out []string
	for _, c := range s.Columns {
		if c.Kind == k {
			out = append(out, c.Name)
		}
	}
	return out
}

// String renders the schema as a table, one column per line, so an inferred
// schema can be reviewed and pasted back as a declaration.
func (s Schema) String() string {
	var b strings.Builder
	width := 0
	for _, c := range s.Columns {
		width = max(width, len(c.Name))
	}
	for _, c := range s.Columns {
		fmt.Fprintf(&b, "%-*s  %s\n", width, c.Name, c.Kind)
	}
	fmt.Fprintf(&b, "label %q positive %q\n", s.Label, s.Positive)
	return b.String()
}

// ErrBadData is matched (errors.Is) by every *Error: the input is wrong and
// retrying the same load cannot succeed.
var ErrBadData = errors.New("bad data")

// Error reports bad input data. Row is the 1-based line in the file (0 when
// the problem is not tied to a row); Column is empty when not tied to a column.
type Error struct {
	File   string
	Row    int
	Column string
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("dataset: ")
	b.WriteString(e.File)
	if e.Row > 0 {
		fmt.Fprintf(&b, " row %d", e.Row)
	}
	if e.Column != "" {
		fmt.Fprintf(&b, " column %q", e.Column)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Is makes errors.Is(err, ErrBadData) true.
func (e *Error) Is(target error) bool { return target == ErrBadData }

// Retryable is false: bad data stays bad. Activity adapters use it to mark
// the failure non-retryable.
func (e *Error) Retryable() bool { return false }

// Dataset is a loaded table. Numeric columns hold NaN for missing values and
// categorical and sensitive columns hold "" for missing values.
type Dataset struct {
	Source      string
	Schema      Schema
	Y           []float64 // 1 for a positive label, 0 otherwise
	Numeric     map[string][]float64
	Categorical map[string][]string
	Sensitive   map[string][]string
	// Digest is the hex sha256 of the canonical content (column names and
	// kinds, then the trimmed fields with missing values blanked), for lineage.
	Digest string
}

// Len is the number of rows.
func (d *Dataset) Len() int { return len(d.Y) }

// Subset returns the rows idx, in that order. The digest is cleared: a subset
// is identified by its parent's digest plus how it was cut.
func (d *Dataset) Subset(idx []int) *Dataset {
	out := &Dataset{
		Source:      d.Source,
		Schema:      d.Schema,
		Y:           make([]float64, len(idx)),
		Numeric:     make(map[string][]float64, len(d.Numeric)),
		Categorical: make(map[string][]string, len(d.Categorical)),
		Sensitive:   make(map[string][]string, len(d.Sensitive)),
	}
	for i, r := range idx {
		out.Y[i] = d.Y[r]
	}
	for name, col := range d.Numeric {
		v := make([]float64, len(idx))
		for i, r := range idx {
			v[i] = col[r]
		}
		out.Numeric[name] = v
	}
	pick := func(dst, src map[string][]string) {
		for name, col := range src {
			v := make([]string, len(idx))
			for i, r := range idx {
				v[i] = col[r]
			}
			dst[name] = v
		}
	}
	pick(out.Categorical, d.Categorical)
	pick(out.Sensitive, d.Sensitive)
	return out
}

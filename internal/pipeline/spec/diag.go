package spec

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Pos is a 1-based position in a source file.
type Pos struct {
	File string
	Line int
	Col  int
}

func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Source records where each part of a parsed spec came from. Paths look like
// "steps[2].with.model" or "params.min_auc.default".
type Source struct {
	File   string
	values map[string]Pos
	keys   map[string]Pos
}

func newSource(file string) *Source {
	return &Source{File: file, values: map[string]Pos{}, keys: map[string]Pos{}}
}

// At returns the position of the value at path, or of its key, falling back
// to the nearest enclosing path; a spec without a source gives a Pos that
// holds only the file name.
func (s *Source) At(path string) Pos {
	if s == nil {
		return Pos{}
	}
	for p := path; ; p = parent(p) {
		if pos, ok := s.values[p]; ok {
			return pos
		}
		if pos, ok := s.keys[p]; ok {
			return pos
		}
		if p == "" {
			return Pos{File: s.File}
		}
	}
}

// KeyAt returns the position of the key at path, or At(path) if none.
func (s *Source) KeyAt(path string) Pos {
	if s != nil {
		if pos, ok := s.keys[path]; ok {
			return pos
		}
	}
	return s.At(path)
}

func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// Diagnostic is one problem found in a pipeline.
type Diagnostic struct {
	Pos     Pos
	Path    string
	Message string
}

// String renders "file:line:col: message"; without a position the path
// stands in for it.
func (d Diagnostic) String() string {
	where := d.Pos.String()
	if d.Pos.Line == 0 && d.Path != "" {
		if where != "" {
			where += ": "
		}
		where += d.Path
	}
	if where == "" {
		return d.Message
	}
	return where + ": " + d.Message
}

// Diagnostics is every problem found, sortable by position.
type Diagnostics []Diagnostic

// Error joins the diagnostics one per line.
func (ds Diagnostics) Error() string {
	lines := make([]string, len(ds))
	for i, d := range ds {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// Err returns ds as an error, or nil when there are none.
func (ds Diagnostics) Err() error {
	if len(ds) == 0 {
		return nil
	}
	return ds
}

// Sort orders by file, line, column, path and message, and drops exact
// duplicates.
func (ds Diagnostics) Sort() Diagnostics {
	out := slices.Clone(ds)
	slices.SortStableFunc(out, func(a, b Diagnostic) int {
		return cmp.Or(
			cmp.Compare(a.Pos.File, b.Pos.File),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Col, b.Pos.Col),
			cmp.Compare(a.Path, b.Path),
			cmp.Compare(a.Message, b.Message),
		)
	})
	return slices.Compact(out)
}

// reporter collects diagnostics against a source.
type reporter struct {
	src   *Source
	diags Diagnostics
}

// at reports a problem with the value at path.
func (r *reporter) at(path, format string, args ...any) {
	r.diags = append(r.diags, Diagnostic{Pos: r.src.At(path), Path: path, Message: fmt.Sprintf(format, args...)})
}

// atKey reports a problem with the key at path.
func (r *reporter) atKey(path, format string, args ...any) {
	r.diags = append(r.diags, Diagnostic{Pos: r.src.KeyAt(path), Path: path, Message: fmt.Sprintf(format, args...)})
}

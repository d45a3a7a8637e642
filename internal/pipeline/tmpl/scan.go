// Package tmpl finds, checks and evaluates the ${{ ... }} templates and the
// if: conditions of a pipeline. The inside of a template is an expr-lang
// expression over the roots params, steps and run, and item in a step that
// fans out (for_each, matrix).
//
// Evaluation is deterministic and touches no clock, no I/O and no
// goroutines, so a Temporal workflow may call it directly.
package tmpl

import (
	"fmt"
	"strings"
)

const (
	open  = "${{"
	close = "}}"
)

// Segment is one piece of a templated string: literal text, or an
// expression (Expr non-empty) that starts at byte Offset of the string.
type Segment struct {
	Text   string
	Expr   string
	Offset int
}

// IsExpr reports whether the segment is an expression.
func (s Segment) IsExpr() bool { return s.Expr != "" }

// HasTemplate reports whether s contains the start of a template.
func HasTemplate(s string) bool { return strings.Contains(s, open) }

// Split cuts s into literal and expression segments. It fails on an
// unterminated or empty template.
func Split(s string) ([]Segment, error) {
	var out []Segment
	i := 0
	for i < len(s) {
		j := strings.Index(s[i:], open)
		if j < 0 {
			out = append(out, Segment{Text: s[i:], Offset: i})
			break
		}
		if j > 0 {
			out = append(out, Segment{Text: s[i : i+j], Offset: i})
		}
		start := i + j + len(open)
		end, ok := findClose(s, start)
		if !ok {
			return nil, fmt.Errorf("template at offset %d has no closing %q", i+j, close)
		}
		src := strings.TrimSpace(s[start:end])
		if src == "" {
			return nil, fmt.Errorf("template at offset %d is empty", i+j)
		}
		out = append(out, Segment{Expr: src, Offset: start})
		i = end + len(close)
	}
	return out, nil
}

// findClose returns the index of the "}}" that ends the template whose body
// starts at start, skipping braces of map literals and string literals.
func findClose(s string, start int) (int, bool) {
	depth := 0
	for k := start; k < len(s); k++ {
		switch c := s[k]; c {
		case '"', '\'', '`':
			for k++; k < len(s) && s[k] != c; k++ {
				if s[k] == '\\' && c != '`' {
					k++
				}
			}
		case '{':
			depth++
		case '}':
			if depth == 0 {
				if k+1 < len(s) && s[k+1] == '}' {
					return k, true
				}
				continue
			}
			depth--
		}
	}
	return 0, false
}

// whole returns the expression when s is exactly one template and nothing
// else, so its value keeps its type.
func whole(segs []Segment) (string, bool) {
	if len(segs) == 1 && segs[0].IsExpr() {
		return segs[0].Expr, true
	}
	return "", false
}

// Whole returns the expression of s when s is exactly one template and
// nothing else (surrounding spaces aside), whose value then keeps its type:
// how a list is given to for_each.
func Whole(s string) (string, bool) {
	segs, err := Split(strings.TrimSpace(s))
	if err != nil {
		return "", false
	}
	return whole(segs)
}

// ConditionSource returns the expression of an if: condition, which may be
// written bare or wrapped in one ${{ }}; a condition that mixes text and
// templates is an error.
func ConditionSource(cond string) (string, error) {
	if !HasTemplate(cond) {
		src := strings.TrimSpace(cond)
		if src == "" {
			return "", fmt.Errorf("condition is empty")
		}
		return src, nil
	}
	segs, err := Split(strings.TrimSpace(cond))
	if err != nil {
		return "", err
	}
	src, ok := whole(segs)
	if !ok {
		return "", fmt.Errorf("condition %q mixes text and templates; write a bare expression or one ${{ }}", cond)
	}
	return src, nil
}

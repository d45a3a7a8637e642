package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// ResolveParams checks the params a run was started with against the
// spec's declarations and returns the complete set: values coerced to their
// declared types (strings as typed on a command line are accepted, so
// "0.8" becomes 0.8 for a number), defaults for what was left out, and null
// for optional params without a default. Numbers are float64, as JSON
// decodes them; durations and enums stay strings. Every problem is
// reported, in param-name order.
func ResolveParams(s *Spec, supplied map[string]any) (map[string]any, error) {
	out, problems := resolveParams(s, supplied)
	if len(problems) > 0 {
		errs := make([]error, len(problems))
		for i, p := range problems {
			errs[i] = p.err
		}
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// paramProblem is one failure of ResolveParams, with the param it concerns
// so the validator can position it.
type paramProblem struct {
	name string
	err  error
}

func resolveParams(s *Spec, supplied map[string]any) (map[string]any, []paramProblem) {
	var errs []paramProblem
	fail := func(name string, err error) { errs = append(errs, paramProblem{name, err}) }
	out := make(map[string]any, len(s.Params))
	for _, name := range sortedKeys(supplied) {
		p, ok := s.Param(name)
		if !ok {
			fail(name, fmt.Errorf("unknown param %q%s", name, didYouMean(name, paramNames(s))))
			continue
		}
		v, err := coerce(p, supplied[name], true)
		if err != nil {
			fail(name, err)
			continue
		}
		out[name] = v
	}
	for _, p := range s.Params {
		if _, given := supplied[p.Name]; given {
			continue
		}
		switch {
		case p.Default != nil:
			out[p.Name] = p.Default
		case p.Required:
			fail(p.Name, fmt.Errorf("missing required param %q", p.Name))
		default:
			out[p.Name] = nil
		}
	}
	return out, errs
}

func paramNames(s *Spec) []string {
	out := make([]string, len(s.Params))
	for i, p := range s.Params {
		out[i] = p.Name
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sortStrings(s []string) { sort.Strings(s) }

// maxExactInt is the largest integer a float64 holds exactly.
const maxExactInt = 1 << 53

// coerce converts v to p's type. fromText allows strings for every type,
// as a command line supplies them; a default in YAML must already have the
// right type.
func coerce(p Param, v any, fromText bool) (any, error) {
	bad := func(why string) error {
		return fmt.Errorf("param %q: %s %s", p.Name, describeValue(v), why)
	}
	if v == nil {
		return nil, fmt.Errorf("param %q: value must not be null", p.Name)
	}
	text, isText := v.(string)
	switch p.Type {
	case TypeString:
		if !isText {
			return nil, bad("is not a string")
		}
		return text, nil
	case TypeNumber, TypeInteger:
		f, ok := toFloat(v)
		if !ok && isText && fromText {
			parsed, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
			f, ok = parsed, err == nil
		}
		if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, bad("is not a " + map[string]string{TypeNumber: "number", TypeInteger: "whole number"}[p.Type])
		}
		if p.Type == TypeInteger && (f != math.Trunc(f) || math.Abs(f) > maxExactInt) {
			return nil, bad("is not a whole number")
		}
		return f, nil
	case TypeBoolean:
		if b, ok := v.(bool); ok {
			return b, nil
		}
		if isText && fromText {
			if b, err := strconv.ParseBool(strings.TrimSpace(text)); err == nil {
				return b, nil
			}
		}
		return nil, bad("is not true or false")
	case TypeDuration:
		if !isText {
			return nil, bad("is not a duration string")
		}
		if _, err := ParseDuration(text); err != nil {
			return nil, fmt.Errorf("param %q: %w", p.Name, err)
		}
		return text, nil
	case TypeEnum:
		if !isText || !slices.Contains(p.Values, text) {
			return nil, bad(fmt.Sprintf("is not one of %s", quoteList(p.Values)))
		}
		return text, nil
	case TypeList:
		if l, ok := List(v); ok {
			return l, nil
		}
		if !isText || !fromText {
			return nil, bad("is not a list")
		}
		return listFromText(p, text)
	}
	return nil, fmt.Errorf("param %q has unknown type %q", p.Name, p.Type)
}

// listFromText reads a list param from a command line: JSON when it starts
// with "[", else comma-separated strings.
func listFromText(p Param, text string) ([]any, error) {
	t := strings.TrimSpace(text)
	if strings.HasPrefix(t, "[") {
		var l []any
		if err := json.Unmarshal([]byte(t), &l); err != nil {
			return nil, fmt.Errorf("param %q: %s is not a JSON list: %v", p.Name, describeValue(text), err)
		}
		return l, nil
	}
	out := []any{}
	for _, part := range strings.Split(t, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out, nil
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case uint64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func describeValue(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	}
	return fmt.Sprint(v)
}

func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

package spec

import (
	"fmt"
	"math"
	"reflect"
	"strings"
)

// Bounds on the items of one fanned-out step. A pipeline may lower or raise
// its own bound (max_fan_out) up to MaxFanOutLimit: every item's outputs
// stay in the run's record, and a run's record must fit in its history.
const (
	DefaultMaxFanOut = 10000
	MaxFanOutLimit   = 100000
)

// FanOutBound is the most items one step of s may fan out to.
func (s *Spec) FanOutBound() int {
	if s.MaxFanOut > 0 {
		return s.MaxFanOut
	}
	return DefaultMaxFanOut
}

// List reads a resolved for_each value or matrix axis as a list; ok is false
// for anything else (a string, a mapping, null).
func List(v any) ([]any, bool) {
	if l, ok := v.([]any); ok {
		return l, true
	}
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || (rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array) || rv.Type().Elem().Kind() == reflect.Uint8 {
		return nil, false
	}
	out := make([]any, rv.Len())
	for i := range out {
		out[i] = rv.Index(i).Interface()
	}
	return out, true
}

// Product is the items of a matrix: one mapping from axis name to value per
// combination, the first axis varying slowest, as nested loops written in
// the file's order would give them. It refuses more than bound items
// before building any.
func Product(names []string, lists [][]any, bound int) ([]any, error) {
	n := 1
	for _, l := range lists {
		n *= len(l)
		if n > bound {
			sizes := make([]string, len(lists))
			total := 1.0
			for i, l := range lists {
				sizes[i] = fmt.Sprintf("%d", len(l))
				total *= float64(len(l))
			}
			return nil, fmt.Errorf("matrix has %s = %.0f items, more than max_fan_out (%d)", strings.Join(sizes, " × "), total, bound)
		}
	}
	out := make([]any, n)
	for i := range out {
		item := make(map[string]any, len(names))
		rest := i
		for a := len(lists) - 1; a >= 0; a-- {
			item[names[a]] = lists[a][rest%len(lists[a])]
			rest /= len(lists[a])
		}
		out[i] = item
	}
	return out, nil
}

// RequiredSuccesses is how many of the ran items (those not skipped by
// their condition) must succeed for the step to succeed.
func (s *Step) RequiredSuccesses(ran int) int {
	switch {
	case s.MinSuccess <= 0:
		return ran
	case s.MinSuccess < 1:
		// 0.9 of 10 is 9, not the 10 that float rounding would make it.
		return int(math.Ceil(s.MinSuccess*float64(ran) - 1e-9))
	default:
		return int(s.MinSuccess)
	}
}

// DescribeMinSuccess says what min_success asks, for messages.
func (s *Step) DescribeMinSuccess() string {
	switch {
	case s.MinSuccess <= 0:
		return "every item must succeed"
	case s.MinSuccess < 1:
		return fmt.Sprintf("min_success %g", s.MinSuccess)
	default:
		return fmt.Sprintf("min_success %d", int(s.MinSuccess))
	}
}

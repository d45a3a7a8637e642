package stepio

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
)

// Float is a number that may be undefined (NaN), such as the precision of
// a model that selects nobody. JSON has no NaN, so it is written as null
// and read back from null as NaN.
type Float float64

// Undefined is the NaN Float.
func Undefined() Float { return Float(math.NaN()) }

// Defined reports whether f holds a number.
func (f Float) Defined() bool { return !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0) }

// MarshalJSON writes null for an undefined value.
func (f Float) MarshalJSON() ([]byte, error) {
	if !f.Defined() {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, float64(f), 'g', -1, 64), nil
}

// UnmarshalJSON reads null as undefined.
func (f *Float) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*f = Undefined()
		return nil
	}
	var x float64
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	*f = Float(x)
	return nil
}

// DecodeInput reads a number, "0.1" or 0.1, and null as undefined.
func (f *Float) DecodeInput(v any) error {
	if v == nil {
		*f = Undefined()
		return nil
	}
	x, ok := number(v)
	if !ok || math.IsInf(x, 0) {
		return errorf("", "want a number or null, got %s", describe(v))
	}
	*f = Float(x)
	return nil
}

// Floats converts a map of numbers, NaN meaning undefined.
func Floats(m map[string]float64) map[string]Float {
	out := make(map[string]Float, len(m))
	//workflowcheck:ignore building a map does not depend on the order
	for k, v := range m {
		out[k] = Float(v)
	}
	return out
}

// Duration is a positive duration written as text: Go's syntax (30s, 1h30m)
// with an optional leading number of days (2d, 1d12h).
type Duration time.Duration

// DecodeInput reads a duration; null or blank text leave it unchanged (the
// step's default), and a bare number is refused since it has no unit.
func (d *Duration) DecodeInput(v any) error {
	if blank(v) {
		return nil
	}
	s, ok := v.(string)
	if !ok {
		return errorf("", "want a duration such as 48h, got %s", describe(v))
	}
	p, err := spec.ParseDuration(s)
	if err != nil || p <= 0 {
		return errorf("", "%q is not a positive duration", strings.TrimSpace(s))
	}
	*d = Duration(p)
	return nil
}

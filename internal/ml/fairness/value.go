package fairness

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
)

// Value is a metric that may be undefined. Undefined is NaN in Go and null
// in JSON, because encoding/json cannot represent NaN and a workflow
// payload must survive a round trip.
type Value float64

// Undefined is the NaN Value.
func Undefined() Value { return Value(math.NaN()) }

// Defined reports whether v holds a number.
func (v Value) Defined() bool { return !math.IsNaN(float64(v)) }

// MarshalJSON writes null for an undefined value.
func (v Value) MarshalJSON() ([]byte, error) {
	f := float64(v)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

// UnmarshalJSON reads null as undefined.
func (v *Value) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*v = Undefined()
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*v = Value(f)
	return nil
}

// ratio returns num/den, undefined when den is zero.
func ratio(num, den float64) Value {
	if den == 0 {
		return Undefined()
	}
	return Value(num / den)
}

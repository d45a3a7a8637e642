package serving

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

// The request decoder is a single pass over the body written for the one
// shape /v1/predict takes, {"records": [{field: value, ...}, ...]}: values go
// straight into the batch's slots, field names are looked up without
// allocating, and the first problem is reported with the record index and
// field name. A generic decoder into maps costs dozens of allocations per
// record, which is most of the time a small request takes.

// requestError is a problem with the request, answered with its status.
type requestError struct {
	status int
	msg    string
	err    error // what it wraps, if anything
}

func (e *requestError) Error() string { return e.msg }

func (e *requestError) Unwrap() error { return e.err }

func badRequest(format string, args ...any) *requestError {
	return &requestError{status: 400, msg: fmt.Sprintf(format, args...)}
}

// badRecord is a record that does not fit the model's signature: a 400
// naming the record and field, matching scoring.ErrBadRecord.
func badRecord(idx int, field, format string, args ...any) *requestError {
	re := &scoring.RecordError{Record: idx, Field: field, Msg: fmt.Sprintf(format, args...)}
	return &requestError{status: 400, msg: re.Error(), err: re}
}

type decoder struct {
	buf []byte
	pos int
	m   *Model
	b   *batch
	max int
}

// decodeRequest fills b with the records of body, checked against m's schema.
func decodeRequest(body []byte, m *Model, b *batch, maxRecords int) error {
	d := decoder{buf: body, m: m, b: b, max: maxRecords}
	return d.request()
}

func (d *decoder) ws() {
	for d.pos < len(d.buf) {
		switch d.buf[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *decoder) peek() byte {
	d.ws()
	if d.pos >= len(d.buf) {
		return 0
	}
	return d.buf[d.pos]
}

func (d *decoder) expect(c byte, where string) error {
	if d.peek() != c {
		return d.syntax(fmt.Sprintf("want %q %s", c, where))
	}
	d.pos++
	return nil
}

func (d *decoder) syntax(msg string) error {
	if d.pos >= len(d.buf) {
		return badRequest("invalid JSON: unexpected end of body: %s", msg)
	}
	return badRequest("invalid JSON at byte %d: %s", d.pos, msg)
}

func (d *decoder) request() error {
	if err := d.expect('{', "to open the request"); err != nil {
		return err
	}
	seen := false
	if d.peek() == '}' {
		d.pos++
	} else {
		for {
			key, err := d.key()
			if err != nil {
				return err
			}
			if string(key) != "records" {
				return badRequest("unknown field %q in the request (it takes only \"records\")", key)
			}
			if seen {
				return badRequest("field \"records\" given twice")
			}
			seen = true
			if err := d.records(); err != nil {
				return err
			}
			if d.peek() == ',' {
				d.pos++
				continue
			}
			if err := d.expect('}', "to close the request"); err != nil {
				return err
			}
			break
		}
	}
	if d.peek() != 0 {
		return d.syntax("trailing data after the request")
	}
	if !seen || d.b.n == 0 {
		return badRequest("no records: send {\"records\": [{...}, ...]}")
	}
	return nil
}

// key reads an object key and its colon.
func (d *decoder) key() ([]byte, error) {
	if d.peek() != '"' {
		return nil, d.syntax("want a field name")
	}
	k, err := d.str()
	if err != nil {
		return nil, err
	}
	if err := d.expect(':', "after a field name"); err != nil {
		return nil, err
	}
	return k, nil
}

func (d *decoder) records() error {
	if d.peek() != '[' {
		return badRequest("field \"records\": want an array of objects, got %s", d.describe())
	}
	d.pos++
	if d.peek() == ']' {
		d.pos++
		return nil
	}
	for {
		if d.b.n == d.max {
			return &requestError{status: 413, msg: fmt.Sprintf("more than %d records in one request", d.max)}
		}
		if err := d.record(d.b.n); err != nil {
			return err
		}
		d.b.n++
		switch d.peek() {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return nil
		default:
			return d.syntax("want ',' or ']' after a record")
		}
	}
}

func (d *decoder) record(idx int) error {
	if d.peek() != '{' {
		return badRequest("record %d: want an object, got %s", idx, d.describe())
	}
	d.pos++
	m, b := d.m, d.b
	nums, strs := b.grow(m)
	seen := b.seen[:len(m.fields)]
	clear(seen)
	if d.peek() == '}' {
		d.pos++
	} else {
		for {
			key, err := d.key()
			if err != nil {
				return err
			}
			fi, ok := m.fieldIndex[string(key)]
			if !ok {
				if string(key) == m.label {
					return badRecord(idx, string(key), "is the label, which the model predicts")
				}
				return badRecord(idx, string(key), "not in the model's schema")
			}
			f := &m.fields[fi]
			if seen[fi] {
				return badRecord(idx, string(key), "given twice")
			}
			seen[fi] = true
			if err := d.value(idx, f, nums, strs); err != nil {
				return err
			}
			if d.peek() == ',' {
				d.pos++
				continue
			}
			if err := d.expect('}', "to close a record"); err != nil {
				return err
			}
			break
		}
	}
	for fi := range m.fields {
		if !seen[fi] {
			f := &m.fields[fi]
			if f.required {
				return badRecord(idx, f.name, "missing")
			}
			if f.kind == fieldNumber {
				nums[f.slot] = math.NaN()
			} else if f.kind == fieldString {
				strs[f.slot] = nil
			}
		}
	}
	return nil
}

func (d *decoder) value(idx int, f *field, nums []float64, strs [][]byte) error {
	c := d.peek()
	switch f.kind {
	case fieldNumber:
		switch {
		case c == 'n':
			if !d.literal("null") {
				return d.syntax("invalid literal")
			}
			if !f.nullable {
				return badRecord(idx, f.name, "null, but this model imputes nothing for it")
			}
			nums[f.slot] = math.NaN()
			return nil
		case c == '-' || c >= '0' && c <= '9':
			v, err := d.number()
			if err != nil {
				return err
			}
			if math.IsInf(v, 0) {
				return badRecord(idx, f.name, "number out of range")
			}
			nums[f.slot] = v
			return nil
		}
		return badRecord(idx, f.name, "want a number, got %s", d.describe())
	case fieldString:
		switch c {
		case 'n':
			if !d.literal("null") {
				return d.syntax("invalid literal")
			}
			if !f.nullable {
				return badRecord(idx, f.name, "null, but this model imputes nothing for it")
			}
			strs[f.slot] = nil
			return nil
		case '"':
			s, err := d.str()
			if err != nil {
				return err
			}
			strs[f.slot] = s
			return nil
		}
		return badRecord(idx, f.name, "want a string, got %s", d.describe())
	}
	// An ignored column: any scalar, unread.
	switch {
	case c == '"':
		_, err := d.str()
		return err
	case c == 'n' && d.literal("null"), c == 't' && d.literal("true"), c == 'f' && d.literal("false"):
		return nil
	case c == '-' || c >= '0' && c <= '9':
		_, err := d.number()
		return err
	}
	return badRecord(idx, f.name, "want a string, a number or null, got %s", d.describe())
}

func (d *decoder) literal(lit string) bool {
	if len(d.buf)-d.pos >= len(lit) && string(d.buf[d.pos:d.pos+len(lit)]) == lit {
		d.pos += len(lit)
		return true
	}
	return false
}

// str reads a string at d.pos (an opening quote) and returns its contents,
// which alias the body unless it had escapes.
func (d *decoder) str() ([]byte, error) {
	start := d.pos
	d.pos++
	escaped := false
	for d.pos < len(d.buf) {
		c := d.buf[d.pos]
		switch {
		case c == '"':
			d.pos++
			if !escaped {
				return d.buf[start+1 : d.pos-1], nil
			}
			var s string
			if err := json.Unmarshal(d.buf[start:d.pos], &s); err != nil {
				d.pos = start
				return nil, d.syntax("invalid string escape")
			}
			return []byte(s), nil
		case c == '\\':
			escaped = true
			d.pos += 2
		case c < 0x20:
			return nil, d.syntax("control character in a string")
		default:
			d.pos++
		}
	}
	return nil, d.syntax("unterminated string")
}

// number reads a JSON number, checking its grammar: strconv alone would
// take forms JSON does not ("0x1p3", "+1", "Inf").
func (d *decoder) number() (float64, error) {
	start := d.pos
	b := d.buf
	i := d.pos
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() bool {
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > j
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return 0, d.syntax("invalid number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			d.pos = i
			return 0, d.syntax("invalid number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			d.pos = i
			return 0, d.syntax("invalid number")
		}
	}
	d.pos = i
	v, err := strconv.ParseFloat(string(b[start:i]), 64)
	if err != nil && !math.IsInf(v, 0) {
		return 0, d.syntax("invalid number")
	}
	return v, nil
}

// describe names the value at d.pos for an error message, quoting at most a
// few dozen bytes of it.
func (d *decoder) describe() string {
	switch c := d.peek(); c {
	case 0:
		return "the end of the body"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		start := d.pos
		if s, err := d.str(); err == nil {
			if len(s) > 40 {
				return strconv.Quote(string(s[:40])) + "..."
			}
			return strconv.Quote(string(s))
		}
		d.pos = start
		return "an invalid string"
	}
	end := d.pos
	for end < len(d.buf) && end-d.pos < 40 {
		c := d.buf[end]
		if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\n' || c == '\r' || c == '\t' {
			break
		}
		end++
	}
	return string(d.buf[d.pos:end])
}

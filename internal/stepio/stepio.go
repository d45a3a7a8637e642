// Package stepio is the one place where a step's `with:` values become Go
// values and a step's outputs become the JSON a later step reads. A step
// type describes its inputs and outputs as structs; their field tags give
// the declared lists (the validator's, `gauntlet step TYPE --help`'s and the
// pipeline schema's) and drive the decoding, so what a step declares and
// what it parses cannot drift apart:
//
//	type inputs struct {
//		Data string   `json:"data" required:"true" doc:"CSV path or builtin: URI"`
//		Seed int      `json:"seed" doc:"seed of the split (default 1)"`
//		Cols []string `json:"columns" doc:"columns (list or comma-separated)"`
//	}
//
// Decoding is lenient in the ways pipelines need, since templates and the
// command line deliver text: "0.1" or 0.1, "true" or true, "a,b" or [a, b],
// a mapping or its JSON text, and `positive_label: 1` read as "1". Errors
// name the key (`with.seed: want an integer, got "x"`) and say they are not
// worth retrying. The package knows nothing of Temporal or of step types,
// so workflow code decodes the inputs of the steps it carries out with it.
package stepio

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Field is one declared input or output of a step type.
type Field struct {
	Name     string
	Required bool
	Doc      string
}

// InputDecoder is implemented by field types that decode themselves from a
// `with:` value (an artifact reference, a duration). DecodeInput receives
// the value as given, null included; an absent key never calls it. An
// *Error it returns is read relative to the field's key.
type InputDecoder interface {
	DecodeInput(v any) error
}

// Error is bad input: Path is the key, dotted into mappings and indexed
// into lists (thresholds.roc_auc.min, weights[2]).
type Error struct {
	Path string
	Msg  string
}

func (e *Error) Error() string { return "with." + e.Path + ": " + e.Msg }

// Retryable says that another attempt with the same inputs fails the same
// way.
func (e *Error) Retryable() bool { return false }

func errorf(path, format string, args ...any) error {
	return &Error{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Fields lists the fields of the struct type T in declaration order:
// the `json` tag names them, `required:"true"` marks them required and
// `doc` describes them. Embedded structs contribute their fields.
func Fields[T any]() []Field {
	fs := fieldsOf(structType(reflect.TypeFor[T]()))
	out := make([]Field, len(fs))
	for i, f := range fs {
		out[i] = Field{Name: f.name, Required: f.required, Doc: f.doc}
	}
	return out
}

// Names lists the names of Fields[T].
func Names[T any]() []string {
	fs := fieldsOf(structType(reflect.TypeFor[T]()))
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.name
	}
	return out
}

func structType(t reflect.Type) reflect.Type {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		// A step type declared with a non-struct is a programming error
		// that shows at start-up, when the types register.
		panic(fmt.Sprintf("stepio: %s is not a struct", t))
	}
	return t
}

type field struct {
	name     string
	index    []int
	required bool
	doc      string
}

// fieldsOf reads the tags as encoding/json does for names: the tag's name,
// or the Go name when the tag gives none; "-" and unexported fields are
// left out, and untagged embedded structs are flattened.
func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, hasTag := sf.Tag.Lookup("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" && tag == "-" {
			continue
		}
		if sf.Anonymous && !hasTag {
			ft := sf.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for _, f := range fieldsOf(ft) {
					f.index = append([]int{i}, f.index...)
					out = append(out, f)
				}
				continue
			}
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		out = append(out, field{name: name, index: []int{i}, required: sf.Tag.Get("required") == "true", doc: sf.Tag.Get("doc")})
	}
	return out
}

// Decode fills the struct dst points to from a step's `with:` values.
// Fields whose key is absent, null or blank text keep the value dst held,
// which is how a step gives defaults; a required one is an error. A key
// that names no field is an error too.
func Decode(with map[string]any, dst any) error {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("stepio: decode into %T: want a pointer to a struct", dst)
	}
	return decodeStruct("", with, v.Elem(), "input")
}

// DecodeValue decodes one value into what dst points to, naming path in
// errors; InputDecoder implementations use it for their parts.
func DecodeValue(path string, raw any, dst any) error {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return fmt.Errorf("stepio: decode into %T: want a pointer", dst)
	}
	return decodeValue(path, raw, v.Elem(), true)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func decodeStruct(path string, m map[string]any, v reflect.Value, what string) error {
	fs := fieldsOf(v.Type())
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.name
	}
	for _, k := range SortedKeys(m) {
		if !slices.Contains(names, k) {
			return errorf(join(path, k), "unknown %s (known: %s)", what, strings.Join(names, ", "))
		}
	}
	for _, f := range fs {
		raw, ok := m[f.name]
		if f.required && blank(raw) {
			return errorf(join(path, f.name), "required")
		}
		if !ok {
			continue
		}
		fv := v.FieldByIndex(f.index)
		if err := decodeValue(join(path, f.name), raw, fv, true); err != nil {
			return err
		}
		// "," is not blank, but a required list it leaves empty is.
		if f.required && (fv.Kind() == reflect.Slice || fv.Kind() == reflect.Map) && fv.Len() == 0 {
			return errorf(join(path, f.name), "required")
		}
	}
	return nil
}

// SortedKeys returns m's keys in order. Decoding runs in workflow code too,
// where nothing may depend on the order of a map.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	//workflowcheck:ignore the keys are sorted before anything uses them
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// blank is a value that says nothing: null, or text of only spaces.
func blank(v any) bool {
	if v == nil {
		return true
	}
	s, ok := v.(string)
	return ok && strings.TrimSpace(s) == ""
}

var (
	inputDecoderType   = reflect.TypeFor[InputDecoder]()
	jsonUnmarshalerTyp = reflect.TypeFor[json.Unmarshaler]()
)

// decodeValue sets v from raw. As a struct field (field true) a blank raw
// leaves v alone; as an element of a list or mapping it is a value like
// any other, so `{min: null}` is refused rather than read as 0.
func decodeValue(path string, raw any, v reflect.Value, field bool) error {
	if v.CanAddr() && v.Addr().Type().Implements(inputDecoderType) {
		err := v.Addr().Interface().(InputDecoder).DecodeInput(raw)
		return rebase(path, err)
	}
	if field && blank(raw) {
		return nil
	}
	if v.Kind() == reflect.Pointer {
		if raw == nil {
			v.SetZero()
			return nil
		}
		nv := reflect.New(v.Type().Elem())
		if err := decodeValue(path, raw, nv.Elem(), field); err != nil {
			return err
		}
		v.Set(nv)
		return nil
	}
	if v.Kind() == reflect.Interface && v.NumMethod() == 0 {
		if raw == nil {
			v.SetZero()
		} else {
			v.Set(reflect.ValueOf(raw))
		}
		return nil
	}
	if v.CanAddr() && v.Addr().Type().Implements(jsonUnmarshalerTyp) {
		b, err := json.Marshal(raw)
		if err == nil {
			err = v.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(b)
		}
		if err != nil {
			return errorf(path, "want %s, got %s: %v", v.Type(), describe(raw), err)
		}
		return nil
	}
	if raw == nil {
		return errorf(path, "want %s, got null", kindName(v.Type()))
	}
	switch v.Kind() {
	case reflect.String:
		s, err := String(raw)
		if err != nil {
			return rebase(path, err)
		}
		v.SetString(s)
	case reflect.Bool:
		b, err := Bool(raw)
		if err != nil {
			return rebase(path, err)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := Int(raw)
		if err != nil {
			return rebase(path, err)
		}
		if v.OverflowInt(int64(n)) {
			return errorf(path, "%d is out of range", n)
		}
		v.SetInt(int64(n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := Int(raw)
		if err != nil {
			return rebase(path, err)
		}
		if n < 0 || v.OverflowUint(uint64(n)) {
			return errorf(path, "want a non-negative integer, got %d", n)
		}
		v.SetUint(uint64(n))
	case reflect.Float32, reflect.Float64:
		f, err := Number(raw)
		if err != nil {
			return rebase(path, err)
		}
		v.SetFloat(f)
	case reflect.Slice:
		return decodeSlice(path, raw, v)
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return fmt.Errorf("stepio: %s: map keys of %s are not strings", path, v.Type())
		}
		m, err := Mapping(raw)
		if err != nil {
			return rebase(path, err)
		}
		if v.Type() == reflect.TypeFor[map[string]any]() {
			v.Set(reflect.ValueOf(m))
			return nil
		}
		out := reflect.MakeMapWithSize(v.Type(), len(m))
		for _, k := range SortedKeys(m) {
			e := reflect.New(v.Type().Elem()).Elem()
			if err := decodeValue(join(path, k), m[k], e, false); err != nil {
				return err
			}
			out.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), e)
		}
		v.Set(out)
	case reflect.Struct:
		m, err := Mapping(raw)
		if err != nil {
			return rebase(path, err)
		}
		return decodeStruct(path, m, v, "key")
	default:
		// A field type this package cannot fill is a programming error.
		return fmt.Errorf("stepio: %s: cannot decode into %s", path, v.Type())
	}
	return nil
}

func decodeSlice(path string, raw any, v reflect.Value) error {
	et := v.Type().Elem()
	if et.Kind() == reflect.String && !reflect.PointerTo(et).Implements(inputDecoderType) {
		list, err := List(raw)
		if err != nil {
			return rebase(path, err)
		}
		out := reflect.MakeSlice(v.Type(), len(list), len(list))
		for i, s := range list {
			out.Index(i).SetString(s)
		}
		v.Set(out)
		return nil
	}
	var items []any
	switch x := raw.(type) {
	case string:
		for _, p := range strings.Split(x, ",") {
			if p = strings.TrimSpace(p); p != "" {
				items = append(items, p)
			}
		}
	case map[string]any:
		return errorf(path, "want a list, got a mapping")
	default:
		rv := reflect.ValueOf(raw)
		if rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array {
			for i := range rv.Len() {
				items = append(items, rv.Index(i).Interface())
			}
		} else {
			// A lone value (`weights: 50`) is a list of one.
			items = []any{raw}
		}
	}
	out := reflect.MakeSlice(v.Type(), len(items), len(items))
	for i, it := range items {
		if err := decodeValue(fmt.Sprintf("%s[%d]", path, i), it, out.Index(i), false); err != nil {
			return err
		}
	}
	v.Set(out)
	return nil
}

// rebase puts err, returned for the value at path, under that path.
func rebase(path string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		p := path
		if e.Path != "" {
			p = join(path, e.Path)
			if strings.HasPrefix(e.Path, "[") {
				p = path + e.Path
			}
		}
		return &Error{Path: p, Msg: e.Msg}
	}
	return &Error{Path: path, Msg: err.Error()}
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

// describe names a value for an error: text quoted, structures by kind.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(x)
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Map, reflect.Struct:
		return "a mapping"
	case reflect.Slice, reflect.Array:
		return "a list"
	}
	return fmt.Sprint(v)
}

// String reads text; numbers and booleans are formatted, so that
// `positive_label: 1` is "1". Surrounding spaces are dropped.
func String(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return strings.TrimSpace(x), nil
	case bool:
		return strconv.FormatBool(x), nil
	case json.Number:
		return x.String(), nil
	}
	if f, ok := number(v); ok {
		return strconv.FormatFloat(f, 'g', -1, 64), nil
	}
	return "", errorf("", "want a string, got %s", describe(v))
}

// number reads a number given as a number of any Go type or as text.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case int32:
		return float64(x), true
	case uint:
		return float64(x), true
	case uint64:
		return float64(x), true
	case uint32:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, err == nil
	}
	return 0, false
}

// Number reads a finite number, 0.1 or "0.1".
func Number(v any) (float64, error) {
	f, ok := number(v)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, errorf("", "want a number, got %s", describe(v))
	}
	return f, nil
}

// Int reads a whole number, 3 or "3". Beyond 2^53 a float64, which is what
// JSON and YAML numbers arrive as, no longer holds every integer.
func Int(v any) (int, error) {
	f, ok := number(v)
	if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, errorf("", "want an integer, got %s", describe(v))
	}
	return int(f), nil
}

// Bool reads true or false, also as text ("true", "1", "f").
func Bool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		if b, err := strconv.ParseBool(strings.TrimSpace(x)); err == nil {
			return b, nil
		}
	}
	return false, errorf("", "want true or false, got %s", describe(v))
}

// List is the one list parser: "a,b" or [a, b] (numbers formatted as text),
// a lone number as a list of one; items are trimmed and blank ones dropped.
func List(v any) ([]string, error) {
	var raw []string
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		raw = strings.Split(x, ",")
	case []string:
		raw = x
	case []any:
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				f, isNum := number(e)
				if !isNum {
					return nil, errorf(fmt.Sprintf("[%d]", i), "want a string, got %s", describe(e))
				}
				s = strconv.FormatFloat(f, 'g', -1, 64)
			}
			raw = append(raw, s)
		}
	default:
		f, ok := number(v)
		if !ok {
			return nil, errorf("", "want a list or a comma-separated string, got %s", describe(v))
		}
		raw = []string{strconv.FormatFloat(f, 'g', -1, 64)}
	}
	var out []string
	for _, s := range raw {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// Mapping reads a mapping, or a JSON object given as text.
func Mapping(v any) (map[string]any, error) {
	switch x := v.(type) {
	case map[string]any:
		return x, nil
	case string:
		var m map[string]any
		if err := json.Unmarshal([]byte(x), &m); err != nil || m == nil {
			if err == nil {
				err = errors.New("null")
			}
			return nil, errorf("", "want a mapping (or a JSON object): %v", err)
		}
		return m, nil
	}
	// Typed maps and structs from Go callers take their JSON shape.
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Map || rv.Kind() == reflect.Struct || rv.Kind() == reflect.Pointer {
		if b, err := json.Marshal(v); err == nil {
			var m map[string]any
			if json.Unmarshal(b, &m) == nil && m != nil {
				return m, nil
			}
		}
	}
	return nil, errorf("", "want a mapping, got %s", describe(v))
}

// Encode turns a step's outputs struct into the map the step returns, in
// the shape a later step reads it after the outputs crossed Temporal's
// history as JSON: numbers as float64, lists as []any, structs as
// mappings. A nil pointer gives nil.
func Encode(v any) (map[string]any, error) {
	if rv := reflect.ValueOf(v); !rv.IsValid() || rv.Kind() == reflect.Pointer && rv.IsNil() {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode outputs %T: %w", v, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("encode outputs %T: %w", v, err)
	}
	return m, nil
}

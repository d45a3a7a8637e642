// Package stepschema keeps pipelines/schema.json's knowledge of step types
// equal to the step registry: the names `uses:` accepts and, for each type,
// the `with:` keys it takes, which are required and what each means. The
// rest of the schema is written by hand; Generate replaces only these parts
// and prints the whole in one fixed layout, so the committed file can be
// compared with what the registry gives (see the package's test, and
// `go generate ./internal/stepschema` to update it).
package stepschema

//go:generate go run ./gen ../../pipelines/schema.json

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/steps"
)

// RunType is the registered type of `run:` steps; a pipeline names it with
// `run:`, never with `uses:`.
const RunType = "run"

// withDef is the name under $defs of a type's `with:` schema.
func withDef(typ string) string { return "with-" + typ }

// Generate returns schema (the current pipelines/schema.json) with its
// step-type parts made from types.
func Generate(schema []byte, types []steps.Type) ([]byte, error) {
	root, err := parse(schema)
	if err != nil {
		return nil, fmt.Errorf("schema.json: %w", err)
	}
	defs := root.get("$defs")
	step := defs.get("step")
	props := step.get("properties")
	if root.kind != '{' || defs == nil || step == nil || props == nil || props.get("uses") == nil {
		return nil, errors.New("schema.json: no $defs.step.properties.uses to generate")
	}
	var names []any
	var conds []*node
	for _, t := range types {
		if t.Name == RunType {
			continue
		}
		names = append(names, t.Name)
		if t.Inputs == nil {
			continue
		}
		then := object("properties", object("with", object("$ref", "#/$defs/"+withDef(t.Name))))
		if slices.ContainsFunc(t.Inputs, func(in steps.InputSpec) bool { return in.Required }) {
			then = object("required", array("with"), "properties", then.get("properties"))
		}
		conds = append(conds, object("if", object("properties", object("uses", object("const", t.Name)), "required", array("uses")), "then", then))
	}
	props.set("uses", object(
		"enum", array(names...),
		"description", "A built-in step type; `gauntlet step TYPE --help` describes each. A `run:` step runs a command instead."))
	step.set("allOf", array(anys(conds)...))

	// The with-* definitions are all generated: drop the old ones, so that
	// a type that left the registry leaves the schema too.
	kept := &node{kind: '{'}
	for i, k := range defs.keys {
		if !strings.HasPrefix(k, "with-") {
			kept.set(k, defs.vals[i])
		}
	}
	for _, t := range types {
		if t.Name == RunType || t.Inputs == nil {
			continue
		}
		inputs := &node{kind: '{'}
		var required []any
		for _, in := range t.Inputs {
			inputs.set(in.Name, object("description", in.Doc))
			if in.Required {
				required = append(required, in.Name)
			}
		}
		def := object("type", "object", "description", "Inputs of "+t.Name+": "+t.Doc, "additionalProperties", false)
		if len(required) > 0 {
			def.set("required", array(required...))
		}
		def.set("properties", inputs)
		kept.set(withDef(t.Name), def)
	}
	root.set("$defs", kept)

	var b bytes.Buffer
	root.write(&b, 0, 0)
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// node is a JSON value that keeps the order of its object keys, so the
// hand-written parts of the schema stay in the order their author chose.
type node struct {
	kind   byte // '{', '[' or 0 for a scalar
	keys   []string
	vals   []*node
	scalar []byte
}

func (n *node) get(key string) *node {
	if n == nil {
		return nil
	}
	for i, k := range n.keys {
		if k == key {
			return n.vals[i]
		}
	}
	return nil
}

// set replaces key's value in place, or appends key.
func (n *node) set(key string, v *node) {
	for i, k := range n.keys {
		if k == key {
			n.vals[i] = v
			return
		}
	}
	n.keys = append(n.keys, key)
	n.vals = append(n.vals, v)
}

func value(v any) *node {
	if n, ok := v.(*node); ok {
		return n
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only strings, booleans and nodes are passed here.
		panic(err)
	}
	return &node{scalar: bytes.TrimSpace(b.Bytes())}
}

func object(kv ...any) *node {
	n := &node{kind: '{'}
	for i := 0; i < len(kv); i += 2 {
		n.set(kv[i].(string), value(kv[i+1]))
	}
	return n
}

func array(vs ...any) *node {
	n := &node{kind: '['}
	for _, v := range vs {
		n.vals = append(n.vals, value(v))
	}
	return n
}

func anys(ns []*node) []any {
	out := make([]any, len(ns))
	for i, n := range ns {
		out[i] = n
	}
	return out
}

func parse(b []byte) (*node, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	n, err := parseValue(d)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("data after the top-level value")
	}
	return n, nil
}

func parseValue(d *json.Decoder) (*node, error) {
	tok, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		n := &node{kind: '{'}
		for d.More() {
			k, err := d.Token()
			if err != nil {
				return nil, err
			}
			v, err := parseValue(d)
			if err != nil {
				return nil, err
			}
			n.keys = append(n.keys, k.(string))
			n.vals = append(n.vals, v)
		}
		_, err := d.Token()
		return n, err
	case json.Delim('['):
		n := &node{kind: '['}
		for d.More() {
			v, err := parseValue(d)
			if err != nil {
				return nil, err
			}
			n.vals = append(n.vals, v)
		}
		_, err := d.Token()
		return n, err
	}
	return value(tok), nil
}

// lineWidth is the longest a value printed on one line may be; longer
// objects and arrays get a line per member.
const lineWidth = 160

func (n *node) compact() string {
	switch n.kind {
	case '{':
		parts := make([]string, len(n.keys))
		for i, k := range n.keys {
			parts[i] = string(value(k).scalar) + ": " + n.vals[i].compact()
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case '[':
		parts := make([]string, len(n.vals))
		for i, v := range n.vals {
			parts[i] = v.compact()
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return string(n.scalar)
}

// write prints n at nesting depth, after lead characters already on the
// line.
func (n *node) write(b *bytes.Buffer, depth, lead int) {
	c := n.compact()
	if n.kind == 0 || len(n.vals) == 0 || lead+len(c) <= lineWidth {
		b.WriteString(c)
		return
	}
	open, close := "{", "}"
	if n.kind == '[' {
		open, close = "[", "]"
	}
	pad := strings.Repeat("  ", depth+1)
	b.WriteString(open + "\n")
	for i, v := range n.vals {
		line := pad
		if n.kind == '{' {
			line += string(value(n.keys[i]).scalar) + ": "
		}
		b.WriteString(line)
		v.write(b, depth+1, len(line))
		if i < len(n.vals)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString(strings.Repeat("  ", depth) + close)
}

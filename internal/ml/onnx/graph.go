// Package onnx reads ONNX models: it parses the protobuf, checks the graph's
// structure before any runtime sees it (so a truncated or corrupt file, an
// operator set Gauntlet does not accept or a dangling edge is refused with
// an error naming the node or value), reports the graph's signature, and
// converts ONNX tensors to and from the runtime's.
package onnx

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxpb"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/ort"
)

// Operator sets of the default domain that Gauntlet accepts. 7 is the first
// with numpy broadcasting for the arithmetic operators; 21 is the newest
// that ONNX Runtime 1.18, the oldest library package ort loads, implements.
const (
	MinOpset = 7
	MaxOpset = 21
)

// MinIRVersion is the oldest IR version accepted: 3 is ONNX 1.0's, the first
// with operator set imports.
const MinIRVersion = 3

// ErrBadModel is matched (errors.Is) by every error about the model itself:
// retrying cannot fix it.
var ErrBadModel = errors.New("bad ONNX model")

// Error is a problem with a model, located as precisely as possible.
type Error struct {
	Where string // e.g. `node 3 (Gemm "fc1")`, `output "probability"`
	Msg   string
}

func (e *Error) Error() string {
	if e.Where == "" {
		return "onnx: " + e.Msg
	}
	return "onnx: " + e.Where + ": " + e.Msg
}

// Is makes errors.Is(err, ErrBadModel) true.
func (e *Error) Is(target error) bool { return target == ErrBadModel }

func bad(where, format string, args ...any) error {
	return &Error{Where: where, Msg: fmt.Sprintf(format, args...)}
}

// Dim is one dimension of a shape: a fixed size, a named (symbolic) size
// such as "batch", or unknown.
type Dim struct {
	Size  int64  // set when Fixed
	Param string // the symbolic name, when there is one
	Fixed bool
}

// MarshalJSON writes a fixed size as a number, a symbolic one as its name
// and an unknown one as null.
func (d Dim) MarshalJSON() ([]byte, error) {
	switch {
	case d.Fixed:
		return json.Marshal(d.Size)
	case d.Param != "":
		return json.Marshal(d.Param)
	}
	return []byte("null"), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (d *Dim) UnmarshalJSON(b []byte) error {
	*d = Dim{}
	switch {
	case string(b) == "null":
		return nil
	case len(b) > 0 && b[0] == '"':
		if err := json.Unmarshal(b, &d.Param); err != nil {
			return err
		}
		if d.Param == "" {
			return errors.New("onnx: empty dimension name")
		}
		return nil
	}
	if err := json.Unmarshal(b, &d.Size); err != nil {
		return fmt.Errorf("onnx: dimension %s is not a size, a name or null", b)
	}
	if d.Size < 0 {
		return fmt.Errorf("onnx: negative dimension %d", d.Size)
	}
	d.Fixed = true
	return nil
}

func (d Dim) String() string {
	switch {
	case d.Fixed:
		return fmt.Sprint(d.Size)
	case d.Param != "":
		return d.Param
	}
	return "?"
}

// Value is a graph input or output: its name, element type and shape. A nil
// Shape means the graph does not say.
type Value struct {
	Name  string
	Type  ort.ElemType
	Shape []Dim
}

// ShapeString renders the shape as [batch 14].
func (v Value) ShapeString() string {
	if v.Shape == nil {
		return "(unknown)"
	}
	s := make([]string, len(v.Shape))
	for i, d := range v.Shape {
		s[i] = d.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}

// Graph is a parsed, structurally checked model.
type Graph struct {
	Proto *onnxpb.ModelProto
	// Opset is the default domain's operator set version.
	Opset int64
	// producer maps a value name to the index of the node producing it.
	producer map[string]int
}

// Parse decodes and checks an ONNX model.
func Parse(b []byte) (*Graph, error) {
	if len(b) == 0 {
		return nil, bad("", "empty file: not an ONNX model")
	}
	m := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, bad("", "not a valid ONNX protobuf (truncated or corrupt): %v", err)
	}
	g := &Graph{Proto: m}
	if err := g.check(); err != nil {
		return nil, err
	}
	return g, nil
}

// Marshal encodes the model deterministically, so equal graphs give equal
// bytes and digests.
func (g *Graph) Marshal() ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(g.Proto)
}

func (g *Graph) check() error {
	m := g.Proto
	if m.GetIrVersion() < MinIRVersion {
		return bad("", "IR version %d: not an ONNX model, or one older than IR version %d (ONNX 1.0)", m.GetIrVersion(), MinIRVersion)
	}
	if len(m.GetOpsetImport()) == 0 {
		return bad("", "no operator set import")
	}
	for _, op := range m.GetOpsetImport() {
		switch op.GetDomain() {
		case "", "ai.onnx":
			g.Opset = op.GetVersion()
		default:
			return bad("", "imports operator domain %q: Gauntlet accepts graphs of the default ONNX domain only", op.GetDomain())
		}
	}
	if g.Opset < MinOpset || g.Opset > MaxOpset {
		return bad("", "operator set %d is not supported (Gauntlet accepts %d to %d; export with opset_version=13, say)", g.Opset, MinOpset, MaxOpset)
	}
	gr := m.GetGraph()
	if gr == nil {
		return bad("", "no graph (truncated or corrupt file)")
	}
	if len(gr.GetNode()) == 0 {
		return bad("graph "+quote(gr.GetName()), "has no nodes (truncated or corrupt file)")
	}
	if len(gr.GetOutput()) == 0 {
		return bad("graph "+quote(gr.GetName()), "has no outputs (truncated or corrupt file)")
	}
	defined := map[string]bool{"": true} // "" is an omitted optional input
	for _, t := range gr.GetInitializer() {
		where := "initializer " + quote(t.GetName())
		if t.GetName() == "" {
			return bad(where, "has no name")
		}
		if _, err := TensorFromProto(t); err != nil {
			return bad(where, "%v", err)
		}
		defined[t.GetName()] = true
	}
	for _, in := range gr.GetInput() {
		if in.GetName() == "" {
			return bad("graph input", "has no name")
		}
		defined[in.GetName()] = true
	}
	g.producer = map[string]int{}
	for i, n := range gr.GetNode() {
		where := nodeWhere(i, n)
		if n.GetDomain() != "" && n.GetDomain() != "ai.onnx" {
			return bad(where, "operator domain %q is not accepted", n.GetDomain())
		}
		if slices.ContainsFunc(n.GetAttribute(), func(a *onnxpb.AttributeProto) bool { return a.GetG() != nil || len(a.GetGraphs()) > 0 }) {
			return bad(where, "has a subgraph (If, Loop, Scan): Gauntlet accepts straight-line graphs only")
		}
		for _, in := range n.GetInput() {
			if !defined[in] {
				return bad(where, "input %q is not a graph input, an initializer or an earlier node's output (nodes must be in topological order)", in)
			}
		}
		for _, out := range n.GetOutput() {
			if out == "" {
				continue
			}
			if defined[out] {
				return bad(where, "output %q is defined twice", out)
			}
			defined[out] = true
			g.producer[out] = i
		}
	}
	for _, out := range gr.GetOutput() {
		if !defined[out.GetName()] {
			return bad("output "+quote(out.GetName()), "is not produced by any node")
		}
	}
	for _, v := range append(slices.Clone(gr.GetInput()), gr.GetOutput()...) {
		if _, err := valueOf(v); err != nil {
			return err
		}
	}
	return nil
}

func nodeWhere(i int, n *onnxpb.NodeProto) string {
	if n.GetName() != "" {
		return fmt.Sprintf("node %d (%s %q)", i, n.GetOpType(), n.GetName())
	}
	return fmt.Sprintf("node %d (%s)", i, n.GetOpType())
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

func valueOf(v *onnxpb.ValueInfoProto) (Value, error) {
	where := "value " + quote(v.GetName())
	tt := v.GetType().GetTensorType()
	if tt == nil {
		return Value{}, bad(where, "is not a tensor (a sequence, map or optional value), which Gauntlet does not read")
	}
	out := Value{Name: v.GetName(), Type: ort.ElemType(tt.GetElemType())}
	if tt.Shape != nil {
		out.Shape = make([]Dim, 0, len(tt.Shape.GetDim()))
		for _, d := range tt.Shape.GetDim() {
			switch x := d.GetValue().(type) {
			case *onnxpb.TensorShapeProto_Dimension_DimValue:
				out.Shape = append(out.Shape, Dim{Size: x.DimValue, Fixed: true})
			case *onnxpb.TensorShapeProto_Dimension_DimParam:
				out.Shape = append(out.Shape, Dim{Param: x.DimParam})
			default:
				out.Shape = append(out.Shape, Dim{})
			}
		}
	}
	return out, nil
}

// Inputs are the graph inputs a caller feeds: those that are not also
// initializers (older exporters list the weights as inputs too).
func (g *Graph) Inputs() []Value {
	init := map[string]bool{}
	for _, t := range g.Proto.GetGraph().GetInitializer() {
		init[t.GetName()] = true
	}
	var out []Value
	for _, v := range g.Proto.GetGraph().GetInput() {
		if !init[v.GetName()] {
			val, _ := valueOf(v) // checked by Parse
			out = append(out, val)
		}
	}
	return out
}

// Outputs are the graph outputs, in order.
func (g *Graph) Outputs() []Value {
	var out []Value
	for _, v := range g.Proto.GetGraph().GetOutput() {
		val, _ := valueOf(v)
		out = append(out, val)
	}
	return out
}

// Producer returns the node producing the named value, or nil for a graph
// input or initializer.
func (g *Graph) Producer(name string) *onnxpb.NodeProto {
	i, ok := g.producer[name]
	if !ok {
		return nil
	}
	return g.Proto.GetGraph().GetNode()[i]
}

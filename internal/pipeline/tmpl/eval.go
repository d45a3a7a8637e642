package tmpl

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
)

// StepState is what a template can read about a step: its status and, once
// it ran, its outputs. A step that fanned out (FanOut) also has its Items,
// and each of its outputs is the list of its items' values in item order:
// an output no item produced reads as a list of nulls.
type StepState struct {
	Status  string         `json:"status"`
	Outputs map[string]any `json:"outputs,omitempty"`
	FanOut  bool           `json:"fan_out,omitempty"`
	Items   []any          `json:"items,omitempty"`
}

// RunInfo identifies the run, for ${{ run.id }} and ${{ run.pipeline }}.
type RunInfo struct {
	ID       string `json:"id"`
	Pipeline string `json:"pipeline"`
}

// Context is everything a template or condition may read.
//
// Missing data follows one rule. In normal steps, reading a step that has
// no state, or an output the step did not produce, is an error naming the
// reference: the validator has already proven the step is upstream, so a
// gap means the step type broke its contract. In finally steps (Finally
// set) the same reads yield null (an empty string when interpolated),
// because finally steps run after failures and must cope with steps that
// never ran; they should test steps.ID.status first.
type Context struct {
	Params  map[string]any
	Steps   map[string]StepState
	Run     RunInfo
	Finally bool
	// Step is the id of the step being resolved, used in error messages.
	Step string
	// Item is the current item of a step that fans out, when HasItem.
	Item    any
	HasItem bool
}

// Resolve replaces every template inside v, recursing through maps and
// lists. A string that is exactly one template takes the expression's value
// and type; templates inside longer strings are interpolated as text. Map
// keys are not templated. Errors name the path of the offending value and
// are reported all together, in key order.
func Resolve(v any, ctx Context) (any, error) {
	var errs []error
	out := resolve(v, ctx, "", &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func resolve(v any, ctx Context, path string, errs *[]error) any {
	switch v := v.(type) {
	case string:
		out, err := ResolveString(v, ctx)
		if err != nil {
			*errs = append(*errs, ctx.wrap(path, err))
		}
		return out
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make(map[string]any, len(v))
		for _, k := range keys {
			out[k] = resolve(v[k], ctx, join(path, k), errs)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = resolve(e, ctx, path+"["+strconv.Itoa(i)+"]", errs)
		}
		return out
	default:
		return v
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (ctx Context) wrap(path string, err error) error {
	var where []string
	if ctx.Step != "" {
		where = append(where, "step "+strconv.Quote(ctx.Step))
	}
	if path != "" {
		where = append(where, strconv.Quote(path))
	}
	if len(where) == 0 {
		return err
	}
	return fmt.Errorf("%s: %w", strings.Join(where, " "), err)
}

// ResolveString resolves the templates of one string; see Resolve.
func ResolveString(s string, ctx Context) (any, error) {
	if !HasTemplate(s) {
		return s, nil
	}
	segs, err := Split(s)
	if err != nil {
		return nil, err
	}
	if src, ok := whole(segs); ok {
		return Eval(src, ctx)
	}
	var b strings.Builder
	for _, seg := range segs {
		if !seg.IsExpr() {
			b.WriteString(seg.Text)
			continue
		}
		v, err := Eval(seg.Expr, ctx)
		if err != nil {
			return nil, err
		}
		text, err := Text(v)
		if err != nil {
			return nil, fmt.Errorf("${{ %s }}: %w", seg.Expr, err)
		}
		b.WriteString(text)
	}
	return b.String(), nil
}

// Text is how a value reads when interpolated into a longer string: null
// is empty, numbers are plain decimals, lists and maps are JSON.
func Text(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case float64:
		return formatFloat(v), nil
	case float32:
		return formatFloat(float64(v)), nil
	case int:
		return strconv.Itoa(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("cannot interpolate %T: %w", v, err)
	}
	return string(b), nil
}

func formatFloat(f float64) string {
	if math.Abs(f) < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// EvalCondition evaluates an if: condition, bare or wrapped in ${{ }}; a
// result that is not a bool is an error naming ctx.Step.
func EvalCondition(cond string, ctx Context) (bool, error) {
	src, err := ConditionSource(cond)
	if err != nil {
		return false, ctx.wrap("if", err)
	}
	v, err := Eval(src, ctx)
	if err != nil {
		return false, ctx.wrap("if", err)
	}
	b, ok := v.(bool)
	if !ok {
		return false, ctx.wrap("if", fmt.Errorf("condition %q evaluated to %s, want a bool", src, describe(v)))
	}
	return b, nil
}

func describe(v any) string {
	if v == nil {
		return "null"
	}
	text, err := Text(v)
	if err != nil {
		return fmt.Sprintf("a %T", v)
	}
	return fmt.Sprintf("%q (%T)", text, v)
}

// Eval evaluates one expression. References to params, steps and run are
// read from ctx before the expression runs, following the missing-data rule
// of Context, so the error names the exact reference.
func Eval(src string, ctx Context) (any, error) {
	c := &collector{}
	var refErrs []error
	c.replace = func(ch *chain) ast.Node {
		v, err := ctx.lookup(ch.root, ch.path)
		if err != nil {
			// A longer chain may still be fine in finally mode, so only
			// the final, outermost failure is reported.
			v = missing{err}
		}
		return &ast.ConstantNode{Value: v}
	}
	env := map[string]any{RootParams: ctx.Params, RootSteps: ctx.stepsValue(), RootRun: ctx.runValue(), RootItem: ctx.Item}
	prog, compileErr := expr.Compile(src, expr.Env(env), expr.Patch(c))
	for _, ch := range c.live() {
		if cn, ok := ch.node.(*ast.ConstantNode); ok {
			if m, ok := cn.Value.(missing); ok {
				refErrs = append(refErrs, m.err)
			}
		}
	}
	if len(refErrs) > 0 {
		return nil, errors.Join(refErrs...)
	}
	if compileErr != nil {
		return nil, fmt.Errorf("${{ %s }}: %w", src, compileError(compileErr))
	}
	v, err := expr.Run(prog, env)
	if err != nil {
		return nil, fmt.Errorf("${{ %s }}: %w", src, compileError(err))
	}
	return v, nil
}

// missing marks a reference that could not be read.
type missing struct{ err error }

func (ctx Context) stepsValue() map[string]any {
	out := make(map[string]any, len(ctx.Steps))
	for id, st := range ctx.Steps {
		out[id] = st.value()
	}
	return out
}

func (st StepState) value() map[string]any {
	v := map[string]any{"status": st.Status, "outputs": st.Outputs}
	if st.FanOut {
		v["items"] = st.Items
	}
	return v
}

func (ctx Context) runValue() map[string]any {
	return map[string]any{"id": ctx.Run.ID, "pipeline": ctx.Run.Pipeline}
}

// lookup reads a static reference.
func (ctx Context) lookup(root string, path []string) (any, error) {
	ref := strings.Join(append([]string{root}, path...), ".")
	switch root {
	case RootParams:
		if len(path) == 0 {
			return ctx.Params, nil
		}
		v, ok := ctx.Params[path[0]]
		if !ok {
			return nil, fmt.Errorf("%s: no param %q", ref, path[0])
		}
		return walk(v, path[1:], ref, false)
	case RootItem:
		if !ctx.HasItem {
			return nil, fmt.Errorf("%s: step %q does not fan out (it has no for_each or matrix)", ref, ctx.Step)
		}
		return walk(ctx.Item, path, ref, false)
	case RootRun:
		if len(path) == 0 {
			return ctx.runValue(), nil
		}
		switch path[0] {
		case "id":
			return walk(ctx.Run.ID, path[1:], ref, false)
		case "pipeline":
			return walk(ctx.Run.Pipeline, path[1:], ref, false)
		}
		return nil, fmt.Errorf("%s: run has no field %q (want id or pipeline)", ref, path[0])
	}
	if len(path) == 0 {
		return ctx.stepsValue(), nil
	}
	st, ok := ctx.Steps[path[0]]
	if !ok {
		if ctx.Finally {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: step %q has not run", ref, path[0])
	}
	if len(path) == 1 {
		return st.value(), nil
	}
	switch path[1] {
	case "status":
		return walk(st.Status, path[2:], ref, false)
	case "outputs":
		if len(path) > 2 {
			if _, ok := st.Outputs[path[2]]; !ok {
				switch {
				case st.FanOut:
					// No item produced it (none ran, or those that did
					// failed): one null per item.
					return walk(make([]any, len(st.Items)), path[3:], ref, ctx.Finally)
				case ctx.Finally:
					return nil, nil
				}
				return nil, fmt.Errorf("%s: step %q has no output %q", ref, path[0], path[2])
			}
			return walk(st.Outputs[path[2]], path[3:], ref, ctx.Finally)
		}
		return st.Outputs, nil
	case "items":
		if !st.FanOut {
			return nil, fmt.Errorf("%s: step %q does not fan out, so it has no items", ref, path[0])
		}
		return walk(st.Items, path[2:], ref, ctx.Finally)
	}
	return nil, fmt.Errorf("%s: a step has no field %q (want outputs, status or items)", ref, path[1])
}

// walk follows keys through nested maps.
func walk(v any, keys []string, ref string, lenient bool) (any, error) {
	for _, k := range keys {
		if v == nil && lenient {
			return nil, nil
		}
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Map || rv.Type().Key().Kind() != reflect.String {
			return nil, fmt.Errorf("%s: cannot read key %q from %s", ref, k, describe(v))
		}
		e := rv.MapIndex(reflect.ValueOf(k).Convert(rv.Type().Key()))
		if !e.IsValid() {
			if lenient {
				return nil, nil
			}
			return nil, fmt.Errorf("%s: key %q is missing", ref, k)
		}
		v = e.Interface()
	}
	return v, nil
}

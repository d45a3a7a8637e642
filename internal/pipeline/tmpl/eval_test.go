package tmpl

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func testContext() Context {
	return Context{
		Params: map[string]any{"data": "builtin:x", "min_auc": 0.8, "epochs": float64(10), "fast": true},
		Steps: map[string]StepState{
			"train": {Status: "succeeded", Outputs: map[string]any{"model": "file:///m/1", "rows": float64(2000)}},
			"eval": {Status: "succeeded", Outputs: map[string]any{
				"metrics": map[string]any{"roc_auc": 0.91, "by_group": map[string]any{"f": 0.9}},
				"passed":  true,
			}},
			"gate": {Status: "failed"},
		},
		Run:  RunInfo{ID: "run-1", Pipeline: "credit"},
		Step: "deploy",
	}
}

func TestResolve(t *testing.T) {
	ctx := testContext()
	tests := []struct {
		name string
		in   any
		want any
	}{
		{"plain string", "hello", "hello"},
		{"non-string", 3.5, 3.5},
		{"whole param keeps number", "${{ params.min_auc }}", 0.8},
		{"whole param keeps bool", "${{params.fast}}", true},
		{"whole output string", "${{ steps.train.outputs.model }}", "file:///m/1"},
		{"nested dotted output", "${{ steps.eval.outputs.metrics.roc_auc }}", 0.91},
		{"deeper nesting", "${{ steps.eval.outputs.metrics.by_group.f }}", 0.9},
		{"whole map output", "${{ steps.eval.outputs.metrics.by_group }}", map[string]any{"f": 0.9}},
		{"status", "${{ steps.gate.status }}", "failed"},
		{"run info", "${{ run.pipeline }}/${{ run.id }}", "credit/run-1"},
		{"interpolated number", "epochs=${{ params.epochs }} auc=${{ steps.eval.outputs.metrics.roc_auc }}", "epochs=10 auc=0.91"},
		{"interpolated map is json", "g=${{ steps.eval.outputs.metrics.by_group }}", `g={"f":0.9}`},
		{"arithmetic", "${{ params.epochs * 2 }}", 20.0},
		{"expression with map literal", "${{ {a: 1}.a }}", 1},
		{"string literal with braces", `${{ "}}" + params.data }}`, "}}builtin:x"},
		{"index syntax", `${{ steps["train"].outputs["model"] }}`, "file:///m/1"},
		{"recursive", map[string]any{
			"model":      "${{ steps.train.outputs.model }}",
			"thresholds": map[string]any{"roc_auc": map[string]any{"min": "${{ params.min_auc }}"}},
			"list":       []any{"${{ params.epochs }}", "x-${{ params.fast }}", 1.0},
		}, map[string]any{
			"model":      "file:///m/1",
			"thresholds": map[string]any{"roc_auc": map[string]any{"min": 0.8}},
			"list":       []any{10.0, "x-true", 1.0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.in, ctx)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Resolve = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	ctx := testContext()
	tests := []struct {
		name string
		in   any
		want []string
	}{
		{"missing step", "${{ steps.nope.outputs.x }}", []string{`step "deploy": steps.nope.outputs.x: step "nope" has not run`}},
		{"missing output", "${{ steps.train.outputs.weights }}", []string{`steps.train.outputs.weights: step "train" has no output "weights"`}},
		{"missing nested key", "a ${{ steps.eval.outputs.metrics.f1 }}", []string{`steps.eval.outputs.metrics.f1: key "f1" is missing`}},
		{"key of scalar", "${{ steps.train.outputs.model.path }}", []string{`cannot read key "path" from "file:///m/1" (string)`}},
		{"missing param", "${{ params.nope }}", []string{`params.nope: no param "nope"`}},
		{"bad step field", "${{ steps.train.output }}", []string{`a step has no field "output"`}},
		{"bad run field", "${{ run.name }}", []string{`run has no field "name"`}},
		{"syntax", "${{ params.data + }}", []string{"${{ params.data + }}"}},
		{"unterminated", "${{ params.data", []string{"no closing"}},
		{"unknown name", "${{ foo }}", []string{"unknown name foo"}},
		{"paths and all errors", map[string]any{"b": []any{"${{ params.x }}"}, "a": "${{ params.y }}"},
			[]string{`"a": params.y`, `"b[0]": params.x`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Resolve(tt.in, ctx)
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestFinallyLenient(t *testing.T) {
	ctx := testContext()
	ctx.Finally = true
	tests := []struct {
		in   string
		want any
	}{
		{"${{ steps.nope.outputs.model }}", nil},
		{"${{ steps.gate.outputs.model }}", nil},
		{"${{ steps.eval.outputs.metrics.f1.x }}", nil},
		{"node=${{ steps.nope.outputs.node_id }}.", "node=."},
		{"${{ steps.gate.status == 'failed' ? 'alert' : 'ok' }}", "alert"},
		{"${{ steps.gate.outputs.model ?? 'none' }}", "none"},
	}
	for _, tt := range tests {
		got, err := Resolve(tt.in, ctx)
		if err != nil {
			t.Errorf("Resolve(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Resolve(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
	// Lenience covers absence only, not wrong shapes or bad fields.
	if _, err := Resolve("${{ steps.train.outputs.model.path }}", ctx); err == nil {
		t.Error("reading a key of a string must fail even in finally")
	}
	if _, err := Resolve("${{ params.nope }}", ctx); err == nil {
		t.Error("unknown params must fail even in finally")
	}
}

func TestEvalCondition(t *testing.T) {
	ctx := testContext()
	tests := []struct {
		cond string
		want bool
	}{
		{"steps.eval.outputs.passed", true},
		{"${{ steps.eval.outputs.metrics.roc_auc >= params.min_auc }}", true},
		{"  ${{ steps.gate.status == 'succeeded' }}  ", false},
		{"params.fast && run.pipeline == 'credit'", true},
		{"not params.fast", false},
	}
	for _, tt := range tests {
		got, err := EvalCondition(tt.cond, ctx)
		if err != nil {
			t.Errorf("EvalCondition(%q): %v", tt.cond, err)
			continue
		}
		if got != tt.want {
			t.Errorf("EvalCondition(%q) = %v, want %v", tt.cond, got, tt.want)
		}
	}
	bad := []struct{ cond, want string }{
		{"params.epochs", `step "deploy" "if": condition "params.epochs" evaluated to "10" (float64), want a bool`},
		{"steps.train.outputs.model", "want a bool"},
		{"${{ params.fast }} and more", "mixes text and templates"},
		{"", "condition is empty"},
		{"steps.train.outputs.nope", `has no output "nope"`},
	}
	for _, tt := range bad {
		_, err := EvalCondition(tt.cond, ctx)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("EvalCondition(%q) error = %v, want it to contain %q", tt.cond, err, tt.want)
		}
	}
}

func TestDeterministicAndJSONStable(t *testing.T) {
	ctx := testContext()
	in := map[string]any{"m": "${{ steps.eval.outputs.metrics }}", "s": "all=${{ steps.eval.outputs.metrics }}"}
	first, err := Resolve(in, ctx)
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := json.Marshal(first)
	for i := 0; i < 20; i++ {
		again, err := Resolve(in, ctx)
		if err != nil {
			t.Fatal(err)
		}
		b2, _ := json.Marshal(again)
		if string(b1) != string(b2) {
			t.Fatalf("resolution differs between calls:\n%s\n%s", b1, b2)
		}
	}
}

func TestAnalyze(t *testing.T) {
	refs, err := Analyze("steps.eval.outputs.metrics.roc_auc >= params.min_auc && run.id != '' && len(steps.a.outputs.list) > 0")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range refs {
		got = append(got, r.String())
	}
	want := []string{"steps.eval.outputs.metrics.roc_auc", "params.min_auc", "run.id", "steps.a.outputs.list"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("refs = %v, want %v", got, want)
	}
	for _, src := range []string{"params.x +", "foo.bar", "nofunc(1)"} {
		if _, err := Analyze(src); err == nil {
			t.Errorf("Analyze(%q) must fail", src)
		}
	}
}

func TestSplit(t *testing.T) {
	segs, err := Split("a ${{ x }} b ${{ {k: 'v}}'}.k }}")
	if err != nil {
		t.Fatal(err)
	}
	want := []Segment{{Text: "a "}, {Expr: "x", Offset: 5}, {Text: " b ", Offset: 10}, {Expr: "{k: 'v}}'}.k", Offset: 16}}
	if !reflect.DeepEqual(segs, want) {
		t.Fatalf("Split = %#v, want %#v", segs, want)
	}
	for _, bad := range []string{"${{ }}", "x ${{ a", "${{ 'unterminated }}"} {
		if _, err := Split(bad); err == nil {
			t.Errorf("Split(%q) must fail", bad)
		}
	}
}

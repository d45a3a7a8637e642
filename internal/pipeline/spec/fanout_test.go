package spec

import (
	"reflect"
	"strings"
	"testing"
)

func TestProductVariesTheLastAxisFastest(t *testing.T) {
	got, err := Product([]string{"model", "seed"}, [][]any{{"lr", "mlp"}, {1.0, 2.0, 3.0}}, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{
		map[string]any{"model": "lr", "seed": 1.0}, map[string]any{"model": "lr", "seed": 2.0}, map[string]any{"model": "lr", "seed": 3.0},
		map[string]any{"model": "mlp", "seed": 1.0}, map[string]any{"model": "mlp", "seed": 2.0}, map[string]any{"model": "mlp", "seed": 3.0},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v", got)
	}
	if got, err := Product([]string{"a", "b"}, [][]any{{1.0}, {}}, 100); err != nil || len(got) != 0 {
		t.Fatalf("an empty axis makes an empty product: %v %v", got, err)
	}
}

func TestProductRefusesMoreThanTheBoundBeforeBuilding(t *testing.T) {
	big := make([]any, 100000)
	_, err := Product([]string{"a", "b", "c"}, [][]any{big, big, big}, 10000)
	if err == nil || !strings.Contains(err.Error(), "100000 × 100000 × 100000") || !strings.Contains(err.Error(), "max_fan_out (10000)") {
		t.Fatalf("got %v", err)
	}
}

func TestRequiredSuccesses(t *testing.T) {
	for _, c := range []struct {
		min      float64
		ran, req int
	}{
		{0, 10, 10}, {0.9, 10, 9}, {0.9, 11, 10}, {0.5, 3, 2}, {0.99, 0, 0}, {3, 10, 3}, {1, 10, 1}, {0.7, 10, 7},
	} {
		st := Step{MinSuccess: c.min}
		if got := st.RequiredSuccesses(c.ran); got != c.req {
			t.Errorf("min_success %g of %d: %d, want %d", c.min, c.ran, got, c.req)
		}
	}
}

func TestListParamsFromTheCommandLine(t *testing.T) {
	s := &Spec{Params: []Param{{Name: "seeds", Type: TypeList, Default: []any{1.0}}}}
	for text, want := range map[string][]any{
		"[1, 2, 3]":     {1.0, 2.0, 3.0},
		"a, b,,c":       {"a", "b", "c"},
		`[{"lr": 0.1}]`: {map[string]any{"lr": 0.1}},
		"":              {},
		"single":        {"single"},
		`["x,y", "z"]`:  {"x,y", "z"},
		"  [\"q\"]  ":   {"q"},
	} {
		got, err := ResolveParams(s, map[string]any{"seeds": text})
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if !reflect.DeepEqual(got["seeds"], want) {
			t.Errorf("%q: got %#v, want %#v", text, got["seeds"], want)
		}
	}
	if _, err := ResolveParams(s, map[string]any{"seeds": "[1,"}); err == nil || !strings.Contains(err.Error(), "not a JSON list") {
		t.Fatalf("bad JSON: %v", err)
	}
	if _, err := ResolveParams(s, map[string]any{"seeds": 3.0}); err == nil || !strings.Contains(err.Error(), "is not a list") {
		t.Fatalf("a number: %v", err)
	}
	got, err := ResolveParams(s, nil)
	if err != nil || !reflect.DeepEqual(got["seeds"], []any{1.0}) {
		t.Fatalf("default: %v %v", got, err)
	}
}

// A matrix keeps the file's order of its lists through JSON, which the
// resolved spec crosses on its way into a run.
func TestMatrixKeepsFileOrder(t *testing.T) {
	s, diags := ParseAndValidate("m.yaml", []byte("name: m\nsteps:\n  - id: a\n    run: echo\n    matrix: {zeta: [1], alpha: [2], mid: \"${{ params.x }}\"}\nparams:\n  x: {type: list, default: [3]}\n"), nil)
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	var names []string
	for _, a := range s.Steps[0].Matrix {
		names = append(names, a.Name)
	}
	if strings.Join(names, ",") != "zeta,alpha,mid" {
		t.Fatalf("order %v", names)
	}
}

package tmpl

import (
	"reflect"
	"strings"
	"testing"
)

func TestItemInTemplatesAndConditions(t *testing.T) {
	ctx := testContext()
	ctx.Steps["sweep"] = StepState{Status: "succeeded", FanOut: true, Items: []any{map[string]any{"lr": 0.1}, map[string]any{"lr": 0.2}},
		Outputs: map[string]any{"model": []any{"m0", "m1"}}}
	ctx.Item, ctx.HasItem = map[string]any{"lr": 0.2, "index": 1.0, "name": "b"}, true
	for _, c := range []struct {
		in   string
		want any
	}{
		{"${{ item.lr }}", 0.2},
		{"${{ item.lr * 10 }}", 2.0},
		{"lr=${{ item.lr }}", "lr=0.2"},
		{"${{ steps.sweep.outputs.model[int(item.index)] }}", "m1"},
		{"${{ steps.sweep.items[1].lr }}", 0.2},
		{"${{ len(steps.sweep.items) }}", 2},
		// An output no item produced reads as one null per item.
		{"${{ steps.sweep.outputs.metrics }}", []any{nil, nil}},
	} {
		got, err := ResolveString(c.in, ctx)
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.in, got, c.want)
		}
	}
	ok, err := EvalCondition("item.name == 'b' && params.fast", ctx)
	if err != nil || !ok {
		t.Fatalf("condition: %v %v", ok, err)
	}
	ctx.Item = "plain"
	if got, err := ResolveString("${{ upper(item) }}", ctx); err != nil || got != "PLAIN" {
		t.Fatalf("scalar item: %v %v", got, err)
	}
}

func TestItemOutsideAFanOutIsAnError(t *testing.T) {
	ctx := testContext()
	_, err := ResolveString("${{ item.lr }}", ctx)
	if err == nil || !strings.Contains(err.Error(), `step "deploy" does not fan out`) {
		t.Fatalf("got %v", err)
	}
	if _, err := ResolveString("${{ steps.train.items }}", ctx); err == nil || !strings.Contains(err.Error(), "does not fan out") {
		t.Fatalf("items of a plain step: %v", err)
	}
}

func TestAnalyzeFindsItemReferences(t *testing.T) {
	refs, err := Analyze("item.lr > 0.1 && steps.a.outputs.m[int(item.i)] != '' && item * 2 > 1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range refs {
		got = append(got, r.String())
	}
	if strings.Join(got, " ") != "item.lr steps.a.outputs.m item.i item" {
		t.Fatalf("refs %v", got)
	}
	if _, err := Analyze("itme.lr"); err == nil {
		t.Fatal("a misspelt root passes")
	}
	if src, ok := Whole("  ${{ params.seeds }} "); !ok || src != "params.seeds" {
		t.Fatalf("Whole: %q %v", src, ok)
	}
	if _, ok := Whole("x ${{ params.seeds }}"); ok {
		t.Fatal("Whole accepts text around a template")
	}
}

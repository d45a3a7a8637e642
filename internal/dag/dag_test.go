package dag

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func mustNew(t *testing.T, nodes []Node) *Graph {
	t.Helper()
	g, err := New(nodes)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return g
}

func TestLevels(t *testing.T) {
	var fan []Node
	var wide []string
	fan = append(fan, Node{ID: "src"})
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("w%02d", i)
		wide = append(wide, id)
		fan = append(fan, Node{ID: id, Needs: []string{"src"}})
	}
	fan = append(fan, Node{ID: "sink", Needs: wide})

	tests := []struct {
		name  string
		nodes []Node
		want  [][]string
	}{
		{"chain", []Node{{ID: "c", Needs: []string{"b"}}, {ID: "a"}, {ID: "b", Needs: []string{"a"}}},
			[][]string{{"a"}, {"b"}, {"c"}}},
		{"diamond", []Node{{ID: "a"}, {ID: "b", Needs: []string{"a"}}, {ID: "c", Needs: []string{"a"}}, {ID: "d", Needs: []string{"c", "b"}}},
			[][]string{{"a"}, {"b", "c"}, {"d"}}},
		{"uneven", []Node{{ID: "a"}, {ID: "b", Needs: []string{"a"}}, {ID: "c", Needs: []string{"a", "b"}}, {ID: "x"}},
			[][]string{{"a", "x"}, {"b"}, {"c"}}},
		{"fan-out 50", fan, [][]string{{"src"}, wide, {"sink"}}},
		{"empty", nil, [][]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := mustNew(t, tt.nodes)
			got := g.Levels()
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Levels = %v, want %v", got, tt.want)
			}
			// Every node must come after all its needs in Order.
			pos := map[string]int{}
			for i, id := range g.Order() {
				pos[id] = i
			}
			for _, n := range tt.nodes {
				for _, need := range n.Needs {
					if pos[need] >= pos[n.ID] {
						t.Errorf("%s ordered before its need %s", n.ID, need)
					}
				}
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name  string
		nodes []Node
		want  string
	}{
		{"self", []Node{{ID: "a", Needs: []string{"a"}}}, "dependency cycle: a -> a"},
		{"three", []Node{{ID: "a", Needs: []string{"c"}}, {ID: "b", Needs: []string{"a"}}, {ID: "c", Needs: []string{"b"}}, {ID: "d", Needs: []string{"a"}}},
			"dependency cycle: a -> c -> b -> a"},
		{"unknown", []Node{{ID: "a", Needs: []string{"zz"}}}, `node "a" needs "zz", which does not exist`},
		{"duplicate", []Node{{ID: "a"}, {ID: "a"}}, `duplicate node id "a"`},
		{"empty id", []Node{{ID: ""}}, "node 0 has an empty id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.nodes)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	_, err := New([]Node{{ID: "x", Needs: []string{"y"}}, {ID: "y", Needs: []string{"x"}}})
	var ce *CycleError
	if !errors.As(err, &ce) || !reflect.DeepEqual(ce.Path, []string{"x", "y", "x"}) {
		t.Fatalf("want CycleError x->y->x, got %v", err)
	}
}

func TestFindCycles(t *testing.T) {
	nodes := []Node{
		{ID: "a", Needs: []string{"b", "missing"}},
		{ID: "b", Needs: []string{"a"}},
		{ID: "c"},
		{ID: "d", Needs: []string{"e"}},
		{ID: "e", Needs: []string{"f"}},
		{ID: "f", Needs: []string{"d", "c"}},
		{ID: "g", Needs: []string{"g"}},
	}
	got := FindCycles(nodes)
	want := [][]string{{"a", "b", "a"}, {"d", "e", "f", "d"}, {"g", "g"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("FindCycles = %v, want %v", got, want)
	}
	if c := FindCycles([]Node{{ID: "a"}, {ID: "b", Needs: []string{"a"}}}); len(c) != 0 {
		t.Fatalf("acyclic graph reported cycles %v", c)
	}
}

func TestDeepChainNoOverflow(t *testing.T) {
	const n = 100000
	nodes := make([]Node, n)
	for i := range nodes {
		nodes[i].ID = fmt.Sprint("s", i)
		if i > 0 {
			nodes[i].Needs = []string{nodes[i-1].ID}
		}
	}
	g := mustNew(t, nodes)
	if l := len(g.Levels()); l != n {
		t.Fatalf("levels = %d, want %d", l, n)
	}
}

func TestUpstream(t *testing.T) {
	g := mustNew(t, []Node{{ID: "a"}, {ID: "b", Needs: []string{"a"}}, {ID: "c", Needs: []string{"b"}}, {ID: "x"}})
	if got := g.Upstream("c"); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("Upstream(c) = %v", got)
	}
	if got := g.Downstream("a"); !reflect.DeepEqual(got, []string{"b", "c"}) {
		t.Errorf("Downstream(a) = %v", got)
	}
	if !g.IsUpstream("a", "c") || g.IsUpstream("c", "a") || g.IsUpstream("x", "c") {
		t.Error("IsUpstream wrong")
	}
	if g.Upstream("nope") != nil || g.Has("nope") || !g.Has("x") {
		t.Error("unknown ids must have no upstream")
	}
}

func TestReady(t *testing.T) {
	// a -> b -> d, a -> c -> d, d -> e ; x independent.
	g := mustNew(t, []Node{
		{ID: "a"}, {ID: "b", Needs: []string{"a"}}, {ID: "c", Needs: []string{"a"}},
		{ID: "d", Needs: []string{"b", "c"}}, {ID: "e", Needs: []string{"d"}}, {ID: "x"},
	})
	tests := []struct {
		name   string
		states map[string]Status
		want   Step
		done   bool
	}{
		{"start", nil, Step{Run: []string{"a", "x"}}, false},
		{"running not repeated", map[string]Status{"a": Running}, Step{Run: []string{"x"}}, false},
		{"fan out", map[string]Status{"a": Succeeded, "x": Succeeded}, Step{Run: []string{"b", "c"}}, false},
		{"join waits", map[string]Status{"a": Succeeded, "b": Succeeded, "c": Running}, Step{Run: []string{"x"}}, false},
		{"failure skips downstream transitively", map[string]Status{"a": Succeeded, "b": Failed, "x": Succeeded},
			Step{Run: []string{"c"}, Skip: []string{"d", "e"}}, false},
		{"skip propagates", map[string]Status{"a": Skipped}, Step{Run: []string{"x"}, Skip: []string{"b", "c", "d", "e"}}, false},
		{"all terminal", map[string]Status{"a": Succeeded, "b": Succeeded, "c": Succeeded, "d": Failed, "e": Skipped, "x": Skipped}, Step{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := g.Ready(tt.states)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Ready = %+v, want %+v", got, tt.want)
			}
			if d := g.Done(tt.states); d != tt.done {
				t.Fatalf("Done = %v, want %v", d, tt.done)
			}
		})
	}
}

// TestReadyDrivesRun simulates an interpreter loop over a 50-wide fan-out
// with a failing branch and checks every node ends terminal exactly once.
func TestReadyDrivesRun(t *testing.T) {
	nodes := []Node{{ID: "src"}}
	var wide []string
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("w%02d", i)
		wide = append(wide, id)
		nodes = append(nodes, Node{ID: id, Needs: []string{"src"}}, Node{ID: id + "-post", Needs: []string{id}})
	}
	nodes = append(nodes, Node{ID: "sink", Needs: wide})
	g := mustNew(t, nodes)
	states := map[string]Status{}
	rounds := 0
	for !g.Done(states) {
		rounds++
		if rounds > 10 {
			t.Fatal("run does not converge")
		}
		step := g.Ready(states)
		if len(step.Run) == 0 && len(step.Skip) == 0 {
			t.Fatalf("stuck with states %v", states)
		}
		for _, id := range step.Skip {
			states[id] = Skipped
		}
		for _, id := range step.Run {
			if states[id] != Pending {
				t.Fatalf("%s started twice", id)
			}
			states[id] = Succeeded
			if id == "w07" {
				states[id] = Failed
			}
		}
	}
	if states["w07-post"] != Skipped || states["sink"] != Skipped || states["w08-post"] != Succeeded {
		t.Fatalf("unexpected final states: w07-post=%s sink=%s w08-post=%s", states["w07-post"], states["sink"], states["w08-post"])
	}
}

func TestDot(t *testing.T) {
	g := mustNew(t, []Node{{ID: "a"}, {ID: "b", Needs: []string{"a"}}})
	got := g.Dot("p", func(id string) string {
		if id == "a" {
			return "train"
		}
		return ""
	})
	for _, want := range []string{`digraph "p" {`, `"a" [label="a\ntrain"];`, `"b" [label="b"];`, `"a" -> "b";`} {
		if !strings.Contains(got, want) {
			t.Errorf("dot output lacks %q:\n%s", want, got)
		}
	}
}

// Package dag plans the execution of a pipeline's steps: it orders them,
// finds cycles, tells an interpreter which steps may start next and which
// must be skipped, and draws the graph for Graphviz.
//
// Everything here is deterministic: results follow the order in which the
// nodes were given, never map iteration order, so the package is safe to
// call from Temporal workflow code.
package dag

import (
	"fmt"
	"strings"
)

// Node is one step of the graph and the ids of the steps it needs.
type Node struct {
	ID    string
	Needs []string
}

// Graph is an acyclic dependency graph. Build it with New.
type Graph struct {
	ids   []string
	index map[string]int
	needs [][]int // needs[i]: indexes of the direct upstream nodes of i
	users [][]int // users[i]: indexes of the direct downstream nodes of i
}

// CycleError reports a dependency cycle; Path starts and ends with the same
// id, e.g. [a b c a].
type CycleError struct {
	Path []string
}

func (e *CycleError) Error() string {
	return "dependency cycle: " + strings.Join(e.Path, " -> ")
}

// New builds a graph. It fails on an empty or duplicate id, on a need that
// names no node, and on a cycle (as a *CycleError).
func New(nodes []Node) (*Graph, error) {
	g := &Graph{
		ids:   make([]string, len(nodes)),
		index: make(map[string]int, len(nodes)),
		needs: make([][]int, len(nodes)),
		users: make([][]int, len(nodes)),
	}
	for i, n := range nodes {
		if n.ID == "" {
			return nil, fmt.Errorf("node %d has an empty id", i)
		}
		if _, dup := g.index[n.ID]; dup {
			return nil, fmt.Errorf("duplicate node id %q", n.ID)
		}
		g.ids[i] = n.ID
		g.index[n.ID] = i
	}
	for i, n := range nodes {
		seen := make(map[int]bool, len(n.Needs))
		for _, need := range n.Needs {
			j, ok := g.index[need]
			if !ok {
				return nil, fmt.Errorf("node %q needs %q, which does not exist", n.ID, need)
			}
			if seen[j] {
				continue
			}
			seen[j] = true
			g.needs[i] = append(g.needs[i], j)
			g.users[j] = append(g.users[j], i)
		}
	}
	if cycles := g.cycles(); len(cycles) > 0 {
		return nil, &CycleError{Path: cycles[0]}
	}
	return g, nil
}

// FindCycles returns one cycle path per group of mutually dependent nodes,
// in node order. Needs naming unknown nodes are ignored, so a validator can
// report every cycle even in an otherwise broken pipeline.
func FindCycles(nodes []Node) [][]string {
	g := &Graph{index: make(map[string]int, len(nodes))}
	for _, n := range nodes {
		if _, dup := g.index[n.ID]; dup {
			continue
		}
		g.index[n.ID] = len(g.ids)
		g.ids = append(g.ids, n.ID)
		g.needs = append(g.needs, nil)
	}
	for _, n := range nodes {
		i := g.index[n.ID]
		for _, need := range n.Needs {
			if j, ok := g.index[need]; ok {
				g.needs[i] = append(g.needs[i], j)
			}
		}
	}
	return g.cycles()
}

// cycles finds strongly connected components with Tarjan's algorithm and
// extracts one cycle from each component that has one.
func (g *Graph) cycles() [][]string {
	n := len(g.ids)
	index := make([]int, n)
	low := make([]int, n)
	onStack := make([]bool, n)
	for i := range index {
		index[i] = -1
	}
	comp := make([]int, n)
	var stack []int
	next, ncomp := 0, 0
	var found [][]string

	// Iterative DFS so that a deep chain cannot overflow the stack.
	type frame struct{ v, edge int }
	for root := 0; root < n; root++ {
		if index[root] >= 0 {
			continue
		}
		call := []frame{{root, 0}}
		index[root], low[root] = next, next
		next++
		stack = append(stack, root)
		onStack[root] = true
		for len(call) > 0 {
			f := &call[len(call)-1]
			v := f.v
			if f.edge < len(g.needs[v]) {
				w := g.needs[v][f.edge]
				f.edge++
				if index[w] < 0 {
					index[w], low[w] = next, next
					next++
					stack = append(stack, w)
					onStack[w] = true
					call = append(call, frame{w, 0})
				} else if onStack[w] && index[w] < low[v] {
					low[v] = index[w]
				}
				continue
			}
			call = call[:len(call)-1]
			if len(call) > 0 {
				p := call[len(call)-1].v
				if low[v] < low[p] {
					low[p] = low[v]
				}
			}
			if low[v] != index[v] {
				continue
			}
			var members []int
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				comp[w] = ncomp
				members = append(members, w)
				if w == v {
					break
				}
			}
			if path := g.cycleIn(members, comp, ncomp); path != nil {
				found = append(found, path)
			}
			ncomp++
		}
	}
	// Report cycles in the order of their first member so output is stable.
	first := func(path []string) int {
		m := n
		for _, id := range path {
			if i := g.index[id]; i < m {
				m = i
			}
		}
		return m
	}
	for i := 1; i < len(found); i++ {
		for j := i; j > 0 && first(found[j]) < first(found[j-1]); j-- {
			found[j], found[j-1] = found[j-1], found[j]
		}
	}
	return found
}

// cycleIn walks from the lowest-indexed member of a component along needs
// inside the component until it returns to a visited node; the result reads
// in dependency direction, "a -> b" meaning a needs b.
func (g *Graph) cycleIn(members []int, comp []int, c int) []string {
	start := members[0]
	for _, m := range members {
		if m < start {
			start = m
		}
	}
	if len(members) == 1 {
		for _, w := range g.needs[start] {
			if w == start {
				return []string{g.ids[start], g.ids[start]}
			}
		}
		return nil
	}
	// Shortest path back to start, by breadth-first search inside the
	// component, gives the most readable cycle.
	prev := map[int]int{}
	queue := []int{start}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range g.needs[v] {
			if comp[w] != c {
				continue
			}
			if w == start {
				path := []int{start}
				for u := v; u != start; u = prev[u] {
					path = append(path, u)
				}
				ids := []string{g.ids[start]}
				for i := len(path) - 1; i >= 1; i-- {
					ids = append(ids, g.ids[path[i]])
				}
				return append(ids, g.ids[start])
			}
			if _, seen := prev[w]; !seen {
				prev[w] = v
				queue = append(queue, w)
			}
		}
	}
	return nil
}

// IDs returns the node ids in the order they were given.
func (g *Graph) IDs() []string { return append([]string(nil), g.ids...) }

// Has reports whether id is a node of the graph.
func (g *Graph) Has(id string) bool {
	_, ok := g.index[id]
	return ok
}

// Needs returns the direct upstream ids of id.
func (g *Graph) Needs(id string) []string {
	i, ok := g.index[id]
	if !ok {
		return nil
	}
	return g.names(g.needs[i])
}

func (g *Graph) names(idx []int) []string {
	out := make([]string, len(idx))
	for k, i := range idx {
		out[k] = g.ids[i]
	}
	return out
}

// Upstream returns every node id reaches through needs, transitively, in
// node order.
func (g *Graph) Upstream(id string) []string {
	i, ok := g.index[id]
	if !ok {
		return nil
	}
	return g.reach(i, g.needs)
}

// Downstream returns every node that reaches id through needs, in node
// order.
func (g *Graph) Downstream(id string) []string {
	i, ok := g.index[id]
	if !ok {
		return nil
	}
	return g.reach(i, g.users)
}

func (g *Graph) reach(from int, edges [][]int) []string {
	seen := make([]bool, len(g.ids))
	stack := append([]int(nil), edges[from]...)
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[v] {
			continue
		}
		seen[v] = true
		stack = append(stack, edges[v]...)
	}
	var out []string
	for i, s := range seen {
		if s {
			out = append(out, g.ids[i])
		}
	}
	return out
}

// IsUpstream reports whether up is reachable from id through needs.
func (g *Graph) IsUpstream(up, id string) bool {
	for _, u := range g.Upstream(id) {
		if u == up {
			return true
		}
	}
	return false
}

// Levels groups nodes into execution levels: level 0 needs nothing, and
// every node sits one level after its deepest need. Within a level nodes
// keep their given order.
func (g *Graph) Levels() [][]string {
	depth := make([]int, len(g.ids))
	maxDepth := -1
	for _, i := range g.topo() {
		for _, j := range g.needs[i] {
			if depth[j]+1 > depth[i] {
				depth[i] = depth[j] + 1
			}
		}
		if depth[i] > maxDepth {
			maxDepth = depth[i]
		}
	}
	levels := make([][]string, maxDepth+1)
	for i, d := range depth {
		levels[d] = append(levels[d], g.ids[i])
	}
	return levels
}

// Order returns a topological order: the level order flattened.
func (g *Graph) Order() []string {
	var out []string
	for _, l := range g.Levels() {
		out = append(out, l...)
	}
	return out
}

// topo is Kahn's algorithm, taking ready nodes in index order.
func (g *Graph) topo() []int {
	pending := make([]int, len(g.ids))
	var ready []int
	for i := range g.ids {
		pending[i] = len(g.needs[i])
		if pending[i] == 0 {
			ready = append(ready, i)
		}
	}
	out := make([]int, 0, len(g.ids))
	for len(ready) > 0 {
		v := ready[0]
		ready = ready[1:]
		out = append(out, v)
		for _, u := range g.users[v] {
			pending[u]--
			if pending[u] == 0 {
				ready = append(ready, u)
			}
		}
	}
	return out
}

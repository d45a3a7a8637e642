package dag

import (
	"strconv"
	"strings"
)

// Dot renders the graph in Graphviz dot syntax, edges pointing from a need
// to the node that needs it (the direction work flows). label may return
// extra text for a node, e.g. its step type; nil means ids only.
func (g *Graph) Dot(name string, label func(id string) string) string {
	var b strings.Builder
	b.WriteString("digraph " + strconv.Quote(name) + " {\n")
	b.WriteString("  rankdir=LR;\n  node [shape=box];\n")
	for _, id := range g.ids {
		text := id
		if label != nil {
			if extra := label(id); extra != "" {
				text += "\n" + extra
			}
		}
		b.WriteString("  " + strconv.Quote(id) + " [label=" + strconv.Quote(text) + "];\n")
	}
	for i, id := range g.ids {
		for _, j := range g.needs[i] {
			b.WriteString("  " + strconv.Quote(g.ids[j]) + " -> " + strconv.Quote(id) + ";\n")
		}
	}
	b.WriteString("}\n")
	return b.String()
}

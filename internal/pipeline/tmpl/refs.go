package tmpl

import (
	"fmt"
	"sort"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
)

// The names an expression may start from. RootItem is the current item of
// a step that fans out (for_each, matrix); elsewhere reading it is an error.
const (
	RootParams = "params"
	RootSteps  = "steps"
	RootRun    = "run"
	RootItem   = "item"
)

func isRoot(name string) bool {
	return name == RootParams || name == RootSteps || name == RootRun || name == RootItem
}

// Ref is a static reference found in an expression: a root followed by the
// constant keys read from it, e.g. steps.eval.outputs.metrics.roc_auc is
// {Root: "steps", Path: [eval outputs metrics roc_auc]}. Column is the
// 0-based byte offset of the reference in the expression.
type Ref struct {
	Root   string
	Path   []string
	Column int
}

func (r Ref) String() string {
	return strings.Join(append([]string{r.Root}, r.Path...), ".")
}

// checkEnv gives the compiler the roots' types so that unknown names are
// reported at validation time.
var checkEnv = checkRoots{}

// checkRoots types the roots for the checker: the maps' members are open,
// and so is the item, which may be any value.
type checkRoots struct {
	Params map[string]any `expr:"params"`
	Steps  map[string]any `expr:"steps"`
	Run    map[string]any `expr:"run"`
	Item   any            `expr:"item"`
}

// Analyze compiles src without running it, reporting syntax errors and
// unknown names, and returns its static references sorted by position.
func Analyze(src string) ([]Ref, error) {
	c := &collector{}
	if _, err := expr.Compile(src, expr.Env(checkEnv), expr.Patch(c)); err != nil {
		return nil, compileError(err)
	}
	var refs []Ref
	for _, ch := range c.live() {
		refs = append(refs, Ref{Root: ch.root, Path: ch.path, Column: ch.column})
	}
	sort.SliceStable(refs, func(i, j int) bool { return refs[i].Column < refs[j].Column })
	return refs, nil
}

// compileError keeps expr's message but drops its multi-line source excerpt,
// which the caller positions itself.
func compileError(err error) error {
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return fmt.Errorf("%s", msg)
}

// chain is a maximal run of constant member accesses from a root.
type chain struct {
	root   string
	path   []string
	column int
	node   ast.Node // the outermost node of the chain so far
	dead   bool     // extended by a longer chain
}

// collector is an expr patch visitor. expr walks children before parents,
// so a chain is seen growing: steps, steps.a, steps.a.outputs, and so on.
type collector struct {
	chains []*chain
	// replace, when set, swaps each chain for a constant as it grows; the
	// evaluator uses it to read values from the Context.
	replace func(ch *chain) ast.Node
}

func (c *collector) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if !isRoot(n.Value) {
			return
		}
		c.add(node, &chain{root: n.Value, column: n.Location().From})
	case *ast.MemberNode:
		prop, ok := n.Property.(*ast.StringNode)
		if !ok || n.Method {
			return
		}
		for _, ch := range c.chains {
			if !ch.dead && ch.node == n.Node {
				ch.dead = true
				path := append(append([]string(nil), ch.path...), prop.Value)
				c.add(node, &chain{root: ch.root, path: path, column: ch.column})
				return
			}
		}
	}
}

func (c *collector) add(node *ast.Node, ch *chain) {
	ch.node = *node
	if c.replace != nil {
		ast.Patch(node, c.replace(ch))
		ch.node = *node
	}
	c.chains = append(c.chains, ch)
}

func (c *collector) live() []*chain {
	var out []*chain
	for _, ch := range c.chains {
		if !ch.dead {
			out = append(out, ch)
		}
	}
	return out
}

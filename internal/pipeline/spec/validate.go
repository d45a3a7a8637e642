package spec

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	// Timezones are checked against Go's embedded database so validation
	// gives the same answer on every machine.
	_ "time/tzdata"

	"github.com/gauntlet-ml/gauntlet/internal/dag"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/tmpl"
)

var (
	idPattern    = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
	paramPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	envPattern   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Validate checks everything Parse cannot see locally: ids, references
// between steps, templates, conditions, params, the schedule and, when cat
// is not nil, step types and their inputs and outputs. It works on a spec
// decoded from JSON too, reporting paths instead of positions.
func Validate(s *Spec, cat Catalog) Diagnostics {
	v := &validator{reporter: reporter{src: s.Source}, s: s, cat: cat, where: map[string]stepRef{}}
	v.top()
	v.params()
	if s.Defaults.Retry != nil {
		v.retry("defaults.retry", "defaults", s.Defaults.Retry, nil)
	}
	v.schedule()
	v.steps()
	return v.diags.Sort()
}

type validator struct {
	reporter
	s     *Spec
	cat   Catalog
	where map[string]stepRef // first definition of each step id
	// fanSource is set while checking a step's for_each or matrix, which
	// are evaluated before there is an item to read.
	fanSource bool
}

// stepRef locates a step: its section and index.
type stepRef struct {
	finally bool
	i       int
}

func (r stepRef) path() string {
	if r.finally {
		return index("finally", r.i)
	}
	return index("steps", r.i)
}

func (v *validator) step(r stepRef) *Step {
	if r.finally {
		return &v.s.Finally[r.i]
	}
	return &v.s.Steps[r.i]
}

func (v *validator) top() {
	switch {
	case v.s.Name == "":
		v.at("name", "the pipeline needs a name")
	case !idPattern.MatchString(v.s.Name):
		v.at("name", "pipeline name %q must match [a-z][a-z0-9_-]*", v.s.Name)
	}
	if v.s.MaxParallel < 1 {
		v.at("max_parallel", "max_parallel must be at least 1, got %d", v.s.MaxParallel)
	}
	if len(v.s.Steps) == 0 {
		v.at("steps", "the pipeline needs at least one step")
	}
}

func (v *validator) params() {
	for _, p := range v.s.Params {
		path := join("params", p.Name)
		if !paramPattern.MatchString(p.Name) {
			v.atKey(path, "param name %q must be a letter or underscore followed by letters, digits or underscores", p.Name)
		}
		if !slices.Contains(ParamTypes, p.Type) {
			if p.Type == "" {
				v.at(path, "param %q needs a type (one of %s)", p.Name, strings.Join(ParamTypes, ", "))
			} else {
				v.at(path+".type", "param %q has unknown type %q%s", p.Name, p.Type, didYouMean(p.Type, ParamTypes))
			}
			continue
		}
		if p.Type == TypeEnum {
			if len(p.Values) == 0 {
				v.at(path, "enum param %q needs a non-empty values list", p.Name)
			}
			for i, val := range p.Values {
				if slices.Index(p.Values, val) < i {
					v.at(index(path+".values", i), "enum param %q lists %q twice", p.Name, val)
				}
			}
		} else if p.Values != nil {
			v.at(path+".values", "param %q has values but is not an enum", p.Name)
		}
		if p.Default != nil {
			if _, err := coerce(p, p.Default, false); err != nil {
				v.at(path+".default", "default of %v", err)
			}
		}
	}
}

func (v *validator) retry(path, owner string, r, inherited *Retry) {
	// A step's retry has defaults merged in; only fields the step changed
	// are its own problems, the rest were reported on defaults.
	own := func(same bool) bool { return inherited == nil || !same }
	if r.MaxAttempts < 0 && own(inherited != nil && r.MaxAttempts == inherited.MaxAttempts) {
		v.at(path+".max_attempts", "retry of %s: max_attempts must be at least 1, got %d", owner, r.MaxAttempts)
	}
	if r.Backoff != 0 && r.Backoff < 1 && own(inherited != nil && r.Backoff == inherited.Backoff) {
		v.at(path+".backoff", "retry of %s: backoff must be at least 1, got %g", owner, r.Backoff)
	}
	if r.InitialInterval != 0 && r.MaxInterval != 0 && r.MaxInterval < r.InitialInterval &&
		own(inherited != nil && r.MaxInterval == inherited.MaxInterval && r.InitialInterval == inherited.InitialInterval) {
		v.at(path+".max_interval", "retry of %s: max_interval %s is shorter than initial_interval %s", owner, r.MaxInterval, r.InitialInterval)
	}
}

func (v *validator) schedule() {
	sc := v.s.Schedule
	if sc == nil {
		return
	}
	if sc.Cron == "" {
		v.at("schedule", "schedule needs a cron expression")
	} else if err := checkCron(sc.Cron); err != nil {
		v.at("schedule.cron", "%v", err)
	}
	if _, err := time.LoadLocation(sc.Timezone); err != nil || sc.Timezone == "" || strings.EqualFold(sc.Timezone, "local") {
		v.at("schedule.timezone", "unknown timezone %q; use an IANA name such as UTC or Europe/Paris", sc.Timezone)
	}
	if !slices.Contains(OverlapPolicies, sc.Overlap) {
		v.at("schedule.overlap", "unknown overlap policy %q (want one of %s)%s", sc.Overlap, strings.Join(OverlapPolicies, ", "), didYouMean(sc.Overlap, OverlapPolicies))
	}
	// A scheduled run has nobody to supply params: the overrides plus the
	// defaults must make a complete set.
	_, problems := resolveParams(v.s, sc.Params)
	for _, p := range problems {
		if _, given := sc.Params[p.name]; given {
			v.at("schedule.params."+p.name, "schedule: %v", p.err)
		} else {
			v.atKey("schedule", "schedule: %v", p.err)
		}
	}
}

func (v *validator) steps() {
	// Ids first, so every later check can tell unknown ids from duplicates.
	var all []stepRef
	for i := range v.s.Steps {
		all = append(all, stepRef{false, i})
	}
	for i := range v.s.Finally {
		all = append(all, stepRef{true, i})
	}
	for _, r := range all {
		st := v.step(r)
		path := r.path()
		switch {
		case st.ID == "":
			v.at(path, "step has no id")
			continue
		case !idPattern.MatchString(st.ID):
			v.at(path+".id", "step id %q must match [a-z][a-z0-9_-]*", st.ID)
		}
		if first, dup := v.where[st.ID]; dup {
			v.at(path+".id", "duplicate step id %q; first defined at %s", st.ID, v.src.At(first.path()+".id"))
			continue
		}
		v.where[st.ID] = r
	}
	for _, finally := range []bool{false, true} {
		v.cycles(finally)
	}
	for _, r := range all {
		v.checkStep(r)
	}
}

// section returns the dag nodes of the normal or finally steps, keeping only
// needs that name a step of the same section (others are reported
// elsewhere).
func (v *validator) section(finally bool) []dag.Node {
	list := v.s.Steps
	if finally {
		list = v.s.Finally
	}
	var nodes []dag.Node
	for i, st := range list {
		if st.ID == "" || v.where[st.ID] != (stepRef{finally, i}) {
			continue
		}
		n := dag.Node{ID: st.ID}
		for _, need := range st.Needs {
			if r, ok := v.where[need]; ok && r.finally == finally {
				n.Needs = append(n.Needs, need)
			}
		}
		nodes = append(nodes, n)
	}
	return nodes
}

func (v *validator) cycles(finally bool) {
	for _, c := range dag.FindCycles(v.section(finally)) {
		r := v.where[c[0]]
		v.at(r.path()+".needs", "dependency cycle: %s", strings.Join(c, " -> "))
	}
}

// upstream returns the ids a step may read: the steps it reaches through
// needs, and for a finally step every normal step too.
func (v *validator) upstream(r stepRef) map[string]bool {
	out := map[string]bool{}
	if r.finally {
		for _, st := range v.s.Steps {
			out[st.ID] = true
		}
	}
	stack := slices.Clone(v.step(r).Needs)
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		dep, ok := v.where[id]
		if !ok || dep.finally != r.finally || out[id] {
			continue
		}
		out[id] = true
		stack = append(stack, v.step(dep).Needs...)
	}
	delete(out, v.step(r).ID)
	return out
}

func (v *validator) checkStep(r stepRef) {
	st := v.step(r)
	path := r.path()
	name := fmt.Sprintf("step %q", st.ID)
	if st.ID == "" {
		name = "step " + path
	}
	for i, need := range st.Needs {
		np := index(path+".needs", i)
		dep, ok := v.where[need]
		switch {
		case slices.Index(st.Needs, need) < i:
			v.at(np, "%s lists %q in needs twice", name, need)
		case !ok:
			v.at(np, "%s needs %q, which is not a step%s", name, need, didYouMean(need, slices.Sorted(mapKeys(v.where))))
		case dep.finally && !r.finally:
			v.at(np, "%s needs %q, which is a finally step; steps cannot wait for finally steps", name, need)
		case !dep.finally && r.finally:
			v.at(np, "finally %s needs %q, which is a normal step; finally steps run after all steps, so needs may name only finally steps", name, need)
		}
	}
	if st.Retry != nil {
		v.retry(path+".retry", name, st.Retry, v.s.Defaults.Retry)
	}
	up := v.upstream(r)
	switch {
	case st.Uses != "" && st.Run != nil:
		v.at(path, "%s has both uses and run; a step is either a built-in type or a command", name)
	case st.Uses == "" && st.Run == nil:
		v.at(path, "%s has neither uses nor run", name)
	case st.Uses != "" && v.cat != nil:
		if t, ok := v.cat.Lookup(st.Uses); ok {
			v.inputs(path, name, st, t)
		} else {
			v.at(path+".uses", "%s uses unknown step type %q%s", name, st.Uses, didYouMean(st.Uses, names(v.cat)))
		}
	}
	if st.Run != nil {
		v.command(path, name, r, up, st.Run)
	}
	switch {
	case tmpl.HasTemplate(st.RunsOn):
		// Which provision step it names is known only at run time; the
		// run checks that it is one, upstream of this step.
		v.text(path+".runs_on", name, r, up, st.RunsOn)
	case st.RunsOn != "":
		v.runsOn(path+".runs_on", name, st.RunsOn, up)
	}
	v.fanOut(path, name, r, up, st)
	v.values(path+".with", name, r, up, st.With)
	if st.If != "" {
		src, err := tmpl.ConditionSource(st.If)
		if err != nil {
			v.at(path+".if", "%s: invalid if condition: %v", name, err)
		} else {
			v.expr(path+".if", name, r, up, src)
		}
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (v *validator) inputs(path, name string, st *Step, t StepType) {
	if t.Inputs == nil {
		return
	}
	valid := make([]string, len(t.Inputs))
	for i, in := range t.Inputs {
		valid[i] = in.Name
		if _, ok := st.With[in.Name]; in.Required && !ok {
			v.atKey(path+".with", "%s lacks required input %q of step type %q", name, in.Name, t.Name)
		}
	}
	for _, k := range sortedKeys(st.With) {
		if !slices.Contains(valid, k) {
			v.atKey(path+".with."+k, "unknown input %q for step type %q in %s%s", k, t.Name, name, didYouMean(k, valid))
		}
	}
}

func (v *validator) command(path, name string, r stepRef, up map[string]bool, c *Command) {
	if c.Shell == "" && len(c.Argv) == 0 {
		v.at(path+".run", "%s has an empty run command", name)
	}
	if c.Shell != "" {
		v.text(path+".run", name, r, up, c.Shell)
	}
	for i, a := range c.Argv {
		v.text(index(path+".run", i), name, r, up, a)
	}
	for _, k := range sortedKeys(c.Env) {
		if !envPattern.MatchString(k) {
			v.atKey(path+".env."+k, "%s: %q is not a valid environment variable name", name, k)
		}
		v.text(path+".env."+k, name, r, up, c.Env[k])
	}
	if c.Workdir != "" {
		v.text(path+".workdir", name, r, up, c.Workdir)
	}
}

func (v *validator) runsOn(path, name, target string, up map[string]bool) {
	r, ok := v.where[target]
	if !ok {
		v.at(path, "%s runs_on %q, which is not a step%s", name, target, didYouMean(target, slices.Sorted(mapKeys(v.where))))
		return
	}
	if uses := v.step(r).Uses; uses != ProvisionType {
		v.at(path, "%s runs_on %q, which is not a %s step", name, target, ProvisionType)
		return
	}
	if !up[target] {
		v.at(path, "%s runs_on %q, which is not upstream of it; add %q to needs", name, target, target)
	}
}

// values checks the templates in every string inside a with value.
func (v *validator) values(path, name string, r stepRef, up map[string]bool, val any) {
	switch x := val.(type) {
	case string:
		v.text(path, name, r, up, x)
	case map[string]any:
		for _, k := range sortedKeys(x) {
			v.values(join(path, k), name, r, up, x[k])
		}
	case []any:
		for i, e := range x {
			v.values(index(path, i), name, r, up, e)
		}
	}
}

func (v *validator) text(path, name string, r stepRef, up map[string]bool, s string) {
	if !tmpl.HasTemplate(s) {
		return
	}
	segs, err := tmpl.Split(s)
	if err != nil {
		v.at(path, "%s: invalid template: %v", name, err)
		return
	}
	for _, seg := range segs {
		if seg.IsExpr() {
			v.expr(path, name, r, up, seg.Expr)
		}
	}
}

// expr compiles one expression and checks each reference it makes.
func (v *validator) expr(path, name string, r stepRef, up map[string]bool, src string) {
	refs, err := tmpl.Analyze(src)
	if err != nil {
		v.at(path, "%s: invalid expression %q: %v", name, src, err)
		return
	}
	for _, ref := range refs {
		if msg := v.ref(r, up, ref); msg != "" {
			v.at(path, "%s references %s, %s", name, ref, msg)
		}
	}
}

// ref returns what is wrong with one reference, or "".
func (v *validator) ref(r stepRef, up map[string]bool, ref tmpl.Ref) string {
	if ref.Root == tmpl.RootItem {
		return v.itemRef(v.step(r), ref)
	}
	if len(ref.Path) == 0 {
		return ""
	}
	head := ref.Path[0]
	switch ref.Root {
	case tmpl.RootParams:
		if _, ok := v.s.Param(head); !ok {
			return "which is not a declared param" + didYouMean(head, paramNames(v.s))
		}
	case tmpl.RootRun:
		if head != "id" && head != "pipeline" {
			return "but run has only id and pipeline"
		}
	case tmpl.RootSteps:
		dep, ok := v.where[head]
		if !ok {
			return "which is not a step" + didYouMean(head, slices.Sorted(mapKeys(v.where)))
		}
		if !up[head] {
			return fmt.Sprintf("but %q is not upstream of it; add it to needs", head)
		}
		if len(ref.Path) < 2 {
			return ""
		}
		switch ref.Path[1] {
		case "status":
		case "items":
			if !v.step(dep).FansOut() {
				return fmt.Sprintf("but %q does not fan out, so it has no items", head)
			}
		case "outputs":
			if len(ref.Path) < 3 || v.cat == nil {
				return ""
			}
			uses := v.step(dep).Uses
			t, ok := v.cat.Lookup(uses)
			if !ok || t.Outputs == nil || slices.Contains(t.Outputs, ref.Path[2]) {
				return ""
			}
			return fmt.Sprintf("but step type %q has no output %q (it has %s)%s", uses, ref.Path[2], quoteList(t.Outputs), didYouMean(ref.Path[2], t.Outputs))
		default:
			return fmt.Sprintf("but a step has only outputs, status and items%s", didYouMean(ref.Path[1], []string{"outputs", "status", "items"}))
		}
	}
	return ""
}

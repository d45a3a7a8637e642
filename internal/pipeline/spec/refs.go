package spec

import (
	"slices"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/pipeline/tmpl"
)

// References lists every static reference the step's templates and
// condition make (with, if, runs_on, for_each, matrix and its command),
// for what a step reads: the steps whose state a chunk of its items needs,
// the params a recovered run may not change under a step it reuses.
// Templates that do not parse are left out; Validate reports them.
func (s *Step) References() []tmpl.Ref {
	var out []tmpl.Ref
	add := func(src string) {
		if refs, err := tmpl.Analyze(src); err == nil {
			out = append(out, refs...)
		}
	}
	var text func(v any)
	text = func(v any) {
		switch x := v.(type) {
		case string:
			if !tmpl.HasTemplate(x) {
				return
			}
			segs, err := tmpl.Split(x)
			if err != nil {
				return
			}
			for _, seg := range segs {
				if seg.IsExpr() {
					add(seg.Expr)
				}
			}
		case map[string]any:
			for _, k := range sortedKeys(x) {
				text(x[k])
			}
		case []any:
			for _, e := range x {
				text(e)
			}
		}
	}
	text(s.With)
	if strings.TrimSpace(s.If) != "" {
		if src, err := tmpl.ConditionSource(s.If); err == nil {
			add(src)
		}
	}
	text(s.RunsOn)
	text(s.ForEach)
	for _, a := range s.Matrix {
		text(a.Values)
	}
	if c := s.Run; c != nil {
		text(c.Shell)
		for _, a := range c.Argv {
			text(a)
		}
		for _, k := range sortedKeys(c.Env) {
			text(c.Env[k])
		}
		text(c.Workdir)
	}
	return out
}

// ReadsSteps lists the ids of the steps the step's templates read, sorted;
// all is true when a template reads the whole of steps.
func (s *Step) ReadsSteps() (ids []string, all bool) {
	return s.reads(tmpl.RootSteps)
}

// ReadsParams lists the params the step's templates read, sorted; all is
// true when a template reads the whole of params.
func (s *Step) ReadsParams() (names []string, all bool) {
	return s.reads(tmpl.RootParams)
}

func (s *Step) reads(root string) (names []string, all bool) {
	for _, r := range s.References() {
		switch {
		case r.Root != root:
		case len(r.Path) == 0:
			all = true
		case !slices.Contains(names, r.Path[0]):
			names = append(names, r.Path[0])
		}
	}
	slices.Sort(names)
	return names, all
}

// ConditionReadsItem reports whether the step's if: reads the current item,
// so that it is evaluated once per item rather than once for the step.
func (s *Step) ConditionReadsItem() bool {
	if strings.TrimSpace(s.If) == "" {
		return false
	}
	src, err := tmpl.ConditionSource(s.If)
	if err != nil {
		return false
	}
	refs, err := tmpl.Analyze(src)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(refs, func(r tmpl.Ref) bool { return r.Root == tmpl.RootItem })
}

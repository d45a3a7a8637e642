package spec

import (
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/pipeline/tmpl"
)

// Warnings reports what is valid but probably not meant; it assumes a spec
// Validate accepted. Today that is a model reaching canary-deploy with no
// approval step, after its last transformation, naming that artifact as its
// model: whatever reviewers saw, it was not what ships.
func Warnings(s *Spec) Diagnostics {
	r := reporter{src: s.Source}
	byID := map[string]*Step{}
	for i := range s.Steps {
		byID[s.Steps[i].ID] = &s.Steps[i]
	}
	for i := range s.Steps {
		st := &s.Steps[i]
		if st.Uses != "canary-deploy" {
			continue
		}
		model, ok := st.With["model"].(string)
		if !ok {
			continue
		}
		if producer := producerOf(model); producer != "" && byID[producer] != nil && byID[producer].Uses == "approval" {
			continue
		}
		if approvedUpstream(st, model, byID) {
			continue
		}
		r.at(index("steps", i)+".with.model",
			"warning: canary-deploy %s ships %s, which no approval step before it names as its model, so no reviewer approved this artifact: "+
				"give an approval step this one needs `model: %s` (or ship the approval's outputs.model)",
			st.ID, strings.TrimSpace(model), strings.TrimSpace(model))
	}
	return r.diags.Sort()
}

// producerOf is the step whose output a value that is one template reads,
// or "".
func producerOf(v string) string {
	segs, err := tmpl.Split(strings.TrimSpace(v))
	if err != nil || len(segs) != 1 || !segs[0].IsExpr() {
		return ""
	}
	refs, err := tmpl.Analyze(segs[0].Expr)
	if err != nil || len(refs) != 1 || refs[0].Root != tmpl.RootSteps || len(refs[0].Path) == 0 {
		return ""
	}
	return refs[0].Path[0]
}

// approvedUpstream says whether an approval step that st needs, directly or
// not, names the same model.
func approvedUpstream(st *Step, model string, byID map[string]*Step) bool {
	want := compact(model)
	seen := map[string]bool{}
	queue := append([]string(nil), st.Needs...)
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		up := byID[id]
		if seen[id] || up == nil {
			continue
		}
		seen[id] = true
		if m, ok := up.With["model"].(string); ok && up.Uses == "approval" && compact(m) == want {
			return true
		}
		queue = append(queue, up.Needs...)
	}
	return false
}

// compact drops the spaces a template may be written with.
func compact(s string) string {
	return strings.Join(strings.Fields(s), "")
}

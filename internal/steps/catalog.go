package steps

import "github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"

// Catalog exposes the registered types to the pipeline validator.
type Catalog struct{}

// Lookup implements spec.Catalog.
func (Catalog) Lookup(uses string) (spec.StepType, bool) {
	t, ok := Lookup(uses)
	if !ok {
		return spec.StepType{}, false
	}
	st := spec.StepType{Name: t.Name, Outputs: t.Outputs, Workflow: t.Kind == Workflow}
	if t.Inputs != nil {
		st.Inputs = make([]spec.InputSpec, len(t.Inputs))
		for i, in := range t.Inputs {
			st.Inputs[i] = spec.InputSpec{Name: in.Name, Required: in.Required}
		}
	}
	return st, true
}

// Names lists the registered types, for "did you mean" suggestions.
func (Catalog) Names() []string {
	all := All()
	out := make([]string, len(all))
	for i, t := range all {
		out[i] = t.Name
	}
	return out
}

package spec

// ProvisionType is the step type that starts a node other steps may run on
// (runs_on).
const ProvisionType = "provision"

// Catalog tells the validator which step types exist and what they take
// and produce. The real catalog of built-in types lives with the
// activities; MapCatalog serves tests and tools.
type Catalog interface {
	Lookup(uses string) (StepType, bool)
}

// StepType describes a built-in step type.
type StepType struct {
	Name string
	// Outputs are the keys the step produces; nil means any key.
	Outputs []string
	// Inputs are the keys `with` accepts; nil means any key.
	Inputs []InputSpec
	// Workflow marks a type carried out in workflow code (it waits on
	// people or time), which cannot fan out.
	Workflow bool
}

// InputSpec is one input of a step type.
type InputSpec struct {
	Name     string
	Required bool
}

// MapCatalog is a Catalog backed by a map from type name to type.
type MapCatalog map[string]StepType

// Lookup implements Catalog.
func (c MapCatalog) Lookup(uses string) (StepType, bool) {
	t, ok := c[uses]
	return t, ok
}

// names lists a catalog's types for suggestions, when the catalog can tell.
func names(cat Catalog) []string {
	lister, ok := cat.(interface{ Names() []string })
	if !ok {
		return nil
	}
	return lister.Names()
}

// Names lists the catalog's type names in sorted order.
func (c MapCatalog) Names() []string {
	out := make([]string, 0, len(c))
	for name := range c {
		out = append(out, name)
	}
	sortStrings(out)
	return out
}

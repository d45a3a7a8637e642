// Package recovery plans the retry of a run that failed, was canceled or
// was rejected (`gauntlet retry`, or a run started with retry_of): which
// of its steps the new run takes over as they ended, which it runs again,
// and whether the artifacts the taken-over steps point to are still in the
// store. It knows nothing of Temporal: the CLI checks a retry with it
// before starting anything, and the worker's RecoverRun activity plans the
// run with it.
package recovery

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/tmpl"
)

// ApprovalType is the step type whose decisions are never taken over: a
// recovered run asks its reviewers again.
const ApprovalType = "approval"

// Error is a retry that cannot be done as asked; nothing should start.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

func refuse(format string, args ...any) error { return &Error{Msg: fmt.Sprintf(format, args...)} }

// Plan is a recovered run's starting point.
type Plan struct {
	// Params are the new run's: the old run's, with the overrides.
	Params map[string]any
	// Reused are the old run's records of the steps taken over, in
	// definition order.
	Reused []contract.StepStatus
	// Rerun are the normal steps that run again, in definition order.
	Rerun []string
	// NotNeeded are provision steps no step that runs again runs on.
	NotNeeded []string
}

// Make plans the retry of a run whose definition is def and whose record
// is old. A step is taken over when it succeeded, is not an approval (its
// reviewers decide again) or a provision step (its node went with its
// run), is not from or after from, and every step it needs was taken over
// or is a provision step: a step that runs again may produce something
// new, which what comes after it must see. Overrides may change only params
// that no step taken over reads.
func Make(def contract.Resolved, old contract.Status, from string, overrides map[string]any) (*Plan, error) {
	sp := &def.Spec
	if sp.Name == "" || len(sp.Steps) == 0 {
		return nil, refuse("run %s has no definition to recover: it ended before it resolved its pipeline (%s)", old.RunID, orNone(old.Error))
	}
	switch old.State {
	case contract.RunRunning, contract.RunWaiting:
		return nil, refuse("run %s is still %s: cancel it (gauntlet cancel %s) or wait for it to end", old.RunID, old.State, old.RunID)
	case contract.RunSucceeded:
		if from == "" {
			return nil, refuse("run %s succeeded: there is nothing to retry (give --from STEP to run a step and what follows it again)", old.RunID)
		}
	}
	g, err := sp.Graph()
	if err != nil {
		return nil, refuse("run %s: %v", old.RunID, err)
	}
	if from != "" {
		if _, ok := find(sp.Steps, from); !ok {
			if _, fin := find(sp.Finally, from); fin {
				return nil, refuse("--from %s: a finally step, and finally steps always run again", from)
			}
			return nil, refuse("--from %s: pipeline %s has no step %q (it has %s)", from, sp.Name, from, strings.Join(ids(sp.Steps), ", "))
		}
	}
	params, changed, err := mergeParams(sp, def.Params, overrides)
	if err != nil {
		return nil, err
	}
	records := map[string]contract.StepStatus{}
	for _, s := range old.Steps {
		records[s.ID] = s
	}
	reused := map[string]bool{}
	for _, id := range g.Order() {
		st, _ := find(sp.Steps, id)
		rec, ok := records[id]
		take := ok && rec.State == contract.StateSucceeded && st.Uses != ApprovalType && st.Uses != spec.ProvisionType
		take = take && (from == "" || id != from && !g.IsUpstream(from, id))
		for _, n := range st.Needs {
			need, _ := find(sp.Steps, n)
			take = take && (reused[n] || need.Uses == spec.ProvisionType)
		}
		reused[id] = take
	}
	p := &Plan{Params: params}
	for _, st := range sp.Steps {
		if reused[st.ID] {
			p.Reused = append(p.Reused, records[st.ID])
		} else {
			p.Rerun = append(p.Rerun, st.ID)
		}
	}
	// A node is started again only for a step that runs again and uses
	// it: runs on it, needs it or reads it.
	for _, st := range sp.Steps {
		if st.Uses != spec.ProvisionType {
			continue
		}
		needed := slices.ContainsFunc(p.Rerun, func(id string) bool {
			s, _ := find(sp.Steps, id)
			return id != st.ID && usesNode(s, st.ID, g.IsUpstream(st.ID, id))
		})
		if !needed {
			p.NotNeeded = append(p.NotNeeded, st.ID)
			p.Rerun = slices.DeleteFunc(p.Rerun, func(id string) bool { return id == st.ID })
		}
	}
	if len(p.Rerun) == 0 && len(sp.Finally) == 0 {
		return nil, refuse("run %s: every step would be taken over as it ended; nothing would run (give --from STEP)", old.RunID)
	}
	if err := paramConflicts(sp, p, changed); err != nil {
		return nil, err
	}
	return p, nil
}

// usesNode tells whether step s uses the node of provision step prov,
// which upstream says is upstream of s. A templated runs_on may name any
// node upstream of it.
func usesNode(s spec.Step, prov string, upstream bool) bool {
	if s.RunsOn == prov || slices.Contains(s.Needs, prov) {
		return true
	}
	if tmpl.HasTemplate(s.RunsOn) && upstream {
		return true
	}
	reads, all := s.ReadsSteps()
	return all || slices.Contains(reads, prov)
}

func orNone(s string) string {
	if s == "" {
		return "no error recorded"
	}
	return s
}

func find(steps []spec.Step, id string) (spec.Step, bool) {
	for _, s := range steps {
		if s.ID == id {
			return s, true
		}
	}
	return spec.Step{}, false
}

func ids(steps []spec.Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.ID
	}
	return out
}

// mergeParams overlays overrides on the old run's params, coerced and
// checked as for any run, and names those that changed.
func mergeParams(sp *spec.Spec, old, overrides map[string]any) (map[string]any, []string, error) {
	if len(overrides) == 0 {
		return old, nil, nil
	}
	merged := make(map[string]any, len(old)+len(overrides))
	for k, v := range old {
		if v != nil {
			merged[k] = v
		}
	}
	for k, v := range overrides {
		merged[k] = v
	}
	params, err := spec.ResolveParams(sp, merged)
	if err != nil {
		return nil, nil, refuse("pipeline %s: %v", sp.Name, err)
	}
	var changed []string
	for k := range overrides {
		if !reflect.DeepEqual(params[k], old[k]) {
			changed = append(changed, k)
		}
	}
	slices.Sort(changed)
	return params, changed, nil
}

// paramConflicts refuses params changed under a step taken over: its
// outputs came from the old value.
func paramConflicts(sp *spec.Spec, p *Plan, changed []string) error {
	var problems []string
	for _, name := range changed {
		var readers []string
		for _, rec := range p.Reused {
			st, _ := find(sp.Steps, rec.ID)
			names, all := st.ReadsParams()
			if all || slices.Contains(names, name) {
				readers = append(readers, rec.ID)
			}
		}
		if len(readers) > 0 {
			problems = append(problems, fmt.Sprintf("param %s is read by %s, which succeeded and would be taken over as it ran; give --from %s to run it again with the new value",
				name, strings.Join(readers, ", "), readers[0]))
		}
	}
	if len(problems) > 0 {
		return refuse("%s", strings.Join(problems, "; "))
	}
	return nil
}

// Pointer is an artifact pointer found in a step's outputs.
type Pointer struct {
	Step    string
	Output  string
	Pointer artifact.Pointer
}

// Pointers finds every artifact pointer in the outputs of the records, in
// record order and sorted output keys: strings anywhere in the values (a
// list of a fan-out's models, a mapping) that parse as pointers.
func Pointers(records []contract.StepStatus) []Pointer {
	var out []Pointer
	for _, rec := range records {
		for _, k := range sortedKeys(rec.Outputs) {
			walk(rec.Outputs[k], k, func(path, s string) {
				if p, err := artifact.ParsePointer(s); err == nil {
					out = append(out, Pointer{Step: rec.ID, Output: path, Pointer: p})
				}
			})
		}
	}
	return out
}

func walk(v any, path string, visit func(path, s string)) {
	switch x := v.(type) {
	case string:
		visit(path, x)
	case []any:
		for i, e := range x {
			walk(e, fmt.Sprintf("%s[%d]", path, i), visit)
		}
	case map[string]any:
		for _, k := range sortedKeys(x) {
			walk(x[k], path+"."+k, visit)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Check makes sure every artifact the records point to is still in store:
// in it (a pointer into another store is refused) and present. It reports
// every missing artifact, each by step, output and digest.
func Check(ctx context.Context, store artifact.Store, records []contract.StepStatus) error {
	return CheckPointers(ctx, store, Pointers(records))
}

// CheckPointers is Check for pointers already found.
func CheckPointers(ctx context.Context, store artifact.Store, ps []Pointer) error {
	var missing []string
	for _, p := range ps {
		if err := p.Pointer.Check(store); err != nil {
			return refuse("step %s: output %s: %v", p.Step, p.Output, err)
		}
		_, err := store.Stat(ctx, p.Pointer.Digest)
		switch {
		case errors.Is(err, artifact.ErrNotFound):
			missing = append(missing, fmt.Sprintf("step %s's output %s (%s)", p.Step, p.Output, p.Pointer.Digest))
		case err != nil:
			return fmt.Errorf("check %s of step %s: %w", p.Pointer, p.Step, err)
		}
	}
	if len(missing) > 0 {
		return refuse("artifacts the retry would reuse are gone from the store %s: %s; give --from the first of those steps to make them again",
			store.Location(), strings.Join(missing, ", "))
	}
	return nil
}

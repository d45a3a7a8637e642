package dag

// Status is the state of one node during a run. The zero value is Pending.
type Status string

// Node states. Only Succeeded lets downstream nodes run; Failed and Skipped
// both make every node downstream of them skipped. An interpreter that lets
// a failure continue (continue_on_error) reports that node as Succeeded.
const (
	Pending   Status = ""
	Running   Status = "running"
	Succeeded Status = "succeeded"
	Failed    Status = "failed"
	Skipped   Status = "skipped"
)

// Terminal reports whether a node in this state will not change any more.
func (s Status) Terminal() bool {
	return s == Succeeded || s == Failed || s == Skipped
}

// Step is what Ready advises: which pending nodes may start now, and which
// pending nodes can never run because something upstream failed or was
// skipped.
type Step struct {
	Run  []string
	Skip []string
}

// Ready looks at the current states (missing ids are Pending) and returns
// the pending nodes whose needs all succeeded, and the pending nodes with a
// failed or skipped node anywhere upstream. Skips are transitive, so one call
// settles a whole failed branch. Both lists follow node order; an
// interpreter with a parallelism limit starts a prefix of Run.
func (g *Graph) Ready(states map[string]Status) Step {
	var out Step
	blocked := make([]bool, len(g.ids))
	for _, i := range g.topo() {
		for _, j := range g.needs[i] {
			s := states[g.ids[j]]
			if s == Failed || s == Skipped || blocked[j] && !s.Terminal() {
				blocked[i] = true
				break
			}
		}
	}
	for i, id := range g.ids {
		if states[id] != Pending {
			continue
		}
		if blocked[i] {
			out.Skip = append(out.Skip, id)
			continue
		}
		runnable := true
		for _, j := range g.needs[i] {
			if states[g.ids[j]] != Succeeded {
				runnable = false
				break
			}
		}
		if runnable {
			out.Run = append(out.Run, id)
		}
	}
	return out
}

// Done reports whether every node is in a terminal state.
func (g *Graph) Done(states map[string]Status) bool {
	for _, id := range g.ids {
		if !states[id].Terminal() {
			return false
		}
	}
	return true
}

package spec

import (
	"fmt"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/dag"
)

// Graph returns the dependency graph of the normal steps.
func (s *Spec) Graph() (*dag.Graph, error) { return graphOf(s.Steps) }

// FinallyGraph returns the dependency graph of the finally steps, which run
// after the normal steps whatever their outcome.
func (s *Spec) FinallyGraph() (*dag.Graph, error) { return graphOf(s.Finally) }

func graphOf(steps []Step) (*dag.Graph, error) {
	nodes := make([]dag.Node, len(steps))
	for i, st := range steps {
		nodes[i] = dag.Node{ID: st.ID, Needs: st.Needs}
	}
	g, err := dag.New(nodes)
	if err != nil {
		return nil, fmt.Errorf("plan steps: %w", err)
	}
	return g, nil
}

// Dot draws the normal steps in Graphviz syntax, each labelled with its
// step type or command.
func (s *Spec) Dot() (string, error) {
	g, err := s.Graph()
	if err != nil {
		return "", err
	}
	return g.Dot(s.Name, func(id string) string {
		st, _ := s.Step(id)
		switch {
		case st.Uses != "":
			return st.Uses
		case st.Run != nil && st.Run.Shell != "":
			return "run: " + st.Run.Shell
		case st.Run != nil:
			return "run: " + strings.Join(st.Run.Argv, " ")
		}
		return ""
	}), nil
}

package steps

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
)

func init() {
	Register(Define(Type{
		Name: "select",
		Doc: "Picks the best of several candidates (the items of a fanned-out step) by one named metric and passes its " +
			"model on unchanged. Ties go to the earliest candidate in item order, so the same results always pick the " +
			"same model. Candidates whose metrics are missing (a failed item) or undefined are left out.",
		Kind: Activity,
	}, selectInputs{}, runSelect))
}

// lowerIsBetter are the known metrics for which smaller is better; goal
// overrides it for others.
var lowerIsBetter = []string{evaluate.LogLoss, evaluate.Brier}

type selectInputs struct {
	Metric     string `json:"metric" required:"true" doc:"the metric that decides, e.g. roc_auc"`
	Metrics    []any  `json:"metrics" required:"true" doc:"each candidate's metrics (a mapping, or null), in item order: e.g. ${{ steps.train.outputs.metrics }}"`
	Models     []any  `json:"models" required:"true" doc:"each candidate's model, in the same order: e.g. ${{ steps.train.outputs.model }}"`
	Candidates []any  `json:"candidates" doc:"what each candidate was, reported with the choice: e.g. ${{ steps.train.items }}"`
	Goal       string `json:"goal" doc:"max or min (default: min for log_loss and brier, max for others)"`
}

// SelectOutputs are the outputs of a select step.
type SelectOutputs struct {
	Model      string         `json:"model" doc:"the chosen candidate's model, as given"`
	Index      int            `json:"index" doc:"its position among the candidates (item order)"`
	Value      float64        `json:"value" doc:"its value of the metric"`
	Metrics    map[string]any `json:"metrics" doc:"all its metrics"`
	Candidate  any            `json:"candidate,omitempty" doc:"what it was, when candidates are given"`
	Ranking    []int          `json:"ranking" doc:"the positions of the candidates that had the metric, best first (ties in item order)"`
	Considered int            `json:"considered" doc:"how many candidates had the metric"`
}

func runSelect(_ context.Context, _ Env, _ Input, a selectInputs) (*SelectOutputs, error) {
	n := len(a.Metrics)
	if len(a.Models) != n {
		return nil, badInput("models", "has %d entries for %d metrics; give one model per candidate, in the same order", len(a.Models), n)
	}
	if a.Candidates != nil && len(a.Candidates) != n {
		return nil, badInput("candidates", "has %d entries for %d metrics", len(a.Candidates), n)
	}
	higher := !slices.Contains(lowerIsBetter, a.Metric)
	switch a.Goal {
	case "":
	case "max":
		higher = true
	case "min":
		higher = false
	default:
		return nil, badInput("goal", "unknown goal %q (known: max, min)", a.Goal)
	}
	type cand struct {
		i int
		v float64
	}
	var cands []cand
	seen := map[string]bool{}
	for i, raw := range a.Metrics {
		if raw == nil || a.Models[i] == nil {
			continue
		}
		m, err := stepio.Mapping(raw)
		if err != nil {
			return nil, badInput(fmt.Sprintf("metrics[%d]", i), "want a mapping of metric names to numbers, got %v", raw)
		}
		for k := range m {
			seen[k] = true
		}
		v, ok := m[a.Metric]
		if !ok || v == nil {
			continue
		}
		f, err := stepio.Number(v)
		if err != nil || math.IsNaN(f) {
			return nil, badInput(fmt.Sprintf("metrics[%d].%s", i, a.Metric), "want a number, got %v", v)
		}
		if _, ok := a.Models[i].(string); !ok {
			return nil, badInput(fmt.Sprintf("models[%d]", i), "want a model reference (a string), got %v", a.Models[i])
		}
		cands = append(cands, cand{i, f})
	}
	if len(cands) == 0 {
		known := stepio.SortedKeys(seen)
		if len(known) == 0 {
			return nil, badInput("metrics", "none of the %d candidates has metrics (did every item fail?)", n)
		}
		return nil, badInput("metric", "no candidate has metric %q (they have %s)", a.Metric, strings.Join(known, ", "))
	}
	// A stable sort keeps item order among equal values: the tie-break.
	sort.SliceStable(cands, func(x, y int) bool {
		if higher {
			return cands[x].v > cands[y].v
		}
		return cands[x].v < cands[y].v
	})
	best := cands[0]
	metrics, _ := stepio.Mapping(a.Metrics[best.i])
	out := &SelectOutputs{Model: a.Models[best.i].(string), Index: best.i, Value: best.v, Metrics: metrics, Considered: len(cands)}
	if a.Candidates != nil {
		out.Candidate = a.Candidates[best.i]
	}
	for _, c := range cands {
		out.Ranking = append(out.Ranking, c.i)
	}
	return out, nil
}

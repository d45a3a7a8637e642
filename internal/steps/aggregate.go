package steps

import (
	"context"
	"fmt"
	"math"

	"github.com/gauntlet-ml/gauntlet/internal/stepio"
)

func init() {
	Register(Define(Type{
		Name: "aggregate",
		Doc: "Summarises a metric over the items of a fanned-out step, such as the folds of a cross-validation: mean, " +
			"standard deviation (numpy's default, over the n values), min and max, and the same for every other metric " +
			"all items share. Items without metrics (failed ones) are left out and counted.",
		Kind: Activity,
	}, aggregateInputs{}, runAggregate))
}

type aggregateInputs struct {
	Metric  string `json:"metric" required:"true" doc:"the metric to summarise, e.g. roc_auc"`
	Metrics []any  `json:"metrics" required:"true" doc:"each item's metrics (a mapping, or null), e.g. ${{ steps.evaluate.outputs.metrics }}"`
}

// Summary is a metric's spread over the items.
type Summary struct {
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
}

// AggregateOutputs are the outputs of an aggregate step.
type AggregateOutputs struct {
	Mean    float64            `json:"mean" doc:"mean of the metric"`
	Std     float64            `json:"std" doc:"its standard deviation over the n values (ddof 0)"`
	Min     float64            `json:"min" doc:"its smallest value"`
	Max     float64            `json:"max" doc:"its largest value"`
	Values  []float64          `json:"values" doc:"its values, in item order"`
	N       int                `json:"n" doc:"items that had it"`
	Missing int                `json:"missing" doc:"items without metrics, left out"`
	All     map[string]Summary `json:"all" doc:"the same summary for every metric all counted items have"`
}

func runAggregate(_ context.Context, _ Env, _ Input, a aggregateInputs) (*AggregateOutputs, error) {
	var rows []map[string]any
	missing := 0
	for i, raw := range a.Metrics {
		if raw == nil {
			missing++
			continue
		}
		m, err := stepio.Mapping(raw)
		if err != nil {
			return nil, badInput(fmt.Sprintf("metrics[%d]", i), "want a mapping of metric names to numbers")
		}
		rows = append(rows, m)
	}
	if len(rows) == 0 {
		return nil, badInput("metrics", "none of the %d items has metrics", len(a.Metrics))
	}
	values := func(name string) ([]float64, bool) {
		out := make([]float64, 0, len(rows))
		for _, m := range rows {
			f, err := stepio.Number(m[name])
			if m[name] == nil || err != nil || math.IsNaN(f) {
				return nil, false
			}
			out = append(out, f)
		}
		return out, true
	}
	vs, ok := values(a.Metric)
	if !ok {
		return nil, badInput("metric", "not every item with metrics has a number for %q", a.Metric)
	}
	s := summarise(vs)
	out := &AggregateOutputs{Mean: s.Mean, Std: s.Std, Min: s.Min, Max: s.Max, Values: vs, N: len(vs), Missing: missing, All: map[string]Summary{}}
	for _, name := range stepio.SortedKeys(rows[0]) {
		if v, ok := values(name); ok {
			out.All[name] = summarise(v)
		}
	}
	return out, nil
}

func summarise(v []float64) Summary {
	s := Summary{Min: math.Inf(1), Max: math.Inf(-1)}
	for _, x := range v {
		s.Mean += x
		s.Min, s.Max = math.Min(s.Min, x), math.Max(s.Max, x)
	}
	s.Mean /= float64(len(v))
	for _, x := range v {
		s.Std += (x - s.Mean) * (x - s.Mean)
	}
	s.Std = math.Sqrt(s.Std / float64(len(v)))
	return s
}

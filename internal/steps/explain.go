package steps

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/gauntlet-ml/gauntlet/internal/ml/explain"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
)

func init() {
	Register(Type{
		Name: "explain",
		Doc: "Explains a float model on held-out data (default: its holdout split): permutation importance of each column " +
			"(ROC AUC drop, mean ± std over repeats), coefficients of a logistic regression, and attributions of the first " +
			"records (exact for logistic regression, sampled Shapley values otherwise). Writes explanation.json.",
		Kind: Activity,
		Inputs: []InputSpec{
			{Name: "model", Required: true, Doc: "float model directory"},
			{Name: "data", Doc: "held-out data: CSV path or builtin: URI (default: the model's held-out split)"},
			{Name: "repeats", Doc: "shuffles per column (default 5)"},
			{Name: "records", Doc: "rows of data to attribute (default 3)"},
			{Name: "samples", Doc: "sampled permutations per record for Shapley values (default 500)"},
			{Name: "top", Doc: "how many columns top_features lists (default 5)"},
			{Name: "seed", Doc: "seed of the shuffles and samples (default 1)"},
		},
		Outputs: []string{"explanation", "top_features", "importance", "base_auc"},
		Run:     runExplain,
	})
}

func runExplain(_ context.Context, env Env, in Input) (map[string]any, error) {
	path, err := requireString(in, "model")
	if err != nil {
		return nil, err
	}
	src, _, err := argString(in, "data")
	if err != nil {
		return nil, err
	}
	ints := map[string]int{"repeats": 5, "records": 3, "samples": 500, "top": 5, "seed": 1}
	for k, def := range ints {
		v, err := intOr(in, k, def)
		if err != nil {
			return nil, err
		}
		if v < 0 || v == 0 && k != "records" && k != "seed" {
			return nil, badInput(k, "must be positive, got %d", v)
		}
		ints[k] = v
	}
	lm, err := loadModel("model", path)
	if err != nil {
		return nil, err
	}
	d, err := lm.loadData("data", src)
	if err != nil {
		return nil, err
	}
	x, err := lm.Manifest.Preprocessing.Transform(d)
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("with.data %s: %w", d.Source, err))
	}
	base, imp, err := explain.PermutationImportance(lm.scorer, lm.Manifest.Preprocessing, d, ints["repeats"], uint64(ints["seed"]))
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("explain %s on %s: %w", lm.Dir, d.Source, err))
	}
	m := &explain.Model{Scorer: lm.scorer, Encoder: lm.Manifest.Preprocessing, Background: x, Samples: ints["samples"], Seed: uint64(ints["seed"])}
	report := map[string]any{"model": lm.Dir, "data": d.Source, "base_auc": base, "permutation_importance": imp}
	if net, ok := lm.scorer.(*model.Network); ok {
		m.Net = net
		if net.Kind == model.LogReg {
			cs, err := explain.Coefficients(net, lm.Manifest.Preprocessing)
			if err != nil {
				return nil, Permanent(kindBadInput, fmt.Errorf("explain %s: %w", lm.Dir, err))
			}
			report["coefficients"] = cs
		}
	}
	var records [][]explain.Attribution
	for r := range min(ints["records"], d.Len()) {
		a, err := m.AttributeRow(x.RawRowView(r))
		if err != nil {
			return nil, fmt.Errorf("explain %s: record %d: %w", lm.Dir, r, err)
		}
		records = append(records, a)
	}
	report["records"] = records
	out := filepath.Join(env.Dir(), "explanation.json")
	if err := writeJSON(out, report); err != nil {
		return nil, err
	}
	var top []any
	importance := map[string]any{}
	for i, im := range imp {
		if i < ints["top"] {
			top = append(top, im.Feature)
		}
		importance[im.Feature] = num(im.Mean)
	}
	return map[string]any{"explanation": out, "top_features": top, "importance": importance, "base_auc": num(base)}, nil
}

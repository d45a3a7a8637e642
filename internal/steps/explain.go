package steps

import (
	"context"
	"fmt"

	"github.com/gauntlet-ml/gauntlet/internal/ml/explain"
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
)

func init() {
	Register(Define(Type{
		Name: "explain",
		Doc: "Explains a model of either format on held-out data (default: its holdout split): permutation importance of each column " +
			"(ROC AUC drop, mean ± std over repeats), coefficients of a logistic regression, and attributions of the first " +
			"records (exact for logistic regression, sampled Shapley values otherwise). Publishes explanation.json to the artifact store.",
		Kind: Activity,
	}, explainInputs{Repeats: 5, Records: 3, Samples: 500, Top: 5, Seed: 1}, runExplain))
}

type explainInputs struct {
	Model   ArtifactRef `json:"model" required:"true" doc:"the model, in Gauntlet's format or ONNX: an artifact pointer (a model step's output) or a model directory on the worker"`
	Data    string      `json:"data" doc:"held-out data: a path, file://, s3:// or https:// URL, an artifact pointer, or a builtin: URI (default: the model's held-out split)"`
	Repeats int         `json:"repeats" doc:"shuffles per column (default 5)"`
	Records int         `json:"records" doc:"rows of data to attribute (default 3)"`
	Samples int         `json:"samples" doc:"sampled permutations per record for Shapley values (default 500)"`
	Top     int         `json:"top" doc:"how many columns top_features lists (default 5)"`
	Seed    int         `json:"seed" doc:"seed of the shuffles and samples (default 1)"`
}

// ExplainOutputs are the outputs of an explain step; report reads them.
type ExplainOutputs struct {
	Explanation string                  `json:"explanation" doc:"explanation.json, an artifact pointer: importance with its spread, coefficients, the records' attributions"`
	TopFeatures []string                `json:"top_features" doc:"the most important columns, most important first"`
	Importance  map[string]stepio.Float `json:"importance" doc:"mean ROC AUC drop when each column is shuffled"`
	BaseAUC     stepio.Float            `json:"base_auc" doc:"ROC AUC of the model on the data, unshuffled"`
	Provider    string                  `json:"provider" doc:"what scored the model: go for Gauntlet's own format, the ONNX Runtime execution provider for an ONNX model"`
}

func runExplain(ctx context.Context, env Env, _ Input, a explainInputs) (*ExplainOutputs, error) {
	for _, c := range []struct {
		key       string
		v         int
		zeroValid bool
	}{{"repeats", a.Repeats, false}, {"records", a.Records, true}, {"samples", a.Samples, false}, {"top", a.Top, false}, {"seed", a.Seed, true}} {
		if c.v < 0 || c.v == 0 && !c.zeroValid {
			return nil, badInput(c.key, "must be positive, got %d", c.v)
		}
	}
	lm, err := loadModel(ctx, env, "model", a.Model)
	if err != nil {
		return nil, err
	}
	defer lm.Close()
	d, _, err := lm.loadData(ctx, env, "data", a.Data)
	if err != nil {
		return nil, err
	}
	x, err := lm.encode(d)
	if err != nil {
		return nil, err
	}
	base, imp, err := explain.ImportanceOf(lm.Model, d, a.Repeats, uint64(a.Seed))
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("explain %s on %s: %w", lm.Name, d.Source, err))
	}
	m := explain.For(lm.Model, x)
	m.Samples, m.Seed = a.Samples, uint64(a.Seed)
	report := map[string]any{"model": lm.Name, "data": d.Source, "base_auc": base, "permutation_importance": imp, "provider": lm.Info().Provider}
	if net := lm.Linear(); net != nil {
		cs, err := explain.Coefficients(net, lm.Encoder())
		if err != nil {
			return nil, Permanent(kindBadInput, fmt.Errorf("explain %s: %w", lm.Name, err))
		}
		report["coefficients"] = cs
	}
	var records [][]explain.Attribution
	for r := range min(a.Records, d.Len()) {
		attr, err := m.AttributeRow(x.RawRowView(r))
		if err != nil {
			return nil, fmt.Errorf("explain %s: record %d: %w", lm.Name, r, err)
		}
		records = append(records, attr)
	}
	report["records"] = records
	out, err := publishJSON(ctx, env, "explanation.json", report)
	if err != nil {
		return nil, err
	}
	o := &ExplainOutputs{Explanation: out, Importance: map[string]stepio.Float{}, BaseAUC: stepio.Float(base), Provider: lm.Info().Provider}
	for i, im := range imp {
		if i < a.Top {
			o.TopFeatures = append(o.TopFeatures, im.Feature)
		}
		o.Importance[im.Feature] = stepio.Float(im.Mean)
	}
	return o, nil
}

package tmpl

import "testing"

// FuzzTemplates feeds arbitrary text to every entry point a pipeline's
// strings and conditions reach: none may panic, whatever the text.
func FuzzTemplates(f *testing.F) {
	for _, s := range []string{
		"${{ params.rows }}",
		"model ${{ steps.train.outputs.model }} at ${{ run.id }}",
		"${{ steps.evaluate.outputs.metrics.roc_auc >= params.min_auc }}",
		"${{ params.model == 'mlp' && steps.train.status == 'succeeded' }}",
		"${{ }}", "${{", "}}", "${{ ${{ x }} }}", "${{ 1/0 }}", "${{ nil.x }}",
		"params.model != 'none'", "steps.train.outputs.metrics['roc_auc'] > 0.8",
	} {
		f.Add(s)
	}
	ctx := Context{
		Params: map[string]any{"rows": 10.0, "model": "mlp", "min_auc": 0.8},
		Steps: map[string]StepState{"train": {Status: "succeeded", Outputs: map[string]any{"model": "/m", "metrics": map[string]any{"roc_auc": 0.9}}},
			"evaluate": {Status: "running"}},
		Run:  RunInfo{ID: "r-1", Pipeline: "p"},
		Step: "fuzz",
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = Split(s)
		_, _ = Analyze(s)
		_, _ = ResolveString(s, ctx)
		_, _ = Resolve(map[string]any{"a": []any{s, map[string]any{"b": s}}}, ctx)
		_, _ = EvalCondition(s, ctx)
		_, _ = ConditionSource(s)
	})
}

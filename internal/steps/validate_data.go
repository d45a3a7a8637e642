package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/atomicfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/validate"
)

const kindValidationFailed = "ValidationFailed"

func init() {
	Register(Type{
		Name: "validate-data",
		Doc: "Checks training data before training: declared schema, a previous run's statistics (missing columns, type " +
			"changes, new categories, ranges, missing rates), duplicate rows, label leakage, near-duplicate features, training " +
			"rows later than evaluation rows, and class imbalance, optionally applying a remedy. Writes report.json and " +
			"stats.json; a failed check stops the run permanently (ValidationFailed).",
		Kind: Activity,
		Inputs: []InputSpec{
			{Name: "data", Required: true, Doc: "CSV path or builtin: URI"},
			{Name: "label", Required: true, Doc: "label column"},
			{Name: "positive_label", Required: true, Doc: "label values of the positive class, comma-separated"},
			{Name: "sensitive", Doc: "sensitive columns (list or comma-separated)"},
			{Name: "ignore", Doc: "columns to leave out (list or comma-separated)"},
			{Name: "schema", Doc: "declared kinds, {column: numeric|categorical|sensitive|label|ignored}"},
			{Name: "reference_stats", Doc: "stats output (stats.json) of an earlier run to compare with"},
			{Name: "eval_data", Doc: "evaluation data, for the time-order check and the remedy's effect"},
			{Name: "timestamp_column", Doc: "column ordering rows in time (numbers or RFC 3339 dates)"},
			{Name: "leakage_auc", Doc: "single-feature ROC AUC that fails as leakage (default 0.98)"},
			{Name: "leakage_corr", Doc: "|correlation| with the label that fails as leakage (default 0.95)"},
			{Name: "duplicate_corr", Doc: "|correlation| between features that warns (default 0.99)"},
			{Name: "max_missing_rate", Doc: "share of missing values in a column that fails (default 0.5)"},
			{Name: "max_duplicate_rate", Doc: "share of duplicate rows that fails (default 0.05)"},
			{Name: "imbalance_remedy", Doc: "class_weight, oversample, undersample or smote (numeric features only)"},
			{Name: "strict", Doc: "fail on warnings too"},
			{Name: "seed", Doc: "seed of resampling and the leakage folds (default 1)"},
		},
		Outputs: []string{"report", "passed", "warnings", "stats", "imbalance_ratio", "imbalance_severity", "data", "class_weight", "remedy_effect"},
		Run:     runValidateData,
	})
}

func runValidateData(ctx context.Context, env Env, in Input) (map[string]any, error) {
	src, err := requireString(in, "data")
	if err != nil {
		return nil, err
	}
	label, err := requireString(in, "label")
	if err != nil {
		return nil, err
	}
	positive, err := requireString(in, "positive_label")
	if err != nil {
		return nil, err
	}
	sensitive, err := argList(in, "sensitive")
	if err != nil {
		return nil, err
	}
	ignore, err := argList(in, "ignore")
	if err != nil {
		return nil, err
	}
	var o validate.Options
	declared, err := argMap(in, "schema")
	if err != nil {
		return nil, err
	}
	if declared != nil {
		o.Declared = map[string]dataset.Kind{}
		for col, v := range declared {
			k, _ := v.(string)
			switch kind := dataset.Kind(k); kind {
			case dataset.Numeric, dataset.Categorical, dataset.Sensitive, dataset.Label, dataset.Ignored:
				o.Declared[col] = kind
			default:
				return nil, badInput("schema."+col, "unknown kind %v (known: numeric, categorical, sensitive, label, ignored)", v)
			}
		}
	}
	for key, dst := range map[string]*float64{"leakage_auc": &o.LeakageAUC, "leakage_corr": &o.LeakageCorr, "duplicate_corr": &o.DuplicateCorr,
		"max_missing_rate": &o.MaxMissingRate, "max_duplicate_rate": &o.MaxDuplicateRate} {
		if *dst, err = floatOr(in, key, 0); err != nil {
			return nil, err
		}
		if *dst < 0 || *dst > 1 {
			return nil, badInput(key, "must be in [0, 1], got %v", *dst)
		}
	}
	if o.Strict, err = boolOr(in, "strict", false); err != nil {
		return nil, err
	}
	seed, err := intOr(in, "seed", 1)
	if err != nil {
		return nil, err
	}
	if seed < 0 {
		return nil, badInput("seed", "must not be negative")
	}
	o.Seed = uint64(seed)
	remedy, err := stringOr(in, "imbalance_remedy", "")
	if err != nil {
		return nil, err
	}
	switch remedy {
	case "", validate.ClassWeight, validate.Oversample, validate.Undersample, validate.SMOTE:
	default:
		return nil, badInput("imbalance_remedy", "unknown remedy %q (known: class_weight, oversample, undersample, smote)", remedy)
	}
	if o.TimestampColumn, err = stringOr(in, "timestamp_column", ""); err != nil {
		return nil, err
	}
	if ref, _, err := argString(in, "reference_stats"); err != nil {
		return nil, err
	} else if ref != "" {
		if o.Reference, err = validate.ReadStats(ref); err != nil {
			return nil, Permanent(kindBadInput, fmt.Errorf("with.reference_stats: %w", err))
		}
	}

	opts := []dataset.Option{dataset.WithLabel(label, positive)}
	if len(sensitive) > 0 {
		opts = append(opts, dataset.WithSensitive(sensitive...))
	}
	if len(ignore) > 0 {
		opts = append(opts, dataset.WithIgnored(ignore...))
	}
	d, err := dataset.Load(src, opts...)
	if err != nil {
		return nil, dataError("data", src, err)
	}
	evalSrc, _, err := argString(in, "eval_data")
	if err != nil {
		return nil, err
	}
	if evalSrc != "" {
		eo := []dataset.Option{dataset.WithSchema(d.Schema)}
		if !strings.HasPrefix(evalSrc, "builtin:") {
			eo = append(eo, dataset.WithHeader(true))
		}
		if o.Eval, err = dataset.Load(evalSrc, eo...); err != nil {
			return nil, dataError("eval_data", evalSrc, err)
		}
	}

	rep, stats, err := validate.Validate(d, o)
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("validate %s: %w", src, err))
	}
	reportPath, statsPath := filepath.Join(env.Dir(), "report.json"), filepath.Join(env.Dir(), "stats.json")
	out := map[string]any{
		"report":             reportPath,
		"stats":              statsPath,
		"passed":             rep.Passed,
		"warnings":           float64(rep.Warnings),
		"imbalance_ratio":    num(rep.Imbalance.Ratio),
		"imbalance_severity": rep.Imbalance.Severity,
	}
	type fullReport struct {
		*validate.Report
		Data   string           `json:"data"`
		Remedy *validate.Effect `json:"remedy_effect,omitempty"`
	}
	full := fullReport{Report: rep, Data: src}
	if rep.Passed && remedy != "" {
		if err := applyRemedy(ctx, env, d, o.Eval, src, remedy, o.Seed, out, &full.Remedy); err != nil {
			return nil, err
		}
	}
	if err := writeJSON(statsPath, stats); err != nil {
		return nil, err
	}
	if err := writeJSON(reportPath, full); err != nil {
		return nil, err
	}
	if !rep.Passed {
		return nil, Permanent(kindValidationFailed, fmt.Errorf("validate-data %s: %d checks failed: %s (report %s)",
			src, rep.Failures, strings.Join(rep.Failed(), " "), reportPath))
	}
	return out, nil
}

// applyRemedy rebalances d, writes it as CSV for the train step and, given
// evaluation data, measures what the remedy changes.
func applyRemedy(ctx context.Context, env Env, d, eval *dataset.Dataset, src, remedy string, seed uint64, out map[string]any, effect **validate.Effect) error {
	b, err := validate.Rebalance(d, remedy, seed)
	if err != nil {
		return Permanent(kindBadInput, fmt.Errorf("with.imbalance_remedy %s: %w", remedy, err))
	}
	if remedy == validate.ClassWeight {
		out["class_weight"] = "balanced"
	} else {
		negative, err := negativeLabel(src, d.Schema)
		if err != nil {
			return Permanent(kindBadInput, fmt.Errorf("with.data: %w", err))
		}
		body, err := holdoutCSV(b, negative)
		if err != nil {
			return err
		}
		path := filepath.Join(env.Dir(), "rebalanced.csv")
		if err := writeFileAtomic(path, body); err != nil {
			return err
		}
		out["data"] = path
	}
	if eval != nil {
		e, err := validate.RemedyEffect(ctx, d, b, eval, remedy)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			return Permanent(kindBadInput, fmt.Errorf("with.eval_data: %w", err))
		}
		*effect = e
		out["remedy_effect"] = map[string]any{"remedy": remedy, "before": numMap(e.Before), "after": numMap(e.After), "delta": numMap(e.Delta)}
	}
	return nil
}

// writeFileAtomic replaces path with data, so a retried attempt never reads
// half a file.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := atomicfile.Create(tmp, data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

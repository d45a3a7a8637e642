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
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
)

const kindValidationFailed = "ValidationFailed"

func init() {
	Register(Define(Type{
		Name: "validate-data",
		Doc: "Checks training data before training: declared schema, a previous run's statistics (missing columns, type " +
			"changes, new categories, ranges, missing rates), duplicate rows, label leakage, near-duplicate features, training " +
			"rows later than evaluation rows, and class imbalance, optionally applying a remedy. Publishes report.json and " +
			"stats.json (and the rebalanced data) to the artifact store; a failed check stops the run permanently (ValidationFailed).",
		Kind: Activity,
	}, validateInputs{Seed: 1}, runValidateData))
}

type validateInputs struct {
	Data             string            `json:"data" required:"true" doc:"the data: a path, file://, s3:// or https:// URL, an artifact pointer, or a builtin: URI"`
	Label            string            `json:"label" required:"true" doc:"label column"`
	PositiveLabel    []string          `json:"positive_label" required:"true" doc:"label values of the positive class (list or comma-separated)"`
	Sensitive        []string          `json:"sensitive" doc:"sensitive columns (list or comma-separated)"`
	Ignore           []string          `json:"ignore" doc:"columns to leave out (list or comma-separated)"`
	Schema           map[string]string `json:"schema" doc:"declared kinds, {column: numeric|categorical|sensitive|label|ignored}"`
	ReferenceStats   string            `json:"reference_stats" doc:"stats output (stats.json, an artifact pointer, path or URL) of an earlier run to compare with"`
	EvalData         string            `json:"eval_data" doc:"evaluation data, given as data is, for the time-order check and the remedy's effect"`
	TimestampColumn  string            `json:"timestamp_column" doc:"column ordering rows in time (numbers or RFC 3339 dates)"`
	LeakageAUC       float64           `json:"leakage_auc" doc:"single-feature ROC AUC that fails as leakage (default 0.98)"`
	LeakageCorr      float64           `json:"leakage_corr" doc:"|correlation| with the label that fails as leakage (default 0.95)"`
	DuplicateCorr    float64           `json:"duplicate_corr" doc:"|correlation| between features that warns (default 0.99)"`
	MaxMissingRate   float64           `json:"max_missing_rate" doc:"share of missing values in a column that fails (default 0.5)"`
	MaxDuplicateRate float64           `json:"max_duplicate_rate" doc:"share of duplicate rows that fails (default 0.05)"`
	ImbalanceRemedy  string            `json:"imbalance_remedy" doc:"class_weight, oversample, undersample or smote (numeric features only)"`
	Strict           bool              `json:"strict" doc:"fail on warnings too"`
	Seed             int               `json:"seed" doc:"seed of resampling and the leakage folds (default 1)"`
}

// ValidateDataOutputs are the outputs of a validate-data step; report reads
// them.
type ValidateDataOutputs struct {
	Report            string        `json:"report" doc:"report.json, an artifact pointer: every check with its status and message"`
	Passed            bool          `json:"passed" required:"true" doc:"no check failed"`
	Warnings          int           `json:"warnings" required:"true" doc:"how many checks warned"`
	Stats             string        `json:"stats" doc:"stats.json, an artifact pointer: the reference_stats of a later run"`
	ImbalanceRatio    stepio.Float  `json:"imbalance_ratio" doc:"majority over minority class rows (null when a class is absent)"`
	ImbalanceSeverity string        `json:"imbalance_severity" doc:"none, mild, moderate or severe"`
	Data              string        `json:"data,omitempty" doc:"the rebalanced data (CSV, an artifact pointer), with an oversample, undersample or smote remedy"`
	ClassWeight       string        `json:"class_weight,omitempty" doc:"balanced, with the class_weight remedy: train's class_weight"`
	RemedyEffect      *RemedyEffect `json:"remedy_effect,omitempty" doc:"metrics on eval_data before and after the remedy"`
}

// RemedyEffect is what an imbalance remedy changed on the evaluation data.
type RemedyEffect struct {
	Remedy string                  `json:"remedy"`
	Before map[string]stepio.Float `json:"before"`
	After  map[string]stepio.Float `json:"after"`
	Delta  map[string]stepio.Float `json:"delta"`
}

func runValidateData(ctx context.Context, env Env, _ Input, a validateInputs) (*ValidateDataOutputs, error) {
	o := validate.Options{Strict: a.Strict, TimestampColumn: a.TimestampColumn}
	if a.Schema != nil {
		o.Declared = map[string]dataset.Kind{}
		for _, col := range stepio.SortedKeys(a.Schema) {
			switch kind := dataset.Kind(a.Schema[col]); kind {
			case dataset.Numeric, dataset.Categorical, dataset.Sensitive, dataset.Label, dataset.Ignored:
				o.Declared[col] = kind
			default:
				return nil, badInput("schema."+col, "unknown kind %q (known: numeric, categorical, sensitive, label, ignored)", a.Schema[col])
			}
		}
	}
	for _, f := range []struct {
		key string
		v   float64
		dst *float64
	}{{"leakage_auc", a.LeakageAUC, &o.LeakageAUC}, {"leakage_corr", a.LeakageCorr, &o.LeakageCorr}, {"duplicate_corr", a.DuplicateCorr, &o.DuplicateCorr},
		{"max_missing_rate", a.MaxMissingRate, &o.MaxMissingRate}, {"max_duplicate_rate", a.MaxDuplicateRate, &o.MaxDuplicateRate}} {
		if f.v < 0 || f.v > 1 {
			return nil, badInput(f.key, "must be in [0, 1], got %v", f.v)
		}
		*f.dst = f.v
	}
	if a.Seed < 0 {
		return nil, badInput("seed", "must not be negative")
	}
	o.Seed = uint64(a.Seed)
	remedy := a.ImbalanceRemedy
	switch remedy {
	case "", validate.ClassWeight, validate.Oversample, validate.Undersample, validate.SMOTE:
	default:
		return nil, badInput("imbalance_remedy", "unknown remedy %q (known: class_weight, oversample, undersample, smote)", remedy)
	}
	if a.ReferenceStats != "" {
		ref, err := env.Artifacts().Data(ctx, a.ReferenceStats)
		if err != nil {
			return nil, artifactErr("reference_stats", err)
		}
		if o.Reference, err = validate.ReadStats(ref.Path); err != nil {
			return nil, Permanent(kindBadInput, fmt.Errorf("with.reference_stats %s: %w", ref.Source, err))
		}
	}
	src := a.Data
	opts := []dataset.Option{dataset.WithLabel(a.Label, a.PositiveLabel...)}
	if len(a.Sensitive) > 0 {
		opts = append(opts, dataset.WithSensitive(a.Sensitive...))
	}
	if len(a.Ignore) > 0 {
		opts = append(opts, dataset.WithIgnored(a.Ignore...))
	}
	f, data, err := loadFrame(ctx, env, "data", src, opts...)
	if err != nil {
		return nil, err
	}
	// The label's negative value, which a rebalanced copy writes for its
	// negative rows, is the frame's to say: a Dataset keeps labels as 0/1.
	negative := f.NegativeLabel()
	d := f.Dataset()
	d.Source = data.Source
	src = data.Source
	if evalSrc := a.EvalData; evalSrc != "" {
		eo := []dataset.Option{dataset.WithSchema(d.Schema)}
		if !strings.HasPrefix(evalSrc, "builtin:") {
			eo = append(eo, dataset.WithHeader(true))
		}
		if o.Eval, _, err = loadDataset(ctx, env, "eval_data", evalSrc, eo...); err != nil {
			return nil, err
		}
	}

	rep, stats, err := validate.Validate(d, o)
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("validate %s: %w", src, err))
	}
	out := &ValidateDataOutputs{
		Passed:            rep.Passed,
		Warnings:          rep.Warnings,
		ImbalanceRatio:    stepio.Float(rep.Imbalance.Ratio),
		ImbalanceSeverity: rep.Imbalance.Severity,
	}
	type fullReport struct {
		*validate.Report
		Data   string           `json:"data"`
		Remedy *validate.Effect `json:"remedy_effect,omitempty"`
	}
	full := fullReport{Report: rep, Data: src}
	if rep.Passed && remedy != "" {
		if err := applyRemedy(ctx, env, d, o.Eval, negative, remedy, o.Seed, out, &full.Remedy); err != nil {
			return nil, err
		}
	}
	if out.Stats, err = publishJSON(ctx, env, "stats.json", stats); err != nil {
		return nil, err
	}
	if out.Report, err = publishJSON(ctx, env, "report.json", full); err != nil {
		return nil, err
	}
	if !rep.Passed {
		return nil, Permanent(kindValidationFailed, fmt.Errorf("validate-data %s: %d checks failed: %s (report %s)",
			src, rep.Failures, strings.Join(rep.Failed(), " "), out.Report))
	}
	return out, nil
}

// applyRemedy rebalances d, writes it as CSV for the train step and, given
// evaluation data, measures what the remedy changes.
func applyRemedy(ctx context.Context, env Env, d, eval *dataset.Dataset, negative, remedy string, seed uint64, out *ValidateDataOutputs, effect **validate.Effect) error {
	b, err := validate.Rebalance(d, remedy, seed)
	if err != nil {
		return Permanent(kindBadInput, fmt.Errorf("with.imbalance_remedy %s: %w", remedy, err))
	}
	if remedy == validate.ClassWeight {
		out.ClassWeight = "balanced"
	} else {
		body, err := holdoutCSV(b, negative)
		if err != nil {
			return err
		}
		rebalanced := filepath.Join(env.Dir(), "rebalanced.csv")
		if err := writeFileAtomic(rebalanced, body); err != nil {
			return err
		}
		if out.Data, err = publish(ctx, env, "store rebalanced.csv", rebalanced); err != nil {
			return err
		}
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
		out.RemedyEffect = &RemedyEffect{Remedy: remedy, Before: stepio.Floats(e.Before), After: stepio.Floats(e.After), Delta: stepio.Floats(e.Delta)}
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

package steps

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/fairness"
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
)

// FairnessFile is the report fairness-gate writes into its step directory.
const FairnessFile = "fairness.json"

// MitigateThresholdOptimizer is the only mitigation fairness-gate knows.
const MitigateThresholdOptimizer = "threshold-optimizer"

func init() {
	Register(Define(Type{
		Name: "fairness-gate",
		Doc: "Measures group fairness of a model's decisions (or of a predictions CSV) per sensitive feature and gates " +
			"them on limits. With mitigate: threshold-optimizer, a failed gate fits per-group decision thresholds and " +
			"publishes a new model that applies them (in the model's own format, the policy recorded in its manifest's lineage), then gates again. Publishes " + FairnessFile + " to the artifact store.",
		Kind: Activity,
	}, gateInputs{MinGroupSize: fairness.DefaultOptions().MinGroupSize, Mitigate: "none", Constraint: string(fairness.DemographicParity), Seed: 1}, runFairnessGate))
}

type gateInputs struct {
	Model        ArtifactRef        `json:"model" doc:"the model: an artifact pointer (a model step's output) or a model directory on the worker (or give predictions)"`
	Data         string             `json:"data" doc:"the data: a path, file://, s3:// or https:// URL, an artifact pointer, or a builtin: URI (default: the model's held-out split)"`
	Predictions  string             `json:"predictions" doc:"CSV with y_true, y_pred, optional y_score and the sensitive columns, instead of model: a path, URL or artifact pointer"`
	Sensitive    []string           `json:"sensitive" required:"true" doc:"sensitive columns (list or comma-separated)"`
	Max          map[string]float64 `json:"max" doc:"upper limits, e.g. {demographic_parity_difference: 0.1}"`
	Min          map[string]float64 `json:"min" doc:"lower limits, e.g. {demographic_parity_ratio: 0.8}"`
	MinGroupSize int                `json:"min_group_size" doc:"groups with fewer rows are flagged and left out of the aggregates (default 30)"`
	Mitigate     string             `json:"mitigate" doc:"threshold-optimizer to fit per-group thresholds when the gate fails"`
	Constraint   string             `json:"constraint" doc:"demographic_parity (default) or equalized_odds"`
	Tolerance    float64            `json:"tolerance" doc:"largest between-groups gap the thresholds aim for (default 0.02)"`
	Seed         int                `json:"seed" doc:"seed of the fit/report split of the mitigation data (default 1)"`
}

// FairnessGateOutputs are the outputs of a fairness-gate step; report reads
// them through this type. Rates a group cannot have (the TPR of a group
// without positives) are undefined, null in JSON.
type FairnessGateOutputs struct {
	Passed         bool                       `json:"passed" required:"true" doc:"every limit held (after mitigation, when it mitigated)"`
	Mitigated      bool                       `json:"mitigated" doc:"the gate failed and a model with per-group thresholds was written"`
	Model          string                     `json:"model" doc:"the model to use from here, an artifact pointer: the mitigated one when it mitigated"`
	Before         map[string]FeatureFairness `json:"before" doc:"by sensitive feature, before mitigation"`
	After          map[string]FeatureFairness `json:"after" doc:"by sensitive feature, after mitigation (as before when none)"`
	AccuracyBefore stepio.Float               `json:"accuracy_before" doc:"accuracy of the decisions before mitigation"`
	AccuracyAfter  stepio.Float               `json:"accuracy_after" doc:"accuracy of the decisions after mitigation"`
	Report         string                     `json:"report" doc:"fairness.json: an artifact pointer"`
	ByFeature      map[string]FeatureFairness `json:"by_feature" doc:"the final numbers by feature, e.g. by_feature.sex.groups.female.selection_rate"`
	Violations     []string                   `json:"violations" doc:"the limits still violated"`
	Provider       string                     `json:"provider,omitempty" doc:"what scored the model: go for Gauntlet's own format, the ONNX Runtime execution provider for an ONNX model (empty with predictions)"`
}

// FeatureFairness are the gaps between the groups of one sensitive feature
// (or an intersection of them) and each group's rates.
type FeatureFairness struct {
	DemographicParityDifference stepio.Float          `json:"demographic_parity_difference"`
	DemographicParityRatio      stepio.Float          `json:"demographic_parity_ratio"`
	EqualizedOddsDifference     stepio.Float          `json:"equalized_odds_difference"`
	EqualOpportunityDifference  stepio.Float          `json:"equal_opportunity_difference"`
	Groups                      map[string]GroupRates `json:"groups"`
}

// GroupRates are one group's rates.
type GroupRates struct {
	Count         int          `json:"count"`
	SelectionRate stepio.Float `json:"selection_rate"`
	TPR           stepio.Float `json:"tpr"`
	FPR           stepio.Float `json:"fpr"`
	Accuracy      stepio.Float `json:"accuracy"`
	Small         bool         `json:"small"`
}

type gateArgs struct {
	model             ArtifactRef
	data, predictions string
	sensitive         []string
	limits            fairness.Limits
	opts              fairness.Options
	mitigate          bool
	thresholds        fairness.ThresholdOptions
	seed              uint64
}

func parseGate(in gateInputs) (*gateArgs, error) {
	a := &gateArgs{opts: fairness.DefaultOptions(), model: in.Model, data: in.Data, predictions: in.Predictions,
		sensitive: slices.Sorted(slices.Values(in.Sensitive)), limits: fairness.Limits{Max: in.Max, Min: in.Min}}
	switch {
	case a.model.IsZero() && a.predictions == "":
		return nil, badInput("model", "give model (with optional data) or predictions")
	case !a.model.IsZero() && a.predictions != "":
		return nil, badInput("predictions", "give model or predictions, not both")
	case a.predictions != "" && a.data != "":
		return nil, badInput("data", "applies to model; predictions already hold the rows")
	}
	if len(a.limits.Max) == 0 && len(a.limits.Min) == 0 {
		return nil, badInput("max", "no limits: give max and/or min, e.g. max: {demographic_parity_difference: 0.1}")
	}
	if in.MinGroupSize < 0 {
		return nil, badInput("min_group_size", "must not be negative")
	}
	a.opts.MinGroupSize = in.MinGroupSize
	switch in.Mitigate {
	case MitigateThresholdOptimizer:
		a.mitigate = true
	case "none", "false":
	default:
		return nil, badInput("mitigate", "unknown mitigation %q (known: %s)", in.Mitigate, MitigateThresholdOptimizer)
	}
	if a.mitigate && a.model.IsZero() {
		return nil, badInput("mitigate", "needs with.model: a mitigated model cannot be written from predictions")
	}
	switch c := fairness.Constraint(in.Constraint); c {
	case fairness.DemographicParity, fairness.EqualizedOdds:
		a.thresholds.Constraint = c
	default:
		return nil, badInput("constraint", "unknown constraint %q (known: %s, %s)", in.Constraint, fairness.DemographicParity, fairness.EqualizedOdds)
	}
	if in.Tolerance < 0 {
		return nil, badInput("tolerance", "must not be negative")
	}
	a.thresholds.Tolerance = in.Tolerance
	if in.Seed < 0 {
		return nil, badInput("seed", "must not be negative")
	}
	a.seed = uint64(in.Seed)
	return a, nil
}

// gated is one fairness evaluation and its verdict.
type gated struct {
	Report  *fairness.Report `json:"report"`
	Verdict fairness.Verdict `json:"verdict"`
}

func gate(a *gateArgs, yTrue, yPred []int, cols map[string][]string) (*gated, error) {
	rep, err := fairness.Evaluate(fairness.Input{YTrue: yTrue, YPred: yPred, Sensitive: cols}, a.opts)
	if err != nil {
		return nil, Permanent(kindBadInput, err)
	}
	v, err := rep.Gate(a.limits)
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("with.max/with.min: %w", err))
	}
	return &gated{Report: rep, Verdict: v}, nil
}

func runFairnessGate(ctx context.Context, env Env, in Input, args gateInputs) (*FairnessGateOutputs, error) {
	a, err := parseGate(args)
	if err != nil {
		return nil, err
	}
	var (
		lm      *loadedModel
		d       *dataset.Dataset
		scores  []float64
		yTrue   []int
		yPred   []int
		cols    map[string][]string
		dataSrc string
	)
	if a.predictions != "" {
		data, err := env.Artifacts().Data(ctx, a.predictions)
		if err != nil {
			return nil, artifactErr("predictions", err)
		}
		dataSrc = data.Source
		if yTrue, yPred, cols, err = readPredictions(data.Path, data.Source, a.sensitive); err != nil {
			return nil, err
		}
	} else {
		if lm, err = loadModel(ctx, env, "model", a.model); err != nil {
			return nil, err
		}
		defer lm.Close()
		if d, dataSrc, err = lm.loadData(ctx, env, "data", a.data); err != nil {
			return nil, err
		}
		dataSrc = d.Source
		if scores, err = lm.scores(d); err != nil {
			return nil, err
		}
		if yPred, err = lm.decide(d, scores); err != nil {
			return nil, err
		}
		yTrue = labels(d)
		if cols, err = groupColumns("sensitive", d, a.sensitive); err != nil {
			return nil, err
		}
	}
	initial, err := gate(a, yTrue, yPred, cols)
	if err != nil {
		return nil, err
	}
	report := map[string]any{"data": dataSrc, "limits": a.limits, "initial": initial}
	out := &FairnessGateOutputs{
		Passed:         initial.Verdict.Passed,
		Before:         featureOutputs(initial.Report),
		After:          featureOutputs(initial.Report),
		ByFeature:      featureOutputs(initial.Report),
		AccuracyBefore: stepio.Float(initial.Report.Accuracy),
		AccuracyAfter:  stepio.Float(initial.Report.Accuracy),
		Violations:     violations(initial.Verdict),
	}
	if lm != nil {
		out.Model, out.Provider = lm.Name, lm.Info().Provider
	}
	final := initial
	if !initial.Verdict.Passed && a.mitigate {
		mit, err := mitigate(ctx, env, in, a, lm, d)
		if err != nil {
			return nil, err
		}
		report["mitigation"] = mit
		final = mit.After
		out.Mitigated = true
		out.Model = mit.Model
		out.Before = featureOutputs(mit.Before.Report)
		out.After = featureOutputs(mit.After.Report)
		out.ByFeature = featureOutputs(mit.After.Report)
		out.AccuracyBefore = stepio.Float(mit.Before.Report.Accuracy)
		out.AccuracyAfter = stepio.Float(mit.After.Report.Accuracy)
		out.Passed = mit.After.Verdict.Passed
		out.Violations = violations(mit.After.Verdict)
	}
	if out.Report, err = publishJSON(ctx, env, FairnessFile, report); err != nil {
		return nil, err
	}
	if !final.Verdict.Passed {
		what := "fairness gate failed"
		if final != initial {
			what = "fairness gate failed even after threshold mitigation"
		}
		return out, Permanent(kindGateFailed, fmt.Errorf("%s: %s", what, strings.Join(violations(final.Verdict), "; ")))
	}
	return out, nil
}

type mitigation struct {
	Method     string                    `json:"method"`
	Features   []string                  `json:"features"`
	FitRows    int                       `json:"fit_rows"`
	ReportRows int                       `json:"report_rows"`
	Policy     *fairness.ThresholdPolicy `json:"policy"`
	Before     *gated                    `json:"before"`
	After      *gated                    `json:"after"`
	Cost       fairness.MitigationCost   `json:"cost"`
	Model      string                    `json:"model"`
	Digest     string                    `json:"model_digest"`
}

// mitigate fits per-group thresholds and writes a model that applies them.
//
// The thresholds are fitted on one half of the gate's data (stratified by
// label) and the before/after numbers are reported on the other half, so the
// "after" gate measures thresholds on rows they were not chosen on. The
// price is that each half is noisier than the whole, and that the model's
// holdout, which later steps default to, contains the fitting half: an
// evaluate of the mitigated model on its holdout is slightly optimistic
// about fairness. Fitting and reporting on the same rows would look better
// and prove less.
func mitigate(ctx context.Context, env Env, in Input, a *gateArgs, lm *loadedModel, d *dataset.Dataset) (*mitigation, error) {
	fit, rep, err := d.Split(0.5, a.seed)
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("mitigate: split %s in halves: %w", d.Source, err))
	}
	fitScores, err := lm.scores(fit)
	if err != nil {
		return nil, err
	}
	fitGroups, err := groupKeys(fit, a.sensitive)
	if err != nil {
		return nil, err
	}
	policy, err := fairness.FitThresholds(fitScores, labels(fit), fitGroups, nil, a.thresholds)
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("mitigate: fit thresholds: %w", err))
	}
	m := &mitigation{Method: MitigateThresholdOptimizer, Features: a.sensitive, FitRows: fit.Len(), ReportRows: rep.Len(), Policy: policy}

	repScores, err := lm.scores(rep)
	if err != nil {
		return nil, err
	}
	before, err := lm.decide(rep, repScores)
	if err != nil {
		return nil, err
	}
	repGroups, err := groupKeys(rep, a.sensitive)
	if err != nil {
		return nil, err
	}
	after, err := policy.Predict(repScores, repGroups)
	if err != nil {
		return nil, err
	}
	cols, err := groupColumns("sensitive", rep, a.sensitive)
	if err != nil {
		return nil, err
	}
	y := labels(rep)
	if m.Before, err = gate(a, y, before, cols); err != nil {
		return nil, err
	}
	if m.After, err = gate(a, y, after, cols); err != nil {
		return nil, err
	}
	if m.Cost, err = fairness.Cost(m.Before.Report, m.After.Report); err != nil {
		return nil, err
	}

	// An earlier attempt published it; the fit is deterministic, so it
	// holds this very policy.
	if saved, ok, err := earlierModel(ctx, env, in); err != nil {
		return nil, fmt.Errorf("mitigate: %w", err)
	} else if ok {
		defer saved.Close()
		m.Model, m.Digest = saved.Name, saved.digest()
		return m, nil
	}
	// The mitigated model keeps its parent's format and weights; only its
	// lineage (the policy, tamper-evident there) and metrics change.
	info := lm.Info()
	lineage := info.Lineage
	lineage.Params = derivedParams(info.Lineage.Params)
	lineage.Params[paramPolicy] = thresholdPolicy{Features: a.sensitive, Policy: policy}
	lineage.ParentModel = lm.digest()
	lineage.CreatedAt = time.Now().UTC()
	// Decision metrics of the parent no longer describe this model; the
	// score-based ones still do, since the scores are unchanged.
	metrics := map[string]float64{}
	for k, v := range info.Metrics {
		switch k {
		case evaluate.Accuracy, evaluate.Precision, evaluate.Recall, evaluate.F1:
		default:
			metrics[k] = v
		}
	}
	saved, _, done, err := publishModel(ctx, env, in, func(dir string) error {
		return saveDerived(dir, lm, lm.Model, metrics, lineage)
	})
	defer done()
	if err != nil {
		return nil, fmt.Errorf("mitigate: %w", err)
	}
	m.Model, m.Digest = saved.Name, saved.digest()
	env.Logger().Info("fairness-gate: published mitigated model", "model", m.Model, "parent", lm.Name)
	return m, nil
}

func violations(v fairness.Verdict) []string {
	out := make([]string, len(v.Violations))
	for i, x := range v.Violations {
		out[i] = x.Message
	}
	return out
}

// featureOutputs is the per-feature shape pipelines template on, e.g.
// steps.fair.outputs.by_feature.sex.groups.female.selection_rate.
func featureOutputs(r *fairness.Report) map[string]FeatureFairness {
	out := make(map[string]FeatureFairness, len(r.Features))
	for _, f := range r.Features {
		groups := make(map[string]GroupRates, len(f.Groups))
		for _, g := range f.Groups {
			groups[g.Group] = GroupRates{
				Count:         g.Count,
				SelectionRate: stepio.Float(g.SelectionRate),
				TPR:           stepio.Float(g.TPR),
				FPR:           stepio.Float(g.FPR),
				Accuracy:      stepio.Float(g.Accuracy),
				Small:         g.Small,
			}
		}
		ag := f.Aggregates
		out[f.Feature] = FeatureFairness{
			DemographicParityDifference: stepio.Float(ag.DemographicParityDifference),
			DemographicParityRatio:      stepio.Float(ag.DemographicParityRatio),
			EqualizedOddsDifference:     stepio.Float(ag.EqualizedOddsDifference),
			EqualOpportunityDifference:  stepio.Float(ag.EqualOpportunityDifference),
			Groups:                      groups,
		}
	}
	return out
}

// readPredictions reads a predictions CSV at path, which errors call
// name: y_true and y_pred as 0/1, plus the sensitive columns.
func readPredictions(path, name string, sensitive []string) (yTrue, yPred []int, cols map[string][]string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, dataError("predictions", name, err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.TrimLeadingSpace = true
	header, err := r.Read()
	if err != nil {
		return nil, nil, nil, badInput("predictions", "%s: no header row: %v", name, err)
	}
	index := map[string]int{}
	for i, h := range header {
		index[strings.TrimSpace(h)] = i
	}
	need := append([]string{"y_true", "y_pred"}, sensitive...)
	for _, n := range need {
		if _, ok := index[n]; !ok {
			return nil, nil, nil, badInput("predictions", "%s has no column %q", name, n)
		}
	}
	cols = map[string][]string{}
	for line := 2; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, nil, badInput("predictions", "%s: %v", name, err)
		}
		bin := func(col string) (int, error) {
			v, err := strconv.ParseFloat(strings.TrimSpace(rec[index[col]]), 64)
			if err != nil || (v != 0 && v != 1) {
				return 0, badInput("predictions", "%s line %d: %s is %q, want 0 or 1", name, line, col, rec[index[col]])
			}
			return int(v), nil
		}
		t, err := bin("y_true")
		if err != nil {
			return nil, nil, nil, err
		}
		p, err := bin("y_pred")
		if err != nil {
			return nil, nil, nil, err
		}
		yTrue, yPred = append(yTrue, t), append(yPred, p)
		for _, s := range sensitive {
			cols[s] = append(cols[s], strings.TrimSpace(rec[index[s]]))
		}
	}
	if len(yTrue) == 0 {
		return nil, nil, nil, badInput("predictions", "%s has no rows", name)
	}
	return yTrue, yPred, cols, nil
}

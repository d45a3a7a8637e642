package steps

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
)

// EvaluationFile is the evidence evaluate writes into its step directory.
const EvaluationFile = "evaluation.json"

func init() {
	Register(Define(Type{
		Name: "evaluate",
		Doc: "Scores a model on labelled data (default: its held-out split), optionally against a baseline model or the " +
			"registry's champion, and checks metric thresholds. Publishes " + EvaluationFile + " (metrics, ROC curve, " +
			"calibration, confusion matrix of candidate and baseline) to the artifact store. A failed verdict fails the " +
			"step, permanently, unless fail_on_regression is false.",
		Kind: Activity,
	}, evaluateInputs{FailOnRegression: true}, runEvaluate))
}

// championInputs say which registered model's champion a baseline given
// as "champion" is. The registry lives in the worker's store.
type championInputs struct {
	Registry      string `json:"registry" doc:"no longer used: the registry lives in the artifact store every worker shares (--store); a value naming another store is refused"`
	RegistryModel string `json:"registry_model" doc:"registered model name whose champion is the baseline (default: the pipeline name)"`
}

type evaluateInputs struct {
	Model            ArtifactRef                `json:"model" required:"true" doc:"the model: an artifact pointer (a model step's output) or a model directory on the worker"`
	Data             string                     `json:"data" doc:"the data: a path, file://, s3:// or https:// URL, an artifact pointer, or a builtin: URI (default: the model's held-out split)"`
	Baseline         ArtifactRef                `json:"baseline" doc:"a model (artifact pointer or directory), or champion for the registry's champion"`
	Thresholds       map[string]thresholdInputs `json:"thresholds" doc:"metric → {min, max, min_absolute_change, min_relative_change, max_drop}"`
	FailOnRegression bool                       `json:"fail_on_regression" doc:"fail the step when the verdict fails (default true)"`
	championInputs
}

// thresholdInputs are the bounds of one metric.
type thresholdInputs struct {
	Min               *float64 `json:"min"`
	Max               *float64 `json:"max"`
	MinAbsoluteChange *float64 `json:"min_absolute_change"`
	MinRelativeChange *float64 `json:"min_relative_change"`
	MaxDrop           *float64 `json:"max_drop"`
}

// EvaluateOutputs are the outputs of an evaluate step; report reads them.
type EvaluateOutputs struct {
	Metrics          map[string]stepio.Float `json:"metrics" doc:"the candidate's metrics on the data"`
	BaselineMetrics  map[string]stepio.Float `json:"baseline_metrics,omitempty" doc:"the baseline's metrics on the same rows, when there is a baseline"`
	Passed           bool                    `json:"passed" doc:"every threshold held"`
	Verdict          evaluate.Verdict        `json:"verdict" required:"true" doc:"every check with its value, limit and message"`
	Evaluation       string                  `json:"evaluation" doc:"evaluation.json: an artifact pointer"`
	Provider         string                  `json:"provider" doc:"what scored the candidate: go for Gauntlet's own format, the ONNX Runtime execution provider (CPUExecutionProvider, CUDAExecutionProvider) for an ONNX model"`
	BaselineFormat   string                  `json:"baseline_format,omitempty" doc:"the baseline's model format (gauntlet or onnx), when there is a baseline"`
	BaselineProvider string                  `json:"baseline_provider,omitempty" doc:"what scored the baseline, when there is one"`
}

var knownMetrics = []string{evaluate.Accuracy, evaluate.Precision, evaluate.Recall, evaluate.F1,
	evaluate.ROCAUC, evaluate.PRAUC, evaluate.LogLoss, evaluate.Brier}

// thresholdSets turns the pipeline's threshold syntax into MLflow thresholds.
// evaluate.Compare takes one threshold per metric with one direction, so a
// floor (min), a ceiling (max) and the changes against the baseline are
// checked as three sets: `min` and `max` fix their own direction while the
// changes keep the metric's natural one. `max_drop: d` is a change of at most
// d for the worse, i.e. min_absolute_change: -d.
func thresholdSets(raw map[string]thresholdInputs) ([]map[string]evaluate.Threshold, error) {
	floors, ceilings, changes := map[string]evaluate.Threshold{}, map[string]evaluate.Threshold{}, map[string]evaluate.Threshold{}
	yes, no := true, false
	for _, metric := range stepio.SortedKeys(raw) {
		key := "thresholds." + metric
		if !slices.Contains(knownMetrics, metric) {
			return nil, badInput(key, "unknown metric (known: %s)", strings.Join(knownMetrics, ", "))
		}
		t := raw[metric]
		if t.Min != nil {
			floors[metric] = evaluate.Threshold{Threshold: t.Min, GreaterIsBetter: &yes}
		}
		if t.Max != nil {
			ceilings[metric] = evaluate.Threshold{Threshold: t.Max, GreaterIsBetter: &no}
		}
		ch := evaluate.Threshold{MinAbsoluteChange: t.MinAbsoluteChange, MinRelativeChange: t.MinRelativeChange}
		if t.MaxDrop != nil {
			if *t.MaxDrop < 0 {
				return nil, badInput(key+".max_drop", "must not be negative, got %v", *t.MaxDrop)
			}
			if t.MinAbsoluteChange != nil {
				return nil, badInput(key, "max_drop and min_absolute_change both bound the absolute change: give one")
			}
			d := -*t.MaxDrop
			ch.MinAbsoluteChange = &d
		}
		if ch.MinAbsoluteChange != nil || ch.MinRelativeChange != nil {
			changes[metric] = ch
		}
	}
	return []map[string]evaluate.Threshold{floors, ceilings, changes}, nil
}

// verdict merges the three sets' verdicts into one.
func verdict(candidate, baseline map[string]float64, sets []map[string]evaluate.Threshold, note string) (*evaluate.Verdict, error) {
	out := &evaluate.Verdict{Passed: true, HasBaseline: baseline != nil, Checks: []evaluate.Check{}}
	for _, set := range sets {
		v, err := evaluate.Compare(candidate, baseline, set)
		if err != nil {
			return nil, Permanent(kindBadInput, fmt.Errorf("with.thresholds: %w", err))
		}
		out.Passed = out.Passed && v.Passed
		out.Checks = append(out.Checks, v.Checks...)
		out.Failures = append(out.Failures, v.Failures...)
		if out.Note == "" {
			out.Note = v.Note
		}
	}
	if note != "" {
		out.Note = note
	}
	return out, nil
}

// scored is one model's evidence on one data set.
type scored struct {
	Model       string                  `json:"model"`
	Digest      string                  `json:"model_digest"`
	Format      string                  `json:"format"`
	Provider    string                  `json:"provider"`
	Data        string                  `json:"data"`
	Rows        int                     `json:"rows"`
	Threshold   float64                 `json:"threshold"`
	Policy      any                     `json:"fairness_policy,omitempty"`
	Metrics     map[string]stepio.Float `json:"metrics"`
	Confusion   map[string]any          `json:"confusion"`
	ROC         []rocPoint              `json:"roc"`
	Calibration []any                   `json:"calibration"`
	metrics     map[string]float64
}

type rocPoint struct {
	FPR       float64 `json:"fpr"`
	TPR       float64 `json:"tpr"`
	Threshold any     `json:"threshold"`
}

// scoreCandidate loads with.model and scores it on src, by default its
// held-out split. It returns the source it settled on, so that a baseline
// is scored on the very same rows. The caller closes the model.
func scoreCandidate(ctx context.Context, env Env, model ArtifactRef, src string) (*loadedModel, *dataset.Dataset, *scored, string, error) {
	cand, err := loadModel(ctx, env, "model", model)
	if err != nil {
		return nil, nil, nil, "", err
	}
	d, src, err := cand.loadData(ctx, env, "data", src)
	if err != nil {
		cand.Close()
		return nil, nil, nil, "", err
	}
	cs, err := score(cand, d)
	if err != nil {
		cand.Close()
		return nil, nil, nil, "", err
	}
	return cand, d, cs, src, nil
}

// score evaluates m on d. Threshold-free metrics come from the scores;
// decision metrics come from the model's own decisions, which differ from a
// single threshold when the manifest carries a fairness policy.
func score(m *loadedModel, d *dataset.Dataset) (*scored, error) {
	s, err := m.scores(d)
	if err != nil {
		return nil, err
	}
	info := m.Info()
	rep, err := evaluate.Evaluate(d.Y, s, evaluate.Options{Threshold: info.Threshold})
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("evaluate %s on %s: %w", m.Name, d.Source, err))
	}
	conf := rep.Confusion
	if m.policy != nil {
		pred, err := m.decide(d, s)
		if err != nil {
			return nil, err
		}
		conf = evaluate.Confusion{}
		for i, p := range pred {
			switch {
			case p == 1 && d.Y[i] == 1:
				conf.TP++
			case p == 1:
				conf.FP++
			case d.Y[i] == 1:
				conf.FN++
			default:
				conf.TN++
			}
		}
		rep.Metrics[evaluate.Accuracy] = conf.Accuracy()
		rep.Metrics[evaluate.Precision] = conf.Precision()
		rep.Metrics[evaluate.Recall] = conf.Recall()
		rep.Metrics[evaluate.F1] = conf.F1()
	}
	out := &scored{
		Model: m.Name, Digest: m.digest(), Format: info.Format, Provider: info.Provider, Data: d.Source, Rows: d.Len(), Threshold: info.Threshold,
		Metrics:   stepio.Floats(rep.Metrics),
		Confusion: map[string]any{"tp": conf.TP, "fp": conf.FP, "tn": conf.TN, "fn": conf.FN},
		ROC:       rocCurve(d.Y, s, 200),
		metrics:   rep.Metrics,
	}
	if m.policy != nil {
		out.Policy = m.policy
	}
	for _, b := range rep.Calibration {
		out.Calibration = append(out.Calibration, map[string]any{
			"lo": b.Lo, "hi": b.Hi, "count": b.Count, "mean_predicted": num(b.MeanPredicted), "fraction_true": num(b.FractionTrue),
		})
	}
	return out, nil
}

// rocCurve returns the ROC curve's corners (one per distinct score, from the
// highest down), thinned to about maxPoints for the report's plots; the end
// points (0,0) and (1,1) are always kept.
func rocCurve(y, scores []float64, maxPoints int) []rocPoint {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
	var pos, neg float64
	for _, v := range y {
		if v == 1 {
			pos++
		} else {
			neg++
		}
	}
	pts := []rocPoint{{FPR: 0, TPR: 0, Threshold: nil}}
	var tp, fp float64
	for k, i := range idx {
		if y[i] == 1 {
			tp++
		} else {
			fp++
		}
		if k+1 < len(idx) && scores[idx[k+1]] == scores[i] {
			continue
		}
		pts = append(pts, rocPoint{FPR: fp / neg, TPR: tp / pos, Threshold: scores[i]})
	}
	if len(pts) <= maxPoints {
		return pts
	}
	step := float64(len(pts)-1) / float64(maxPoints-1)
	thin := make([]rocPoint, 0, maxPoints)
	for k := range maxPoints - 1 {
		thin = append(thin, pts[int(float64(k)*step)])
	}
	return append(thin, pts[len(pts)-1])
}

func runEvaluate(ctx context.Context, env Env, in Input, a evaluateInputs) (*EvaluateOutputs, error) {
	sets, err := thresholdSets(a.Thresholds)
	if err != nil {
		return nil, err
	}
	cand, _, cs, src, err := scoreCandidate(ctx, env, a.Model, a.Data)
	if err != nil {
		return nil, err
	}
	defer cand.Close()

	var bs *scored
	note := ""
	baseline := a.Baseline
	if baseline.String() == registry.Champion {
		baseline, note, err = resolveChampion(ctx, env, in, a.championInputs)
		if err != nil {
			return nil, err
		}
	}
	if !baseline.IsZero() {
		if bs, err = scoreBaseline(ctx, env, baseline, src); err != nil {
			return nil, err
		}
	}
	var baseMetrics map[string]float64
	if bs != nil {
		baseMetrics = bs.metrics
	}
	v, err := verdict(cs.metrics, baseMetrics, sets, note)
	if err != nil {
		return nil, err
	}

	report := map[string]any{"candidate": cs, "verdict": v}
	if bs != nil {
		report["baseline"] = bs
	}
	evalPtr, err := publishJSON(ctx, env, EvaluationFile, report)
	if err != nil {
		return nil, err
	}
	out := &EvaluateOutputs{Metrics: cs.Metrics, Passed: v.Passed, Verdict: *v, Evaluation: evalPtr, Provider: cs.Provider}
	if bs != nil {
		out.BaselineMetrics, out.BaselineFormat, out.BaselineProvider = bs.Metrics, bs.Format, bs.Provider
	}
	if !v.Passed && a.FailOnRegression {
		msgs := make([]string, len(v.Failures))
		for i, f := range v.Failures {
			msgs[i] = f.Message
		}
		return out, Permanent(kindGateFailed, fmt.Errorf("evaluate: model %s failed %d check(s): %s", cand.Name, len(v.Failures), strings.Join(msgs, "; ")))
	}
	return out, nil
}

// scoreBaseline loads the baseline and scores it on the candidate's rows.
func scoreBaseline(ctx context.Context, env Env, baseline ArtifactRef, src string) (*scored, error) {
	bm, err := loadModel(ctx, env, "baseline", baseline)
	if err != nil {
		return nil, err
	}
	defer bm.Close()
	bd, _, err := bm.loadData(ctx, env, "data", src)
	if err != nil {
		return nil, fmt.Errorf("baseline %s: %w", bm.Name, err)
	}
	return score(bm, bd)
}

// resolveChampion names the registry's champion of the named model. A
// registry with no such model or no champion yet is the first model's
// case: no baseline, and the note says why.
func resolveChampion(ctx context.Context, env Env, in Input, c championInputs) (ArtifactRef, string, error) {
	store := env.Artifacts().Store()
	if c.Registry != "" {
		given, err := artifact.Open(ctx, c.Registry)
		if err != nil || given.Location() != store.Location() {
			return ArtifactRef{}, "", badInput("registry", "%s is not this worker's store %s: the registry lives in the store every worker shares (--store); drop registry:",
				workspace.Redact(c.Registry), store.Location())
		}
	}
	name := cmp.Or(c.RegistryModel, in.Pipeline)
	if name == "" {
		return ArtifactRef{}, "baseline champion: no registry_model (nor pipeline name) to look up; only absolute thresholds were applied", nil
	}
	if err := registry.ValidateName(name); err != nil {
		return ArtifactRef{}, "", badInput("registry_model", "%v", err)
	}
	mv, err := registry.New(store).Resolve(ctx, name, registry.Champion)
	if errors.Is(err, registry.ErrNotFound) {
		return ArtifactRef{}, fmt.Sprintf("baseline champion: model %q has no champion in the registry at %s; only absolute thresholds were applied", name, store.Location()), nil
	}
	if err != nil {
		return ArtifactRef{}, "", fmt.Errorf("with.baseline: resolve champion of %s: %w", name, err)
	}
	p := artifact.PointerTo(store, artifact.KindTree, mv.Artifact)
	return ArtifactRef{text: p.String(), ptr: p, label: "champion-v" + strconv.Itoa(mv.Version)}, "", nil
}

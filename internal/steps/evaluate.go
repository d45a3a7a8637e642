package steps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
)

// EvaluationFile is the evidence evaluate writes into its step directory.
const EvaluationFile = "evaluation.json"

func init() {
	Register(Type{
		Name: "evaluate",
		Doc: "Scores a model on labelled data (default: its held-out split), optionally against a baseline model or the " +
			"registry's champion, and checks metric thresholds. Writes " + EvaluationFile + " (metrics, ROC curve, " +
			"calibration, confusion matrix of candidate and baseline) into the step directory. A failed verdict fails the " +
			"step, permanently, unless fail_on_regression is false.",
		Kind: Activity,
		Inputs: []InputSpec{
			{Name: "model", Required: true, Doc: "model directory"},
			{Name: "data", Doc: "CSV path or builtin: URI (default: the model's held-out split)"},
			{Name: "baseline", Doc: "model directory, or champion for the registry's champion"},
			{Name: "thresholds", Doc: "metric → {min, max, min_absolute_change, min_relative_change, max_drop}"},
			{Name: "fail_on_regression", Doc: "fail the step when the verdict fails (default true)"},
			{Name: "registry", Doc: "artifact store location of the registry (default <state>/artifacts)"},
			{Name: "registry_model", Doc: "registered model name whose champion is the baseline (default: the pipeline name)"},
		},
		Outputs: []string{"metrics", "baseline_metrics", "passed", "verdict", "evaluation"},
		Run:     runEvaluate,
	})
}

var knownMetrics = []string{evaluate.Accuracy, evaluate.Precision, evaluate.Recall, evaluate.F1,
	evaluate.ROCAUC, evaluate.PRAUC, evaluate.LogLoss, evaluate.Brier}

// thresholdSets turns the pipeline's threshold syntax into MLflow thresholds.
// evaluate.Compare takes one threshold per metric with one direction, so a
// floor (min), a ceiling (max) and the changes against the baseline are
// checked as three sets: `min` and `max` fix their own direction while the
// changes keep the metric's natural one. `max_drop: d` is a change of at most
// d for the worse, i.e. min_absolute_change: -d.
func thresholdSets(raw map[string]any) ([]map[string]evaluate.Threshold, error) {
	floors, ceilings, changes := map[string]evaluate.Threshold{}, map[string]evaluate.Threshold{}, map[string]evaluate.Threshold{}
	yes, no := true, false
	names := make([]string, 0, len(raw))
	for n := range raw {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, metric := range names {
		key := "thresholds." + metric
		if !slices.Contains(knownMetrics, metric) {
			return nil, badInput(key, "unknown metric (known: %s)", strings.Join(knownMetrics, ", "))
		}
		spec, err := asMap(key, raw[metric])
		if err != nil {
			return nil, err
		}
		vals, err := floatMap(key, spec)
		if err != nil {
			return nil, err
		}
		var ch evaluate.Threshold
		for k, v := range vals {
			v := v
			switch k {
			case "min":
				floors[metric] = evaluate.Threshold{Threshold: &v, GreaterIsBetter: &yes}
			case "max":
				ceilings[metric] = evaluate.Threshold{Threshold: &v, GreaterIsBetter: &no}
			case "min_absolute_change":
				ch.MinAbsoluteChange = &v
			case "min_relative_change":
				ch.MinRelativeChange = &v
			case "max_drop":
				if v < 0 {
					return nil, badInput(key+".max_drop", "must not be negative, got %v", v)
				}
				d := -v
				ch.MinAbsoluteChange = &d
			default:
				return nil, badInput(key, "unknown key %q (known: min, max, min_absolute_change, min_relative_change, max_drop)", k)
			}
		}
		if _, a := vals["max_drop"]; a {
			if _, b := vals["min_absolute_change"]; b {
				return nil, badInput(key, "max_drop and min_absolute_change both bound the absolute change: give one")
			}
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
	Model       string         `json:"model"`
	Digest      string         `json:"model_digest"`
	Data        string         `json:"data"`
	Rows        int            `json:"rows"`
	Threshold   float64        `json:"threshold"`
	Policy      any            `json:"fairness_policy,omitempty"`
	Metrics     map[string]any `json:"metrics"`
	Confusion   map[string]any `json:"confusion"`
	ROC         []rocPoint     `json:"roc"`
	Calibration []any          `json:"calibration"`
	metrics     map[string]float64
}

type rocPoint struct {
	FPR       float64 `json:"fpr"`
	TPR       float64 `json:"tpr"`
	Threshold any     `json:"threshold"`
}

// score evaluates m on d. Threshold-free metrics come from the scores;
// decision metrics come from the model's own decisions, which differ from a
// single threshold when the manifest carries a fairness policy.
// scoreCandidate loads the model at with.model and scores it on src, by
// default its held-out split. It returns the source it settled on, so that
// a baseline is scored on the very same rows.
func scoreCandidate(path, src string) (*loadedModel, *dataset.Dataset, *scored, string, error) {
	cand, err := loadModel("model", path)
	if err != nil {
		return nil, nil, nil, "", err
	}
	if src == "" {
		if src, err = cand.holdout(); err != nil {
			return nil, nil, nil, "", err
		}
	}
	d, err := cand.loadData("data", src)
	if err != nil {
		return nil, nil, nil, "", err
	}
	cs, err := score(cand, d)
	if err != nil {
		return nil, nil, nil, "", err
	}
	return cand, d, cs, src, nil
}

func score(m *loadedModel, d *dataset.Dataset) (*scored, error) {
	s, err := m.scores(d)
	if err != nil {
		return nil, err
	}
	rep, err := evaluate.Evaluate(d.Y, s, evaluate.Options{Threshold: m.Manifest.Threshold})
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("evaluate %s on %s: %w", m.Dir, d.Source, err))
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
		Model: m.Dir, Digest: m.Digest, Data: d.Source, Rows: d.Len(), Threshold: m.Manifest.Threshold,
		Metrics:   numMap(rep.Metrics),
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

func runEvaluate(ctx context.Context, env Env, in Input) (map[string]any, error) {
	path, err := requireString(in, "model")
	if err != nil {
		return nil, err
	}
	src, _, err := argString(in, "data")
	if err != nil {
		return nil, err
	}
	baselineRef, _, err := argString(in, "baseline")
	if err != nil {
		return nil, err
	}
	rawThresholds, err := argMap(in, "thresholds")
	if err != nil {
		return nil, err
	}
	sets, err := thresholdSets(rawThresholds)
	if err != nil {
		return nil, err
	}
	failOnRegression, err := boolOr(in, "fail_on_regression", true)
	if err != nil {
		return nil, err
	}

	cand, _, cs, src, err := scoreCandidate(path, src)
	if err != nil {
		return nil, err
	}

	var bs *scored
	note := ""
	baselineDir := baselineRef
	if baselineRef == registry.Champion {
		baselineDir, note, err = resolveChampion(ctx, env, in)
		if err != nil {
			return nil, err
		}
	}
	if baselineDir != "" {
		bm, err := loadModel("baseline", baselineDir)
		if err != nil {
			return nil, err
		}
		bd, err := bm.loadData("data", src)
		if err != nil {
			return nil, fmt.Errorf("baseline %s: %w", baselineDir, err)
		}
		if bs, err = score(bm, bd); err != nil {
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
	evalPath := filepath.Join(env.Dir(), EvaluationFile)
	if err := writeJSON(evalPath, report); err != nil {
		return nil, err
	}
	var vOut map[string]any
	if err := remarshal(v, &vOut); err != nil {
		return nil, fmt.Errorf("evaluate: encode verdict: %w", err)
	}
	out := map[string]any{
		"metrics":    cs.Metrics,
		"passed":     v.Passed,
		"verdict":    vOut,
		"evaluation": evalPath,
	}
	if bs != nil {
		out["baseline_metrics"] = bs.Metrics
	}
	if !v.Passed && failOnRegression {
		msgs := make([]string, len(v.Failures))
		for i, f := range v.Failures {
			msgs[i] = f.Message
		}
		return out, Permanent(kindGateFailed, fmt.Errorf("evaluate: model %s failed %d check(s): %s", cand.Dir, len(v.Failures), strings.Join(msgs, "; ")))
	}
	return out, nil
}

// resolveChampion fetches the registry's champion of the named model into
// the step directory. A registry with no such model or no champion yet is
// the first model's case: no baseline, and the note says why.
func resolveChampion(ctx context.Context, env Env, in Input) (dir, note string, err error) {
	loc, err := stringOr(in, "registry", "file://"+filepath.Join(env.StateDir(), "artifacts"))
	if err != nil {
		return "", "", err
	}
	name, err := stringOr(in, "registry_model", in.Pipeline)
	if err != nil {
		return "", "", err
	}
	if name == "" {
		return "", "baseline champion: no registry_model (nor pipeline name) to look up; only absolute thresholds were applied", nil
	}
	if err := registry.ValidateName(name); err != nil {
		return "", "", badInput("registry_model", "%v", err)
	}
	store, err := artifact.Open(ctx, loc)
	if err != nil {
		return "", "", badInput("registry", "%v", err)
	}
	mv, err := registry.New(store).Resolve(ctx, name, registry.Champion)
	if errors.Is(err, registry.ErrNotFound) {
		return "", fmt.Sprintf("baseline champion: model %q has no champion in the registry at %s; only absolute thresholds were applied", name, loc), nil
	}
	if err != nil {
		return "", "", fmt.Errorf("with.baseline: resolve champion of %s: %w", name, err)
	}
	dir = filepath.Join(env.Dir(), "champion-v"+strconv.Itoa(mv.Version))
	if _, err := os.Stat(dir); err == nil {
		return dir, "", nil
	}
	if err := artifact.FetchTree(ctx, store, mv.Artifact, dir); err != nil {
		return "", "", fmt.Errorf("with.baseline: fetch champion %s v%d: %w", name, mv.Version, err)
	}
	return dir, "", nil
}

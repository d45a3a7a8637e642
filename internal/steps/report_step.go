package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/fairness"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
	"github.com/gauntlet-ml/gauntlet/internal/report"
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
)

// ReportSummaryFile is the step's own record inside the report directory:
// the numbers its outputs carry and the gate outputs it was given. It makes
// the stored tree self-describing for tools that never see the run's
// history, and it keeps what the page has no place for.
const ReportSummaryFile = "summary.json"

func init() {
	Register(Define(Type{
		Name: "report",
		Doc: "Renders the evidence report of a model: an HTML page with PNG plots (ROC, calibration, confusion, rates by " +
			"sensitive group), the metric table against a baseline model or the registry's champion, and the verdicts of " +
			"earlier evaluate and fairness-gate steps. The directory is published to the artifact store as a tree, whose " +
			"pointer is the output report. " +
			"A retry of the same run, step and inputs reuses the report the earlier attempt rendered.",
		Kind: Activity,
	}, reportInputs{}, runReport))
}

type reportInputs struct {
	Model    ArtifactRef `json:"model" required:"true" doc:"the candidate: an artifact pointer (a model step's output) or a model directory on the worker"`
	Data     string      `json:"data" doc:"the data: a path, file://, s3:// or https:// URL, an artifact pointer, or a builtin: URI (default: the candidate's held-out split)"`
	Baseline ArtifactRef `json:"baseline" doc:"a model (artifact pointer or directory), or champion for the registry's champion"`
	championInputs
	Sensitive   []string             `json:"sensitive" doc:"columns to show selection rate, TPR and FPR by group for (list or comma-separated)"`
	Evaluation  *EvaluateOutputs     `json:"evaluation" doc:"outputs of an evaluate step, e.g. ${{ steps.eval.outputs }}: its verdict is shown"`
	Fairness    *FairnessGateOutputs `json:"fairness" doc:"outputs of a fairness-gate step: its verdict and, when it mitigated, the groups before and after"`
	Explanation explanationInput     `json:"explanation" doc:"outputs of an explain step, e.g. ${{ steps.explain.outputs }}, or its explanation.json (an artifact pointer): importance per column (with its spread and the records' attributions when explanation.json can be read) as plots"`
	Validation  *ValidateDataOutputs `json:"validation" doc:"outputs of a validate-data step: its warnings, read from its report, are listed"`
	Title       string               `json:"title" doc:"the candidate's name on the page, whose heading reads \"Evidence: <title>\" (default: the model's digest, shortened)"`
}

// ReportOutputs are the outputs of a report step.
type ReportOutputs struct {
	Report          string                  `json:"report" doc:"the report directory (index.html, the plots, summary.json): an artifact pointer"`
	ReportDigest    string                  `json:"report_digest" doc:"digest of the report directory's tree in the artifact store (the pointer's)"`
	Plots           []string                `json:"plots" doc:"the PNG plots beside the page, by file name"`
	Metrics         map[string]stepio.Float `json:"metrics" doc:"the candidate's metrics on the data"`
	BaselineMetrics map[string]stepio.Float `json:"baseline_metrics" doc:"the baseline's metrics on the same rows; null without a baseline"`
	Deltas          map[string]stepio.Float `json:"deltas" doc:"candidate minus baseline, by metric"`
	Provider        string                  `json:"provider" doc:"what scored the candidate: go for Gauntlet's own format, the ONNX Runtime execution provider for an ONNX model"`
}

type reportArgs struct {
	reportInputs
	sensitive         []string
	validationSection *report.Validation
	// gateSection is the gate's evidence as the page shows it, built while
	// parsing so malformed gate outputs fail before any model is scored.
	gateSection *report.Fairness
}

func newReportArgs(ctx context.Context, env Env, in reportInputs) (*reportArgs, error) {
	a := &reportArgs{reportInputs: in, sensitive: slices.Compact(slices.Sorted(slices.Values(in.Sensitive)))}
	if g := in.Fairness; g != nil {
		if g.Mitigated && (len(g.Before) == 0 || len(g.After) == 0) {
			return nil, badInput("fairness", "says mitigated but lacks before or after")
		}
		var err error
		if a.gateSection, err = gateEvidence(g); err != nil {
			return nil, err
		}
	}
	if in.Validation != nil {
		var err error
		if a.validationSection, err = validationEvidence(ctx, env, in.Validation); err != nil {
			return nil, err
		}
	}
	if err := a.Explanation.load(ctx, env); err != nil {
		return nil, err
	}
	return a, nil
}

// fairnessReport rebuilds a fairness.Report from fairness-gate's per-feature
// outputs, so the page can draw the gate's own numbers. Rows and the overall
// selection rate follow from the group counts, since every row belongs to
// exactly one group of a feature; features are ordered as fairness.Evaluate
// orders them, single features first and their intersection last.
func fairnessReport(features map[string]FeatureFairness, accuracy stepio.Float) *fairness.Report {
	names := make([]string, 0, len(features))
	for n := range features {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		ii, ji := strings.Contains(names[i], fairness.IntersectionSep), strings.Contains(names[j], fairness.IntersectionSep)
		if ii != ji {
			return ji
		}
		return names[i] < names[j]
	})
	r := &fairness.Report{Accuracy: fairness.Value(accuracy), SelectionRate: fairness.Undefined()}
	for k, n := range names {
		f := features[n]
		fr := fairness.FeatureReport{Feature: n, Aggregates: fairness.Aggregates{
			DemographicParityDifference: fairness.Value(f.DemographicParityDifference),
			DemographicParityRatio:      fairness.Value(f.DemographicParityRatio),
			EqualizedOddsDifference:     fairness.Value(f.EqualizedOddsDifference),
			EqualOpportunityDifference:  fairness.Value(f.EqualOpportunityDifference),
			TPRDifference:               fairness.Undefined(),
			FPRDifference:               fairness.Undefined(),
		}}
		groups := make([]string, 0, len(f.Groups))
		for g := range f.Groups {
			groups = append(groups, g)
		}
		slices.Sort(groups)
		rows, selected := 0, 0.0
		for _, name := range groups {
			g := f.Groups[name]
			fr.Groups = append(fr.Groups, fairness.GroupMetrics{
				Group: name, Count: g.Count, Weight: float64(g.Count), Small: g.Small,
				SelectionRate: fairness.Value(g.SelectionRate), TPR: fairness.Value(g.TPR), FPR: fairness.Value(g.FPR),
				FNR: fairness.Undefined(), Precision: fairness.Undefined(), Accuracy: fairness.Value(g.Accuracy),
			})
			if g.Small {
				fr.Excluded = append(fr.Excluded, name)
			}
			rows += g.Count
			selected += float64(g.Count) * float64(g.SelectionRate)
		}
		if k == 0 {
			r.Rows = rows
			if rows > 0 {
				r.SelectionRate = fairness.Value(selected / float64(rows))
			}
		}
		r.Features = append(r.Features, fr)
	}
	return r
}

func gateVerdict(passed bool, messages []string) *fairness.Verdict {
	v := &fairness.Verdict{Passed: passed, Violations: []fairness.Violation{}}
	for _, m := range messages {
		v.Violations = append(v.Violations, fairness.Violation{Message: m})
	}
	return v
}

// gateEvidence turns a fairness-gate step's outputs into the page's fairness
// section: its before/after numbers when it mitigated (both measured on the
// same rows, as the page's cost table requires), else its verdict on its
// by-feature numbers.
func gateEvidence(g *FairnessGateOutputs) (*report.Fairness, error) {
	if !g.Mitigated {
		return &report.Fairness{Report: fairnessReport(g.ByFeature, g.AccuracyBefore), Verdict: gateVerdict(g.Passed, g.Violations)}, nil
	}
	before, after := fairnessReport(g.Before, g.AccuracyBefore), fairnessReport(g.After, g.AccuracyAfter)
	cost, err := fairness.Cost(before, after)
	if err != nil {
		return nil, badInput("fairness", "before and after do not describe the same rows: %v", err)
	}
	// Mitigation only runs when the first gate failed, but fairness-gate's
	// outputs name only the violations left after it; saying so is more
	// honest than a verdict with no reason.
	initial := "The gate failed before mitigation; fairness-gate's outputs name only the limits still violated after it"
	if g.Report != "" {
		initial += " (its full verdict is in " + g.Report + ")"
	}
	return &report.Fairness{
		Report:           before,
		Verdict:          gateVerdict(false, []string{initial + "."}),
		Mitigation:       "per-group decision thresholds (fairness-gate " + MitigateThresholdOptimizer + "), saved as model " + g.Model,
		Mitigated:        after,
		MitigatedVerdict: gateVerdict(g.Passed, g.Violations),
		Cost:             &cost,
	}, nil
}

// reportSummary is written as summary.json and is the single source of the
// step's outputs, so a retry that reuses a rendered report returns the very
// numbers the page shows.
type reportSummary struct {
	Title           string                  `json:"title"`
	Model           string                  `json:"model"`
	ModelDigest     string                  `json:"model_digest"`
	Format          string                  `json:"format"`
	Provider        string                  `json:"provider"`
	Data            string                  `json:"data"`
	Rows            int                     `json:"rows"`
	Baseline        string                  `json:"baseline,omitempty"`
	BaselineDigest  string                  `json:"baseline_digest,omitempty"`
	BaselineNote    string                  `json:"baseline_note,omitempty"`
	Sensitive       []string                `json:"sensitive,omitempty"`
	Metrics         map[string]stepio.Float `json:"metrics"`
	BaselineMetrics map[string]stepio.Float `json:"baseline_metrics"`
	Deltas          map[string]stepio.Float `json:"deltas"`
	Plots           []string                `json:"plots"`
	// ByFeature is the candidate's rates by group on Data, in fairness-gate's
	// output shape; the page shows the gate's numbers instead when it
	// mitigated.
	ByFeature   map[string]FeatureFairness `json:"by_feature,omitempty"`
	Evaluation  *EvaluateOutputs           `json:"evaluation,omitempty"`
	Fairness    *FairnessGateOutputs       `json:"fairness,omitempty"`
	Explanation map[string]any             `json:"explanation,omitempty"`
	Validation  *ValidateDataOutputs       `json:"validation,omitempty"`
}

func runReport(ctx context.Context, env Env, in Input, args reportInputs) (*ReportOutputs, error) {
	a, err := newReportArgs(ctx, env, args)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Join(env.Dir(), "report-"+inputsDigest(in)))
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	sum, err := readSummary(dir)
	if errors.Is(err, os.ErrNotExist) {
		sum, err = renderReport(ctx, env, in, a, dir)
	}
	if err != nil {
		return nil, err
	}
	ptr, err := env.Artifacts().Publish(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("report: store %s: %w", dir, err)
	}
	env.Logger().Info("report: stored", "dir", dir, "report", ptr.String())
	return &ReportOutputs{
		Report:          ptr.String(),
		ReportDigest:    string(ptr.Digest),
		Plots:           sum.Plots,
		Metrics:         sum.Metrics,
		BaselineMetrics: sum.BaselineMetrics,
		Deltas:          sum.Deltas,
		Provider:        sum.Provider,
	}, nil
}

// shortName is a model's name on the page when it has no title: its
// digest, shortened as tools show commits.
func shortName(m *loadedModel) string {
	if m.Label != "" {
		return m.Label
	}
	return "model " + m.Ptr.Digest.Hex()[:12]
}

// readSummary reads the summary of a report an earlier attempt renamed into
// place; the rename makes its presence mean the directory is complete.
func readSummary(dir string) (*reportSummary, error) {
	b, err := os.ReadFile(filepath.Join(dir, ReportSummaryFile))
	if err != nil {
		return nil, err
	}
	var s reportSummary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("report: earlier attempt's %s: %w", ReportSummaryFile, err)
	}
	return &s, nil
}

// renderReport scores the models, renders the page and the summary into a
// staging directory and renames it to dir, so dir never holds a page
// without its summary.
func renderReport(ctx context.Context, env Env, in Input, a *reportArgs, dir string) (*reportSummary, error) {
	cand, d, cs, src, err := scoreCandidate(ctx, env, a.Model, a.Data)
	if err != nil {
		return nil, err
	}
	defer cand.Close()
	sum := &reportSummary{
		Title: a.Title, Model: cand.Name, ModelDigest: cand.digest(), Format: cs.Format, Provider: cs.Provider, Data: src, Rows: d.Len(), Sensitive: a.sensitive,
		Metrics: cs.Metrics, Deltas: map[string]stepio.Float{}, Evaluation: a.Evaluation, Fairness: a.Fairness,
		Explanation: a.Explanation.raw, Validation: a.Validation,
	}
	name := a.Title
	if name == "" {
		name = shortName(cand)
	}
	candidate, err := reportModel(name, cs)
	if err != nil {
		return nil, err
	}
	ev := report.Evidence{
		RunID: in.RunID, Pipeline: in.Pipeline, Created: time.Now().UTC(),
		Candidate: candidate, Explanation: a.Explanation.section, Validation: a.validationSection,
	}
	if a.Evaluation != nil {
		ev.Verdict = &a.Evaluation.Verdict
	}
	if ev.Privacy, err = privacyRecord(cand); err != nil {
		return nil, err
	}
	if a.Explanation.note != "" {
		ev.Notes = append(ev.Notes, a.Explanation.note)
	}
	if note := explanationMismatch(a.Explanation.model, cand.Name); note != "" {
		ev.Notes = append(ev.Notes, note)
	}

	baseline := a.Baseline
	if baseline.String() == registry.Champion {
		if baseline, sum.BaselineNote, err = resolveChampion(ctx, env, in, a.championInputs); err != nil {
			return nil, err
		}
		if sum.BaselineNote != "" {
			ev.Notes = append(ev.Notes, sum.BaselineNote)
		}
	}
	if !baseline.IsZero() {
		bm, err := loadModel(ctx, env, "baseline", baseline)
		if err != nil {
			return nil, err
		}
		defer bm.Close()
		bd, _, err := bm.loadData(ctx, env, "data", src)
		if err != nil {
			return nil, fmt.Errorf("baseline %s: %w", bm.Name, err)
		}
		bs, err := score(bm, bd)
		if err != nil {
			return nil, err
		}
		champ, err := reportModel(shortName(bm), bs)
		if err != nil {
			return nil, err
		}
		ev.Champion = &champ
		sum.Baseline, sum.BaselineDigest, sum.BaselineMetrics = bm.Name, bm.digest(), bs.Metrics
		for k, c := range cs.metrics {
			if b, ok := bs.metrics[k]; ok {
				sum.Deltas[k] = stepio.Float(c - b)
			}
		}
	}

	if a.Evaluation != nil {
		if note := evaluationMismatch(a.Evaluation.Metrics, cs.metrics); note != "" {
			ev.Notes = append(ev.Notes, note)
		}
	}
	if len(a.sensitive) > 0 {
		own, err := groupFairness(cand, d, a.sensitive)
		if err != nil {
			return nil, err
		}
		sum.ByFeature = featureOutputs(own)
		ev.Fairness = &report.Fairness{Report: own}
	}
	if a.Fairness != nil {
		switch {
		case a.Fairness.Mitigated || ev.Fairness == nil:
			if ev.Fairness != nil {
				ev.Notes = append(ev.Notes, "The fairness section shows the fairness gate's groups before and after mitigation; "+
					"the candidate's rates by group on "+src+" are in "+ReportSummaryFile+".")
			}
			ev.Fairness = a.gateSection
		default:
			ev.Fairness.Verdict = gateVerdict(a.Fairness.Passed, a.Fairness.Violations)
			ev.Notes = append(ev.Notes, "The fairness verdict is the fairness gate's, on its own rows; the rates by group are the candidate's on "+src+".")
		}
	}
	return writeReport(dir, ev, sum)
}

// writeReport renders ev with the summary beside it in a staging directory
// and renames the whole into dir. A concurrent attempt that got there first
// wins: its report is returned, since a page once visible is never replaced.
func writeReport(dir string, ev report.Evidence, sum *reportSummary) (*reportSummary, error) {
	// The host may hand over a step directory it has not created yet.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	stage, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".stage-")
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	defer os.RemoveAll(stage)
	tmp := filepath.Join(stage, "report")
	res, err := report.Render(tmp, ev)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", dir, err)
	}
	sum.Plots = []string{}
	for _, f := range res.Files {
		if strings.HasSuffix(f.Name, ".png") {
			sum.Plots = append(sum.Plots, f.Name)
		}
	}
	summaryPath := filepath.Join(tmp, ReportSummaryFile)
	if err := writeJSON(summaryPath, sum); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	// writeJSON's temporary file is private; the report is meant to be read
	// like the files Render wrote beside it.
	if err := os.Chmod(summaryPath, 0o644); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if earlier, rerr := readSummary(dir); rerr == nil {
			return earlier, nil
		}
		return nil, fmt.Errorf("report: move into place: %w", err)
	}
	// Round-trip through JSON so a first attempt returns exactly what a
	// retry reading summary.json would.
	return readSummary(dir)
}

// reportModel converts evaluate's evidence of one model into the report's.
// score keeps confusion and calibration in their JSON shapes (the shapes
// evaluation.json has), so they are read back through JSON; undefined
// calibration values, null there, return as NaN.
func reportModel(name string, s *scored) (report.Model, error) {
	var conf struct {
		TP float64 `json:"tp"`
		FP float64 `json:"fp"`
		TN float64 `json:"tn"`
		FN float64 `json:"fn"`
	}
	var bins []struct {
		Lo            float64      `json:"lo"`
		Hi            float64      `json:"hi"`
		Count         float64      `json:"count"`
		MeanPredicted stepio.Float `json:"mean_predicted"`
		FractionTrue  stepio.Float `json:"fraction_true"`
	}
	if err := remarshal(s.Confusion, &conf); err != nil {
		return report.Model{}, fmt.Errorf("report: confusion of %s: %w", s.Model, err)
	}
	if err := remarshal(s.Calibration, &bins); err != nil {
		return report.Model{}, fmt.Errorf("report: calibration of %s: %w", s.Model, err)
	}
	rep := &evaluate.Report{
		N: s.Rows, Threshold: s.Threshold, Metrics: s.metrics,
		Confusion: evaluate.Confusion{TP: conf.TP, FP: conf.FP, TN: conf.TN, FN: conf.FN},
	}
	for _, b := range bins {
		rep.Calibration = append(rep.Calibration, evaluate.Bin{
			Lo: b.Lo, Hi: b.Hi, Count: b.Count,
			MeanPredicted: float64(b.MeanPredicted), FractionTrue: float64(b.FractionTrue),
		})
	}
	curve := report.Curve{FPR: make([]float64, len(s.ROC)), TPR: make([]float64, len(s.ROC))}
	for i, p := range s.ROC {
		curve.FPR[i], curve.TPR[i] = p.FPR, p.TPR
	}
	return report.NewModel(name, "", s.Digest, rep, curve), nil
}

// groupFairness measures the candidate's own decisions (its fairness policy
// included) by sensitive group.
func groupFairness(m *loadedModel, d *dataset.Dataset, sensitive []string) (*fairness.Report, error) {
	cols, err := groupColumns("sensitive", d, sensitive)
	if err != nil {
		return nil, err
	}
	s, err := m.scores(d)
	if err != nil {
		return nil, err
	}
	pred, err := m.decide(d, s)
	if err != nil {
		return nil, err
	}
	r, err := fairness.Evaluate(fairness.Input{YTrue: labels(d), YPred: pred, Sensitive: cols}, fairness.DefaultOptions())
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("with.sensitive: %w", err))
	}
	return r, nil
}

// evaluationMismatch says when the evaluate step's verdict was reached on
// numbers other than the page's, which happens when it scored another model
// or other rows; a reviewer would otherwise read the two as one measurement.
func evaluationMismatch(theirs map[string]stepio.Float, metrics map[string]float64) string {
	for _, k := range stepio.SortedKeys(theirs) {
		t := theirs[k]
		mine, have := metrics[k]
		if !t.Defined() || !have || math.Abs(float64(t)-mine) <= 1e-9 {
			continue
		}
		return fmt.Sprintf("The evaluation verdict was reached on other numbers than this page's (%s %.4f there, %.4f here): "+
			"the evaluate step scored another model or other rows.", k, float64(t), mine)
	}
	return ""
}

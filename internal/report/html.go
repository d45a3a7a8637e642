package report

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dp"
	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/fairness"
)

// NoChampion is what the report says when there is nothing to compare with.
const NoChampion = "First model: no champion to compare against."

//go:embed index.html.tmpl
var indexSource string

var indexTemplate = template.Must(template.New(IndexFile).Parse(indexSource))

// metricOrder lists evaluate's metrics in the order a reviewer reads them;
// any other metric follows in name order.
var metricOrder = []string{
	evaluate.ROCAUC, evaluate.PRAUC, evaluate.Accuracy, evaluate.Precision,
	evaluate.Recall, evaluate.F1, evaluate.LogLoss, evaluate.Brier,
}

// lowerIsBetter holds the known metrics where a decrease is an improvement;
// every other known metric in metricOrder is higher-is-better.
var lowerIsBetter = map[string]bool{evaluate.LogLoss: true, evaluate.Brier: true}

// Delta classes in the metric table.
const (
	better  = "better"
	worse   = "worse"
	neutral = "neutral"
)

type pageData struct {
	Title       string
	RunID       string
	Pipeline    string
	Created     string
	Candidate   modelView
	Champion    *modelView
	NoChampion  string
	Gate        gateView
	Metrics     []metricRow
	Images      []imageView
	Fairness    *fairnessView
	Explanation *explanationView
	Validation  *validationView
	Privacy     *privacyView
	Notes       []string
}

type privacyView struct {
	// Warning is set when the guarantee does not hold: the page shows it
	// at the top, beside the verdicts, not only in the privacy section.
	Warning string
	Rows    [][2]string
}

type explanationView struct {
	Measure      string
	Importance   []importanceRow
	HasSpread    bool
	Coefficients []contributionRow
	Records      []recordView
	// Image and RecordImage are empty when there is nothing to draw.
	Image, RecordImage string
}

type importanceRow struct {
	Feature, Mean, Std string
}

type contributionRow struct {
	Feature, Value string
}

type recordView struct {
	Row, Method, Base string
	Attributions      []contributionRow
}

type validationView struct {
	Summary  string
	Passed   bool
	Warnings []string
	Report   string
}

type modelView struct {
	Name, Digest, N, Threshold string
	Confusion                  [4]string // TN, FP, FN, TP
}

type gateView struct {
	Ran     bool
	Passed  bool
	Note    string
	Checks  []sentence
	Summary string
}

type sentence struct {
	Passed bool
	Text   string
}

type metricRow struct {
	Name, Direction           string
	Candidate, Champion       string
	Delta, DeltaClass, DeltaT string
}

type imageView struct {
	File, Alt, Caption string
}

type fairnessView struct {
	Summary          string
	Passed           bool
	Violations       []string
	Mitigation       string
	MitigatedSummary string
	MitigatedPassed  bool
	MitigatedLines   []string
	Cost             []costRow
	Features         []featureView
}

type costRow struct {
	Name, Before, After, Delta string
}

type featureView struct {
	Name     string
	Image    string
	HasAfter bool
	Groups   []groupRow
	Excluded string
}

type groupRow struct {
	Group, Count  string
	Small         bool
	Before, After [3]string // selection rate, TPR, FPR
}

func page(ev *Evidence) ([]byte, error) {
	d := pageData{
		Title:     "Evidence: " + modelName(&ev.Candidate),
		RunID:     ev.RunID,
		Pipeline:  ev.Pipeline,
		Candidate: viewModel(&ev.Candidate),
		Metrics:   metricRows(ev),
		Gate:      gate(ev.Verdict),
		Notes:     ev.Notes,
	}
	if !ev.Created.IsZero() {
		d.Created = ev.Created.UTC().Format(time.RFC3339)
	}
	if ev.Champion != nil {
		v := viewModel(ev.Champion)
		d.Champion = &v
	} else {
		d.NoChampion = NoChampion
	}
	d.Images = []imageView{
		{ROCFile, "ROC curves", "ROC curve of the candidate" + vsChampion(ev) + "; the dashed diagonal is a random classifier."},
		{CalibrationFile, "Reliability diagrams", "Calibration of the candidate" + vsChampion(ev) + ": points on the diagonal are perfectly calibrated."},
		{ConfusionFile, "Confusion matrices", "Confusion matrix of the candidate" + vsChampion(ev) + " at each model's decision threshold."},
	}
	if ev.Fairness != nil {
		d.Fairness = fairnessSection(ev.Fairness)
	}
	if ev.Explanation != nil {
		d.Explanation = explanationSection(ev.Explanation)
	}
	if ev.Validation != nil {
		d.Validation = validationSection(ev.Validation)
	}
	if ev.Privacy != nil {
		d.Privacy = privacySection(ev.Privacy)
	}
	var buf bytes.Buffer
	if err := indexTemplate.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("render %s: %w", IndexFile, err)
	}
	return buf.Bytes(), nil
}

// InsecureDPWarning opens the warning of a report whose candidate was
// trained with seeded DP noise.
const InsecureDPWarning = "NOT PRIVATE: trained with insecure_reproducible: true."

func privacySection(g *dp.Guarantee) *privacyView {
	v := &privacyView{Rows: [][2]string{
		{"ε (epsilon)", formatNum(g.Epsilon, 4)},
		{"δ (delta)", fmt.Sprintf("%g", g.Delta)},
		{"Noise multiplier σ", formatNum(g.NoiseMultiplier, 4)},
		{"Clip norm C", fmt.Sprintf("%g", g.Clip)},
		{"Sampling", fmt.Sprintf("%s, rate %s, %d steps over %d epochs", g.Sampling, formatNum(g.SamplingRate, 4), g.Steps, g.Epochs)},
		{"Accountant", g.Accountant},
		{"Randomness", g.Randomness},
		{"Covers", g.Scope},
	}}
	if g.TargetEpsilon > 0 {
		v.Rows = slices.Insert(v.Rows, 1, [2]string{"Target ε", fmt.Sprintf("%g", g.TargetEpsilon)})
	}
	if g.InsecureReproducible {
		v.Warning = fmt.Sprintf("%s Its DP-SGD noise and batches were drawn from the training seed, so anyone who knows the seed can "+
			"regenerate the noise and remove it from the weights: the (ε = %s, δ = %g) below does NOT hold. Do not ship this "+
			"model as private; retrain without insecure_reproducible.", InsecureDPWarning, formatNum(g.Epsilon, 4), g.Delta)
	}
	return v
}

func vsChampion(ev *Evidence) string {
	if ev.Champion == nil {
		return ""
	}
	return " and the champion"
}

func viewModel(m *Model) modelView {
	c := m.Confusion
	return modelView{
		Name:      modelName(m),
		Digest:    m.Digest,
		N:         fmt.Sprint(m.N),
		Threshold: formatNum(m.Threshold, 4),
		Confusion: [4]string{formatCount(c.TN), formatCount(c.FP), formatCount(c.FN), formatCount(c.TP)},
	}
}

func gate(v *evaluate.Verdict) gateView {
	if v == nil {
		return gateView{Summary: "No evaluation gate was run for this candidate."}
	}
	g := gateView{Ran: true, Passed: v.Passed, Note: v.Note}
	switch {
	case len(v.Checks) == 0:
		g.Summary = "The evaluation gate passed: no thresholds were configured."
	case v.Passed:
		g.Summary = fmt.Sprintf("The evaluation gate passed: all %d checks met their thresholds.", len(v.Checks))
	default:
		g.Summary = fmt.Sprintf("The evaluation gate failed: %d of %d checks missed their thresholds.", len(v.Failures), len(v.Checks))
	}
	for _, c := range v.Checks {
		g.Checks = append(g.Checks, sentence{c.Passed, c.Message})
	}
	return g
}

func metricRows(ev *Evidence) []metricRow {
	names := map[string]bool{}
	for k := range ev.Candidate.Metrics {
		names[k] = true
	}
	if ev.Champion != nil {
		for k := range ev.Champion.Metrics {
			names[k] = true
		}
	}
	var order []string
	for _, k := range metricOrder {
		if names[k] {
			order = append(order, k)
			delete(names, k)
		}
	}
	rest := make([]string, 0, len(names))
	for k := range names {
		rest = append(rest, k)
	}
	slices.Sort(rest)
	order = append(order, rest...)

	rows := make([]metricRow, 0, len(order))
	for _, name := range order {
		cand, haveCand := ev.Candidate.Metrics[name]
		row := metricRow{Name: name, Candidate: "n/a", Champion: "—", Delta: "—", DeltaClass: neutral}
		if haveCand {
			row.Candidate = formatValue(cand)
		}
		known := slices.Contains(metricOrder, name)
		switch {
		case lowerIsBetter[name]:
			row.Direction = "lower is better"
		case known:
			row.Direction = "higher is better"
		}
		if ev.Champion != nil {
			champ, haveChamp := ev.Champion.Metrics[name]
			row.Champion = "n/a"
			if haveChamp {
				row.Champion = formatValue(champ)
			}
			row.Delta, row.DeltaClass, row.DeltaT = delta(name, cand, champ, haveCand && haveChamp, known)
		}
		rows = append(rows, row)
	}
	return rows
}

// delta formats candidate − champion and classifies it as an improvement or
// a regression given the metric's direction.
func delta(name string, cand, champ fairness.Value, both, known bool) (text, class, title string) {
	if !both || !cand.Defined() || !champ.Defined() {
		return "n/a", neutral, "not comparable: a value is missing"
	}
	d := float64(cand) - float64(champ)
	text = fmt.Sprintf("%+.4f", d)
	switch {
	case !known:
		return text, neutral, "direction of improvement unknown"
	case math.Abs(d) < 5e-5:
		return text, neutral, "no change"
	case (d > 0) != lowerIsBetter[name]:
		return text, better, "improvement"
	default:
		return text, worse, "regression"
	}
}

func fairnessSection(f *Fairness) *fairnessView {
	v := &fairnessView{Mitigation: f.Mitigation}
	v.Summary, v.Passed, v.Violations = fairnessVerdict("The fairness gate", f.Verdict)
	if f.Mitigated != nil || f.MitigatedVerdict != nil {
		v.MitigatedSummary, v.MitigatedPassed, v.MitigatedLines = fairnessVerdict("After mitigation, the fairness gate", f.MitigatedVerdict)
	}
	if f.Cost != nil {
		v.Cost = append(v.Cost, costRow{"accuracy", formatValue(f.Cost.AccuracyBefore), formatValue(f.Cost.AccuracyAfter), formatSigned(f.Cost.AccuracyDelta)})
		for _, fc := range f.Cost.Features {
			for _, m := range []string{fairness.DemographicParityDifference, fairness.DemographicParityRatio,
				fairness.EqualizedOddsDifference, fairness.EqualOpportunityDifference} {
				b, _ := fc.Before.Get(m)
				a, _ := fc.After.Get(m)
				v.Cost = append(v.Cost, costRow{fc.Feature + " " + m, formatValue(b), formatValue(a), formatSigned(a - b)})
			}
		}
	}
	files := fairnessFileNames(f.Report.Features)
	for i := range f.Report.Features {
		fr := &f.Report.Features[i]
		var after *fairness.FeatureReport
		if f.Mitigated != nil {
			after, _ = f.Mitigated.Feature(fr.Feature)
		}
		fv := featureView{Name: fr.Feature, Image: files[i], HasAfter: after != nil, Groups: groupRows(fr, after)}
		if len(fr.Excluded) > 0 {
			fv.Excluded = "Left out of the aggregates as too small: " + strings.Join(fr.Excluded, ", ") + "."
		}
		v.Features = append(v.Features, fv)
	}
	return v
}

func explanationSection(e *Explanation) *explanationView {
	v := &explanationView{Measure: e.Measure, Image: ImportanceFile}
	if v.Measure == "" {
		v.Measure = "importance"
	}
	for _, im := range e.Ranked() {
		row := importanceRow{Feature: im.Feature, Mean: formatValue(im.Mean), Std: "—"}
		if im.Std.Defined() {
			row.Std, v.HasSpread = formatValue(im.Std), true
		}
		v.Importance = append(v.Importance, row)
	}
	for _, c := range e.Coefficients {
		v.Coefficients = append(v.Coefficients, contributionRow{c.Feature, fmt.Sprintf("%+.4f", c.Value)})
	}
	for _, r := range e.Records {
		rv := recordView{Row: fmt.Sprint(r.Row), Method: r.Method, Base: formatNum(r.Base, 4)}
		for _, a := range r.Attributions {
			rv.Attributions = append(rv.Attributions, contributionRow{a.Feature, fmt.Sprintf("%+.4f", a.Value)})
		}
		v.Records = append(v.Records, rv)
	}
	if len(e.Records) > 0 {
		v.RecordImage = AttributionFile
	}
	return v
}

func validationSection(val *Validation) *validationView {
	v := &validationView{Passed: val.Passed, Warnings: val.Warnings, Report: val.Report}
	switch {
	case !val.Passed:
		v.Summary = "Data validation failed."
	case len(val.Warnings) == 0:
		v.Summary = "Data validation passed without warnings."
	default:
		v.Summary = fmt.Sprintf("Data validation passed with %d warning(s).", len(val.Warnings))
	}
	return v
}

func fairnessVerdict(subject string, v *fairness.Verdict) (summary string, passed bool, lines []string) {
	switch {
	case v == nil:
		return subject + " was not run.", false, nil
	case v.Passed:
		return subject + " passed: every limited aggregate is within its limit.", true, nil
	}
	for _, x := range v.Violations {
		lines = append(lines, x.Message)
	}
	return fmt.Sprintf("%s failed: %d limit(s) violated.", subject, len(v.Violations)), false, lines
}

// groupRows joins the groups before and after mitigation by name; a group
// seen on one side only shows "—" on the other.
func groupRows(before, after *fairness.FeatureReport) []groupRow {
	rows := make([]groupRow, 0, len(before.Groups))
	index := map[string]int{}
	for _, g := range before.Groups {
		index[g.Group] = len(rows)
		rows = append(rows, groupRow{Group: g.Group, Count: fmt.Sprint(g.Count), Small: g.Small, Before: rates(g), After: missingRates})
	}
	if after == nil {
		return rows
	}
	for _, g := range after.Groups {
		if i, ok := index[g.Group]; ok {
			rows[i].After = rates(g)
			continue
		}
		rows = append(rows, groupRow{Group: g.Group, Count: fmt.Sprint(g.Count), Small: g.Small, Before: missingRates, After: rates(g)})
	}
	return rows
}

var missingRates = [3]string{"—", "—", "—"}

// rates formats selection rate, TPR and FPR.
func rates(g fairness.GroupMetrics) [3]string {
	return [3]string{formatValue(g.SelectionRate), formatValue(g.TPR), formatValue(g.FPR)}
}

// formatValue prints a metric with four decimals, or "n/a" when undefined.
func formatValue(v fairness.Value) string { return formatNum(float64(v), 4) }

func formatNum(v float64, decimals int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.*f", decimals, v)
}

func formatSigned(v fairness.Value) string {
	if !v.Defined() || math.IsInf(float64(v), 0) {
		return "n/a"
	}
	return fmt.Sprintf("%+.4f", float64(v))
}

// formatCount prints a confusion count: whole numbers as integers, weighted
// counts with two decimals.
func formatCount(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%.0f", v)
	}
	return formatNum(v, 2)
}

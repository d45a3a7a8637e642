package report

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/atomicfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/fairness"
)

func TestROCMatchesSklearn(t *testing.T) {
	// sklearn.metrics.roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
	c, err := ROC([]float64{0, 0, 1, 1}, []float64{0.1, 0.4, 0.35, 0.8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Curve{FPR: []float64{0, 0, 0.5, 0.5, 1}, TPR: []float64{0, 0.5, 0.5, 1, 1}}
	if !slices.Equal(c.FPR, want.FPR) || !slices.Equal(c.TPR, want.TPR) {
		t.Fatalf("ROC = %+v, want %+v", c, want)
	}
	// Collinear points are dropped as with drop_intermediate=True:
	// roc_curve([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.9]) keeps 3 points of 5.
	c, err = ROC([]float64{0, 0, 0, 1}, []float64{0.1, 0.2, 0.3, 0.9}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.FPR, []float64{0, 0, 1}) || !slices.Equal(c.TPR, []float64{0, 1, 1}) {
		t.Fatalf("ROC with collinear points = %+v", c)
	}
	for _, bad := range []struct {
		name      string
		y, scores []float64
	}{
		{"one class", []float64{1, 1}, []float64{0.2, 0.3}},
		{"no rows", nil, nil},
		{"bad label", []float64{0, 2}, []float64{0.2, 0.3}},
		{"NaN score", []float64{0, 1}, []float64{math.NaN(), 0.3}},
		{"length mismatch", []float64{0, 1}, []float64{0.3}},
	} {
		if _, err := ROC(bad.y, bad.scores, nil); err == nil {
			t.Errorf("%s: no error", bad.name)
		}
	}
}

// The candidate's AUC from this curve must agree with evaluate's.
func TestROCAgreesWithEvaluate(t *testing.T) {
	f := trainedModels(t)
	c := f.cand.model.ROC
	var area float64
	for i := 1; i < len(c.FPR); i++ {
		area += (c.FPR[i] - c.FPR[i-1]) * (c.TPR[i] + c.TPR[i-1]) / 2
	}
	if want := f.cand.eval.Metrics[evaluate.ROCAUC]; math.Abs(area-want) > 1e-12 {
		t.Fatalf("area under ROC = %v, evaluate says %v", area, want)
	}
}

func TestRenderFullReport(t *testing.T) {
	ev := evidence(t, true, true)
	dir := filepath.Join(t.TempDir(), "report")
	res, err := Render(dir, ev)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"calibration.png", "confusion.png", "fairness_age_group.png", "fairness_age_group_sex.png",
		"fairness_sex.png", "index.html", "report.json", "roc.png"}
	checkFiles(t, dir, res, want)
	for _, name := range want {
		if strings.HasSuffix(name, ".png") {
			checkPNG(t, filepath.Join(dir, name))
		}
	}
	// Two panels: the confusion matrices of both models side by side, and
	// the rates before and after mitigation one above the other.
	if img := decode(t, filepath.Join(dir, "confusion.png")); img.Bounds().Dx() < 2*img.Bounds().Dy() {
		t.Errorf("confusion.png is %v, want two panels side by side", img.Bounds())
	}
	if img := decode(t, filepath.Join(dir, "fairness_sex.png")); img.Bounds().Dy() < img.Bounds().Dx() {
		t.Errorf("fairness_sex.png is %v, want two panels stacked", img.Bounds())
	}

	page := readPage(t, dir)
	f := trainedModels(t)
	for _, name := range []string{evaluate.ROCAUC, evaluate.Accuracy, evaluate.LogLoss, evaluate.Brier} {
		c, ch := f.cand.eval.Metrics[name], f.champ.eval.Metrics[name]
		class := "better"
		if (c > ch) == (name == evaluate.LogLoss || name == evaluate.Brier) {
			class = "worse"
		}
		row := fmt.Sprintf("<td>%.4f</td><td>%.4f</td><td class=\"%s\"", c, ch, class)
		if !strings.Contains(page, row) {
			t.Errorf("metric table lacks %s row %q", name, row)
		}
		if !strings.Contains(page, fmt.Sprintf(">%+.4f</td>", c-ch)) {
			t.Errorf("metric table lacks %s delta %+.4f", name, c-ch)
		}
	}
	if !strings.Contains(page, "log_loss <span class=\"dir\">(lower is better)") {
		t.Error("log_loss is not marked lower-is-better")
	}
	for _, c := range ev.Verdict.Checks {
		if !strings.Contains(page, c.Message) {
			t.Errorf("page lacks verdict sentence %q", c.Message)
		}
	}
	for _, v := range ev.Fairness.Verdict.Violations {
		if !strings.Contains(page, v.Message) {
			t.Errorf("page lacks fairness violation %q", v.Message)
		}
	}
	for _, s := range []string{
		`<img src="roc.png"`, `<img src="fairness_age_group_sex.png"`,
		"Selection rate after", "per-group thresholds on sex", ev.Notes[0],
		fmt.Sprintf("<td>accuracy</td><td>%.4f</td><td>%.4f</td><td>%+.4f</td>",
			float64(ev.Fairness.Cost.AccuracyBefore), float64(ev.Fairness.Cost.AccuracyAfter), float64(ev.Fairness.Cost.AccuracyDelta)),
	} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	if strings.Contains(page, NoChampion) {
		t.Error("page says there is no champion")
	}
	if len(ev.Fairness.Verdict.Violations) == 0 && !strings.Contains(page, "The fairness gate passed") {
		t.Error("page lacks the fairness gate's verdict")
	}

	back, err := ReadEvidence(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(ev)
	b, _ := json.Marshal(back)
	if !bytes.Equal(a, b) {
		t.Error("report.json does not round-trip the evidence")
	}
}

func TestRenderFirstModel(t *testing.T) {
	ev := evidence(t, false, false)
	dir := filepath.Join(t.TempDir(), "report")
	res, err := Render(dir, ev)
	if err != nil {
		t.Fatal(err)
	}
	checkFiles(t, dir, res, []string{"calibration.png", "confusion.png", "fairness_age_group.png",
		"fairness_age_group_sex.png", "fairness_sex.png", "index.html", "report.json", "roc.png"})
	page := readPage(t, dir)
	for _, s := range []string{NoChampion, ev.Verdict.Note, "<dt>Champion</dt><dd>none</dd>"} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	if strings.Contains(page, "Δ (candidate − champion)") || strings.Contains(page, "after mitigation") {
		t.Error("page compares with a champion or a mitigation that does not exist")
	}
	img := decode(t, filepath.Join(dir, "confusion.png"))
	if img.Bounds().Dx() > 2*img.Bounds().Dy() {
		t.Errorf("confusion.png is %v, want a single panel", img.Bounds())
	}
	checkPNG(t, filepath.Join(dir, "confusion.png"))
}

// PNG bytes are compared directly: gonum/plot's raster backend and
// image/png are deterministic for the same drawing commands.
func TestRenderDeterministic(t *testing.T) {
	ev := evidence(t, true, true)
	tmp := t.TempDir()
	a, err := Render(filepath.Join(tmp, "a"), ev)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Render(filepath.Join(tmp, "b"), ev)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Files, b.Files) {
		t.Fatalf("two renders differ:\n%+v\n%+v", a.Files, b.Files)
	}
	for _, f := range a.Files {
		x, _ := os.ReadFile(filepath.Join(tmp, "a", f.Name))
		y, _ := os.ReadFile(filepath.Join(tmp, "b", f.Name))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between renders", f.Name)
		}
	}
}

func TestRenderLeavesNothingOnWriteFailure(t *testing.T) {
	ev := evidence(t, true, true)
	parent := t.TempDir()
	calls := 0
	failing := func(path string, data []byte) error {
		calls++
		if calls == 3 {
			return errors.New("disk full")
		}
		return atomicfile.Create(path, data)
	}
	_, err := render(filepath.Join(parent, "report"), ev, failing)
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v, want the write failure", err)
	}
	assertEmpty(t, parent)
}

func TestRenderReadOnlyParent(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions, so no parent is read-only to it: this runs only as a non-root user")
	}
	parent := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(parent, 0o555); err != nil {
		t.Fatal(err)
	}
	if _, err := Render(filepath.Join(parent, "report"), evidence(t, false, false)); err == nil {
		t.Fatal("rendered into a read-only directory")
	}
	assertEmpty(t, parent)
}

func TestRenderExistingDirectory(t *testing.T) {
	ev := evidence(t, true, false)
	parent := t.TempDir()
	dir := filepath.Join(parent, "report")
	first, err := Render(dir, ev)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Render(dir, ev)
	if err != nil {
		t.Fatalf("re-rendering the same evidence: %v", err)
	}
	if !slices.Equal(first.Files, again.Files) {
		t.Error("re-render returned different files")
	}
	ev.RunID = "run-43"
	if _, err := Render(dir, ev); !errors.Is(err, ErrConflict) {
		t.Fatalf("err = %v, want ErrConflict", err)
	}
	checkFiles(t, dir, first, names(first))
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		t.Errorf("parent holds %d entries, want only the report", len(entries))
	}
}

func TestRenderRejectsUnnamedDirectory(t *testing.T) {
	ev := evidence(t, false, false)
	for _, dir := range []string{"", ".", "/", filepath.Join(t.TempDir(), "..")} {
		if _, err := Render(dir, ev); err == nil {
			t.Errorf("Render(%q) succeeded", dir)
		}
	}
}

func TestRenderRejectsBadCurves(t *testing.T) {
	for name, mutate := range map[string]func(*Evidence){
		"ROC length mismatch":   func(ev *Evidence) { ev.Candidate.ROC.TPR = ev.Candidate.ROC.TPR[1:] },
		"NaN ROC point":         func(ev *Evidence) { ev.Champion.ROC.FPR[1] = math.NaN() },
		"negative confusion":    func(ev *Evidence) { ev.Candidate.Confusion.TP = -1 },
		"calibration above one": func(ev *Evidence) { ev.Candidate.Calibration[2] = evaluate.Bin{Count: 3, FractionTrue: 2} },
		"fairness without report": func(ev *Evidence) {
			ev.Fairness = &Fairness{}
		},
	} {
		t.Run(name, func(t *testing.T) {
			ev := evidence(t, true, false)
			ev.Candidate.ROC = cloneCurve(ev.Candidate.ROC)
			ev.Champion.ROC = cloneCurve(ev.Champion.ROC)
			ev.Candidate.Calibration = slices.Clone(ev.Candidate.Calibration)
			mutate(&ev)
			parent := t.TempDir()
			if _, err := Render(filepath.Join(parent, "report"), ev); err == nil {
				t.Fatal("no error")
			}
			assertEmpty(t, parent)
		})
	}
}

// Undefined metrics and rates, empty groups and an empty evidence all render:
// the reviewer sees "n/a" rather than a failed step.
func TestRenderUndefinedValues(t *testing.T) {
	ev := evidence(t, true, false)
	ev.Candidate.Metrics = map[string]fairness.Value{evaluate.ROCAUC: fairness.Undefined(), evaluate.Accuracy: 0.8, "custom": 1.5}
	ev.Champion.Metrics = map[string]fairness.Value{evaluate.Accuracy: fairness.Undefined()}
	fr := *ev.Fairness.Report
	fr.Features = append(slices.Clone(fr.Features),
		fairness.FeatureReport{Feature: "region"},
		fairness.FeatureReport{Feature: "age group", Groups: []fairness.GroupMetrics{{
			Group: "<30", Count: 3, Small: true, SelectionRate: 0, TPR: fairness.Undefined(), FPR: fairness.Undefined(),
		}}, Aggregates: fairness.Aggregates{DemographicParityDifference: fairness.Undefined()}})
	ev.Fairness.Report = &fr
	ev.Candidate.Name = `<script>alert("x")</script>`

	dir := filepath.Join(t.TempDir(), "report")
	res, err := Render(dir, ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Files {
		if strings.HasSuffix(f.Name, ".png") {
			checkPNG(t, filepath.Join(dir, f.Name))
		}
	}
	if !slices.ContainsFunc(res.Files, func(f File) bool { return f.Name == "fairness_age_group_2.png" }) {
		t.Errorf("colliding feature file names not numbered: %v", names(res))
	}
	raw, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("<script>")) {
		t.Error("model name is not escaped")
	}
	page := html.UnescapeString(string(raw))
	for _, s := range []string{
		"<td>roc_auc <span class=\"dir\">(higher is better)</span></td><td>n/a</td><td>n/a</td><td class=\"neutral\"",
		"<td>accuracy <span class=\"dir\">(higher is better)</span></td><td>0.8000</td><td>n/a</td><td class=\"neutral\" title=\"not comparable: a value is missing\">n/a</td>",
		"<td>custom</td><td>1.5000</td>",
		"<td>&lt;30 (small)</td><td>3</td><td>0.0000</td><td>n/a</td><td>n/a</td>",
	} {
		if !strings.Contains(page, html.UnescapeString(s)) {
			t.Errorf("page lacks %q", s)
		}
	}
	js, err := os.ReadFile(filepath.Join(dir, EvidenceFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(js, []byte(`"roc_auc": null`)) {
		t.Error("report.json does not write an undefined metric as null")
	}

	if _, err := Render(filepath.Join(t.TempDir(), "empty"), Evidence{}); err != nil {
		t.Fatalf("empty evidence: %v", err)
	}
}

func TestFairnessFileNames(t *testing.T) {
	got := fairnessFileNames([]fairness.FeatureReport{{Feature: "sex"}, {Feature: "race&sex"}, {Feature: "race sex"}, {Feature: ""}, {Feature: "../x"}})
	want := []string{"fairness_sex.png", "fairness_race_sex.png", "fairness_race_sex_2.png", "fairness_feature.png", "fairness____x.png"}
	if !slices.Equal(got, want) {
		t.Fatalf("names = %q, want %q", got, want)
	}
}

func cloneCurve(c Curve) Curve { return Curve{FPR: slices.Clone(c.FPR), TPR: slices.Clone(c.TPR)} }

func names(r Result) []string {
	var out []string
	for _, f := range r.Files {
		out = append(out, f.Name)
	}
	return out
}

// checkFiles verifies the directory holds exactly the listed files and that
// Result's digests and sizes describe them.
func checkFiles(t *testing.T, dir string, res Result, want []string) {
	t.Helper()
	if got := names(res); !slices.Equal(got, want) {
		t.Fatalf("Result files = %q, want %q", got, want)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Fatalf("%s holds %d entries, want %d", dir, len(entries), len(want))
	}
	for _, f := range res.Files {
		b, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != f.SHA256 || int64(len(b)) != f.Size {
			t.Errorf("%s: digest or size does not match Result", f.Name)
		}
	}
}

func decode(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// checkPNG requires a plausibly sized image with real content: luminance
// varies and a fair share of pixels is not background white.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	img := decode(t, path)
	b := img.Bounds()
	if b.Dx() < 400 || b.Dy() < 300 || b.Dx() > 5000 || b.Dy() > 2000 {
		t.Errorf("%s: size %dx%d", filepath.Base(path), b.Dx(), b.Dy())
	}
	var sum, sumSq float64
	var inked int
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			l := (0.299*float64(r) + 0.587*float64(g) + 0.114*float64(bl)) / 257
			sum += l
			sumSq += l * l
			if l < 250 {
				inked++
			}
		}
	}
	n := float64(b.Dx() * b.Dy())
	variance := sumSq/n - (sum/n)*(sum/n)
	if variance < 50 || float64(inked)/n < 0.02 {
		t.Errorf("%s looks blank: luminance variance %.1f, %.1f%% inked", filepath.Base(path), variance, 100*float64(inked)/n)
	}
}

// readPage returns index.html as a browser would show its text, so that
// html/template's escaping (it writes + as &#43;) does not matter.
func readPage(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	return html.UnescapeString(string(b))
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left behind: %s", e.Name())
	}
}

func TestRenderExplanationAndValidation(t *testing.T) {
	ev := evidence(t, false, false)
	// Given out of order, with one undefined mean and one feature whose
	// spread is unknown, as the page must cope with both.
	ev.Explanation = &Explanation{
		Measure: "ROC AUC drop",
		Importance: []Importance{
			{Feature: "age", Mean: 0.02, Std: 0.005},
			{Feature: "income", Mean: 0.11, Std: 0.01},
			{Feature: "region", Mean: fairness.Undefined(), Std: fairness.Undefined()},
			{Feature: "debt_ratio", Mean: 0.07, Std: fairness.Undefined()},
		},
		Coefficients: []Contribution{{"income", -1.25}, {"age", 0.5}},
		Records: []Record{
			{Row: 0, Method: "linear", Base: -0.8, Attributions: []Contribution{{"income", -0.9}, {"debt_ratio", 0.4}, {"age", 0.1}}},
			{Row: 1, Method: "linear", Base: -0.8, Attributions: []Contribution{{"debt_ratio", 1.2}}},
		},
	}
	ev.Validation = &Validation{Passed: true, Report: "/runs/validate/report.json", Warnings: []string{
		"Columns income and salary are near duplicates (|r| = 0.995).",
		"Class imbalance is moderate (ratio 4.1).",
	}}
	dir := filepath.Join(t.TempDir(), "report")
	res, err := Render(dir, ev)
	if err != nil {
		t.Fatal(err)
	}
	checkFiles(t, dir, res, []string{"attributions.png", "calibration.png", "confusion.png", "fairness_age_group.png",
		"fairness_age_group_sex.png", "fairness_sex.png", "importance.png", "index.html", "report.json", "roc.png"})
	checkPNG(t, filepath.Join(dir, ImportanceFile))
	checkPNG(t, filepath.Join(dir, AttributionFile))

	page := readPage(t, dir)
	table := page[strings.Index(page, `<table id="importance">`):]
	table = table[:strings.Index(table, "</table>")]
	last := -1
	for _, f := range []string{"income", "debt_ratio", "age", "region"} {
		i := strings.Index(table, "<td>"+f+"</td>")
		if i < last {
			t.Errorf("importance table lists %s out of order:\n%s", f, table)
		}
		last = i
	}
	for _, s := range []string{
		"<td>income</td><td>0.1100</td><td>0.0100</td>", "<td>debt_ratio</td><td>0.0700</td><td>—</td>",
		"<td>region</td><td>n/a</td>", `<img src="importance.png"`, `<img src="attributions.png"`,
		"<td>income</td><td>-1.2500</td>", "Record 1 (linear), base logit -0.8000", "<td>debt_ratio</td><td>+1.2000</td>",
		"Data validation passed with 2 warning(s).", ev.Validation.Warnings[0], ev.Validation.Warnings[1], ev.Validation.Report,
	} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}

	back, err := ReadEvidence(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back.Explanation.Importance[2].Mean.Defined() || len(back.Validation.Warnings) != 2 {
		t.Errorf("report.json does not round-trip the explanation and validation: %+v %+v", back.Explanation, back.Validation)
	}

	// Without records there is no attribution chart and no empty figure.
	ev.Explanation.Records = nil
	ev.Validation = &Validation{Passed: true}
	dir = filepath.Join(t.TempDir(), "report")
	if _, err := Render(dir, ev); err != nil {
		t.Fatal(err)
	}
	page = readPage(t, dir)
	if _, err := os.Stat(filepath.Join(dir, AttributionFile)); !errors.Is(err, os.ErrNotExist) || strings.Contains(page, AttributionFile) {
		t.Errorf("attributions shown without records (stat: %v)", err)
	}
	if !strings.Contains(page, "Data validation passed without warnings.") {
		t.Error("page does not say validation found nothing")
	}
}

func TestRenderRejectsBadExplanation(t *testing.T) {
	for name, e := range map[string]*Explanation{
		"no importance":       {},
		"infinite importance": {Importance: []Importance{{Feature: "a", Mean: fairness.Value(math.Inf(1))}}},
		"negative spread":     {Importance: []Importance{{Feature: "a", Mean: 0.1, Std: -0.1}}},
		"empty record":        {Importance: []Importance{{Feature: "a", Mean: 0.1}}, Records: []Record{{Row: 0}}},
	} {
		t.Run(name, func(t *testing.T) {
			ev := evidence(t, false, false)
			ev.Explanation = e
			dir := filepath.Join(t.TempDir(), "report")
			if _, err := Render(dir, ev); err == nil || !strings.Contains(err.Error(), "explanation") {
				t.Errorf("Render = %v, want an explanation error", err)
			}
		})
	}
}

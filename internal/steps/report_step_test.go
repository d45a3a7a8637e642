package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
	"github.com/gauntlet-ml/gauntlet/internal/report"
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
)

// Small data keeps the report tests fast; the baseline is an MLP that saw
// few rows for one epoch, so the two models' metrics differ visibly.
const (
	reportData     = "builtin:credit-risk?rows=1500&seed=7&bias=0.3"
	reportBaseData = "builtin:credit-risk?rows=300&seed=8&bias=0.3"
)

func trainReportModels(t *testing.T, state string) (cand, base string) {
	t.Helper()
	c := mustRun(t, newEnv(t, state), "train", "cand", map[string]any{
		"data": reportData, "label": "defaulted", "positive_label": "yes"})
	b := mustRun(t, newEnv(t, state), "train", "base", map[string]any{
		"data": reportBaseData, "label": "defaulted", "positive_label": "yes", "model": "mlp", "epochs": 1, "hidden": 2})
	return c["model"].(string), b["model"].(string)
}

// readReportPage returns index.html as a browser shows its text, so that
// html/template's escaping of + and & does not matter.
func readReportPage(t *testing.T, out map[string]any) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fetchOut(t, out["report"]), report.IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	return html.UnescapeString(string(b))
}

var imgSrc = regexp.MustCompile(`<img src="([^"]+)"`)

// checkReportPlots requires the page's images to be exactly the plots
// output, each a file beside index.html that decodes as PNG.
func checkReportPlots(t *testing.T, out map[string]any, page string) []string {
	t.Helper()
	var referenced []string
	for _, m := range imgSrc.FindAllStringSubmatch(page, -1) {
		referenced = append(referenced, m[1])
	}
	slices.Sort(referenced)
	var plots []string
	for _, p := range out["plots"].([]any) {
		plots = append(plots, p.(string))
	}
	if !slices.Equal(referenced, plots) {
		t.Errorf("page shows %q, plots output %q", referenced, plots)
	}
	dir := fetchOut(t, out["report"])
	for _, name := range referenced {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("page references %s: %v", name, err)
			continue
		}
		if _, err := png.Decode(f); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		f.Close()
	}
	return plots
}

func readReportSummary(t *testing.T, out map[string]any) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fetchOut(t, out["report"]), ReportSummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestReportWithBaseline(t *testing.T) {
	state := t.TempDir()
	cand, base := trainReportModels(t, state)
	env := newEnv(t, state)
	with := map[string]any{"model": cand, "baseline": base, "sensitive": "sex, age_group", "title": "credit-risk nightly"}
	out := mustRun(t, env, "report", "report", with)
	page := readReportPage(t, out)

	metrics := out["metrics"].(map[string]any)
	baseMetrics, _ := out["baseline_metrics"].(map[string]any)
	deltas := out["deltas"].(map[string]any)
	if len(metrics) < 8 || len(baseMetrics) != len(metrics) || len(deltas) != len(metrics) {
		t.Fatalf("metrics %v, baseline %v, deltas %v", metrics, baseMetrics, deltas)
	}
	for name, v := range metrics {
		c, b := v.(float64), baseMetrics[name].(float64)
		if d := deltas[name].(float64); d != c-b {
			t.Errorf("delta of %s is %v, want %v − %v", name, d, c, b)
		}
		if row := fmt.Sprintf("<td>%.4f</td><td>%.4f</td><td class=", c, b); !strings.Contains(page, row) {
			t.Errorf("metric table lacks %s row %q", name, row)
		}
		if cell := fmt.Sprintf(">%+.4f</td>", c-b); !strings.Contains(page, cell) {
			t.Errorf("metric table lacks %s delta %q", name, cell)
		}
	}
	for _, s := range []string{"Evidence: credit-risk nightly", "Δ (candidate − champion)", "<h3>sex</h3>", "<h3>age_group&sex</h3>"} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	plots := checkReportPlots(t, out, page)
	for _, p := range []string{report.ROCFile, report.CalibrationFile, report.ConfusionFile,
		"fairness_sex.png", "fairness_age_group.png", "fairness_age_group_sex.png"} {
		if !slices.Contains(plots, p) {
			t.Errorf("plots %q lack %s", plots, p)
		}
	}
	if sum := readReportSummary(t, out); sum["by_feature"].(map[string]any)["sex"] == nil {
		t.Errorf("summary lacks the rates by sex: %v", sum["by_feature"])
	}

	// The stored tree is the directory the step rendered, byte for byte.
	ctx := context.Background()
	store := env.Artifacts().Store()
	if !strings.HasSuffix(out["report"].(string), "/trees/sha256/"+artifact.Digest(out["report_digest"].(string)).Hex()) {
		t.Errorf("report %v and report_digest %v disagree", out["report"], out["report_digest"])
	}
	fetched := fetchOut(t, out["report"])
	rendered, _ := filepath.Glob(filepath.Join(env.Dir(), "report-*"))
	if len(rendered) != 1 {
		t.Fatalf("rendered %v", rendered)
	}
	dir := rendered[0]
	local, remote := dirContents(t, dir), dirContents(t, fetched)
	if !reflect.DeepEqual(local, remote) {
		t.Errorf("fetched tree holds %d files, the report %d, or their bytes differ", len(remote), len(local))
	}

	// A retry returns the report the first attempt rendered, not a second.
	again := mustRun(t, env, "report", "report", with)
	if !reflect.DeepEqual(again, out) {
		t.Errorf("retry outputs differ:\n%v\n%v", again, out)
	}
	entries, _ := os.ReadDir(env.Dir())
	if len(entries) != 1 || entries[0].Name() != filepath.Base(dir) {
		t.Errorf("step directory holds %v, want only the report", entries)
	}

	// The registry's champion, resolved as evaluate resolves it, is the same
	// baseline as its directory.
	basePtr, err := artifact.ParsePointer(base)
	if err != nil {
		t.Fatal(err)
	}
	digest := basePtr.Digest
	reg := registry.New(store)
	mv, err := reg.Register(ctx, registry.RegisterRequest{Model: "credit", Artifact: digest,
		Lineage: registry.Lineage{RunID: "run-0", StepID: "train"}, CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Promote(ctx, "credit", mv.Version, 0, registry.Audit{At: time.Now(), Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	champ := mustRun(t, newEnv(t, state), "report", "report", map[string]any{
		"model": cand, "baseline": "champion", "registry_model": "credit"})
	if !reflect.DeepEqual(champ["baseline_metrics"], out["baseline_metrics"]) || !reflect.DeepEqual(champ["deltas"], out["deltas"]) {
		t.Errorf("champion baseline %v, directory baseline %v", champ["baseline_metrics"], out["baseline_metrics"])
	}
	if page := readReportPage(t, champ); !strings.Contains(page, "champion-v1") {
		t.Error("page does not name the champion")
	}
}

func dirContents(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func TestReportWithoutBaseline(t *testing.T) {
	state := t.TempDir()
	tr := mustRun(t, newEnv(t, state), "train", "train", map[string]any{
		"data": reportData, "label": "defaulted", "positive_label": "yes"})
	for name, with := range map[string]map[string]any{
		"none":                 {"model": tr["model"]},
		"champion of no model": {"model": tr["model"], "baseline": "champion"},
	} {
		t.Run(name, func(t *testing.T) {
			out := mustRun(t, newEnv(t, state), "report", "report", with)
			if out["baseline_metrics"] != nil || len(out["deltas"].(map[string]any)) != 0 || len(out["metrics"].(map[string]any)) == 0 {
				t.Errorf("outputs %v", out)
			}
			page := readReportPage(t, out)
			if !strings.Contains(page, report.NoChampion) || strings.Contains(page, "Δ (candidate − champion)") {
				t.Error("page compares with a baseline that does not exist")
			}
			if with["baseline"] != nil && !strings.Contains(page, "no champion") {
				t.Error("page does not say why there is no baseline")
			}
			plots := checkReportPlots(t, out, page)
			if want := []string{report.CalibrationFile, report.ConfusionFile, report.ROCFile}; !slices.Equal(plots, want) {
				t.Errorf("plots %q, want %q", plots, want)
			}
		})
	}
}

// jsonOutputs gives a step's outputs the shape they have after crossing
// Temporal history, also for a step that failed with outputs.
func jsonOutputs(t *testing.T, out map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestReportShowsGateOutputs(t *testing.T) {
	state := t.TempDir()
	tr := mustRun(t, newEnv(t, state), "train", "train", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes"})
	eval := mustRun(t, newEnv(t, state), "evaluate", "eval", map[string]any{
		"model": tr["model"], "thresholds": map[string]any{"roc_auc": map[string]any{"min": 0.5}}})
	// A tight limit makes the gate mitigate; whether the mitigated model
	// passes does not matter here, only that the page says what happened.
	fg, err := run(t, newEnv(t, state), "fairness-gate", "fair", map[string]any{
		"model": tr["model"], "sensitive": "sex", "max": map[string]any{"demographic_parity_difference": 0.05},
		"mitigate": "threshold-optimizer"})
	if fg == nil {
		t.Fatalf("fairness-gate: %v", err)
	}
	fg = jsonOutputs(t, fg)
	if fg["mitigated"] != true {
		t.Fatalf("fairness gate did not mitigate: %v", fg)
	}
	evalJSON, _ := json.Marshal(eval)

	out := mustRun(t, newEnv(t, state), "report", "report", map[string]any{
		"model": fg["model"], "evaluation": string(evalJSON), "fairness": fg})
	page := readReportPage(t, out)
	for _, c := range eval["verdict"].(map[string]any)["checks"].([]any) {
		if msg := c.(map[string]any)["message"].(string); !strings.Contains(page, msg) {
			t.Errorf("page lacks the evaluation check %q", msg)
		}
	}
	for _, v := range fg["violations"].([]any) {
		if !strings.Contains(page, v.(string)) {
			t.Errorf("page lacks the fairness violation %q", v)
		}
	}
	for _, s := range []string{"The evaluation gate passed", "The gate failed before mitigation", "After mitigation, the fairness gate",
		`id="mitigation-cost"`, "Selection rate after", "saved as model " + fg["model"].(string),
		// evaluate scored the unmitigated model, whose decisions differ.
		"The evaluation verdict was reached on other numbers"} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	if plots := checkReportPlots(t, out, page); !slices.Contains(plots, "fairness_sex.png") {
		t.Errorf("plots %q lack the gate's groups", plots)
	}
	sum := readReportSummary(t, out)
	if sum["fairness"].(map[string]any)["mitigated"] != true || sum["evaluation"].(map[string]any)["verdict"] == nil {
		t.Errorf("summary does not record the gate outputs: %v", sum)
	}

	// A gate that did not mitigate lends its verdict to the candidate's own
	// rates by group.
	loose := mustRun(t, newEnv(t, state), "fairness-gate", "loose", map[string]any{
		"model": tr["model"], "sensitive": "sex", "max": map[string]any{"demographic_parity_difference": 0.9}})
	out = mustRun(t, newEnv(t, state), "report", "report", map[string]any{
		"model": tr["model"], "sensitive": []any{"sex"}, "fairness": loose})
	page = readReportPage(t, out)
	for _, s := range []string{"The fairness gate passed", "The fairness verdict is the fairness gate's", "<h3>sex</h3>"} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	if strings.Contains(page, "after mitigation") {
		t.Error("page shows a mitigation that did not happen")
	}
}

func TestReportBadInputs(t *testing.T) {
	state := t.TempDir()
	check := func(t *testing.T, with map[string]any, key string) {
		t.Helper()
		env := newEnv(t, state)
		_, err := run(t, env, "report", "report", with)
		wantPermanent(t, err, "with."+key)
		if kind, _ := Classify(err); kind != kindBadInput {
			t.Errorf("kind %q, want %s", kind, kindBadInput)
		}
		if entries, _ := os.ReadDir(env.Dir()); len(entries) != 0 {
			t.Errorf("a failed report left %v behind", entries)
		}
	}
	check(t, map[string]any{"model": filepath.Join(state, "no-such-model")}, "model")
	check(t, map[string]any{"baseline": "champion"}, "model")

	tr := mustRun(t, newEnv(t, state), "train", "train", map[string]any{
		"data": reportBaseData, "label": "defaulted", "positive_label": "yes"})
	m := tr["model"]
	for name, c := range map[string]struct {
		with map[string]any
		key  string
	}{
		"missing baseline":        {map[string]any{"model": m, "baseline": filepath.Join(state, "nope")}, "baseline"},
		"unknown column":          {map[string]any{"model": m, "sensitive": "no_such_column"}, "sensitive"},
		"evaluation sans verdict": {map[string]any{"model": m, "evaluation": map[string]any{"passed": true}}, "evaluation"},
		"fairness not JSON":       {map[string]any{"model": m, "fairness": "{passed"}, "fairness"},
		"fairness sans passed":    {map[string]any{"model": m, "fairness": map[string]any{"mitigated": false}}, "fairness"},
		"title not a string":      {map[string]any{"model": m, "title": []any{"a"}}, "title"},
		"data not loadable":       {map[string]any{"model": m, "data": "builtin:nope"}, "data"},
	} {
		t.Run(name, func(t *testing.T) { check(t, c.with, c.key) })
	}
}

// The fairness-gate's before and after must describe the same rows, or the
// cost table would compare unlike things.
func TestReportRejectsMismatchedMitigation(t *testing.T) {
	group := func(n float64) map[string]any {
		return map[string]any{"groups": map[string]any{"f": map[string]any{"count": n, "selection_rate": 0.5}}}
	}
	_, err := parseReportIn(t, t.TempDir(), Input{With: map[string]any{"model": "m", "fairness": map[string]any{
		"passed": true, "mitigated": true,
		"before": map[string]any{"sex": group(10)}, "after": map[string]any{"sex": group(12)}}}})
	wantPermanent(t, err, "with.fairness", "same rows")
}

func TestReportShowsExplanationAndValidation(t *testing.T) {
	state := t.TempDir()
	val := mustRun(t, newEnv(t, state), "validate-data", "validate", map[string]any{
		"data": reportData, "label": "defaulted", "positive_label": "yes", "sensitive": "sex"})
	tr := mustRun(t, newEnv(t, state), "train", "train", map[string]any{
		"data": reportData, "label": "defaulted", "positive_label": "yes"})
	ex := jsonOutputs(t, mustRun(t, newEnv(t, state), "explain", "explain", map[string]any{
		"model": tr["model"], "repeats": 2, "records": 2}))

	out := mustRun(t, newEnv(t, state), "report", "report", map[string]any{
		"model": tr["model"], "explanation": ex, "validation": jsonOutputs(t, val)})
	page := readReportPage(t, out)
	plots := checkReportPlots(t, out, page)
	for _, p := range []string{report.ImportanceFile, report.AttributionFile} {
		if !slices.Contains(plots, p) {
			t.Errorf("plots %q lack %s", plots, p)
		}
	}
	// The page ranks columns as explain did (its top_features), with the
	// spread explanation.json holds.
	table := page[strings.Index(page, `<table id="importance">`):]
	table = table[:strings.Index(table, "</table>")]
	last := -1
	for _, f := range ex["top_features"].([]any) {
		i := strings.Index(table, "<td>"+f.(string)+"</td>")
		if i <= last {
			t.Errorf("importance table lists %s out of explain's order", f)
		}
		last = i
	}
	for _, s := range []string{"<th>Std</th>", `id="coefficients"`, "Record 1 (linear)"} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	b := readOut(t, newEnv(t, state), val["report"])
	var rep struct {
		Checks []struct{ Status, Message string }
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	warned := 0
	for _, c := range rep.Checks {
		if c.Status == "warn" {
			warned++
			if !strings.Contains(page, c.Message) {
				t.Errorf("page lacks the validation warning %q", c.Message)
			}
		}
	}
	if want := fmt.Sprintf("Data validation passed with %d warning(s).", warned); warned > 0 && !strings.Contains(page, want) {
		t.Errorf("page lacks %q", want)
	} else if warned == 0 && !strings.Contains(page, "Data validation passed without warnings.") {
		t.Error("page does not say validation passed")
	}
	sum := readReportSummary(t, out)
	if sum["explanation"] == nil || sum["validation"] == nil {
		t.Errorf("summary does not record the explain and validate-data outputs: %v", sum)
	}

	// The pointer to explanation.json is enough; without explanation.json
	// (a path of another worker, as runs recorded before pointers have) the
	// outputs' means still are, with a note that the rest is missing.
	out = mustRun(t, newEnv(t, state), "report", "report", map[string]any{"model": tr["model"], "explanation": ex["explanation"]})
	if page := readReportPage(t, out); !strings.Contains(page, `id="coefficients"`) || !strings.Contains(page, "<th>Std</th>") {
		t.Error("page built from explanation.json's pointer lacks its details")
	}
	means := map[string]any{"explanation": filepath.Join(state, "gone", "explanation.json"), "importance": ex["importance"]}
	out = mustRun(t, newEnv(t, state), "report", "report", map[string]any{"model": tr["model"], "explanation": means})
	page = readReportPage(t, out)
	if strings.Contains(page, "<th>Std</th>") || !strings.Contains(page, "mean importances only") {
		t.Error("page built from the means alone does not say what it lacks")
	}
	if plots := checkReportPlots(t, out, page); !slices.Contains(plots, report.ImportanceFile) || slices.Contains(plots, report.AttributionFile) {
		t.Errorf("plots %q, want importance without attributions", plots)
	}
}

func TestReportBadExplanationAndValidation(t *testing.T) {
	state := t.TempDir()
	bad := filepath.Join(state, "bad.json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		with map[string]any
		key  string
	}{
		"explanation not a mapping":   {map[string]any{"explanation": []any{1}}, "explanation"},
		"explanation without details": {map[string]any{"explanation": map[string]any{"top_features": []any{"a"}}}, "explanation"},
		"importance not numbers":      {map[string]any{"explanation": map[string]any{"importance": map[string]any{"age": "high"}}}, "explanation.importance.age"},
		"explanation.json malformed":  {map[string]any{"explanation": bad}, "explanation.explanation"},
		"validation sans passed":      {map[string]any{"validation": map[string]any{"warnings": 1.0}}, "validation"},
		"validation report malformed": {map[string]any{"validation": map[string]any{"passed": true, "warnings": 1.0, "report": bad}}, "validation.report"},
		"warnings without report":     {map[string]any{"validation": map[string]any{"passed": true, "warnings": 2.0}}, "validation"},
	} {
		t.Run(name, func(t *testing.T) {
			c.with["model"] = filepath.Join(state, "model")
			_, err := parseReportIn(t, state, Input{With: c.with})
			wantPermanent(t, err, "with."+c.key)
			if kind, _ := Classify(err); kind != kindBadInput {
				t.Errorf("kind %q, want %s", kind, kindBadInput)
			}
		})
	}
}

// parseReportIn decodes the report's inputs as Define does and checks them
// as runReport does first, without scoring anything.
func parseReportIn(t *testing.T, state string, in Input) (*reportArgs, error) {
	env := newEnv(t, state)
	var a reportInputs
	if err := stepio.Decode(in.With, &a); err != nil {
		return nil, Permanent(kindBadInput, err)
	}
	return newReportArgs(context.Background(), env, a)
}

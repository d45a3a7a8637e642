package steps

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/ml/explain"
	"github.com/gauntlet-ml/gauntlet/internal/ml/fairness"
	"github.com/gauntlet-ml/gauntlet/internal/ml/validate"
	"github.com/gauntlet-ml/gauntlet/internal/report"
)

// maxAttributions bounds the attributions kept per record: a reviewer asks
// what drove a decision, which the largest few answer, not every encoded
// column.
const maxAttributions = 10

// importanceMeasure is what explain's permutation importance measures.
const importanceMeasure = "ROC AUC drop when shuffled"

// explanationFile is the part of explain's explanation.json the page shows.
// Importance numbers are pointers so that a null is not read as zero.
type explanationFile struct {
	Model      string `json:"model"`
	Importance []struct {
		Feature string   `json:"feature"`
		Mean    *float64 `json:"mean"`
		Std     *float64 `json:"std"`
	} `json:"permutation_importance"`
	Coefficients []explain.Coefficient   `json:"coefficients"`
	Records      [][]explain.Attribution `json:"records"`
}

// parseExplanation reads with.explanation: an explain step's outputs, the
// content of its explanation.json, or that file's path. The outputs carry
// only the mean importances, so the file is read for the spread, the
// coefficients and the records whenever the outputs name it.
func parseExplanation(in Input, a *reportArgs) error {
	raw, ok := in.With["explanation"]
	if !ok || raw == nil || raw == "" {
		return nil
	}
	var err error
	if s, isString := raw.(string); isString && !strings.HasPrefix(strings.TrimSpace(s), "{") {
		a.explainOutputs = map[string]any{"explanation": strings.TrimSpace(s)}
	} else if a.explainOutputs, err = asMap("explanation", raw); err != nil {
		return err
	}
	out := a.explainOutputs
	if _, ok := out["permutation_importance"]; ok {
		var f explanationFile
		if err := remarshal(out, &f); err != nil {
			return badInput("explanation", "not the content of an explanation.json: %v", err)
		}
		a.explanation, a.explainedModel, err = explanationFromFile("explanation", "the given explanation", &f)
		return err
	}
	path, _ := out["explanation"].(string)
	if path == "" {
		if out["importance"] == nil {
			return badInput("explanation", "has neither importance nor explanation: pass the outputs of an explain step, e.g. ${{ steps.explain.outputs }}")
		}
		a.explanation, err = explanationFromOutputs(out["importance"])
		return err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && out["importance"] != nil {
		// The explain step may have run on another worker; its outputs
		// still carry the means, which are worth showing with a caveat.
		a.explanation, err = explanationFromOutputs(out["importance"])
		a.explanationNote = "The explanation shows mean importances only: " + path +
			", with their spread and the records' attributions, could not be read here."
		return err
	}
	if err != nil {
		return badInput("explanation.explanation", "read %v", err)
	}
	var f explanationFile
	if err := json.Unmarshal(b, &f); err != nil {
		return badInput("explanation.explanation", "%s is not an explain step's explanation.json: %v", path, err)
	}
	a.explanation, a.explainedModel, err = explanationFromFile("explanation.explanation", path, &f)
	return err
}

// explanationFromOutputs builds the page's explanation from the explain
// step's importance output, {column: mean}; it has no spread.
func explanationFromOutputs(raw any) (*report.Explanation, error) {
	m, err := asMap("explanation.importance", raw)
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, badInput("explanation.importance", "is empty")
	}
	e := &report.Explanation{Measure: importanceMeasure}
	for feature, v := range m {
		mean := fairness.Undefined()
		if v != nil {
			f, ok := toFloat(v)
			if !ok || math.IsInf(f, 0) {
				return nil, badInput("explanation.importance."+feature, "want a finite number or null, got %v", v)
			}
			mean = fairness.Value(f)
		}
		e.Importance = append(e.Importance, report.Importance{Feature: feature, Mean: mean, Std: fairness.Undefined()})
	}
	// The page ranks by importance; sorting by name first makes report.json
	// independent of map order.
	slices.SortFunc(e.Importance, func(x, y report.Importance) int { return strings.Compare(x.Feature, y.Feature) })
	return e, nil
}

func explanationFromFile(key, source string, f *explanationFile) (*report.Explanation, string, error) {
	if len(f.Importance) == 0 {
		return nil, "", badInput(key, "%s holds no permutation_importance", source)
	}
	e := &report.Explanation{Measure: importanceMeasure}
	for _, im := range f.Importance {
		if im.Feature == "" {
			return nil, "", badInput(key, "%s names no feature for an importance", source)
		}
		if im.Std != nil && *im.Std < 0 {
			return nil, "", badInput(key, "%s gives %s a negative spread %v", source, im.Feature, *im.Std)
		}
		e.Importance = append(e.Importance, report.Importance{Feature: im.Feature, Mean: orUndefined(im.Mean), Std: orUndefined(im.Std)})
	}
	for _, c := range f.Coefficients {
		e.Coefficients = append(e.Coefficients, report.Contribution{Feature: c.Feature, Value: c.Weight})
	}
	for row, attrs := range f.Records {
		if len(attrs) == 0 {
			return nil, "", badInput(key, "%s: record %d has no attributions", source, row)
		}
		// explain attributes the first records of its data in order, so the
		// position is the row.
		r := report.Record{Row: row, Method: attrs[0].Method, Base: attrs[0].Base}
		sorted := slices.Clone(attrs)
		slices.SortStableFunc(sorted, func(x, y explain.Attribution) int {
			return cmp.Compare(math.Abs(y.Value), math.Abs(x.Value))
		})
		for _, at := range sorted[:min(len(sorted), maxAttributions)] {
			r.Attributions = append(r.Attributions, report.Contribution{Feature: at.Feature, Value: at.Value})
		}
		e.Records = append(e.Records, r)
	}
	return e, f.Model, nil
}

// explanationMismatch says when explain explained another model than the
// page's candidate, which a reviewer would otherwise take for granted.
func explanationMismatch(explained, candidate string) string {
	if explained == "" || filepath.Clean(explained) == filepath.Clean(candidate) {
		return ""
	}
	return "The explanation is of model " + explained + ", not of the candidate " + candidate + "."
}

// validationOutputs are the outputs of a validate-data step that the page
// shows; the warning sentences are only in its report.
type validationOutputs struct {
	Passed   *bool    `json:"passed"`
	Warnings *float64 `json:"warnings"`
	Report   string   `json:"report"`
}

func validationEvidence(m map[string]any) (*report.Validation, error) {
	var o validationOutputs
	if err := remarshal(m, &o); err != nil {
		return nil, badInput("validation", "not the outputs of a validate-data step: %v", err)
	}
	if o.Passed == nil {
		return nil, badInput("validation", "has no passed: pass the outputs of a validate-data step, e.g. ${{ steps.validate.outputs }}")
	}
	count := 0
	if o.Warnings != nil {
		if *o.Warnings < 0 || *o.Warnings != math.Trunc(*o.Warnings) {
			return nil, badInput("validation.warnings", "want a count, got %v", *o.Warnings)
		}
		count = int(*o.Warnings)
	}
	v := &report.Validation{Passed: *o.Passed, Report: o.Report}
	if o.Report == "" {
		if count > 0 {
			return nil, badInput("validation", "counts %d warnings but names no report to read them from", count)
		}
		return v, nil
	}
	b, err := os.ReadFile(o.Report)
	if errors.Is(err, os.ErrNotExist) {
		// validate-data may have run on another worker: the count is all
		// this one knows, and the page says so rather than hiding it.
		if count > 0 {
			v.Warnings = []string{fmt.Sprintf("%d warning(s) are recorded in %s, which could not be read here.", count, o.Report)}
		}
		return v, nil
	}
	if err != nil {
		return nil, badInput("validation.report", "read %v", err)
	}
	var rep validate.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, badInput("validation.report", "%s is not a validate-data report: %v", o.Report, err)
	}
	for _, c := range rep.Checks {
		if c.Status == validate.Warn {
			v.Warnings = append(v.Warnings, c.Message)
		}
	}
	if o.Warnings != nil && len(v.Warnings) != count {
		return nil, badInput("validation", "counts %d warnings but its report %s holds %d: the two are from different runs", count, o.Report, len(v.Warnings))
	}
	v.Passed = v.Passed && rep.Passed
	return v, nil
}

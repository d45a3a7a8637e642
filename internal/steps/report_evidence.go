package steps

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/ml/explain"
	"github.com/gauntlet-ml/gauntlet/internal/ml/fairness"
	"github.com/gauntlet-ml/gauntlet/internal/ml/validate"
	"github.com/gauntlet-ml/gauntlet/internal/report"
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
)

// maxAttributions bounds the attributions kept per record: a reviewer asks
// what drove a decision, which the largest few answer, not every encoded
// column.
const maxAttributions = 10

// importanceMeasure is what explain's permutation importance measures.
const importanceMeasure = "ROC AUC drop when shuffled"

// explanationFile is the part of explain's explanation.json the page shows.
// Importance numbers are Floats so that a null is read as undefined, not 0.
type explanationFile struct {
	Model      string `json:"model"`
	Importance []struct {
		Feature string       `json:"feature"`
		Mean    stepio.Float `json:"mean"`
		Std     stepio.Float `json:"std"`
	} `json:"permutation_importance"`
	Coefficients []explain.Coefficient   `json:"coefficients"`
	Records      [][]explain.Attribution `json:"records"`
}

// explanationInput is with.explanation: an explain step's outputs, the
// content of its explanation.json, or that file (an artifact pointer or a
// path). The outputs carry only the mean importances, so the file is read
// (by load, when the step runs) for the spread, the coefficients and the
// records whenever the outputs name it.
type explanationInput struct {
	// raw is the input as a mapping, as the report's summary keeps it.
	raw     map[string]any
	section *report.Explanation
	// file and importance are what load reads: explanation.json and the
	// outputs' means to fall back on.
	file       string
	importance map[string]stepio.Float
	// model is the model explain explained, when the file says.
	model string
	// note says when the page shows less than explain computed.
	note string
}

// DecodeInput implements stepio.InputDecoder. Its errors name keys below
// with.explanation.
func (e *explanationInput) DecodeInput(v any) error {
	if v == nil {
		return nil
	}
	var err error
	if s, isString := v.(string); isString && !strings.HasPrefix(strings.TrimSpace(s), "{") {
		if strings.TrimSpace(s) == "" {
			return nil
		}
		e.raw = map[string]any{"explanation": strings.TrimSpace(s)}
	} else if e.raw, err = stepio.Mapping(v); err != nil {
		return err
	}
	if _, ok := e.raw["permutation_importance"]; ok {
		var f explanationFile
		if err := remarshal(e.raw, &f); err != nil {
			return &stepio.Error{Msg: fmt.Sprintf("not the content of an explanation.json: %v", err)}
		}
		e.section, e.model, err = explanationFromFile("", "the given explanation", &f)
		return err
	}
	var out ExplainOutputs
	if err := stepio.DecodeValue("", e.raw, &out); err != nil {
		return err
	}
	if out.Explanation == "" {
		if out.Importance == nil {
			return &stepio.Error{Msg: "has neither importance nor explanation: pass the outputs of an explain step, e.g. ${{ steps.explain.outputs }}"}
		}
		e.section, err = explanationFromOutputs(out.Importance)
		return err
	}
	e.file, e.importance = out.Explanation, out.Importance
	return nil
}

// load reads explanation.json when the input names it.
func (e *explanationInput) load(ctx context.Context, env Env) error {
	if e.file == "" {
		return nil
	}
	b, source, err := readInput(ctx, env, "explanation.explanation", e.file)
	if workspace.IsNotExist(err) && e.importance != nil {
		// A path of another worker, from a run recorded before artifact
		// pointers: its outputs still carry the means, which are worth
		// showing with a caveat.
		e.section, err = explanationFromOutputs(e.importance)
		e.note = "The explanation shows mean importances only: " + e.file +
			", with their spread and the records' attributions, could not be read here."
		return err
	}
	if err != nil {
		return err
	}
	var f explanationFile
	if err := json.Unmarshal(b, &f); err != nil {
		return badInput("explanation.explanation", "%s is not an explain step's explanation.json: %v", source, err)
	}
	e.section, e.model, err = explanationFromFile("explanation", source, &f)
	if err != nil {
		return rebaseInput("explanation", err)
	}
	return nil
}

// rebaseInput puts a decoding error of part of an input under its key, as
// stepio does at decode time.
func rebaseInput(key string, err error) error {
	var se *stepio.Error
	if errors.As(err, &se) {
		p := key
		if se.Path != "" {
			p += "." + se.Path
		}
		return Permanent(kindBadInput, &stepio.Error{Path: p, Msg: se.Msg})
	}
	return err
}

// explanationFromOutputs builds the page's explanation from the explain
// step's importance output, {column: mean}; it has no spread.
func explanationFromOutputs(importance map[string]stepio.Float) (*report.Explanation, error) {
	if len(importance) == 0 {
		return nil, &stepio.Error{Path: "importance", Msg: "is empty"}
	}
	e := &report.Explanation{Measure: importanceMeasure}
	for _, feature := range stepio.SortedKeys(importance) {
		e.Importance = append(e.Importance, report.Importance{Feature: feature, Mean: fairness.Value(importance[feature]), Std: fairness.Undefined()})
	}
	return e, nil
}

func explanationFromFile(key, source string, f *explanationFile) (*report.Explanation, string, error) {
	bad := func(format string, args ...any) error {
		return &stepio.Error{Path: key, Msg: fmt.Sprintf(format, args...)}
	}
	if len(f.Importance) == 0 {
		return nil, "", bad("%s holds no permutation_importance", source)
	}
	e := &report.Explanation{Measure: importanceMeasure}
	for _, im := range f.Importance {
		if im.Feature == "" {
			return nil, "", bad("%s names no feature for an importance", source)
		}
		if im.Std < 0 {
			return nil, "", bad("%s gives %s a negative spread %v", source, im.Feature, float64(im.Std))
		}
		e.Importance = append(e.Importance, report.Importance{Feature: im.Feature, Mean: fairness.Value(im.Mean), Std: fairness.Value(im.Std)})
	}
	for _, c := range f.Coefficients {
		e.Coefficients = append(e.Coefficients, report.Contribution{Feature: c.Feature, Value: c.Weight})
	}
	for row, attrs := range f.Records {
		if len(attrs) == 0 {
			return nil, "", bad("%s: record %d has no attributions", source, row)
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
	if explained == "" || explained == candidate {
		return ""
	}
	return "The explanation is of model " + explained + ", not of the candidate " + candidate + "."
}

// validationEvidence reads the warnings of a validate-data step from its
// report, where its outputs count them.
func validationEvidence(ctx context.Context, env Env, o *ValidateDataOutputs) (*report.Validation, error) {
	if o.Warnings < 0 {
		return nil, badInput("validation.warnings", "want a count, got %d", o.Warnings)
	}
	count := o.Warnings
	v := &report.Validation{Passed: o.Passed, Report: o.Report}
	if o.Report == "" {
		if count > 0 {
			return nil, badInput("validation", "counts %d warnings but names no report to read them from", count)
		}
		return v, nil
	}
	b, _, err := readInput(ctx, env, "validation.report", o.Report)
	if workspace.IsNotExist(err) {
		// A path of another worker, from a run recorded before artifact
		// pointers: the count is all this one knows, and the page says so
		// rather than hiding it.
		if count > 0 {
			v.Warnings = []string{fmt.Sprintf("%d warning(s) are recorded in %s, which could not be read here.", count, o.Report)}
		}
		return v, nil
	}
	if err != nil {
		return nil, err
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
	if len(v.Warnings) != count {
		return nil, badInput("validation", "counts %d warnings but its report %s holds %d: the two are from different runs", count, o.Report, len(v.Warnings))
	}
	v.Passed = v.Passed && rep.Passed
	return v, nil
}

// Package report renders the evidence a reviewer reads before approving a
// model: an HTML page with PNG plots (ROC, calibration, confusion matrices,
// fairness by group), a metric table against the champion, the gate verdicts,
// and report.json holding the same numbers for tools.
//
// It is plain I/O and plotting: it never imports Temporal, so activities,
// the CLI and tests can all call it.
package report

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dp"
	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/fairness"
)

// File names inside a report directory.
const (
	IndexFile       = "index.html"
	EvidenceFile    = "report.json"
	ROCFile         = "roc.png"
	CalibrationFile = "calibration.png"
	ConfusionFile   = "confusion.png"
	ImportanceFile  = "importance.png"
	// AttributionFile shows the first explained record only: one record's
	// attributions are readable as a chart, a dozen are not.
	AttributionFile = "attributions.png"
)

// Evidence is everything the report shows. It is JSON-serialisable (written
// as report.json) so that it can travel in a workflow payload and be read back
// with ReadEvidence.
type Evidence struct {
	RunID     string    `json:"run_id"`
	Pipeline  string    `json:"pipeline"`
	Created   time.Time `json:"created"`
	Candidate Model     `json:"candidate"`
	// Champion is nil for the first model of a pipeline.
	Champion *Model `json:"champion,omitempty"`
	// Verdict is the evaluation gate's comparison of the two models.
	Verdict  *evaluate.Verdict `json:"verdict,omitempty"`
	Fairness *Fairness         `json:"fairness,omitempty"`
	// Explanation is nil when no explanation was computed.
	Explanation *Explanation `json:"explanation,omitempty"`
	// Validation is nil when no data validation result was given.
	Validation *Validation `json:"validation,omitempty"`
	// Privacy is the candidate's differential-privacy guarantee as its
	// manifest records it; nil for a model trained without DP.
	Privacy *dp.Guarantee `json:"privacy,omitempty"`
	// Notes carry anything else a reviewer should read, such as data
	// validation warnings and drift findings, one sentence each.
	Notes []string `json:"notes,omitempty"`
}

// Model is one model's evaluation on the held-out data.
type Model struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	Digest  string `json:"digest,omitempty"`
	// N is the number of evaluated rows and Threshold the decision threshold
	// the confusion matrix was counted at.
	N         int     `json:"n"`
	Threshold float64 `json:"threshold"`
	// Metrics use fairness.Value so that an undefined metric (NaN) survives
	// JSON as null instead of failing the whole report.
	Metrics     map[string]fairness.Value `json:"metrics"`
	Confusion   evaluate.Confusion        `json:"confusion"`
	Calibration []evaluate.Bin            `json:"calibration,omitempty"`
	ROC         Curve                     `json:"roc"`
}

// NewModel builds a Model from evaluate's report and a ROC curve (see ROC).
// A nil report gives a model without metrics.
func NewModel(name, version, digest string, r *evaluate.Report, roc Curve) Model {
	m := Model{Name: name, Version: version, Digest: digest, ROC: roc, Metrics: map[string]fairness.Value{}}
	if r == nil {
		return m
	}
	m.N, m.Threshold, m.Confusion = r.N, r.Threshold, r.Confusion
	m.Calibration = append([]evaluate.Bin(nil), r.Calibration...)
	for k, v := range r.Metrics {
		m.Metrics[k] = fairness.Value(v)
	}
	return m
}

// Fairness is the fairness gate's evidence for the candidate.
type Fairness struct {
	// Report is measured on the candidate's own predictions.
	Report  *fairness.Report  `json:"report"`
	Verdict *fairness.Verdict `json:"verdict,omitempty"`
	// Mitigation names what was applied (e.g. "per-group thresholds,
	// demographic parity"); Mitigated, MitigatedVerdict and Cost are its
	// result on the same rows. All are empty when nothing was mitigated.
	Mitigation       string                   `json:"mitigation,omitempty"`
	Mitigated        *fairness.Report         `json:"mitigated,omitempty"`
	MitigatedVerdict *fairness.Verdict        `json:"mitigated_verdict,omitempty"`
	Cost             *fairness.MitigationCost `json:"cost,omitempty"`
}

// Explanation is what the candidate relies on: overall (importance, and
// coefficients for a linear model) and for a few individual records.
type Explanation struct {
	// Measure names what importance is, e.g. "ROC AUC drop when the column
	// is shuffled"; the page uses it as the axis label.
	Measure    string       `json:"measure,omitempty"`
	Importance []Importance `json:"importance"`
	// Coefficients are the linear model's weights by encoded feature.
	Coefficients []Contribution `json:"coefficients,omitempty"`
	Records      []Record       `json:"records,omitempty"`
}

// Importance is one column's global importance.
type Importance struct {
	Feature string         `json:"feature"`
	Mean    fairness.Value `json:"mean"`
	// Std is the spread over repeats, undefined when the source gave only
	// the mean: the page then draws no error bar rather than a zero one.
	Std fairness.Value `json:"std"`
}

// Contribution is a feature's signed share of a score.
type Contribution struct {
	Feature string  `json:"feature"`
	Value   float64 `json:"value"`
}

// Record is one explained record.
type Record struct {
	// Row is the record's index in the explained data.
	Row int `json:"row"`
	// Method is how the attributions were computed, e.g. "linear".
	Method string `json:"method,omitempty"`
	// Base is the logit the attributions start from.
	Base float64 `json:"base"`
	// Attributions may be only the largest few; the page keeps their order.
	Attributions []Contribution `json:"attributions"`
}

// Validation is the data validation's outcome for the training data.
type Validation struct {
	Passed bool `json:"passed"`
	// Warnings are the checks that warned, one sentence each.
	Warnings []string `json:"warnings,omitempty"`
	// Report locates the full validation report.
	Report string `json:"report,omitempty"`
}

// Ranked returns the importances most important first; undefined means go
// last, and ties are broken by feature name so the order is stable.
func (e *Explanation) Ranked() []Importance {
	r := slices.Clone(e.Importance)
	slices.SortStableFunc(r, func(a, b Importance) int {
		switch {
		case a.Mean.Defined() != b.Mean.Defined():
			if a.Mean.Defined() {
				return -1
			}
			return 1
		case a.Mean.Defined() && a.Mean != b.Mean:
			return cmp.Compare(b.Mean, a.Mean)
		}
		return strings.Compare(a.Feature, b.Feature)
	})
	return r
}

// Result describes a rendered report directory.
type Result struct {
	Dir string `json:"dir"`
	// Files are sorted by name.
	Files []File `json:"files"`
}

// File is one file of a report and its content digest.
type File struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// ReadEvidence reads report.json back from a rendered report directory.
func ReadEvidence(dir string) (Evidence, error) {
	b, err := os.ReadFile(filepath.Join(dir, EvidenceFile))
	if err != nil {
		return Evidence{}, fmt.Errorf("report: read evidence: %w", err)
	}
	var ev Evidence
	if err := json.Unmarshal(b, &ev); err != nil {
		return Evidence{}, fmt.Errorf("report: decode %s: %w", EvidenceFile, err)
	}
	return ev, nil
}

// validate rejects data the plots cannot draw truthfully. Undefined metrics
// and fairness rates are fine: they are shown as "n/a".
func (ev *Evidence) validate() error {
	if err := ev.Candidate.validate(); err != nil {
		return fmt.Errorf("candidate: %w", err)
	}
	if ev.Champion != nil {
		if err := ev.Champion.validate(); err != nil {
			return fmt.Errorf("champion: %w", err)
		}
	}
	if ev.Fairness != nil && ev.Fairness.Report == nil {
		return fmt.Errorf("fairness: no report")
	}
	if ev.Explanation != nil {
		if err := ev.Explanation.validate(); err != nil {
			return fmt.Errorf("explanation: %w", err)
		}
	}
	return nil
}

func (e *Explanation) validate() error {
	if len(e.Importance) == 0 {
		return fmt.Errorf("no feature importance")
	}
	for _, im := range e.Importance {
		if im.Feature == "" {
			return fmt.Errorf("an importance names no feature")
		}
		if math.IsInf(float64(im.Mean), 0) || math.IsInf(float64(im.Std), 0) || im.Std < 0 {
			return fmt.Errorf("importance of %s is %v ± %v, want finite numbers and a spread ≥ 0", im.Feature, im.Mean, im.Std)
		}
	}
	for _, c := range e.Coefficients {
		if !finite(c.Value) {
			return fmt.Errorf("coefficient of %s is %v", c.Feature, c.Value)
		}
	}
	for i, r := range e.Records {
		if len(r.Attributions) == 0 {
			return fmt.Errorf("record %d has no attributions", i)
		}
		if !finite(r.Base) {
			return fmt.Errorf("record %d has base %v", i, r.Base)
		}
		for _, a := range r.Attributions {
			if !finite(a.Value) {
				return fmt.Errorf("record %d: attribution of %s is %v", i, a.Feature, a.Value)
			}
		}
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func (m *Model) validate() error {
	if err := m.ROC.validate(); err != nil {
		return err
	}
	c := m.Confusion
	for _, v := range []float64{c.TP, c.FP, c.TN, c.FN} {
		if !(v >= 0) || math.IsInf(v, 0) {
			return fmt.Errorf("confusion matrix holds %v, want finite counts ≥ 0", v)
		}
	}
	for i, b := range m.Calibration {
		if !(b.Count >= 0) || math.IsInf(b.Count, 0) {
			return fmt.Errorf("calibration bin %d has count %v", i, b.Count)
		}
		if b.Count > 0 && (!inUnit(b.MeanPredicted) || !inUnit(b.FractionTrue)) {
			return fmt.Errorf("calibration bin %d (%v, %v) is outside [0, 1]", i, b.MeanPredicted, b.FractionTrue)
		}
	}
	return nil
}

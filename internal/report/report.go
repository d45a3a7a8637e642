// Package report renders the evidence a reviewer reads before approving a
// model: an HTML page with PNG plots (ROC, calibration, confusion matrices,
// fairness by group), a metric table against the champion, the gate verdicts,
// and report.json holding the same numbers for tools.
//
// It is plain I/O and plotting: it never imports Temporal, so activities,
// the CLI and tests can all call it.
package report

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

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
	return nil
}

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

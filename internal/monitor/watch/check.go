package watch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/canary"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/drift"
	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/monitor"
)

// Input is what one pass looks at.
type Input struct {
	// Model is the manifest of the model serving: its preprocessing names
	// the features, its lineage the reference, its metrics the training
	// accuracy.
	Model *modelfile.Manifest `json:"model"`
	// Reference is a CSV path or builtin: URI replacing the manifest's
	// Lineage.DataSource; see the package doc.
	Reference string `json:"reference,omitempty"`
	// SampleDirs are the model servers' sample log directories
	// (serving.SampleOptions.Dir), one per replica, read when Samples is
	// nil.
	SampleDirs []string `json:"sample_dirs"`
	// Samples, when set, is where the samples are read instead, such as
	// StoreSamples.
	Samples Samples `json:"-"`
	// Version, when set, keeps only the samples this model version logged
	// ("v3"): where one log holds several versions' samples, as a fleet's
	// shipped samples do.
	Version string `json:"version,omitempty"`
	// Since excludes samples logged at or before it; zero takes them all.
	Since time.Time `json:"since,omitzero"`
	// Labels is an optional delayed-labels file (.csv, or .jsonl/.ndjson
	// JSON lines); see the package doc for the join.
	Labels string `json:"labels,omitempty"`
	// Health is the error rate and latency measured over the window.
	Health *canary.Sample `json:"health,omitempty"`
}

// withDefaults fills in drift's defaults and DefaultMinSamples and
// checks the bounds.
func withDefaults(c monitor.Config) (monitor.Config, error) {
	def := drift.DefaultThresholds()
	if c.PSIThreshold == 0 {
		c.PSIThreshold = def.PSI
	}
	if c.Alpha == 0 {
		c.Alpha = def.Alpha
	}
	if c.MinSamples == 0 {
		c.MinSamples = monitor.DefaultMinSamples
	}
	var errs []error
	if !(c.PSIThreshold > 0) || math.IsInf(c.PSIThreshold, 0) {
		errs = append(errs, fmt.Errorf("psi_threshold %v: want a positive number", c.PSIThreshold))
	}
	if !(c.Alpha > 0 && c.Alpha < 1) {
		errs = append(errs, fmt.Errorf("alpha %v: want a number in (0, 1)", c.Alpha))
	}
	if c.MinSamples < 1 {
		errs = append(errs, fmt.Errorf("min_samples %d: want at least 1", c.MinSamples))
	}
	if c.MaxP99Latency < 0 {
		errs = append(errs, fmt.Errorf("max_p99_latency %v is negative", c.MaxP99Latency))
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"max_error_rate", c.MaxErrorRate}, {"min_accuracy", c.MinAccuracy}, {"max_accuracy_drop", c.MaxAccuracyDrop}} {
		if !(f.v >= 0 && f.v <= 1) {
			errs = append(errs, fmt.Errorf("%s %v: want a number in [0, 1]", f.name, f.v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("monitor: config: %w", err)
	}
	return c, nil
}

// Check runs one monitoring pass.
func Check(ctx context.Context, cfg monitor.Config, in Input) (monitor.Report, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return monitor.Report{}, err
	}
	if in.Model == nil {
		return monitor.Report{}, errors.New("monitor: no model manifest")
	}
	if in.Model.Preprocessing == nil {
		return monitor.Report{}, errors.New("monitor: the model manifest has no preprocessing")
	}
	src := in.Samples
	if src == nil {
		if len(in.SampleDirs) == 0 {
			return monitor.Report{}, errors.New("monitor: no sample log directories")
		}
		src = Dirs(in.SampleDirs)
	}
	if err := checkHealth(in.Health); err != nil {
		return monitor.Report{}, err
	}
	baseline, hasBaseline := in.Model.Metrics[evaluate.Accuracy]
	if cfg.MaxAccuracyDrop > 0 && !hasBaseline {
		return monitor.Report{}, fmt.Errorf("monitor: max_accuracy_drop needs the training accuracy, and the manifest records no %q metric", evaluate.Accuracy)
	}
	cols := features(in.Model)
	ref, err := loadReference(in)
	if err != nil {
		return monitor.Report{}, err
	}
	refTable, err := referenceTable(ref, cols)
	if err != nil {
		return monitor.Report{}, err
	}
	win, err := readWindow(ctx, src, in.Since, in.Version, cols, in.Model.Schema.Positive, in.Labels != "")
	if err != nil {
		return monitor.Report{}, err
	}

	rep := monitor.Report{Window: monitor.Window{From: win.from, To: win.to}, Samples: win.n, PartialLines: win.partial, Config: cfg}
	var notes []string
	if win.n < cfg.MinSamples {
		notes = append(notes, fmt.Sprintf("drift: %d samples in the window, %d needed", win.n, cfg.MinSamples))
	} else if err := judgeDrift(&rep, cfg, cols, refTable, win); err != nil {
		return monitor.Report{}, err
	}
	notes = append(notes, judgeHealth(&rep, cfg, in.Health)...)
	if in.Labels != "" {
		labels, err := readLabels(ctx, in.Labels, cols, in.Model.Schema)
		if err != nil {
			return monitor.Report{}, err
		}
		notes = append(notes, judgeAccuracy(&rep, cfg, win, labels, baseline)...)
	}
	rep.Inconclusive = strings.Join(notes, "; ")
	return rep, nil
}

// column is a model feature as the monitor reads it.
type column struct {
	name      string
	numeric   bool
	sensitive bool
}

// features lists the model's inputs in name order, so that breaches come
// out in the same order every pass.
func features(m *modelfile.Manifest) []column {
	var cols []column
	for _, f := range m.Preprocessing.Numeric {
		cols = append(cols, column{name: f.Name, numeric: true})
	}
	for _, f := range m.Preprocessing.Categorical {
		cols = append(cols, column{name: f.Name, sensitive: f.Sensitive})
	}
	slices.SortFunc(cols, func(a, b column) int { return strings.Compare(a.name, b.name) })
	return cols
}

func loadReference(in Input) (*dataset.Dataset, error) {
	lin := in.Model.Lineage
	src := in.Reference
	if src == "" {
		src = lin.DataSource
	}
	if src == "" {
		return nil, errors.New("monitor: the manifest records no training data source (lineage.data_source) and no reference was given")
	}
	d, err := dataset.Load(src, dataset.WithSchema(in.Model.Schema))
	if err != nil {
		return nil, fmt.Errorf("monitor: reference: %w", err)
	}
	if src == lin.DataSource && d.Digest != lin.DataDigest {
		return nil, fmt.Errorf("monitor: reference %s has digest %s but the model was trained on data with digest %s: it changed since training; give the training data as the reference", src, d.Digest, lin.DataDigest)
	}
	return d, nil
}

// missingCategory stands for a missing categorical value, as in the drift
// step, so that a rise in missing values shows up as a category's shift.
const missingCategory = "<missing>"

func referenceTable(d *dataset.Dataset, cols []column) (drift.Table, error) {
	t := drift.Table{}
	for _, c := range cols {
		if c.numeric {
			col, ok := d.Numeric[c.name]
			if !ok {
				return nil, fmt.Errorf("monitor: reference %s has no numeric column %q, a feature of the model", d.Source, c.name)
			}
			present := make([]float64, 0, len(col))
			for _, v := range col {
				if !math.IsNaN(v) {
					present = append(present, v)
				}
			}
			if len(present) == 0 {
				return nil, fmt.Errorf("monitor: reference %s: every value of column %q is missing", d.Source, c.name)
			}
			t[c.name] = drift.Column{Numeric: present}
			continue
		}
		src := d.Categorical
		if c.sensitive {
			src = d.Sensitive
		}
		col, ok := src[c.name]
		if !ok {
			return nil, fmt.Errorf("monitor: reference %s has no categorical column %q, a feature of the model", d.Source, c.name)
		}
		cats := make([]string, len(col))
		for i, v := range col {
			if v == "" {
				v = missingCategory
			}
			cats[i] = v
		}
		t[c.name] = drift.Column{Categorical: cats}
	}
	return t, nil
}

func judgeDrift(rep *monitor.Report, cfg monitor.Config, cols []column, ref drift.Table, win *window) error {
	th := drift.DefaultThresholds()
	th.PSI, th.Alpha = cfg.PSIThreshold, cfg.Alpha
	rep.Features = make(map[string]monitor.FeatureDrift, len(cols))
	drifted := 0
	for _, c := range cols {
		if c.numeric && len(win.num[c.name]) == 0 {
			// No test applies to an empty sample; the breach's value is
			// the share of values missing.
			rep.Features[c.name] = monitor.FeatureDrift{Kind: "numeric", Drifted: true, Reason: "every value is missing in the window"}
			rep.Breaches = append(rep.Breaches, monitor.Breach{
				Kind: monitor.BreachDrift, Feature: c.name, Value: 1, Threshold: 1,
				Detail: fmt.Sprintf("feature %q: every value is missing in the window, so the model imputes all of it", c.name),
			})
			drifted++
			continue
		}
		var fr drift.FeatureResult
		var err error
		if c.numeric {
			fr, err = drift.NumericFeature(c.name, ref[c.name].Numeric, win.num[c.name], th)
		} else {
			fr, err = drift.CategoricalFeature(c.name, ref[c.name].Categorical, win.cat[c.name], th)
		}
		if err != nil {
			return fmt.Errorf("monitor: drift of feature %q: %w", c.name, err)
		}
		fd := monitor.FeatureDrift{Kind: fr.Kind, PSI: &fr.PSI, Drifted: fr.Drifted, Reason: fr.Reason}
		if ks := fr.KS; ks != nil {
			fd.KSStatistic, fd.KSPValue = &ks.Statistic, &ks.PValue
		}
		if chi := fr.ChiSquare; chi != nil {
			fd.ChiSquarePValue, fd.CramersV = &chi.PValue, &chi.CramersV
		}
		rep.Features[c.name] = fd
		if fr.Drifted {
			drifted++
			rep.Breaches = append(rep.Breaches, driftBreach(fr, th))
		}
	}
	rep.DataDrifted = float64(drifted)/float64(len(cols)) >= th.DatasetShare
	return nil
}

// driftBreach reports the rule that fired, in drift's order of precedence,
// with the statistic and the bound it crossed.
func driftBreach(fr drift.FeatureResult, th drift.Thresholds) monitor.Breach {
	b := monitor.Breach{Kind: monitor.BreachDrift, Feature: fr.Name, Detail: fmt.Sprintf("feature %q drifted: %s", fr.Name, fr.Reason)}
	switch {
	case fr.PSI >= th.PSI:
		b.Value, b.Threshold = fr.PSI, th.PSI
	case fr.KS != nil:
		b.Value, b.Threshold = fr.KS.Statistic, math.Max(th.KSMinEffect, fr.KSCritical)
	case fr.ChiSquare != nil:
		b.Value, b.Threshold = fr.ChiSquare.CramersV, th.CramersVMinEffect
	}
	return b
}

func checkHealth(h *canary.Sample) error {
	if h == nil {
		return nil
	}
	if !(h.Requests >= 0) || !(h.Errors >= 0) || h.Errors > h.Requests || math.IsInf(h.Requests, 0) {
		return fmt.Errorf("monitor: health: %v errors of %v requests is not a measurement", h.Errors, h.Requests)
	}
	return nil
}

func judgeHealth(rep *monitor.Report, cfg monitor.Config, h *canary.Sample) []string {
	// Without requests a latency quantile is not a measurement, whatever
	// a hand-built Sample holds.
	if h != nil && h.Requests > 0 {
		rate := h.ErrorRate()
		rep.ErrorRate = &rate
		if p := h.P99Latency; !math.IsNaN(p) && !math.IsInf(p, 0) {
			rep.P99LatencySeconds = &p
		}
	}
	var notes []string
	if cfg.MaxErrorRate > 0 {
		switch r := rep.ErrorRate; {
		case r == nil:
			notes = append(notes, "error rate: no requests measured")
		case *r > cfg.MaxErrorRate:
			rep.Breaches = append(rep.Breaches, monitor.Breach{
				Kind: monitor.BreachErrorRate, Value: *r, Threshold: cfg.MaxErrorRate,
				Detail: fmt.Sprintf("error rate %.4f above %.4f (%v errors of %v requests)", *r, cfg.MaxErrorRate, h.Errors, h.Requests),
			})
		}
	}
	if cfg.MaxP99Latency > 0 {
		limit := cfg.MaxP99Latency.Seconds()
		switch p := rep.P99LatencySeconds; {
		case p == nil:
			notes = append(notes, "latency: no p99 measured")
		case *p > limit:
			rep.Breaches = append(rep.Breaches, monitor.Breach{
				Kind: monitor.BreachLatency, Value: *p, Threshold: limit,
				Detail: fmt.Sprintf("p99 latency %.4gs above %v", *p, cfg.MaxP99Latency),
			})
		}
	}
	return notes
}

func judgeAccuracy(rep *monitor.Report, cfg monitor.Config, win *window, labels labelSet, baseline float64) []string {
	correct := 0
	for i, key := range win.keys {
		if labels.ambiguous[key] {
			rep.AmbiguousLabels++
			continue
		}
		truth, ok := labels.truth[key]
		if !ok {
			continue
		}
		rep.Labelled++
		if truth == win.predicted[i] {
			correct++
		}
	}
	if rep.Labelled == 0 {
		if cfg.MinAccuracy > 0 || cfg.MaxAccuracyDrop > 0 {
			return []string{"accuracy: no sample of the window has a label yet"}
		}
		return nil
	}
	acc := float64(correct) / float64(rep.Labelled)
	rep.Accuracy = &acc
	if cfg.MinAccuracy == 0 && cfg.MaxAccuracyDrop == 0 {
		return nil
	}
	if rep.Labelled < cfg.MinSamples {
		return []string{fmt.Sprintf("accuracy: %d labelled samples in the window, %d needed", rep.Labelled, cfg.MinSamples)}
	}
	if cfg.MinAccuracy > 0 && acc < cfg.MinAccuracy {
		rep.Breaches = append(rep.Breaches, monitor.Breach{
			Kind: monitor.BreachAccuracy, Value: acc, Threshold: cfg.MinAccuracy,
			Detail: fmt.Sprintf("accuracy %.4f below %.4f over %d labelled samples", acc, cfg.MinAccuracy, rep.Labelled),
		})
	}
	if drop := baseline - acc; cfg.MaxAccuracyDrop > 0 && drop > cfg.MaxAccuracyDrop {
		rep.Breaches = append(rep.Breaches, monitor.Breach{
			Kind: monitor.BreachAccuracy, Value: drop, Threshold: cfg.MaxAccuracyDrop,
			Detail: fmt.Sprintf("accuracy %.4f is %.4f below the %.4f at training, more than %.4f, over %d labelled samples", acc, drop, baseline, cfg.MaxAccuracyDrop, rep.Labelled),
		})
	}
	return nil
}

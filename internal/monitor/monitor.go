package monitor

import "time"

// DefaultMinSamples is the window size below which drift and accuracy are
// not judged; the package doc derives it.
const DefaultMinSamples = 500

// Config holds the thresholds of a pass. Zero drift settings take drift's
// defaults and DefaultMinSamples; a zero health or accuracy bound disables
// that check.
type Config struct {
	PSIThreshold float64 `json:"psi_threshold,omitempty"`
	// Alpha is the significance level of the KS and chi-square tests.
	Alpha float64 `json:"alpha,omitempty"`
	// MinSamples is the fewest samples (and, for accuracy, joined labels)
	// a verdict needs.
	MinSamples int `json:"min_samples,omitempty"`
	// MaxErrorRate and MaxP99Latency are inclusive bounds, as a canary
	// check's: a value breaches when it is above them.
	MaxErrorRate  float64       `json:"max_error_rate,omitempty"`
	MaxP99Latency time.Duration `json:"max_p99_latency,omitempty"`
	// MinAccuracy breaches when accuracy is below it; MaxAccuracyDrop when
	// accuracy is more than this below the manifest's training accuracy.
	MinAccuracy     float64 `json:"min_accuracy,omitempty"`
	MaxAccuracyDrop float64 `json:"max_accuracy_drop,omitempty"`
}

// Window is the span of the samples a pass counted: the times of the first
// and last, zero when there were none.
type Window struct {
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
}

// FeatureDrift is one feature's drift verdict. A statistic is nil where it
// does not apply (KS to a categorical feature, chi-square to a numeric one)
// or could not be computed (no value in the window), so that a zero always
// means zero.
type FeatureDrift struct {
	Kind            string   `json:"kind"`
	PSI             *float64 `json:"psi,omitempty"`
	KSStatistic     *float64 `json:"ks_statistic,omitempty"`
	KSPValue        *float64 `json:"ks_pvalue,omitempty"`
	ChiSquarePValue *float64 `json:"chi_square_pvalue,omitempty"`
	CramersV        *float64 `json:"cramers_v,omitempty"`
	Drifted         bool     `json:"drifted"`
	Reason          string   `json:"reason"`
}

// BreachKind says which check a breach failed.
type BreachKind string

// Breach kinds.
const (
	BreachDrift     BreachKind = "drift"
	BreachErrorRate BreachKind = "error_rate"
	BreachLatency   BreachKind = "latency"
	BreachAccuracy  BreachKind = "accuracy"
)

// Breach is one threshold crossed. Latency is in seconds.
type Breach struct {
	Kind BreachKind `json:"kind"`
	// Feature names the drifted feature of a drift breach.
	Feature   string  `json:"feature,omitempty"`
	Detail    string  `json:"detail"`
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
}

// Report is the outcome of a pass. Every number in it is finite, so it
// travels as JSON (a Temporal payload) unchanged.
type Report struct {
	Window  Window `json:"window"`
	Samples int    `json:"samples"`
	// PartialLines counts last lines skipped because the server had not
	// finished writing them.
	PartialLines int `json:"partial_lines,omitempty"`
	// Features is empty when there were too few samples to judge.
	Features    map[string]FeatureDrift `json:"features,omitempty"`
	DataDrifted bool                    `json:"data_drifted"`
	// ErrorRate and P99LatencySeconds are nil when not measured.
	ErrorRate         *float64 `json:"error_rate,omitempty"`
	P99LatencySeconds *float64 `json:"p99_latency_seconds,omitempty"`
	// Labelled counts the samples of the window joined to a delayed label.
	Labelled        int      `json:"labelled,omitempty"`
	AmbiguousLabels int      `json:"ambiguous_labels,omitempty"`
	Accuracy        *float64 `json:"accuracy,omitempty"`
	Breaches        []Breach `json:"breaches,omitempty"`
	// Inconclusive says what could not be judged and why; a check that
	// could not be judged is not a breach.
	Inconclusive string `json:"inconclusive,omitempty"`
	// Config is the configuration applied, defaults filled in.
	Config Config `json:"config"`
}

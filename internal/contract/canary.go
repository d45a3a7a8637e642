package contract

import (
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/canary"
)

// CanaryStartInput registers the candidate and starts it beside the
// champion at no traffic.
type CanaryStartInput struct {
	RunID    string `json:"run_id"`
	StepID   string `json:"step_id"`
	SpecHash string `json:"spec_hash,omitempty"`
	Name     string `json:"name"`
	Model    string `json:"model"`
	// Target is the deployment target the step names (embedded, fleet);
	// empty means the worker's default. Left out of the payload when
	// empty, so histories recorded before it replay unchanged.
	Target string `json:"target,omitempty"`
}

// CanaryStartResult says what the canary compares.
type CanaryStartResult struct {
	Version   int    `json:"version"`
	Champion  int    `json:"champion"`
	RouterURL string `json:"router_url"`
}

// CanaryWeightInput sends Percent of the traffic to the candidate.
type CanaryWeightInput struct {
	Name    string `json:"name"`
	Percent int    `json:"percent"`
	// Target is the step's deployment target; empty: the worker's default.
	Target string `json:"target,omitempty"`
}

// CanaryMeasureInput asks for one interval's analysis.
type CanaryMeasureInput struct {
	Name     string          `json:"name"`
	Analysis canary.Analysis `json:"analysis"`
	Interval time.Duration   `json:"interval"`
	// Prometheus, when set, is where the router's metrics are read; it is
	// left out of the payload when unset, so histories recorded before it
	// existed replay unchanged.
	Prometheus *CanaryPrometheus `json:"prometheus,omitempty"`
	// Target is the step's deployment target; empty: the worker's default.
	Target string `json:"target,omitempty"`
}

// CanaryPrometheus is a Prometheus server that scrapes the canary's
// router: the analysis then asks it (PromQL over the interval) rather than
// scraping the router from the worker.
type CanaryPrometheus struct {
	URL string `json:"url"`
	// Matchers are PromQL label matchers added to every selector, such as
	// job="gauntlet-router", when the server scrapes other routers too.
	Matchers string `json:"matchers,omitempty"`
}

// CanaryPromoteInput makes the candidate the champion, provided the
// champion is still the one the canary was compared with.
type CanaryPromoteInput struct {
	Name             string `json:"name"`
	Version          int    `json:"version"`
	ExpectedChampion int    `json:"expected_champion"`
	RunID            string `json:"run_id"`
	Actor            string `json:"actor"`
	Reason           string `json:"reason"`
	// Target is the step's deployment target; empty: the worker's default.
	Target string `json:"target,omitempty"`
}

// CanaryAbortInput sends all traffic back to the champion.
type CanaryAbortInput struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
	// Target is the step's deployment target; empty: the worker's default.
	Target string `json:"target,omitempty"`
}

// CanarySignal is the payload of the canary signals.
type CanarySignal struct {
	Step   string `json:"step,omitempty"`
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
}

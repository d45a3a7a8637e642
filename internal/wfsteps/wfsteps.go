// Package wfsteps declares the inputs of the step types that workflow code
// carries out (approval, canary-deploy, monitor), because they wait on
// people or on time. The step registry lists them for the validator and
// `gauntlet step TYPE --help`; the workflows decode `with:` into them with
// package stepio. Neither side can drift from the other, and workflow code
// reaches them without importing the steps package and what it links.
package wfsteps

import (
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/stepio"
)

// ApprovalInputs are the inputs of an approval step.
type ApprovalInputs struct {
	Reviewers          []string        `json:"reviewers" required:"true" doc:"who may decide (list or comma-separated)"`
	Required           int             `json:"required" doc:"approvals needed (default 1)"`
	Timeout            stepio.Duration `json:"timeout" doc:"how long to wait (default 72h)"`
	OnTimeout          string          `json:"on_timeout" doc:"reject (default), approve or escalate"`
	EscalateTo         []string        `json:"escalate_to" doc:"reviewers added when on_timeout is escalate"`
	ForbidSelfApproval bool            `json:"forbid_self_approval" doc:"the person who started the run may not approve"`
	Reminder           stepio.Duration `json:"reminder" doc:"interval between reminders"`
	NotifyURL          string          `json:"notify_url" doc:"webhook told of every state change"`
	Evidence           map[string]any  `json:"evidence" doc:"what the reviewer sees: metrics, fairness, report link"`
	RequireSignatures  bool            `json:"require_signatures" doc:"count only decisions signed with the reviewer's configured Ed25519 key (default false)"`
	SignatureMaxSkew   stepio.Duration `json:"signature_max_skew" doc:"how far a signature's time may be from the gate's clock (default 10m)"`
	Model              string          `json:"model" doc:"the model that will ship (an artifact pointer): its digest is shown to reviewers, covered by signed decisions, and canary-deploy refuses any other model in the run"`
	Report             string          `json:"report" doc:"the evidence report (an artifact pointer) reviewers read; its digest is recorded with the decision"`
}

// Approval returns the defaults of an approval step.
func Approval() ApprovalInputs {
	return ApprovalInputs{
		Required:         1,
		Timeout:          stepio.Duration(72 * time.Hour),
		OnTimeout:        "reject",
		SignatureMaxSkew: stepio.Duration(10 * time.Minute),
	}
}

// CanaryInputs are the inputs of a canary-deploy step.
type CanaryInputs struct {
	Model    string          `json:"model" required:"true" doc:"candidate model directory"`
	Name     string          `json:"name" doc:"registered model name (default: the pipeline name)"`
	Weights  []int           `json:"weights" doc:"rising percentages of traffic for the candidate, promoted after the last (default [10, 25, 50], as Flagger steps to its maxWeight: at 100 the champion serves nothing to compare with)"`
	Interval stepio.Duration `json:"interval" doc:"traffic time per weight before analysis (default 1m)"`
	Analysis CanaryAnalysis  `json:"analysis" doc:"max_error_rate (0.01), max_p99_latency (500ms), max_score_psi (0.25), min_requests (20), failure_limit (2), inconclusive_limit (3); prometheus_url: a Prometheus server scraping the router, asked (PromQL over each interval) for requests, errors and latency instead of the worker scraping the router (or the fleet's configured one); prometheus_matchers: label matchers added to its selectors, such as job=\"gauntlet-router\""`
	Target   string          `json:"target" doc:"deployment target: embedded (a router and model servers inside the worker) or fleet (the long-running router and model servers the worker is configured with); default: the worker's --deploy-target"`
}

// CanaryAnalysis are the thresholds of a canary's analysis, in Flagger's
// terms, and where its metrics come from.
type CanaryAnalysis struct {
	MaxErrorRate       float64         `json:"max_error_rate"`
	MaxP99Latency      stepio.Duration `json:"max_p99_latency"`
	MaxScorePSI        float64         `json:"max_score_psi"`
	MinRequests        int             `json:"min_requests"`
	FailureLimit       int             `json:"failure_limit"`
	InconclusiveLimit  int             `json:"inconclusive_limit"`
	PrometheusURL      string          `json:"prometheus_url"`
	PrometheusMatchers string          `json:"prometheus_matchers"`
}

// Canary returns the defaults of a canary-deploy step; the model name
// defaults to the pipeline's, which only the run knows.
func Canary() CanaryInputs {
	return CanaryInputs{
		Weights:  []int{10, 25, 50},
		Interval: stepio.Duration(time.Minute),
		Analysis: CanaryAnalysis{MaxErrorRate: 0.01, MaxP99Latency: stepio.Duration(500 * time.Millisecond), MaxScorePSI: 0.25,
			MinRequests: 20, FailureLimit: 2, InconclusiveLimit: 3},
	}
}

// MonitorInputs are the inputs of a monitor step. Thresholds left at 0 are
// the monitor's own defaults, or off.
type MonitorInputs struct {
	Name            string          `json:"name" doc:"registered model name (default: the pipeline name)"`
	Interval        stepio.Duration `json:"interval" doc:"time between passes (default 5m)"`
	Window          stepio.Duration `json:"window" doc:"how far back each pass reads the served records, never before the last rollback (default 1h)"`
	Duration        stepio.Duration `json:"duration" doc:"watch this long and report; unset: leave the monitor running"`
	OnBreach        []string        `json:"on_breach" doc:"actions: rollback, retrain (default both)"`
	Cooldown        stepio.Duration `json:"cooldown" doc:"an action is not repeated within this time (default 6h)"`
	RetrainPipeline string          `json:"retrain_pipeline" doc:"pipeline a retraining run starts (default: this one, with this run's params)"`
	RetrainParams   map[string]any  `json:"retrain_params" doc:"params of the retraining run"`
	PSIThreshold    float64         `json:"psi_threshold" doc:"PSI at or above which a feature drifted (default 0.2)"`
	Alpha           float64         `json:"alpha" doc:"significance level of the KS and chi-square tests (default 0.05)"`
	MinSamples      int             `json:"min_samples" doc:"fewest logged records a drift verdict needs (default 500)"`
	MaxErrorRate    float64         `json:"max_error_rate" doc:"error rate above which the service breaches (default: off)"`
	MaxP99Latency   stepio.Duration `json:"max_p99_latency" doc:"p99 latency above which the service breaches (default: off)"`
	MinAccuracy     float64         `json:"min_accuracy" doc:"accuracy on delayed labels below which the model breaches (default: off)"`
	MaxAccuracyDrop float64         `json:"max_accuracy_drop" doc:"largest drop of accuracy below the training accuracy (default: off)"`
	Labels          string          `json:"labels" doc:"delayed labels (CSV or JSON lines): a path on the worker, or a file in the store (an artifact pointer, s3:// or https:// URL) fetched at every pass"`
	Reference       string          `json:"reference" doc:"reference data instead of the training data the model's manifest names"`
	Target          string          `json:"target" doc:"deployment target the model serves on: embedded or fleet (whose servers ship their sample logs to the store); default: the worker's --deploy-target"`
}

// Monitor returns the defaults of a monitor step.
func Monitor() MonitorInputs {
	return MonitorInputs{
		Interval: stepio.Duration(5 * time.Minute),
		Window:   stepio.Duration(time.Hour),
		OnBreach: []string{"rollback", "retrain"},
		Cooldown: stepio.Duration(6 * time.Hour),
	}
}

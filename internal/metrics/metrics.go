// Package metrics holds Gauntlet's Prometheus metrics: the domain metrics
// that activities and the worker update (runs, steps, gates, models, drift,
// canaries, GPUs, cost, approvals) and an adapter that exports the Temporal
// SDK's own metrics through the same registry.
//
// Workflows never update these: a workflow replays, and a counter bumped on
// every replay would count a run many times. Activities and the worker's
// own loops do.
package metrics

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gauntlet-ml/gauntlet/internal/gpu"
)

const namespace = "gauntlet"

// Buckets are chosen for what is measured: steps last from milliseconds
// (notify) to hours (train), approvals from minutes to days.
var (
	stepBuckets     = []float64{0.05, 0.25, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 43200}
	approvalBuckets = []float64{60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 48 * 3600, 72 * 3600, 7 * 24 * 3600}
)

// Metrics holds the domain metrics. Its methods are safe for concurrent use.
type Metrics struct {
	runs             *prometheus.CounterVec
	stepDuration     *prometheus.HistogramVec
	gates            *prometheus.CounterVec
	accuracy         *prometheus.GaugeVec
	rocAUC           *prometheus.GaugeVec
	fairnessGap      *prometheus.GaugeVec
	psi              *prometheus.GaugeVec
	drift            *prometheus.CounterVec
	canaryWeight     *prometheus.GaugeVec
	rollbacks        *prometheus.CounterVec
	gpuUtil          *prometheus.GaugeVec
	gpuMemUsed       *prometheus.GaugeVec
	gpuMemTotal      *prometheus.GaugeVec
	gpuTemp          *prometheus.GaugeVec
	gpuPower         *prometheus.GaugeVec
	gpuDevices       *prometheus.GaugeVec
	runCost          *prometheus.CounterVec
	preemptions      *prometheus.CounterVec
	preemptionWaste  *prometheus.CounterVec
	approvalsWaiting *prometheus.GaugeVec
	approvalOldest   *prometheus.GaugeVec
	approvalWait     *prometheus.HistogramVec

	// mu guards the label sets last written by the methods that replace a
	// whole picture, so that they delete only series that are gone: deleting
	// everything first would let a scrape in between see no series, and an
	// alert's `for:` would start over.
	mu       sync.Mutex
	gpuSeen  map[string][][]string
	waitSeen [][]string
}

// NewMetrics creates the metrics and registers them on reg. It panics if a
// name is already registered there, as prometheus.MustRegister does: that
// is a wiring mistake, found on the first start.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, labels)
	}
	// The GPU gauges carry no prefix: dashboards and alerts written for
	// other exporters use these names, and the issue requires them.
	gpuGauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"node", "gpu", "name"})
	}
	m := &Metrics{
		gpuSeen: map[string][][]string{},
		runs:    counter("runs_total", "Pipeline runs that ended, by pipeline and final status (succeeded, failed, canceled, rejected).", "pipeline", "status"),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "step_duration_seconds",
			Help:    "Wall time of one step attempt, by pipeline, step type (uses) and outcome.",
			Buckets: stepBuckets,
		}, []string{"pipeline", "uses", "outcome"}),
		gates:        counter("gate_outcomes_total", "Verdicts of gates (evaluate, fairness-gate, canary analysis, approval), by gate type and outcome.", "gate", "outcome"),
		accuracy:     gauge("model_accuracy", "Accuracy of a model version, as last measured (0 to 1).", "model", "version"),
		rocAUC:       gauge("model_roc_auc", "ROC AUC of a model version, as last measured (0 to 1).", "model", "version"),
		fairnessGap:  gauge("fairness_gap", "Largest between-group difference of a fairness metric for a sensitive feature.", "model", "feature", "metric"),
		psi:          gauge("feature_psi", "Population stability index of a feature: live traffic against the training reference.", "model", "feature"),
		drift:        counter("drift_detected_total", "Monitor checks that found drift on a model.", "model"),
		canaryWeight: gauge("canary_weight_percent", "Share of traffic the router sends to a model's candidate (0 to 100).", "model"),
		rollbacks:    counter("rollbacks_total", "Rollbacks of a model to its previous version, by reason.", "model", "reason"),
		gpuUtil:      gpuGauge("gpu_utilization_percent", "GPU utilization over the last sample period (0 to 100)."),
		gpuMemUsed:   gpuGauge("gpu_memory_used_bytes", "GPU memory in use."),
		gpuMemTotal:  gpuGauge("gpu_memory_total_bytes", "GPU memory in total."),
		gpuTemp:      gpuGauge("gpu_temperature_celsius", "GPU core temperature."),
		gpuPower:     gpuGauge("gpu_power_watts", "GPU power draw."),
		// A node without a GPU is still scraped for its worker's metrics;
		// this says why it has no gpu_* series.
		gpuDevices: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "gpu_devices",
			Help: `NVIDIA GPUs the node's worker reads through NVML, by state: "available", or "no NVIDIA GPU" (0 devices).`}, []string{"node", "state"}),
		runCost:          counter("run_cost_dollars_total", "Compute spent by runs, in US dollars.", "pipeline"),
		preemptions:      counter("preemptions_total", "Spot preemptions of nodes that ran a pipeline's steps.", "pipeline"),
		preemptionWaste:  counter("preemption_waste_dollars_total", "Compute paid for and lost to preemptions (work after the last checkpoint), in US dollars.", "pipeline"),
		approvalsWaiting: gauge("approvals_waiting", "Approval steps waiting for a decision.", "pipeline", "step"),
		approvalOldest:   gauge("approval_oldest_wait_seconds", "Age of the oldest approval step still waiting for a decision.", "pipeline", "step"),
		approvalWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "approval_wait_seconds",
			Help:    "Time from an approval request to its decision, by pipeline and outcome (approved, rejected, timeout).",
			Buckets: approvalBuckets,
		}, []string{"pipeline", "outcome"}),
	}
	reg.MustRegister(m.runs, m.stepDuration, m.gates, m.accuracy, m.rocAUC, m.fairnessGap, m.psi, m.drift,
		m.canaryWeight, m.rollbacks, m.gpuUtil, m.gpuMemUsed, m.gpuMemTotal, m.gpuTemp, m.gpuPower,
		m.gpuDevices, m.runCost, m.preemptions, m.preemptionWaste, m.approvalsWaiting, m.approvalOldest, m.approvalWait)
	return m
}

// Pipelines starts the run counters of the named pipelines at zero for
// every final status. Without it the first failure of a pipeline creates
// its series at 1, and increase() over a window that starts with the
// series misses it: the failed-runs alert would not fire.
func (m *Metrics) Pipelines(names ...string) {
	for _, n := range names {
		for _, s := range runStatuses {
			m.runs.WithLabelValues(n, s)
		}
	}
}

// runStatuses are the run states a run can end in (workflows.Run*; this
// package does not import workflows, which imports the Temporal SDK's
// workflow package).
var runStatuses = []string{"succeeded", "failed", "canceled", "rejected"}

// RunFinished counts a run that ended with status (the workflow's run
// state: succeeded, failed, canceled, rejected).
func (m *Metrics) RunFinished(pipeline, status string) {
	m.runs.WithLabelValues(pipeline, status).Inc()
}

// StepDone records one attempt of a step of type uses that ended with
// outcome (succeeded, failed, ...) after d.
func (m *Metrics) StepDone(pipeline, uses, outcome string, d time.Duration) {
	m.stepDuration.WithLabelValues(pipeline, uses, outcome).Observe(d.Seconds())
}

// GateOutcome counts a gate's verdict, e.g. ("fairness-gate", "passed").
func (m *Metrics) GateOutcome(gate, outcome string) {
	m.gates.WithLabelValues(gate, outcome).Inc()
}

// ModelQuality sets the accuracy and ROC AUC measured for a model version.
func (m *Metrics) ModelQuality(model, version string, accuracy, rocAUC float64) {
	m.accuracy.WithLabelValues(model, version).Set(accuracy)
	m.rocAUC.WithLabelValues(model, version).Set(rocAUC)
}

// ModelAccuracy sets the accuracy of a model version where no ROC AUC is
// measured with it: a monitor pass over live traffic with delayed labels
// yields accuracy alone, and it is that series, changing over the life of a
// version, which the accuracy-drop alert watches.
func (m *Metrics) ModelAccuracy(model, version string, accuracy float64) {
	m.accuracy.WithLabelValues(model, version).Set(accuracy)
}

// FairnessGap sets the gap of a fairness metric (e.g.
// demographic_parity_difference) across the groups of a sensitive feature.
func (m *Metrics) FairnessGap(model, feature, metric string, gap float64) {
	m.fairnessGap.WithLabelValues(model, feature, metric).Set(gap)
}

// FeaturePSI sets a feature's population stability index.
func (m *Metrics) FeaturePSI(model, feature string, psi float64) {
	m.psi.WithLabelValues(model, feature).Set(psi)
}

// DriftDetected counts a monitor check that found drift on model.
func (m *Metrics) DriftDetected(model string) {
	m.drift.WithLabelValues(model).Inc()
}

// CanaryWeight sets the percentage of traffic sent to model's candidate;
// 0 once the canary is promoted or rolled back.
func (m *Metrics) CanaryWeight(model string, percent float64) {
	m.canaryWeight.WithLabelValues(model).Set(percent)
}

// Rollback counts a rollback of model, e.g. reason "drift" or
// "canary-analysis".
func (m *Metrics) Rollback(model, reason string) {
	m.rollbacks.WithLabelValues(model, reason).Inc()
}

// GPUSnapshot replaces node's GPU gauges with what s saw. Devices missing
// from s lose their series, rather than keeping the last values of a device
// that is gone; a snapshot without GPUs leaves the node with none.
func (m *Metrics) GPUSnapshot(node string, s gpu.Snapshot) {
	var now [][]string
	if s.State == gpu.Available {
		for _, d := range s.Devices {
			now = append(now, []string{node, strconv.Itoa(d.Index), d.Name})
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, d := range now {
		dev := s.Devices[i]
		m.gpuUtil.WithLabelValues(d...).Set(dev.UtilizationPercent)
		m.gpuMemUsed.WithLabelValues(d...).Set(float64(dev.MemoryUsedBytes))
		m.gpuMemTotal.WithLabelValues(d...).Set(float64(dev.MemoryTotalBytes))
		m.gpuTemp.WithLabelValues(d...).Set(dev.TemperatureC)
		m.gpuPower.WithLabelValues(d...).Set(dev.PowerWatts)
	}
	for _, old := range gone(m.gpuSeen[node], now) {
		for _, g := range []*prometheus.GaugeVec{m.gpuUtil, m.gpuMemUsed, m.gpuMemTotal, m.gpuTemp, m.gpuPower} {
			g.DeleteLabelValues(old...)
		}
	}
	m.gpuSeen[node] = now
	m.gpuDevices.DeletePartialMatch(prometheus.Labels{"node": node})
	m.gpuDevices.WithLabelValues(node, string(s.State)).Set(float64(len(now)))
}

// gone returns the label sets of before that are not in now.
func gone(before, now [][]string) [][]string {
	keep := make(map[string]bool, len(now))
	for _, l := range now {
		keep[strings.Join(l, "\x00")] = true
	}
	var out [][]string
	for _, l := range before {
		if !keep[strings.Join(l, "\x00")] {
			out = append(out, l)
		}
	}
	return out
}

// RunCost adds dollars of compute spent on behalf of pipeline.
func (m *Metrics) RunCost(pipeline string, dollars float64) {
	m.runCost.WithLabelValues(pipeline).Add(dollars)
}

// Preempted counts a preemption of a node working for pipeline and the
// dollars of work it threw away (paid time since the last checkpoint).
func (m *Metrics) Preempted(pipeline string, wastedDollars float64) {
	m.preemptions.WithLabelValues(pipeline).Inc()
	m.preemptionWaste.WithLabelValues(pipeline).Add(wastedDollars)
}

// WaitingApproval is one (pipeline, approval step) with requests still
// undecided.
type WaitingApproval struct {
	Pipeline string
	Step     string
	Count    int
	// Oldest is how long the oldest of them has waited.
	Oldest time.Duration
}

// SetApprovalsWaiting replaces the approvals-waiting gauges with w. It takes
// the whole picture at once because it is meant to be fed from a periodic
// count (a visibility query), which survives worker restarts where an
// increment per request and a decrement per decision would not; a pipeline
// missing from w has nothing waiting.
func (m *Metrics) SetApprovalsWaiting(w []WaitingApproval) {
	now := make([][]string, 0, len(w))
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range w {
		l := []string{a.Pipeline, a.Step}
		now = append(now, l)
		m.approvalsWaiting.WithLabelValues(l...).Set(float64(a.Count))
		m.approvalOldest.WithLabelValues(l...).Set(a.Oldest.Seconds())
	}
	for _, old := range gone(m.waitSeen, now) {
		m.approvalsWaiting.DeleteLabelValues(old...)
		m.approvalOldest.DeleteLabelValues(old...)
	}
	m.waitSeen = now
}

// ApprovalDecided records how long an approval waited before its outcome
// (approved, rejected, timeout).
func (m *Metrics) ApprovalDecided(pipeline, outcome string, waited time.Duration) {
	m.approvalWait.WithLabelValues(pipeline, outcome).Observe(waited.Seconds())
}

package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gauntlet-ml/gauntlet/internal/gpu"
)

func TestDomainMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	m.RunFinished("credit-risk", "succeeded")
	m.RunFinished("credit-risk", "succeeded")
	m.RunFinished("credit-risk", "failed")
	m.GateOutcome("fairness-gate", "passed")
	m.ModelQuality("credit-risk", "3", 0.91, 0.87)
	m.FairnessGap("credit-risk", "sex", "demographic_parity_difference", 0.04)
	m.FeaturePSI("credit-risk", "income", 0.27)
	m.DriftDetected("credit-risk")
	m.CanaryWeight("credit-risk", 25)
	m.Rollback("credit-risk", "drift")
	m.RunCost("credit-risk", 1.25)
	m.RunCost("credit-risk", 0.5)
	m.Preempted("credit-risk", 0.3)
	want := `
# HELP gauntlet_runs_total Pipeline runs that ended, by pipeline and final status (succeeded, failed, canceled, rejected).
# TYPE gauntlet_runs_total counter
gauntlet_runs_total{pipeline="credit-risk",status="failed"} 1
gauntlet_runs_total{pipeline="credit-risk",status="succeeded"} 2
# HELP gauntlet_gate_outcomes_total Verdicts of gates (evaluate, fairness-gate, canary analysis, approval), by gate type and outcome.
# TYPE gauntlet_gate_outcomes_total counter
gauntlet_gate_outcomes_total{gate="fairness-gate",outcome="passed"} 1
# HELP gauntlet_model_accuracy Accuracy of a model version, as last measured (0 to 1).
# TYPE gauntlet_model_accuracy gauge
gauntlet_model_accuracy{model="credit-risk",version="3"} 0.91
# HELP gauntlet_model_roc_auc ROC AUC of a model version, as last measured (0 to 1).
# TYPE gauntlet_model_roc_auc gauge
gauntlet_model_roc_auc{model="credit-risk",version="3"} 0.87
# HELP gauntlet_fairness_gap Largest between-group difference of a fairness metric for a sensitive feature.
# TYPE gauntlet_fairness_gap gauge
gauntlet_fairness_gap{feature="sex",metric="demographic_parity_difference",model="credit-risk"} 0.04
# HELP gauntlet_feature_psi Population stability index of a feature: live traffic against the training reference.
# TYPE gauntlet_feature_psi gauge
gauntlet_feature_psi{feature="income",model="credit-risk"} 0.27
# HELP gauntlet_drift_detected_total Monitor checks that found drift on a model.
# TYPE gauntlet_drift_detected_total counter
gauntlet_drift_detected_total{model="credit-risk"} 1
# HELP gauntlet_canary_weight_percent Share of traffic the router sends to a model's candidate (0 to 100).
# TYPE gauntlet_canary_weight_percent gauge
gauntlet_canary_weight_percent{model="credit-risk"} 25
# HELP gauntlet_rollbacks_total Rollbacks of a model to its previous version, by reason.
# TYPE gauntlet_rollbacks_total counter
gauntlet_rollbacks_total{model="credit-risk",reason="drift"} 1
# HELP gauntlet_run_cost_dollars_total Compute spent by runs, in US dollars.
# TYPE gauntlet_run_cost_dollars_total counter
gauntlet_run_cost_dollars_total{pipeline="credit-risk"} 1.75
# HELP gauntlet_preemptions_total Spot preemptions of nodes that ran a pipeline's steps.
# TYPE gauntlet_preemptions_total counter
gauntlet_preemptions_total{pipeline="credit-risk"} 1
# HELP gauntlet_preemption_waste_dollars_total Compute paid for and lost to preemptions (work after the last checkpoint), in US dollars.
# TYPE gauntlet_preemption_waste_dollars_total counter
gauntlet_preemption_waste_dollars_total{pipeline="credit-risk"} 0.3
`
	if err := gatherAndCompare(reg, want); err != nil {
		t.Fatal(err)
	}
}

func TestPipelinesStartsAtZero(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	m.Pipelines("smoke")
	m.RunFinished("smoke", "failed")
	want := `
# HELP gauntlet_runs_total Pipeline runs that ended, by pipeline and final status (succeeded, failed, canceled, rejected).
# TYPE gauntlet_runs_total counter
gauntlet_runs_total{pipeline="smoke",status="canceled"} 0
gauntlet_runs_total{pipeline="smoke",status="failed"} 1
gauntlet_runs_total{pipeline="smoke",status="rejected"} 0
gauntlet_runs_total{pipeline="smoke",status="succeeded"} 0
`
	if err := gatherAndCompare(reg, want, "gauntlet_runs_total"); err != nil {
		t.Fatal(err)
	}
}

func TestStepAndApprovalHistograms(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	m.StepDone("smoke", "train", "succeeded", 90*time.Second)
	m.StepDone("smoke", "train", "succeeded", 20*time.Minute)
	m.ApprovalDecided("smoke", "approved", 26*time.Hour)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, mf := range fams {
		switch mf.GetName() {
		case "gauntlet_step_duration_seconds":
			h := mf.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() != 2 || h.GetSampleSum() != 1290 {
				t.Errorf("step histogram: count %d sum %v, want 2 and 1290", h.GetSampleCount(), h.GetSampleSum())
			}
			checked++
		case "gauntlet_approval_wait_seconds":
			h := mf.GetMetric()[0].GetHistogram()
			for _, b := range h.GetBucket() {
				// 26 h falls above the 24 h bound and within 48 h.
				if b.GetUpperBound() == 24*3600 && b.GetCumulativeCount() != 0 || b.GetUpperBound() == 48*3600 && b.GetCumulativeCount() != 1 {
					t.Errorf("approval bucket le=%v holds %d", b.GetUpperBound(), b.GetCumulativeCount())
				}
			}
			checked++
		}
	}
	if checked != 2 {
		t.Fatalf("found %d of the 2 histograms", checked)
	}
}

func TestGPUSnapshotReplacesNodeSeries(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	dev := func(i int, util float64) gpu.Device {
		return gpu.Device{Index: i, Name: "NVIDIA H200", MemoryUsedBytes: 1 << 30, MemoryTotalBytes: 141 << 30, UtilizationPercent: util, TemperatureC: 40, PowerWatts: 120.5}
	}
	m.GPUSnapshot("node-a", gpu.Snapshot{State: gpu.Available, Devices: []gpu.Device{dev(0, 10), dev(1, 20)}})
	m.GPUSnapshot("node-b", gpu.Snapshot{State: gpu.Available, Devices: []gpu.Device{dev(0, 30)}})
	// node-a loses GPU 1; node-b's driver goes away.
	m.GPUSnapshot("node-a", gpu.Snapshot{State: gpu.Available, Devices: []gpu.Device{dev(0, 55)}})
	m.GPUSnapshot("node-b", gpu.Snapshot{State: gpu.NoNVIDIAGPU, Reason: "driver not loaded"})
	want := `
# HELP gpu_utilization_percent GPU utilization over the last sample period (0 to 100).
# TYPE gpu_utilization_percent gauge
gpu_utilization_percent{gpu="0",name="NVIDIA H200",node="node-a"} 55
# HELP gpu_memory_used_bytes GPU memory in use.
# TYPE gpu_memory_used_bytes gauge
gpu_memory_used_bytes{gpu="0",name="NVIDIA H200",node="node-a"} 1.073741824e+09
# HELP gpu_memory_total_bytes GPU memory in total.
# TYPE gpu_memory_total_bytes gauge
gpu_memory_total_bytes{gpu="0",name="NVIDIA H200",node="node-a"} 1.51397597184e+11
# HELP gpu_temperature_celsius GPU core temperature.
# TYPE gpu_temperature_celsius gauge
gpu_temperature_celsius{gpu="0",name="NVIDIA H200",node="node-a"} 40
# HELP gpu_power_watts GPU power draw.
# TYPE gpu_power_watts gauge
gpu_power_watts{gpu="0",name="NVIDIA H200",node="node-a"} 120.5
# HELP gpu_devices NVIDIA GPUs the node's worker reads through NVML, by state: "available", or "no NVIDIA GPU" (0 devices).
# TYPE gpu_devices gauge
gpu_devices{node="node-a",state="available"} 1
gpu_devices{node="node-b",state="no NVIDIA GPU"} 0
`
	if err := gatherAndCompare(reg, want); err != nil {
		t.Fatal(err)
	}
}

func TestSetApprovalsWaiting(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	m.SetApprovalsWaiting([]WaitingApproval{
		{Pipeline: "credit-risk", Step: "approve", Count: 2, Oldest: 30 * time.Hour},
		{Pipeline: "smoke", Step: "approve", Count: 1, Oldest: time.Minute},
	})
	m.SetApprovalsWaiting([]WaitingApproval{{Pipeline: "credit-risk", Step: "approve", Count: 1, Oldest: 31 * time.Hour}})
	want := `
# HELP gauntlet_approvals_waiting Approval steps waiting for a decision.
# TYPE gauntlet_approvals_waiting gauge
gauntlet_approvals_waiting{pipeline="credit-risk",step="approve"} 1
# HELP gauntlet_approval_oldest_wait_seconds Age of the oldest approval step still waiting for a decision.
# TYPE gauntlet_approval_oldest_wait_seconds gauge
gauntlet_approval_oldest_wait_seconds{pipeline="credit-risk",step="approve"} 111600
`
	if err := gatherAndCompare(reg, want); err != nil {
		t.Fatal(err)
	}
	m.SetApprovalsWaiting(nil)
	if n, err := gatherAndCount(reg, "gauntlet_approvals_waiting", "gauntlet_approval_oldest_wait_seconds"); err != nil || n != 0 {
		t.Fatalf("after an empty picture: %d series, err %v", n, err)
	}
}

// TestNames checks the naming rule: the gauntlet_ prefix, except the GPU
// gauges whose names the issue fixes.
func TestNames(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	m.RunFinished("p", "succeeded")
	m.StepDone("p", "train", "succeeded", time.Second)
	m.GateOutcome("evaluate", "passed")
	m.ModelQuality("m", "1", 1, 1)
	m.FairnessGap("m", "f", "g", 0)
	m.FeaturePSI("m", "f", 0)
	m.DriftDetected("m")
	m.CanaryWeight("m", 0)
	m.Rollback("m", "r")
	m.GPUSnapshot("n", gpu.Snapshot{State: gpu.Available, Devices: []gpu.Device{{Name: "x"}}})
	m.RunCost("p", 0)
	m.Preempted("p", 0)
	m.SetApprovalsWaiting([]WaitingApproval{{Pipeline: "p", Step: "s"}})
	m.ApprovalDecided("p", "approved", time.Second)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	gpuNames := map[string]bool{"gpu_utilization_percent": true, "gpu_memory_used_bytes": true, "gpu_memory_total_bytes": true, "gpu_temperature_celsius": true, "gpu_power_watts": true, "gpu_devices": true}
	seenGPU := 0
	for _, mf := range fams {
		name := mf.GetName()
		switch {
		case gpuNames[name]:
			seenGPU++
		case !strings.HasPrefix(name, "gauntlet_"):
			t.Errorf("%s lacks the gauntlet_ prefix", name)
		}
		if mf.GetType().String() == "COUNTER" && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
	}
	if seenGPU != len(gpuNames) {
		t.Errorf("found %d of the %d GPU gauges", seenGPU, len(gpuNames))
	}
	if len(fams) != 22 {
		t.Errorf("gathered %d families, want 22 (one per metric)", len(fams))
	}
}

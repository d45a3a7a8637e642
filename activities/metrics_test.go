package activities

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/testsuite"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/deploy"
	"github.com/gauntlet-ml/gauntlet/internal/metrics"
	"github.com/gauntlet-ml/gauntlet/internal/ml/mltest"
	"github.com/gauntlet-ml/gauntlet/internal/monitor"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
	"github.com/gauntlet-ml/gauntlet/internal/serving"
	"github.com/gauntlet-ml/gauntlet/internal/steps"
)

const modelName = "credit-risk"

// testEnv registers every activity, as the worker does, with metrics
// on a fresh registry.
func testEnv(t *testing.T, cfg Config) (*testsuite.TestActivityEnvironment, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Metrics = metrics.NewMetrics(reg)
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	Register(env, cfg)
	return env, reg
}

// sample is the value of one series: a counter's or gauge's value, a
// histogram's observation count; -1 when the series does not exist. It
// stands in for prometheus/testutil, which needs a module go.sum lacks
// (see internal/metrics/compare_test.go).
func sample(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

func TestStepActivityRecordsAttemptOutcome(t *testing.T) {
	env, reg := testEnv(t, Config{PipelinesDir: t.TempDir()})
	in := contract.StepInput{RunID: "run-1", Pipeline: "smoke", StepID: "hello", Uses: "echo", With: map[string]any{"msg": "hi"}}
	if _, err := env.ExecuteActivity(contract.StepActivityName("echo"), in); err != nil {
		t.Fatal(err)
	}
	// No model: evaluate fails on its input, before measuring anything.
	in.StepID, in.Uses, in.With = "eval", "evaluate", map[string]any{}
	if _, err := env.ExecuteActivity(contract.StepActivityName("evaluate"), in); err == nil {
		t.Fatal("evaluate without a model succeeded")
	}
	const h = "gauntlet_step_duration_seconds"
	if n := sample(t, reg, h, "pipeline", "smoke", "uses", "echo", "outcome", "succeeded"); n != 1 {
		t.Errorf("echo succeeded: %v observations, want 1", n)
	}
	if n := sample(t, reg, h, "pipeline", "smoke", "uses", "evaluate", "outcome", "failed"); n != 1 {
		t.Errorf("evaluate failed: %v observations, want 1", n)
	}
	if n := sample(t, reg, "gauntlet_gate_outcomes_total", "gate", "evaluate"); n != -1 {
		t.Errorf("an evaluate that judged nothing counted a gate outcome (%v)", n)
	}
}

func TestStepOutputsRecordModelsGatesDriftAndCost(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.NewMetrics(reg)
	in := steps.Input{RunID: "run-7", Pipeline: "credit-risk"}
	ctx := context.Background()

	// A failed verdict comes with the outputs and a permanent error.
	evalIn := in
	evalIn.With = map[string]any{"registry_model": "scorer"}
	recordStep(ctx, m, "evaluate", evalIn, map[string]any{
		"metrics": map[string]any{"accuracy": 0.81, "roc_auc": 0.88, "brier": nil},
		"passed":  false,
	}, steps.Permanent("GateFailed", fmt.Errorf("failed 1 check")), time.Second)
	recordStep(ctx, m, "fairness-gate", in, map[string]any{
		"passed": true,
		"by_feature": map[string]any{
			"sex": map[string]any{
				"demographic_parity_difference": 0.04, "demographic_parity_ratio": 0.9,
				"equalized_odds_difference": nil, "equal_opportunity_difference": 0.02,
				"groups": map[string]any{"female": map[string]any{"count": 40.0}},
			},
		},
	}, nil, time.Second)
	recordStep(ctx, m, "drift", in, map[string]any{
		"features": map[string]any{"age": map[string]any{"psi": 0.31}, "job": map[string]any{"psi": nil}},
		"drifted":  true,
	}, nil, time.Second)
	// One node destroyed now, one found already destroyed and priced
	// again: only the first is new spending.
	recordStep(ctx, m, "destroy", in, map[string]any{
		"destroyed": true, "cost_usd": 3.5,
		"nodes": []any{
			map[string]any{"destroyed": true, "cost_usd": 1.25},
			map[string]any{"destroyed": false, "cost_usd": 2.25},
		},
	}, nil, time.Second)
	recordStep(ctx, m, "destroy", in, map[string]any{"destroyed": false, "cost_usd": 1.25}, nil, time.Second)

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"gauntlet_model_accuracy", []string{"model", "scorer", "version", "run-7"}, 0.81},
		{"gauntlet_model_roc_auc", []string{"model", "scorer", "version", "run-7"}, 0.88},
		{"gauntlet_gate_outcomes_total", []string{"gate", "evaluate", "outcome", "failed"}, 1},
		{"gauntlet_gate_outcomes_total", []string{"gate", "fairness-gate", "outcome", "passed"}, 1},
		{"gauntlet_fairness_gap", []string{"feature", "sex", "metric", "demographic_parity_difference"}, 0.04},
		{"gauntlet_fairness_gap", []string{"feature", "sex", "metric", "equal_opportunity_difference"}, 0.02},
		{"gauntlet_fairness_gap", []string{"metric", "demographic_parity_ratio"}, -1},
		{"gauntlet_fairness_gap", []string{"metric", "equalized_odds_difference"}, -1},
		{"gauntlet_feature_psi", []string{"model", "credit-risk", "feature", "age"}, 0.31},
		{"gauntlet_feature_psi", []string{"feature", "job"}, -1},
		{"gauntlet_drift_detected_total", []string{"model", "credit-risk"}, 1},
		{"gauntlet_run_cost_dollars_total", []string{"pipeline", "credit-risk"}, 1.25},
		{"gauntlet_step_duration_seconds", []string{"uses", "evaluate", "outcome", "failed"}, 1},
	} {
		if got := sample(t, reg, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestMonitorReportRecordsDriftAndLiveAccuracy(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.NewMetrics(reg)
	psi, acc := 0.27, 0.74
	recordMonitorReport(m, modelName, 3, monitor.Report{
		Features:    map[string]monitor.FeatureDrift{"age": {PSI: &psi, Drifted: true}, "job": {Kind: "categorical"}},
		DataDrifted: true,
		Accuracy:    &acc,
	})
	if got := sample(t, reg, "gauntlet_feature_psi", "model", modelName, "feature", "age"); got != psi {
		t.Errorf("psi of age = %v", got)
	}
	if got := sample(t, reg, "gauntlet_feature_psi", "feature", "job"); got != -1 {
		t.Errorf("a feature without PSI got a series: %v", got)
	}
	if got := sample(t, reg, "gauntlet_drift_detected_total", "model", modelName); got != 1 {
		t.Errorf("drift detected = %v", got)
	}
	if got := sample(t, reg, "gauntlet_model_accuracy", "model", modelName, "version", "3"); got != acc {
		t.Errorf("live accuracy of v3 = %v", got)
	}
}

func TestRecorderCountsRunsAndRefusesUnknownStatus(t *testing.T) {
	env, reg := testEnv(t, Config{PipelinesDir: t.TempDir()})
	if _, err := env.ExecuteActivity(contract.RecordRunName, contract.RunRecord{Pipeline: "smoke", Status: contract.RunFailed}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.ExecuteActivity(contract.RecordRunName, contract.RunRecord{Pipeline: "smoke", Status: "exploded"}); err == nil || !strings.Contains(err.Error(), "exploded") {
		t.Fatalf("unknown status: %v", err)
	}
	if _, err := env.ExecuteActivity(contract.RecordApprovalName, contract.ApprovalRecord{Pipeline: "smoke", Outcome: "approved", Waited: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if got := sample(t, reg, "gauntlet_runs_total", "pipeline", "smoke", "status", "failed"); got != 1 {
		t.Errorf("failed runs = %v", got)
	}
	if got := sample(t, reg, "gauntlet_approval_wait_seconds", "pipeline", "smoke", "outcome", "approved"); got != 1 {
		t.Errorf("approval waits observed = %v", got)
	}
	if got := sample(t, reg, "gauntlet_gate_outcomes_total", "gate", "approval", "outcome", "approved"); got != 1 {
		t.Errorf("approval gate outcomes = %v", got)
	}
}

// registryFixture is a file:// store whose registry holds modelName v1
// and v2, v1 the champion, and a third model directory to use as a
// candidate.
type registryFixture struct {
	state, store string
	ws           *workspace.Workspace
	reg          *registry.Registry
	candidate    string
}

func newRegistryFixture(t *testing.T) *registryFixture {
	t.Helper()
	ctx := context.Background()
	root := t.TempDir()
	f := &registryFixture{state: filepath.Join(root, "state"), store: "file://" + filepath.Join(root, "store")}
	store, err := artifact.Open(ctx, f.store)
	if err != nil {
		t.Fatal(err)
	}
	f.reg = registry.New(store)
	if f.ws, err = workspace.Open(ctx, workspace.Config{Store: f.store, StateDir: f.state}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		dir := filepath.Join(root, fmt.Sprint("model", i))
		trainModel(t, dir, i)
		if i == 3 {
			f.candidate = dir
			break
		}
		dg, err := artifact.PutDir(ctx, store, dir)
		if err != nil {
			t.Fatal(err)
		}
		req := registry.RegisterRequest{Model: modelName, Artifact: dg, Lineage: registry.Lineage{RunID: "run", StepID: fmt.Sprint("train", i)}, CreatedAt: time.Unix(0, 0)}
		if _, err := f.reg.Register(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	f.promote(t, 1, 0)
	return f
}

func (f *registryFixture) promote(t *testing.T, version, expected int) {
	t.Helper()
	if err := f.reg.Promote(context.Background(), modelName, version, expected, registry.Audit{At: time.Unix(1, 0), Actor: "test"}); err != nil {
		t.Fatal(err)
	}
}

// trainModel saves a small logistic model of builtin:credit-risk under dir.
func trainModel(t *testing.T, dir string, seed int) {
	t.Helper()
	mltest.SaveLogReg(t, dir, seed, map[string]any{serving.NegativeLabelParam: "no"})
}

func TestCanaryRecordsWeightAndRollback(t *testing.T) {
	f := newRegistryFixture(t)
	local := deploy.NewLocal(deploy.Options{StateDir: f.state, Workspace: f.ws, Serving: serving.Options{PollInterval: 20 * time.Millisecond}})
	t.Cleanup(func() {
		if err := local.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	env, reg := testEnv(t, Config{PipelinesDir: t.TempDir(), StateDir: f.state, Workspace: f.ws, Deploy: embeddedOnly(t, local)})
	weight := func(want float64) {
		t.Helper()
		if got := sample(t, reg, "gauntlet_canary_weight_percent", "model", modelName); got != want {
			t.Errorf("canary weight %v, want %v", got, want)
		}
	}

	if _, err := env.ExecuteActivity(contract.CanaryStartName, contract.CanaryStartInput{RunID: "run-1", StepID: "canary", Name: modelName, Model: f.candidate}); err != nil {
		t.Fatal(err)
	}
	weight(0)
	if _, err := env.ExecuteActivity(contract.CanaryWeightName, contract.CanaryWeightInput{Name: modelName, Percent: 25}); err != nil {
		t.Fatal(err)
	}
	weight(25)
	if _, err := env.ExecuteActivity(contract.CanaryAbortName, contract.CanaryAbortInput{Name: modelName, Reason: "error rate 4% over 1%"}); err != nil {
		t.Fatal(err)
	}
	weight(0)
	if got := sample(t, reg, "gauntlet_rollbacks_total", "model", modelName, "reason", "canary"); got != 1 {
		t.Errorf("canary rollbacks = %v, want 1", got)
	}
}

func TestMonitorRollbackRecordsRollback(t *testing.T) {
	f := newRegistryFixture(t)
	f.promote(t, 2, 1)
	env, reg := testEnv(t, Config{PipelinesDir: t.TempDir(), StateDir: f.state, Workspace: f.ws})
	v, err := env.ExecuteActivity(contract.MonitorRollbackName, contract.MonitorRollbackInput{Name: modelName, Champion: 2, Reason: "drift on age", Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var res contract.MonitorRollbackResult
	if err := v.Get(&res); err != nil || res.Champion != 1 {
		t.Fatalf("champion after rollback: %+v, %v", res, err)
	}
	if got := sample(t, reg, "gauntlet_rollbacks_total", "model", modelName, "reason", "monitor"); got != 1 {
		t.Errorf("monitor rollbacks = %v, want 1", got)
	}
}

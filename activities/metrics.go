package activities

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/canary"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/deploy"
	"github.com/gauntlet-ml/gauntlet/internal/metrics"
	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/fairness"
	"github.com/gauntlet-ml/gauntlet/internal/monitor"
	"github.com/gauntlet-ml/gauntlet/internal/steps"
)

// Gate names as the gate label carries them: the step type for the gate
// steps, and the analysis the canary dashboards select.
const (
	gateEvaluate = "evaluate"
	gateFairness = "fairness-gate"
	gateCanary   = "canary-analysis"
	gateApproval = "approval"
)

// Rollback reasons: which machinery sent the traffic back. The reason a
// workflow gives is free text and would make a series per incident.
const (
	rollbackCanary  = "canary"
	rollbackMonitor = "monitor"
)

// Recorder is the activity pair through which workflow code reports run
// and approval outcomes (see contract.RecordRunName). It is registered even
// without metrics, so that a workflow calling it never fails for a worker
// that exports none.
type Recorder struct {
	Metrics *metrics.Metrics
}

// runStatuses are the final run states; anything else is refused so that a
// caller's mistake cannot add series.
var runStatuses = map[string]bool{
	contract.RunSucceeded: true, contract.RunFailed: true, contract.RunCanceled: true, contract.RunRejected: true,
}

// approvalOutcomes are the outcomes metrics.ApprovalDecided documents.
var approvalOutcomes = map[string]bool{"approved": true, "rejected": true, "timeout": true}

// Run counts a finished run.
func (r *Recorder) Run(_ context.Context, in contract.RunRecord) error {
	if !runStatuses[in.Status] {
		return nonRetryable("BadInput", fmt.Errorf("record run of %q: status %q is not a final run state", in.Pipeline, in.Status))
	}
	if r.Metrics != nil {
		r.Metrics.RunFinished(in.Pipeline, in.Status)
	}
	return nil
}

// Approval records a decided approval as a gate verdict and its wait.
func (r *Recorder) Approval(_ context.Context, in contract.ApprovalRecord) error {
	if !approvalOutcomes[in.Outcome] {
		return nonRetryable("BadInput", fmt.Errorf("record approval of %q: outcome %q is not approved, rejected or timeout", in.Pipeline, in.Outcome))
	}
	if r.Metrics != nil {
		r.Metrics.GateOutcome(gateApproval, in.Outcome)
		r.Metrics.ApprovalDecided(in.Pipeline, in.Outcome, in.Waited)
	}
	return nil
}

// Preemption counts a lost node and what it cost.
func (r *Recorder) Preemption(_ context.Context, in contract.PreemptionRecord) error {
	if in.WasteUSD < 0 || math.IsNaN(in.WasteUSD) || math.IsInf(in.WasteUSD, 0) {
		return nonRetryable("BadInput", fmt.Errorf("record preemption of %q: waste %v is not a cost", in.Pipeline, in.WasteUSD))
	}
	if r.Metrics != nil {
		r.Metrics.Preempted(in.Pipeline, in.WasteUSD)
	}
	return nil
}

// recordStep records one attempt of a step activity: its duration and
// outcome, then what its outputs say about models, data and cost. Gate
// steps return their outputs with the error of a failed verdict, so out is
// read whatever err is.
func recordStep(ctx context.Context, m *metrics.Metrics, uses string, in steps.Input, out map[string]any, err error, d time.Duration) {
	m.StepDone(in.Pipeline, uses, stepOutcome(ctx, err), d)
	if rec := outputRecorders[uses]; rec != nil && out != nil {
		rec(m, in, out)
	}
}

func stepOutcome(ctx context.Context, err error) string {
	switch {
	case err == nil:
		return contract.StateSucceeded
	case errors.Is(ctx.Err(), context.Canceled):
		return contract.StateCanceled
	default:
		return contract.StateFailed
	}
}

// outputRecorders read the outputs of the step types that measure
// something. The model label of the data steps is the pipeline, as it is
// the default registered name of the model the pipeline trains.
var outputRecorders = map[string]func(*metrics.Metrics, steps.Input, map[string]any){
	"evaluate":      recordEvaluate,
	"fairness-gate": recordFairness,
	"drift":         recordDrift,
	"destroy":       recordDestroy,
}

// recordEvaluate labels the candidate's quality with the run: it has no
// registry version until a canary registers it.
func recordEvaluate(m *metrics.Metrics, in steps.Input, out map[string]any) {
	model := in.Pipeline
	if name, ok := in.With["registry_model"].(string); ok && name != "" {
		model = name
	}
	scores, _ := out["metrics"].(map[string]any)
	acc, hasAcc := number(scores[evaluate.Accuracy])
	auc, hasAUC := number(scores[evaluate.ROCAUC])
	switch {
	case hasAcc && hasAUC:
		m.ModelQuality(model, in.RunID, acc, auc)
	case hasAcc:
		m.ModelAccuracy(model, in.RunID, acc)
	}
	if passed, ok := out["passed"].(bool); ok {
		m.GateOutcome(gateEvaluate, verdict(passed))
	}
}

// gapMetrics are the between-group differences fairness-gate reports. The
// demographic parity ratio is left out: a ratio is not a gap, and on one
// axis with the differences it would read as a large one.
var gapMetrics = []string{fairness.DemographicParityDifference, fairness.EqualizedOddsDifference, fairness.EqualOpportunityDifference}

func recordFairness(m *metrics.Metrics, in steps.Input, out map[string]any) {
	if passed, ok := out["passed"].(bool); ok {
		m.GateOutcome(gateFairness, verdict(passed))
	}
	byFeature, _ := out["by_feature"].(map[string]any)
	for feature, v := range byFeature {
		aggregates, _ := v.(map[string]any)
		for _, metric := range gapMetrics {
			if gap, ok := number(aggregates[metric]); ok {
				m.FairnessGap(in.Pipeline, feature, metric, gap)
			}
		}
	}
}

func recordDrift(m *metrics.Metrics, in steps.Input, out map[string]any) {
	features, _ := out["features"].(map[string]any)
	for name, v := range features {
		f, _ := v.(map[string]any)
		if psi, ok := number(f["psi"]); ok {
			m.FeaturePSI(in.Pipeline, name, psi)
		}
	}
	if drifted, _ := out["drifted"].(bool); drifted {
		m.DriftDetected(in.Pipeline)
	}
}

// recordDestroy adds the cost of the nodes this attempt destroyed. Destroy
// is idempotent and prices a node it finds already destroyed again, so
// counting every reported cost would bill a retried or repeated destroy
// twice.
func recordDestroy(m *metrics.Metrics, in steps.Input, out map[string]any) {
	cost := 0.0
	if nodes, ok := out["nodes"].([]any); ok {
		for _, n := range nodes {
			node, _ := n.(map[string]any)
			if c, ok := number(node["cost_usd"]); ok && node["destroyed"] == true {
				cost += c
			}
		}
	} else if c, ok := number(out["cost_usd"]); ok && out["destroyed"] == true {
		cost = c
	}
	if cost > 0 {
		m.RunCost(in.Pipeline, cost)
	}
}

// recordMonitorReport records one monitor pass over the champion (version
// of model).
func recordMonitorReport(m *metrics.Metrics, model string, version int, rep monitor.Report) {
	for name, f := range rep.Features {
		if f.PSI != nil && finite(*f.PSI) {
			m.FeaturePSI(model, name, *f.PSI)
		}
	}
	if rep.DataDrifted {
		m.DriftDetected(model)
	}
	if rep.Accuracy != nil && finite(*rep.Accuracy) {
		m.ModelAccuracy(model, strconv.Itoa(version), *rep.Accuracy)
	}
}

// canaryWeight is the candidate's share as the router has it, which is not
// the percentage asked for when there is no stable variant yet: the
// candidate of a first deployment takes all traffic.
func canaryWeight(env deploy.Environment) float64 {
	return float64(env.Weights[deploy.Canary])
}

// analysisOutcome words a canary analysis in the gate metric's terms.
func analysisOutcome(o canary.Outcome) string {
	switch o {
	case canary.Pass:
		return verdict(true)
	case canary.Fail:
		return verdict(false)
	default:
		return string(o)
	}
}

func verdict(passed bool) string {
	if passed {
		return "passed"
	}
	return "failed"
}

// number reads a numeric output; steps write NaN and infinities as nil.
func number(v any) (float64, bool) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case float32:
		f = float64(x)
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	default:
		return 0, false
	}
	return f, finite(f)
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

package activities

import (
	"context"
	"fmt"
	"log/slog"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/deploy"
	"github.com/gauntlet-ml/gauntlet/internal/metrics"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

// Config is what the activities need from the worker process.
type Config struct {
	PipelinesDir string
	StateDir     string
	// Workspace is the artifact store every worker shares and this host's
	// cache of it.
	Workspace *workspace.Workspace
	// ReviewerKeys is the reviewers' Ed25519 public key file that approval
	// steps with require_signatures verify against.
	ReviewerKeys string
	// Deploy are the deployment targets of canary and monitor steps; nil
	// makes the embedded one for this worker. A caller that wants to see
	// what is served (the demo's traffic) passes its own.
	Deploy *deploy.Set
	Logger *slog.Logger
	// Metrics receives the domain metrics the activities observe; nil (as
	// in tests) records nothing.
	Metrics *metrics.Metrics
	// Scoring is how steps run models: the ONNX Runtime library.
	Scoring scoring.Options
}

// Register registers every Gauntlet activity on w. Without a Workspace
// the store is file://<StateDir>/artifacts and the cache <StateDir>/cache;
// a state directory that cannot hold them is the error.
func Register(w worker.ActivityRegistry, cfg Config) error {
	if cfg.Workspace == nil {
		ws, err := workspace.Open(context.Background(), workspace.Config{StateDir: cfg.StateDir})
		if err != nil {
			return fmt.Errorf("activities: %w", err)
		}
		cfg.Workspace = ws
	}
	p := &Pipelines{Dir: cfg.PipelinesDir, Metrics: cfg.Metrics}
	c := &Cache{Workspace: cfg.Workspace}
	w.RegisterActivityWithOptions(p.Resolve, activity.RegisterOptions{Name: contract.ResolveName})
	w.RegisterActivityWithOptions(c.Get, activity.RegisterOptions{Name: contract.CacheGetName})
	w.RegisterActivityWithOptions(c.Put, activity.RegisterOptions{Name: contract.CachePutName})
	w.RegisterActivityWithOptions(c.Lookup, activity.RegisterOptions{Name: contract.CacheLookupName})
	n := &Notifier{}
	w.RegisterActivityWithOptions(n.Notify, activity.RegisterOptions{Name: contract.NotifyActivity})
	k := &ReviewerKeys{Path: cfg.ReviewerKeys}
	w.RegisterActivityWithOptions(k.Load, activity.RegisterOptions{Name: contract.LoadReviewerKeysName})
	rec := &Recorder{Metrics: cfg.Metrics}
	w.RegisterActivityWithOptions(rec.Run, activity.RegisterOptions{Name: contract.RecordRunName})
	w.RegisterActivityWithOptions(rec.Approval, activity.RegisterOptions{Name: contract.RecordApprovalName})
	w.RegisterActivityWithOptions(rec.Preemption, activity.RegisterOptions{Name: contract.RecordPreemptionName})
	h := &Host{StateDir: cfg.StateDir, Workspace: cfg.Workspace, Logger: cfg.Logger, Metrics: cfg.Metrics, Scoring: cfg.Scoring}
	h.RegisterSteps(w)
	rc := &Recoverer{Store: cfg.Workspace.Store()}
	w.RegisterActivityWithOptions(rc.Recover, activity.RegisterOptions{Name: contract.RecoverName})
	if cfg.Deploy == nil {
		set, err := deploy.Config{}.Targets(deploy.Options{StateDir: cfg.StateDir, Workspace: cfg.Workspace, Logger: cfg.Logger})
		if err != nil {
			return fmt.Errorf("activities: %w", err)
		}
		cfg.Deploy = set
	}
	cn := &Canary{Deploy: cfg.Deploy, Workspace: cfg.Workspace, Metrics: cfg.Metrics}
	w.RegisterActivityWithOptions(cn.Start, activity.RegisterOptions{Name: contract.CanaryStartName})
	w.RegisterActivityWithOptions(cn.Weight, activity.RegisterOptions{Name: contract.CanaryWeightName})
	w.RegisterActivityWithOptions(cn.Measure, activity.RegisterOptions{Name: contract.CanaryMeasureName})
	w.RegisterActivityWithOptions(cn.Promote, activity.RegisterOptions{Name: contract.CanaryPromoteName})
	w.RegisterActivityWithOptions(cn.Abort, activity.RegisterOptions{Name: contract.CanaryAbortName})
	mon := &Monitor{Deploy: cn.Deploy, Workspace: cfg.Workspace, Metrics: cfg.Metrics}
	w.RegisterActivityWithOptions(mon.Check, activity.RegisterOptions{Name: contract.MonitorCheckName})
	w.RegisterActivityWithOptions(mon.Rollback, activity.RegisterOptions{Name: contract.MonitorRollbackName})
	return nil
}

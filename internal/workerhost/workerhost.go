// Package workerhost assembles a Temporal worker with every Gauntlet workflow
// and activity, for the worker binary and for `gauntlet dev` alike.
package workerhost

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/gauntlet-ml/gauntlet/activities"
	"github.com/gauntlet-ml/gauntlet/internal/deploy"
	"github.com/gauntlet-ml/gauntlet/workflows"
)

// Config describes one worker.
type Config struct {
	TaskQueue    string
	PipelinesDir string
	StateDir     string
	// NodeID is set on workers started on a provisioned GPU node.
	NodeID string
	// ReviewerKeys is the reviewers' public key file for signed approvals.
	ReviewerKeys string
	// Deploy, when set, is the deployment target canary and monitor steps
	// drive; see activities.Config.
	Deploy *deploy.Local
	Logger *slog.Logger
}

// New builds (but does not start) a worker.
func New(c client.Client, cfg Config) (worker.Worker, error) {
	if cfg.TaskQueue == "" {
		return nil, fmt.Errorf("worker: no task queue")
	}
	state, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("worker: state directory %s: %w", cfg.StateDir, err)
	}
	w := worker.New(c, cfg.TaskQueue, worker.Options{})
	workflows.Register(w)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.NodeID != "" {
		logger = logger.With("node_id", cfg.NodeID)
	}
	activities.Register(w, activities.Config{PipelinesDir: cfg.PipelinesDir, StateDir: state, ReviewerKeys: cfg.ReviewerKeys, Deploy: cfg.Deploy, Logger: logger})
	return w, nil
}

package activities

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/deploy"
	"github.com/gauntlet-ml/gauntlet/internal/metrics"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/monitor/watch"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
)

// Monitor adapts the monitor workflow's activities: one pass over what the
// champion served, and the rollback a breach calls for.
type Monitor struct {
	Deploy *deploy.Local
	// Store is the artifact store location holding the registry.
	Store string
	// CacheDir keeps champion models fetched from the store, by version.
	CacheDir string
	// Metrics, when set, receives each pass's drift and live accuracy and
	// counts rollbacks; nil records nothing.
	Metrics *metrics.Metrics
}

// Check runs one monitoring pass over the champion's sample log.
func (m *Monitor) Check(ctx context.Context, in contract.MonitorCheckInput) (contract.MonitorCheckResult, error) {
	store, err := artifact.Open(ctx, m.Store)
	if err != nil {
		return contract.MonitorCheckResult{}, fmt.Errorf("monitor: artifact store %s: %w", m.Store, err)
	}
	mv, err := registry.New(store).Resolve(ctx, in.Name, registry.Champion)
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return contract.MonitorCheckResult{}, nonRetryable("BadInput", fmt.Errorf("monitor: %s has no champion to watch: %w", in.Name, err))
		}
		return contract.MonitorCheckResult{}, fmt.Errorf("monitor: champion of %s: %w", in.Name, err)
	}
	dir := filepath.Join(m.CacheDir, safe(in.Name), "v"+strconv.Itoa(mv.Version))
	if _, err := os.Stat(dir); err != nil {
		if err := artifact.FetchTree(ctx, store, mv.Artifact, dir); err != nil {
			return contract.MonitorCheckResult{}, fmt.Errorf("monitor: fetch %s v%d: %w", in.Name, mv.Version, err)
		}
	}
	art, err := modelfile.Load(dir)
	if err != nil {
		return contract.MonitorCheckResult{}, fmt.Errorf("monitor: %s v%d: %w", in.Name, mv.Version, err)
	}
	env, err := m.Deploy.Ensure(ctx, in.Name)
	if err != nil {
		return contract.MonitorCheckResult{}, err
	}
	stable, ok := env.Variant(deploy.Stable)
	if !ok {
		return contract.MonitorCheckResult{}, fmt.Errorf("monitor: %s serves no stable variant", in.Name)
	}
	stop := heartbeatEvery(ctx, 10*time.Second)
	defer stop()
	rep, err := watch.Check(ctx, in.Config, watch.Input{
		Model: art.Manifest, Reference: in.Reference, SampleDirs: []string{stable.SampleDir}, Since: in.Since, Labels: in.Labels,
	})
	if err != nil {
		// Retryable: a log being rotated or a store briefly away mends
		// itself, and the monitor goes on to its next pass either way.
		return contract.MonitorCheckResult{}, err
	}
	if m.Metrics != nil {
		recordMonitorReport(m.Metrics, in.Name, mv.Version, rep)
	}
	return contract.MonitorCheckResult{Champion: mv.Version, Report: rep}, nil
}

// Rollback makes the previous champion champion again; the stable server
// follows the alias. The expected champion makes a retried rollback a
// no-op instead of a second swap.
func (m *Monitor) Rollback(ctx context.Context, in contract.MonitorRollbackInput) (contract.MonitorRollbackResult, error) {
	store, err := artifact.Open(ctx, m.Store)
	if err != nil {
		return contract.MonitorRollbackResult{}, fmt.Errorf("monitor: artifact store %s: %w", m.Store, err)
	}
	reg := registry.New(store)
	err = reg.Rollback(ctx, in.Name, in.Champion, registry.Audit{At: time.Now().UTC(), Actor: in.Actor, Reason: in.Reason})
	var conflict *registry.ConflictError
	switch {
	case errors.As(err, &conflict):
		return contract.MonitorRollbackResult{}, nonRetryable("RollbackConflict", fmt.Errorf("monitor: %w: someone moved the champion first", err))
	case errors.Is(err, registry.ErrNotFound):
		return contract.MonitorRollbackResult{}, nonRetryable("NoPreviousChampion", err)
	case err != nil:
		return contract.MonitorRollbackResult{}, fmt.Errorf("monitor: rollback %s: %w", in.Name, err)
	}
	if m.Metrics != nil {
		m.Metrics.Rollback(in.Name, rollbackMonitor)
	}
	mv, err := reg.Resolve(ctx, in.Name, registry.Champion)
	if err != nil {
		return contract.MonitorRollbackResult{}, fmt.Errorf("monitor: champion of %s after rollback: %w", in.Name, err)
	}
	return contract.MonitorRollbackResult{Champion: mv.Version}, nil
}

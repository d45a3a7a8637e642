package activities

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/deploy"
	"github.com/gauntlet-ml/gauntlet/internal/metrics"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
	"github.com/gauntlet-ml/gauntlet/internal/monitor/watch"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
)

// Monitor adapts the monitor workflow's activities: one pass over what the
// champion served, and the rollback a breach calls for.
type Monitor struct {
	// Deploy are the worker's deployment targets.
	Deploy *deploy.Set
	// Workspace is the store holding the registry, with this host's cache
	// that champion models are fetched into.
	Workspace *workspace.Workspace
	// Metrics, when set, receives each pass's drift and live accuracy and
	// counts rollbacks; nil records nothing.
	Metrics *metrics.Metrics
}

// Check runs one monitoring pass over the champion's sample log.
func (m *Monitor) Check(ctx context.Context, in contract.MonitorCheckInput) (contract.MonitorCheckResult, error) {
	session := m.Workspace.Session()
	defer session.Close()
	mv, err := registry.New(m.Workspace.Store()).Resolve(ctx, in.Name, registry.Champion)
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return contract.MonitorCheckResult{}, nonRetryable("BadInput", fmt.Errorf("monitor: %s has no champion to watch: %w", in.Name, err))
		}
		return contract.MonitorCheckResult{}, fmt.Errorf("monitor: champion of %s: %w", in.Name, err)
	}
	dir, err := session.Materialize(ctx, artifact.PointerTo(m.Workspace.Store(), artifact.KindTree, mv.Artifact))
	if err != nil {
		return contract.MonitorCheckResult{}, toTemporal(fmt.Errorf("monitor: fetch %s v%d: %w", in.Name, mv.Version, err), 0)
	}
	// Either format: the check reads the model's schema, preprocessing,
	// metrics and lineage, never its weights.
	info, enc, err := scoring.Describe(dir)
	if err != nil {
		return contract.MonitorCheckResult{}, fmt.Errorf("monitor: %s v%d: %w", in.Name, mv.Version, err)
	}
	// The reference data (given, or the training data the manifest names)
	// may live anywhere a step's data may: it is fetched here, and the
	// check still compares the training data's digest.
	manifest := modelfile.Manifest{Schema: info.Schema, Features: info.Signature.Features, Preprocessing: enc,
		Threshold: info.Threshold, Metrics: info.Metrics, Lineage: info.Lineage}
	reference := in.Reference
	if reference == "" && manifest.Lineage.DataSource != "" && !strings.HasPrefix(manifest.Lineage.DataSource, workspace.BuiltinScheme) {
		d, err := session.Data(ctx, manifest.Lineage.DataSource)
		if err != nil {
			return contract.MonitorCheckResult{}, toTemporal(fmt.Errorf("monitor: training data of %s v%d: %w", in.Name, mv.Version, err), 0)
		}
		manifest.Lineage.DataSource = d.Path
	} else if reference != "" {
		d, err := session.Data(ctx, reference)
		if err != nil {
			return contract.MonitorCheckResult{}, toTemporal(fmt.Errorf("monitor: with.reference: %w", err), 0)
		}
		reference = d.Path
	}
	// Delayed labels in the store (a pointer, s3:// or https://) are
	// fetched here; a path is read where it is.
	labels := in.Labels
	if strings.Contains(labels, "://") {
		d, err := session.Data(ctx, labels)
		if err != nil {
			return contract.MonitorCheckResult{}, toTemporal(fmt.Errorf("monitor: with.labels: %w", err), 0)
		}
		labels = d.Path
	}
	target, err := deployTarget(m.Deploy, in.Target)
	if err != nil {
		return contract.MonitorCheckResult{}, err
	}
	// A fleet's Ensure may wait for a server to load the champion.
	stop := heartbeatEvery(ctx, 10*time.Second)
	defer stop()
	env, err := target.Ensure(ctx, in.Name)
	if err != nil {
		return contract.MonitorCheckResult{}, deployErr(err)
	}
	stable, ok := env.Variant(deploy.Stable)
	if !ok {
		return contract.MonitorCheckResult{}, fmt.Errorf("monitor: %s serves no stable variant", in.Name)
	}
	input := watch.Input{Model: &manifest, Reference: reference, SampleDirs: []string{stable.SampleDir}, Since: in.Since, Labels: labels}
	if env.Samples == deploy.SamplesInStore {
		// A fleet's servers ship every version they serve into the
		// model's chunks: the champion's samples are the pass's.
		input.SampleDirs = nil
		input.Version = "v" + strconv.Itoa(mv.Version)
		input.Samples = watch.StoreSamples{Store: m.Workspace.Store(), Model: in.Name, Version: input.Version}
	}
	rep, err := watch.Check(ctx, in.Config, input)
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

// Rollback makes the previous champion champion again, and the stable
// server serve it at once. The expected champion makes a retried rollback
// a no-op instead of a second swap.
func (m *Monitor) Rollback(ctx context.Context, in contract.MonitorRollbackInput) (contract.MonitorRollbackResult, error) {
	reg := registry.New(m.Workspace.Store())
	err := reg.Rollback(ctx, in.Name, in.Champion, registry.Audit{At: time.Now().UTC(), Actor: in.Actor, Reason: in.Reason})
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
	target, err := deployTarget(m.Deploy, in.Target)
	if err != nil {
		return contract.MonitorRollbackResult{}, err
	}
	stop := heartbeatEvery(ctx, 10*time.Second)
	defer stop()
	if _, err := target.FollowChampion(ctx, in.Name); err != nil {
		return contract.MonitorRollbackResult{}, deployErr(fmt.Errorf("monitor: serve %s's champion after the rollback: %w", in.Name, err))
	}
	mv, err := reg.Resolve(ctx, in.Name, registry.Champion)
	if err != nil {
		return contract.MonitorRollbackResult{}, fmt.Errorf("monitor: champion of %s after rollback: %w", in.Name, err)
	}
	return contract.MonitorRollbackResult{Champion: mv.Version}, nil
}

package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
)

// Target kinds, as --deploy-target and a step's target input name them.
const (
	// Embedded is Local: a router and model servers inside the worker.
	Embedded = contract.TargetEmbedded
	// FleetKind is Fleet: long-running router and model servers driven
	// over their admin APIs.
	FleetKind = contract.TargetFleet
)

// Kinds lists the target kinds.
func Kinds() []string { return []string{Embedded, FleetKind} }

// Target is where canary-deploy and monitor steps deploy a model. Every
// method is safe to repeat, as a retried activity does: StartCanary of the
// candidate already in canary, EndCanary with none, and so on change
// nothing.
type Target interface {
	// Kind is Embedded or FleetKind.
	Kind() string
	// Ensure makes the environment of model name serve what it should:
	// the champion on stable and the candidate in canary, if any, at its
	// weight.
	Ensure(ctx context.Context, name string) (Environment, error)
	// StartCanary serves c as the canary variant at weight 0 (all traffic
	// when there is no champion yet); another candidate in canary is
	// ErrCanaryInProgress.
	StartCanary(ctx context.Context, name string, c Candidate) (Environment, error)
	// SetCanaryWeight sends percent of the traffic to the canary and the
	// rest to stable; ErrNoCanary without one.
	SetCanaryWeight(ctx context.Context, name string, percent int) (Environment, error)
	// SetFault makes the router answer abortPercent of variant's requests
	// with status (0: 503) itself; 0 removes the fault.
	SetFault(ctx context.Context, name, variant string, abortPercent, status int) (Environment, error)
	// EndCanary makes stable serve the champion (the caller moved the
	// alias first after a promotion), sends it all traffic and takes the
	// canary out of it.
	EndCanary(ctx context.Context, name string) (Environment, error)
	// FollowChampion makes stable serve the champion now rather than at
	// its next poll: after the alias moved outside a canary, as a
	// monitor's rollback moves it.
	FollowChampion(ctx context.Context, name string) (Environment, error)
	// Close lets go of what the target started; a fleet outlives it.
	Close(ctx context.Context) error
}

var (
	_ Target = (*Local)(nil)
	_ Target = (*Fleet)(nil)
)

// Candidate is a model to canary.
type Candidate struct {
	// Model is the model's artifact pointer.
	Model artifact.Pointer
	// Version is its registry version. A fleet's canary server follows it
	// through the challenger alias; Local serves Model directly.
	Version int
}

// ConfigError reports a deployment target set up wrongly: an unknown or
// unconfigured target, a fleet whose router or servers are not what the
// target drives, an admin token they refuse. Retrying cannot mend it.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func configErrorf(format string, args ...any) error {
	return &ConfigError{Err: fmt.Errorf(format, args...)}
}

// IsConfigError reports whether err is a ConfigError.
func IsConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}

// ValidKind checks a target name a step or flag gives.
func ValidKind(kind string) error {
	if !slices.Contains(Kinds(), kind) {
		return fmt.Errorf("deployment target %q: want %s", kind, strings.Join(Kinds(), " or "))
	}
	return nil
}

// Set is a worker's deployment targets: the embedded one always, a fleet
// when one is configured, and which of them a step that names none gets.
type Set struct {
	def     string
	targets map[string]Target
}

// NewSet makes a Set of targets (one per kind) whose default is def.
func NewSet(def string, targets ...Target) (*Set, error) {
	s := &Set{def: def, targets: map[string]Target{}}
	for _, t := range targets {
		if _, dup := s.targets[t.Kind()]; dup {
			return nil, fmt.Errorf("deploy: two %s targets", t.Kind())
		}
		s.targets[t.Kind()] = t
	}
	if _, err := s.Get(def); err != nil {
		return nil, err
	}
	return s, nil
}

// Default is the kind of the target a step that names none gets.
func (s *Set) Default() string { return s.def }

// Get returns the target of kind; empty means the default. A kind that is
// unknown or not configured here is a ConfigError.
func (s *Set) Get(kind string) (Target, error) {
	if kind == "" {
		kind = s.def
	}
	if err := ValidKind(kind); err != nil {
		return nil, &ConfigError{Err: err}
	}
	t, ok := s.targets[kind]
	if !ok {
		return nil, configErrorf("deployment target %s: this worker has none configured (start it with --deploy-target %s and the fleet's settings: --fleet-router, --fleet-admin-token-file, --fleet-prometheus)", kind, kind)
	}
	return t, nil
}

// Close closes every target.
func (s *Set) Close(ctx context.Context) error {
	var errs []error
	for _, k := range Kinds() {
		if t, ok := s.targets[k]; ok {
			errs = append(errs, t.Close(ctx))
		}
	}
	return errors.Join(errs...)
}

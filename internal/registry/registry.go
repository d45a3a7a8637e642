// Package registry keeps model versions and the aliases that point at them
// (champion, challenger, previous, ...) in an artifact store.
//
// Each model is one ref, registry/models/<name>, holding its versions, its
// aliases and the audit history of alias moves. Every change is a
// read-modify-write of that ref under compare-and-swap, so registration,
// promotion and rollback are each one atomic step, and the semantic checks
// (which version is champion, has this step registered already) are made
// against exactly the state the write replaces. The price is that a model's
// whole record is rewritten on each change; at a few hundred bytes per version
// that is fine for thousands of versions.
//
// The package never reads the clock: times come from the caller (in a
// workflow, workflow.Now), which keeps retried activities deterministic.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
)

// Well-known aliases. Champion and Previous move only through Promote and
// Rollback, so "previous" always means "the champion before this one".
const (
	Champion   = "champion"
	Challenger = "challenger"
	Previous   = "previous"
)

// Lineage records where a version came from.
type Lineage struct {
	RunID      string `json:"run_id"`
	StepID     string `json:"step_id"`
	DataDigest string `json:"data_digest,omitempty"`
	SpecHash   string `json:"spec_hash,omitempty"`
}

// ModelVersion is one registered version. Versions are numbered 1, 2, ... per
// model, in registration order.
type ModelVersion struct {
	Model     string             `json:"model"`
	Version   int                `json:"version"`
	Artifact  artifact.Digest    `json:"artifact"`
	Lineage   Lineage            `json:"lineage"`
	Metrics   map[string]float64 `json:"metrics,omitempty"`
	Parent    int                `json:"parent,omitempty"`
	CreatedAt time.Time          `json:"created_at"`
}

// RegisterRequest describes a version to register. Parent, if set, must be an
// existing version of the same model.
type RegisterRequest struct {
	Model     string
	Artifact  artifact.Digest
	Lineage   Lineage
	Metrics   map[string]float64
	Parent    int
	CreatedAt time.Time
}

// Audit says who moves an alias, when and why.
type Audit struct {
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Reason string    `json:"reason,omitempty"`
}

// AliasMove is one entry of a model's audit history: the aliases one
// operation changed together. Version 0 means unset.
type AliasMove struct {
	Seq     int           `json:"seq"`
	Op      string        `json:"op"` // "promote", "rollback" or "set"
	Changes []AliasChange `json:"changes"`
	Audit
}

// AliasChange is one alias moving from one version to another.
type AliasChange struct {
	Alias string `json:"alias"`
	From  int    `json:"from"`
	To    int    `json:"to"`
}

// Model is everything the registry knows about one model.
type Model struct {
	Name     string         `json:"name"`
	Versions []ModelVersion `json:"versions"`
	Aliases  map[string]int `json:"aliases"`
	History  []AliasMove    `json:"history"`
}

// ConflictError reports an alias that was not where the caller expected:
// someone else moved it first. Retrying the same call cannot succeed.
type ConflictError struct {
	Model    string
	Alias    string
	Expected int
	Actual   int
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("registry: %s: %s is at version %d, expected %d", e.Model, e.Alias, e.Actual, e.Expected)
}

var (
	// ErrNotFound reports an unknown model, version or alias.
	ErrNotFound = errors.New("not found")
	// ErrContended reports an update that lost the compare-and-swap race too
	// many times in a row; unlike a ConflictError it is worth retrying.
	ErrContended = errors.New("too many concurrent updates")
	// errUnchanged ends an update that has nothing to write.
	errUnchanged = errors.New("unchanged")
)

// IsRetryable reports whether retrying the failed call may succeed.
func IsRetryable(err error) bool {
	return errors.Is(err, ErrContended) || artifact.IsRetryable(err)
}

// Registry is a model registry on an artifact store.
type Registry struct {
	store artifact.Store
}

// New returns a registry kept in s.
func New(s artifact.Store) *Registry { return &Registry{store: s} }

const refPrefix = "registry/models/"

// maxAttempts bounds one update's compare-and-swap retries. Each lost race
// means another writer succeeded, so hitting it means sustained contention.
const maxAttempts = 20

// ValidateName checks a model name: letters, digits, '.', '_' and '-',
// starting with a letter or digit, at most 128 characters.
func ValidateName(name string) error {
	if name == "" || len(name) > 128 || strings.ContainsAny(name[:1], "._-") {
		return fmt.Errorf("registry: invalid model name %q", name)
	}
	if err := artifact.ValidateRefName(name); err != nil || strings.Contains(name, "/") {
		return fmt.Errorf("registry: invalid model name %q", name)
	}
	return nil
}

func validateAlias(alias string) error {
	if err := ValidateName(alias); err != nil {
		return fmt.Errorf("registry: invalid alias %q", alias)
	}
	if _, err := strconv.Atoi(strings.TrimPrefix(alias, "v")); err == nil {
		// Resolve reads "3" and "v3" as version numbers.
		return fmt.Errorf("registry: invalid alias %q: looks like a version number", alias)
	}
	return nil
}

// Models lists the registered model names.
func (r *Registry) Models(ctx context.Context) ([]string, error) {
	refs, err := r.store.ListRefs(ctx, refPrefix)
	if err != nil {
		return nil, fmt.Errorf("registry: list models: %w", err)
	}
	names := make([]string, 0, len(refs))
	for _, ref := range refs {
		names = append(names, strings.TrimPrefix(ref, refPrefix))
	}
	return names, nil
}

// Get returns a model's versions, aliases and history.
func (r *Registry) Get(ctx context.Context, name string) (Model, error) {
	if err := ValidateName(name); err != nil {
		return Model{}, err
	}
	m, _, err := r.load(ctx, name)
	if err != nil {
		return Model{}, err
	}
	if len(m.Versions) == 0 {
		return Model{}, fmt.Errorf("registry: model %s: %w", name, ErrNotFound)
	}
	return m, nil
}

// Version returns one version of a model.
func (r *Registry) Version(ctx context.Context, name string, version int) (ModelVersion, error) {
	m, err := r.Get(ctx, name)
	if err != nil {
		return ModelVersion{}, err
	}
	if !m.has(version) {
		return ModelVersion{}, fmt.Errorf("registry: %s version %d: %w", name, version, ErrNotFound)
	}
	return m.Versions[version-1], nil
}

// Resolve returns the version that ref names: a version number ("3" or "v3")
// or an alias ("champion").
func (r *Registry) Resolve(ctx context.Context, name, ref string) (ModelVersion, error) {
	m, err := r.Get(ctx, name)
	if err != nil {
		return ModelVersion{}, err
	}
	v, err := strconv.Atoi(strings.TrimPrefix(ref, "v"))
	if err != nil {
		var ok bool
		if v, ok = m.Aliases[ref]; !ok {
			return ModelVersion{}, fmt.Errorf("registry: %s: alias %q: %w", name, ref, ErrNotFound)
		}
	}
	if !m.has(v) {
		return ModelVersion{}, fmt.Errorf("registry: %s version %d: %w", name, v, ErrNotFound)
	}
	return m.Versions[v-1], nil
}

// Register adds a version, or returns the version already registered by the
// same (run, step): a retried step gets its first registration back instead
// of a second version, even if it produced a different artifact this time.
func (r *Registry) Register(ctx context.Context, req RegisterRequest) (ModelVersion, error) {
	if err := req.validate(); err != nil {
		return ModelVersion{}, err
	}
	var out ModelVersion
	err := r.update(ctx, req.Model, func(m *Model) error {
		for _, v := range m.Versions {
			if v.Lineage.RunID == req.Lineage.RunID && v.Lineage.StepID == req.Lineage.StepID {
				out = v
				return errUnchanged
			}
		}
		if req.Parent != 0 && !m.has(req.Parent) {
			return fmt.Errorf("registry: %s: parent version %d: %w", req.Model, req.Parent, ErrNotFound)
		}
		out = ModelVersion{
			Model:     req.Model,
			Version:   len(m.Versions) + 1,
			Artifact:  req.Artifact,
			Lineage:   req.Lineage,
			Metrics:   req.Metrics,
			Parent:    req.Parent,
			CreatedAt: req.CreatedAt,
		}
		m.Versions = append(m.Versions, out)
		return nil
	})
	if err != nil {
		return ModelVersion{}, err
	}
	return out, nil
}

func (req RegisterRequest) validate() error {
	if err := ValidateName(req.Model); err != nil {
		return err
	}
	if _, err := artifact.ParseDigest(string(req.Artifact)); err != nil {
		return fmt.Errorf("registry: register %s: %w", req.Model, err)
	}
	if req.Lineage.RunID == "" || req.Lineage.StepID == "" {
		return fmt.Errorf("registry: register %s: run id and step id are required (they make registration idempotent)", req.Model)
	}
	if req.CreatedAt.IsZero() {
		return fmt.Errorf("registry: register %s: created time is required", req.Model)
	}
	if req.Parent < 0 {
		return fmt.Errorf("registry: register %s: negative parent version %d", req.Model, req.Parent)
	}
	for k, v := range req.Metrics {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("registry: register %s: metric %q is %v; only finite values can be stored", req.Model, k, v)
		}
	}
	return nil
}

// Promote makes version the champion and the old champion previous, in one
// atomic step, provided the champion is still expectedChampion (0: none).
// If the champion moved meanwhile it fails with a *ConflictError, so of two
// runs promoting from the same champion exactly one wins. Repeating a
// promotion that already happened (a retried activity) succeeds unchanged.
func (r *Registry) Promote(ctx context.Context, name string, version, expectedChampion int, a Audit) error {
	if err := a.validate(name); err != nil {
		return err
	}
	return r.update(ctx, name, func(m *Model) error {
		if !m.has(version) {
			return fmt.Errorf("registry: promote %s version %d: %w", name, version, ErrNotFound)
		}
		cur := m.Aliases[Champion]
		if cur == version && (version == expectedChampion || m.lastMove("promote", expectedChampion, version)) {
			return errUnchanged
		}
		if cur != expectedChampion {
			return &ConflictError{Model: name, Alias: Champion, Expected: expectedChampion, Actual: cur}
		}
		m.move("promote", a, AliasChange{Champion, cur, version}, AliasChange{Previous, m.Aliases[Previous], cur})
		return nil
	})
}

// Rollback makes the previous champion champion again and the current one
// previous, provided the champion is still expectedChampion. Asking for the
// current champion keeps a retried rollback from swapping twice.
func (r *Registry) Rollback(ctx context.Context, name string, expectedChampion int, a Audit) error {
	if err := a.validate(name); err != nil {
		return err
	}
	return r.update(ctx, name, func(m *Model) error {
		if len(m.Versions) == 0 {
			return fmt.Errorf("registry: rollback %s: %w", name, ErrNotFound)
		}
		cur, prev := m.Aliases[Champion], m.Aliases[Previous]
		if cur != expectedChampion && m.lastMove("rollback", expectedChampion, cur) {
			return errUnchanged
		}
		if cur != expectedChampion {
			return &ConflictError{Model: name, Alias: Champion, Expected: expectedChampion, Actual: cur}
		}
		if prev == 0 {
			return fmt.Errorf("registry: rollback %s: no previous champion: %w", name, ErrNotFound)
		}
		m.move("rollback", a, AliasChange{Champion, cur, prev}, AliasChange{Previous, prev, cur})
		return nil
	})
}

// SetAlias points alias at version (0 removes it), provided it currently
// points at expected (0: unset). Champion and previous are refused: they move
// only together, through Promote and Rollback.
func (r *Registry) SetAlias(ctx context.Context, name, alias string, version, expected int, a Audit) error {
	if err := validateAlias(alias); err != nil {
		return err
	}
	if alias == Champion || alias == Previous {
		return fmt.Errorf("registry: set alias %s of %s: use Promote or Rollback", alias, name)
	}
	if err := a.validate(name); err != nil {
		return err
	}
	return r.update(ctx, name, func(m *Model) error {
		if len(m.Versions) == 0 || version != 0 && !m.has(version) {
			return fmt.Errorf("registry: set alias %s of %s to version %d: %w", alias, name, version, ErrNotFound)
		}
		cur := m.Aliases[alias]
		if cur == version {
			return errUnchanged
		}
		if cur != expected {
			return &ConflictError{Model: name, Alias: alias, Expected: expected, Actual: cur}
		}
		m.move("set", a, AliasChange{alias, cur, version})
		return nil
	})
}

func (a Audit) validate(model string) error {
	if a.At.IsZero() || a.Actor == "" {
		return fmt.Errorf("registry: %s: alias moves need a time and an actor for the audit history", model)
	}
	return nil
}

func (m *Model) has(version int) bool { return version >= 1 && version <= len(m.Versions) }

// lastMove reports whether the latest history entry is an op that moved the
// champion from → to: the trace a completed call leaves, which lets its retry
// recognise its own work.
func (m *Model) lastMove(op string, from, to int) bool {
	if len(m.History) == 0 {
		return false
	}
	last := m.History[len(m.History)-1]
	return last.Op == op && slices.Contains(last.Changes, AliasChange{Champion, from, to})
}

func (m *Model) move(op string, a Audit, changes ...AliasChange) {
	if m.Aliases == nil {
		m.Aliases = map[string]int{}
	}
	for _, c := range changes {
		if c.To == 0 {
			delete(m.Aliases, c.Alias)
		} else {
			m.Aliases[c.Alias] = c.To
		}
	}
	m.History = append(m.History, AliasMove{Seq: len(m.History) + 1, Op: op, Changes: changes, Audit: a})
}

func (r *Registry) load(ctx context.Context, name string) (Model, string, error) {
	ref, err := r.store.GetRef(ctx, refPrefix+name)
	if errors.Is(err, artifact.ErrNotFound) {
		return Model{Name: name}, "", nil
	}
	if err != nil {
		return Model{}, "", fmt.Errorf("registry: load %s: %w", name, err)
	}
	var m Model
	if err := json.Unmarshal(ref.Data, &m); err != nil {
		return Model{}, "", fmt.Errorf("registry: load %s: malformed record: %w", name, err)
	}
	return m, ref.Version, nil
}

// update applies fn to the current record and writes it back only if nobody
// wrote in between; otherwise it starts over from the new record, so fn's
// checks always hold for the state it replaces.
func (r *Registry) update(ctx context.Context, name string, fn func(*Model) error) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		m, version, err := r.load(ctx, name)
		if err != nil {
			return err
		}
		if err := fn(&m); err != nil {
			if errors.Is(err, errUnchanged) {
				return nil
			}
			return err
		}
		data, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("registry: save %s: %w", name, err)
		}
		_, err = r.store.PutRef(ctx, refPrefix+name, data, version)
		if !errors.Is(err, artifact.ErrConflict) {
			if err != nil {
				return fmt.Errorf("registry: save %s: %w", name, err)
			}
			return nil
		}
		if attempt == maxAttempts {
			return fmt.Errorf("registry: save %s: lost %d races in a row: %w", name, attempt, ErrContended)
		}
		if err := backoff(ctx, attempt); err != nil {
			return fmt.Errorf("registry: save %s: %w", name, err)
		}
	}
}

// backoff waits a little, randomly, so that writers who just collided do not
// collide again in lockstep.
func backoff(ctx context.Context, attempt int) error {
	limit := min(time.Millisecond<<attempt, 100*time.Millisecond)
	t := time.NewTimer(rand.N(limit))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

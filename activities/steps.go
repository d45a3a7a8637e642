// Package activities adapts Gauntlet's plain-Go step types and pipeline
// loading into Temporal activities: decode the input, call the domain code,
// heartbeat, and map errors onto retryable or not.
package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/metrics"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
	"github.com/gauntlet-ml/gauntlet/internal/secrets"
	"github.com/gauntlet-ml/gauntlet/internal/steps"
)

// Host carries what step activities need from the worker.
type Host struct {
	StateDir string
	// Workspace is the fleet's store and this host's cache.
	Workspace *workspace.Workspace
	Logger    *slog.Logger
	// Metrics, when set, records every step attempt; nil records nothing.
	Metrics *metrics.Metrics
	// Scoring is how steps run models (steps.ModelHost).
	Scoring scoring.Options
}

// KindSecretInOutput is the error type of a step whose outputs or error
// held a secret value of the worker.
const KindSecretInOutput = "SecretInOutput"

// RegisterSteps registers one activity per activity-kind step type.
func (h *Host) RegisterSteps(w worker.ActivityRegistry) {
	// The worker's credentials are those of its environment when it starts;
	// `run:` commands do not get them, but a step can still find one (a
	// credentials file, a metadata server) and print it.
	known := secrets.FromEnv(os.Environ())
	for _, t := range steps.All() {
		if t.Kind != steps.Activity {
			continue
		}
		w.RegisterActivityWithOptions(h.stepActivity(t, known), activity.RegisterOptions{Name: contract.StepActivityName(t.Name)})
	}
}

func (h *Host) stepActivity(t steps.Type, known []string) func(context.Context, contract.StepInput) (contract.StepResult, error) {
	return func(ctx context.Context, wi contract.StepInput) (contract.StepResult, error) {
		in := steps.Input{RunID: wi.RunID, Pipeline: wi.Pipeline, SpecHash: wi.SpecHash, StepID: wi.StepID, Uses: wi.Uses, With: wi.With, Command: wi.Command, StartedBy: wi.StartedBy}
		info := activity.GetInfo(ctx)
		dir := filepath.Join(h.StateDir, "runs", safe(in.RunID), safe(in.StepID))
		session := h.Workspace.Session()
		defer session.Close()
		env := &activityEnv{ctx: ctx, dir: dir, state: h.StateDir, artifacts: session, scoring: h.Scoring, log: h.logger().With("run_id", in.RunID, "step_id", in.StepID, "attempt", info.Attempt), known: known}
		began := time.Now()
		stop := env.keepAlive(info.HeartbeatTimeout)
		out, err := t.Run(ctx, env, in)
		stop()
		out, err = withholdSecrets(in.StepID, out, err, known, env.log)
		if h.Metrics != nil {
			recordStep(ctx, h.Metrics, t.Name, in, out, err, time.Since(began))
		}
		if err != nil {
			return contract.StepResult{}, toTemporal(err, info.Attempt)
		}
		return contract.StepResult{Outputs: out, Attempt: info.Attempt}, nil
	}
}

func (h *Host) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// toTemporal keeps the error's message and maps its class onto an
// ApplicationError so that the pipeline's retry policy and `non_retryable`
// list see a stable type name. The attempt rides along in the details for
// the run's status record.
func toTemporal(err error, attempt int32) error {
	kind, retryable := steps.Classify(err)
	return temporal.NewApplicationErrorWithOptions(err.Error(), kind, temporal.ApplicationErrorOptions{
		NonRetryable: !retryable,
		Cause:        err,
		Details:      []any{attempt},
	})
}

// withholdSecrets fails a step, permanently, whose outputs or error hold a
// known secret in any form Scan knows: whatever the activity returns is kept
// in the run's history for its whole retention, beyond any rotation of the
// secret, and another attempt would only store it again. The failure names
// the output, never the value.
func withholdSecrets(step string, out map[string]any, err error, known []string, log *slog.Logger) (map[string]any, error) {
	if len(known) == 0 {
		return out, err
	}
	if err != nil {
		// The SDK stores the message of every error in the chain.
		leaked := false
		for e := err; e != nil && !leaked; e = errors.Unwrap(e) {
			leaked = len(secrets.Scan([]byte(e.Error()), known)) > 0
		}
		if !leaked {
			return out, err
		}
		msg := fmt.Sprintf("step %s failed and its error message held a secret value of the worker, so the message is withheld from the run's history", step)
		if m := masked(err.Error(), known); m != "" {
			msg += "; masked, it reads: " + m
		}
		log.Warn("step error withheld: it held a secret value", "kind", KindSecretInOutput)
		return nil, steps.Permanent(KindSecretInOutput, errors.New(msg))
	}
	var keys []string
	secretKey := false
	for k, v := range out {
		if holdsSecret(k, known) {
			secretKey = true
			continue
		}
		if holdsSecret(v, known) {
			keys = append(keys, strconv.Quote(k))
		}
	}
	if len(keys) == 0 && !secretKey {
		return out, nil
	}
	slices.Sort(keys)
	var what string
	switch len(keys) {
	case 0:
	case 1:
		what = "output " + keys[0]
	default:
		what = "outputs " + strings.Join(keys, ", ")
	}
	switch {
	case secretKey && what == "":
		what = "the name of an output"
	case secretKey:
		what += " and the name of another output"
	}
	log.Warn("step outputs withheld: they held a secret value", "kind", KindSecretInOutput, "outputs", what)
	return nil, steps.Permanentf(KindSecretInOutput, "step %s: %s held a secret value of the worker (a credential or token from its environment); the step fails so that the value never reaches the run's history", step, what)
}

func holdsSecret(v any, known []string) bool {
	b, err := json.Marshal(v)
	return err == nil && len(secrets.Scan(b, known)) > 0
}

// masked returns text with the secrets masked, or "" when a form Redact
// does not mask (base64) is left.
func masked(text string, known []string) string {
	m := secrets.Redact(text, known)
	if len(secrets.Scan([]byte(m), known)) > 0 {
		return ""
	}
	return m
}

type activityEnv struct {
	ctx       context.Context
	dir       string
	state     string
	artifacts *workspace.Session
	scoring   scoring.Options
	log       *slog.Logger
	known     []string
	// warned keeps a step that reports a secret every few seconds from
	// filling the log with the same warning.
	warned atomic.Bool
	// last holds the last details sent, which the liveness heartbeat
	// repeats so that a retry still resumes from them.
	mu   sync.Mutex
	last []any
	// dirOnce creates dir on first use: most step types write nothing, and
	// a directory for every step of every run is a mkdir on the critical
	// path and an inode that stays.
	dirOnce sync.Once
}

// Progress heartbeats without the details when they hold a secret: details
// reach the server, and a timed-out attempt's last ones its history.
func (e *activityEnv) Progress(details any) {
	if len(e.known) > 0 && holdsSecret(details, e.known) {
		if !e.warned.Swap(true) {
			e.log.Warn("step progress withheld: it held a secret value", "kind", KindSecretInOutput)
		}
		e.beat()
		return
	}
	e.beat(details)
}

func (e *activityEnv) beat(details ...any) {
	e.mu.Lock()
	e.last = details
	e.mu.Unlock()
	activity.RecordHeartbeat(e.ctx, details...)
}

// keepAlive heartbeats while a step runs, whether or not the step reports
// progress itself, so that a pipeline's `heartbeat:` (or defaults.heartbeat)
// detects a dead worker or node for every step type in that time rather
// than after the step's whole timeout. A step that hangs while its worker
// lives is still caught by its timeout.
func (e *activityEnv) keepAlive(timeout time.Duration) (stop func()) {
	if timeout <= 0 {
		return func() {}
	}
	every := min(max(timeout/3, time.Second), 30*time.Second)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-e.ctx.Done():
				return
			case <-t.C:
				e.mu.Lock()
				last := e.last
				e.mu.Unlock()
				activity.RecordHeartbeat(e.ctx, last...)
			}
		}
	}()
	return func() { close(done) }
}

func (e *activityEnv) Resume(v any) bool {
	if !activity.HasHeartbeatDetails(e.ctx) {
		return false
	}
	return activity.GetHeartbeatDetails(e.ctx, v) == nil
}

// Dir cannot return an error; a directory that could not be made is
// logged, and the step's first write into it fails naming its path.
func (e *activityEnv) Dir() string {
	e.dirOnce.Do(func() {
		if err := os.MkdirAll(e.dir, 0o755); err != nil {
			e.log.Error("step working directory", "dir", e.dir, "error", err)
		}
	})
	return e.dir
}

func (e *activityEnv) StateDir() string              { return e.state }
func (e *activityEnv) Artifacts() *workspace.Session { return e.artifacts }
func (e *activityEnv) Logger() *slog.Logger          { return e.log }
func (e *activityEnv) Scoring() scoring.Options      { return e.scoring }

var _ steps.ModelHost = (*activityEnv)(nil)

// safe keeps ids usable as single path elements.
func safe(s string) string {
	// A fan-out item's step id is ID[i]; '@' cannot occur in a step id, so
	// ID@i never meets the directory of a step really called ID_i_.
	s = strings.NewReplacer("[", "@", "]", "").Replace(s)
	b := []byte(s)
	for i, c := range b {
		ok := c == '-' || c == '_' || c == '.' || c == '@' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if !ok {
			b[i] = '_'
		}
	}
	if len(b) == 0 || string(b) == "." || string(b) == ".." {
		return "_"
	}
	return string(b)
}

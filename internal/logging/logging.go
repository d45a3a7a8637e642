// Package logging builds the slog loggers of Gauntlet's processes and
// attaches the ids that let one run's lines be found among many runs'.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Keys of the attributes every run-scoped line carries. The activities use
// the same keys, so a log query for run_id finds both.
const (
	KeyRunID    = "run_id"
	KeyPipeline = "pipeline"
	KeyStepID   = "step_id"
	KeyAttempt  = "attempt"
)

// New returns a logger writing to w in format "text" or "json" (empty means
// text) at level "debug", "info", "warn" or "error" (empty means info; an
// offset such as "info+2" is accepted, as slog parses it).
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if level != "" {
		if err := lvl.UnmarshalText([]byte(level)); err != nil {
			return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
		}
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q: want text or json", format)
	}
}

// WithRun scopes l to one pipeline run.
func WithRun(l *slog.Logger, runID, pipeline string) *slog.Logger {
	return l.With(KeyRunID, runID, KeyPipeline, pipeline)
}

// WithStep scopes l to one attempt of one step of a run.
func WithStep(l *slog.Logger, runID, stepID string, attempt int32) *slog.Logger {
	return l.With(KeyRunID, runID, KeyStepID, stepID, KeyAttempt, attempt)
}

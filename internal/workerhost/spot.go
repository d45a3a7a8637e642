package workerhost

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/spot"
)

// WatchSpot polls the metadata service at endpoint (spot.DefaultEndpoint
// when empty) for a spot interruption notice every interval (the default
// when zero) until ctx ends or stop is called. The notice, at most one,
// arrives on the returned channel. A failing metadata service is logged
// when its error changes, not on every poll.
func WatchSpot(ctx context.Context, endpoint string, interval time.Duration, logger *slog.Logger) (notices <-chan spot.Notice, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan spot.Notice, 1)
	var lastErr string
	w := &spot.Watcher{Endpoint: endpoint, Interval: interval, OnError: func(err error) {
		if err.Error() != lastErr {
			logger.Warn("spot interruption watch: metadata service", "error", err)
		}
		lastErr = err.Error()
	}}
	var wg sync.WaitGroup
	wg.Go(func() {
		if n, err := w.Watch(ctx); err == nil {
			out <- n
		}
	})
	return out, func() {
		cancel()
		wg.Wait()
	}
}

// Stopper is what ServeUntil stops: a Temporal worker.
type Stopper interface{ Stop() }

// SpotInterrupted is ServeUntil's error when a spot notice ended the worker.
type SpotInterrupted struct{ Notice spot.Notice }

func (e *SpotInterrupted) Error() string {
	return "worker stopped on a spot interruption notice: " + e.Notice.String()
}

// ServeUntil lets w run until ctx ends or a spot notice arrives, then
// stops it; Stop lets running activities end or be cancelled within the
// worker's stop timeout. After a notice it returns *SpotInterrupted, so
// the process exits non-zero: the step's heartbeats stop at once rather
// than when the instance disappears, and the run replaces the node
// sooner.
func ServeUntil(ctx context.Context, w Stopper, notices <-chan spot.Notice, logger *slog.Logger) error {
	select {
	case <-ctx.Done():
		w.Stop()
		return nil
	case n := <-notices:
		logger.Warn("spot interruption notice: stopping the worker", "action", n.Action, "time", n.Time)
		w.Stop()
		return &SpotInterrupted{Notice: n}
	}
}

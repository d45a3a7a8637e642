package workerhost

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/gpu"
	"github.com/gauntlet-ml/gauntlet/internal/metrics"
)

// GPUInterval is how often a worker samples its GPUs by default: often
// enough for a dashboard to show an epoch's shape, rarely enough that the
// driver queries cost nothing next to training.
const GPUInterval = 15 * time.Second

// WatchGPU samples src into m's GPU gauges under node, at once and then
// every interval, until ctx ends or stop is called; stop waits for a
// sample in progress. A node without GPUs is reported once and no longer
// sampled, since that state does not change while the process lives. Read
// errors are logged when they change, not every interval, and the gauges
// keep their last values meanwhile.
func WatchGPU(ctx context.Context, src gpu.Source, m *metrics.Metrics, node string, every time.Duration, logger *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		var lastErr string
		for {
			snap, err := src.Snapshot()
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				if err.Error() != lastErr {
					logger.Warn("reading GPU telemetry", "node", node, "error", err)
				}
				lastErr = err.Error()
			case snap.State != gpu.Available:
				m.GPUSnapshot(node, snap)
				logger.Info("no GPU telemetry on this node", "node", node, "state", string(snap.State), "reason", snap.Reason)
				return
			default:
				if lastErr != "" {
					logger.Info("GPU telemetry readable again", "node", node)
					lastErr = ""
				}
				m.GPUSnapshot(node, snap)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

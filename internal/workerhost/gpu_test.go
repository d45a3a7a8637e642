package workerhost

import (
	"context"
	"errors"
	"github.com/gauntlet-ml/gauntlet/internal/testkit"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gauntlet-ml/gauntlet/internal/gpu"
	"github.com/gauntlet-ml/gauntlet/internal/metrics"
)

// scriptedGPU answers snapshot i with snaps[i] (errs[i] when set),
// repeating the last, and reports each call on calls.
type scriptedGPU struct {
	snaps []gpu.Snapshot
	errs  []error
	calls chan int
	mu    sync.Mutex
	n     int
}

func (s *scriptedGPU) Snapshot() (gpu.Snapshot, error) {
	s.mu.Lock()
	i := s.n
	s.n++
	s.mu.Unlock()
	defer func() {
		select {
		case s.calls <- i + 1:
		default:
		}
	}()
	j := min(i, len(s.snaps)-1)
	var err error
	if j < len(s.errs) {
		err = s.errs[j]
	}
	return s.snaps[j], err
}

func (s *scriptedGPU) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// waitCalls waits, boundedly, until src has been read n times.
func waitCalls(t *testing.T, src *scriptedGPU, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for src.count() < n {
		select {
		case <-src.calls:
		case <-deadline:
			t.Fatalf("GPU source read %d times, want %d", src.count(), n)
		}
	}
}

func gauge(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue series
				}
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func TestWatchGPUSamplesIntoMetrics(t *testing.T) {
	dev := func(util float64) gpu.Snapshot {
		return gpu.Snapshot{State: gpu.Available, Devices: []gpu.Device{{Index: 0, Name: "NVIDIA H200", UtilizationPercent: util,
			MemoryUsedBytes: 1 << 30, MemoryTotalBytes: 141 << 30}}}
	}
	lost := errors.New("nvml: GetUtilizationRates on device 0: GPU is lost")
	src := &scriptedGPU{snaps: []gpu.Snapshot{dev(10), {}, {}, {}, dev(90)}, errs: []error{nil, lost, lost, lost},
		calls: make(chan int, 1)}
	reg := prometheus.NewRegistry()
	m := metrics.NewMetrics(reg)
	var logs testkit.Buffer
	stop := WatchGPU(context.Background(), src, m, "node-1", time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)))
	waitCalls(t, src, 6)
	stop()
	n := src.count()
	labels := map[string]string{"node": "node-1", "gpu": "0"}
	if v, ok := gauge(t, reg, "gpu_utilization_percent", labels); !ok || v != 90 {
		t.Errorf("utilization gauge = %v (present %v), want 90", v, ok)
	}
	if v, _ := gauge(t, reg, "gpu_memory_total_bytes", labels); v != 141<<30 {
		t.Errorf("memory total gauge = %v", v)
	}
	if c := strings.Count(logs.String(), "reading GPU telemetry"); c != 1 {
		t.Errorf("three identical read errors logged %d times, want once:\n%s", c, logs.String())
	}
	if !strings.Contains(logs.String(), "GPU telemetry readable again") {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
	if src.count() != n {
		t.Errorf("source read after stop returned")
	}
}

func TestWatchGPUWithoutGPUReportsOnceAndStops(t *testing.T) {
	src := &scriptedGPU{snaps: []gpu.Snapshot{{State: gpu.NoNVIDIAGPU, Reason: "NVML library not found"}}, calls: make(chan int, 1)}
	reg := prometheus.NewRegistry()
	m := metrics.NewMetrics(reg)
	var logs testkit.Buffer
	stop := WatchGPU(context.Background(), src, m, "node-1", time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)))
	waitCalls(t, src, 1)
	// Stopping waits for the watcher to end; had it kept polling at 1ms,
	// the ticks while this test logs and gathers would show as reads.
	if _, ok := gauge(t, reg, "gpu_utilization_percent", map[string]string{"node": "node-1"}); ok {
		t.Error("GPU gauges for a node without GPUs")
	}
	stop()
	if n := src.count(); n != 1 {
		t.Errorf("source read %d times after NoNVIDIAGPU, want once", n)
	}
	if c := strings.Count(logs.String(), "no GPU telemetry on this node"); c != 1 || !strings.Contains(logs.String(), "NVML library not found") {
		t.Errorf("NoNVIDIAGPU logged %d times, want once with the reason:\n%s", c, logs.String())
	}
}

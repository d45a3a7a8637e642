package steps

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/gpu"
)

// fakeGPU is a gpu.Source that counts its snapshots and answers with
// snaps in turn, repeating the last.
type fakeGPU struct {
	mu     sync.Mutex
	snaps  []gpu.Snapshot
	errs   []error
	calls  int
	closed bool
}

func (f *fakeGPU) Snapshot() (gpu.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := min(f.calls, len(f.snaps)-1)
	f.calls++
	var err error
	if i < len(f.errs) {
		err = f.errs[i]
	}
	return f.snaps[i], err
}

func (f *fakeGPU) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func withTrainGPU(t *testing.T, src gpu.Source) {
	t.Helper()
	prev := trainGPU
	trainGPU = func() gpu.Source { return src }
	t.Cleanup(func() { trainGPU = prev })
}

var twoH200 = gpu.Snapshot{State: gpu.Available, Devices: []gpu.Device{
	{Index: 0, Name: "NVIDIA H200", UtilizationPercent: 87, MemoryUsedBytes: 30 << 30, MemoryTotalBytes: 141 << 30},
	{Index: 1, Name: "NVIDIA H200", UtilizationPercent: 0, MemoryUsedBytes: 512 << 20, MemoryTotalBytes: 141 << 30},
}}

func TestTrainHeartbeatsCarryGPUSummary(t *testing.T) {
	src := &fakeGPU{snaps: []gpu.Snapshot{twoH200}}
	withTrainGPU(t, src)
	env := newEnv(t, t.TempDir())
	mustRun(t, env, "train", "train", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes",
		"model": "mlp", "epochs": 3, "hidden": "8"})
	epochs := map[any]bool{}
	for _, p := range env.progress {
		if p["epoch"] == nil {
			continue
		}
		epochs[p["epoch"]] = true
		if want := "0: 87% 30.0/141.0 GiB; 1: 0% 0.5/141.0 GiB"; p["gpu"] != want {
			t.Errorf("heartbeat %v: gpu = %q, want %q", p, p["gpu"], want)
		}
	}
	if len(epochs) == 0 || src.calls > len(epochs) {
		t.Errorf("%d snapshots for %d epochs reported: want at most one per epoch", src.calls, len(epochs))
	}
	if !src.closed {
		t.Error("the GPU source was not closed after training")
	}
}

func TestGPUSamplerWithoutGPU(t *testing.T) {
	src := &fakeGPU{snaps: []gpu.Snapshot{{State: gpu.NoNVIDIAGPU, Reason: "no driver"}}}
	s := newGPUSampler(src)
	for epoch := 1; epoch <= 5; epoch++ {
		if g := s.summary(epoch); g != "" {
			t.Errorf("epoch %d summary %q without a GPU", epoch, g)
		}
	}
	if src.calls != 1 {
		t.Errorf("%d snapshots after NoNVIDIAGPU, want the first only", src.calls)
	}
}

func TestGPUSamplerOncePerEpochAndReadErrors(t *testing.T) {
	src := &fakeGPU{snaps: []gpu.Snapshot{{}, twoH200}, errs: []error{errors.New("nvml: GPU is lost")}}
	s := newGPUSampler(src)
	if g := s.summary(1); g != "" {
		t.Errorf("summary after a failed read = %q", g)
	}
	first := s.summary(2)
	if !strings.HasPrefix(first, "0: 87% ") {
		t.Errorf("summary after recovery = %q", first)
	}
	if again := s.summary(2); again != first || src.calls != 2 {
		t.Errorf("same epoch again: %q after %d snapshots, want %q after 2", again, src.calls, first)
	}
}

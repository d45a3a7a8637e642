package gpu

import (
	"strings"
	"testing"
)

func TestNoGPUIsAStateNotAnError(t *testing.T) {
	var src Source = NoGPU{}
	s, err := src.Snapshot()
	if err != nil {
		t.Fatalf("NoGPU returned an error: %v", err)
	}
	if s.State != NoNVIDIAGPU || len(s.Devices) != 0 || s.Reason == "" {
		t.Errorf("snapshot = %+v, want NoNVIDIAGPU with a reason and no devices", s)
	}
	s, _ = NoGPU{Reason: "libnvidia-ml.so not found"}.Snapshot()
	if got := Describe(s); got != "no NVIDIA GPU (libnvidia-ml.so not found)" {
		t.Errorf("Describe = %q", got)
	}
}

func TestDescribeGroupsLikeDevices(t *testing.T) {
	const gib = 1 << 30
	s := Snapshot{State: Available, Devices: []Device{
		{Index: 0, Name: "NVIDIA A10G", MemoryTotalBytes: 24 * gib},
		{Index: 1, Name: "NVIDIA A10G", MemoryTotalBytes: 24 * gib},
		{Index: 2, Name: "NVIDIA L4", MemoryTotalBytes: 23 * gib},
	}}
	got := Describe(s)
	if got != "2 x NVIDIA A10G (24 GiB), 1 x NVIDIA L4 (23 GiB)" {
		t.Errorf("Describe = %q", got)
	}
	if d := Describe(Snapshot{State: Available}); !strings.HasPrefix(d, string(NoNVIDIAGPU)) {
		t.Errorf("an empty device list described as %q", d)
	}
}

//go:build linux && cgo

package gpu

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
)

const gib = 1 << 30

// fakeDevice answers every call NVML makes; a test breaks one by replacing
// its Func.
func fakeDevice(name string, used, total uint64, util, tempC, milliwatts uint32) *mock.Device {
	return &mock.Device{
		GetNameFunc: func() (string, nvml.Return) { return name, nvml.SUCCESS },
		GetMemoryInfo_v2Func: func() (nvml.Memory_v2, nvml.Return) {
			return nvml.Memory_v2{Total: total, Used: used, Free: total - used}, nvml.SUCCESS
		},
		// v1 over-counts used memory; a Source that called it would show
		// these numbers instead of v2's.
		GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
			return nvml.Memory{Total: total, Used: used + 615<<20}, nvml.SUCCESS
		},
		GetUtilizationRatesFunc: func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: util, Memory: 99}, nvml.SUCCESS
		},
		GetTemperatureFunc: func(s nvml.TemperatureSensors) (uint32, nvml.Return) {
			if s != nvml.TEMPERATURE_GPU {
				return 0, nvml.ERROR_INVALID_ARGUMENT
			}
			return tempC, nvml.SUCCESS
		},
		GetPowerUsageFunc: func() (uint32, nvml.Return) { return milliwatts, nvml.SUCCESS },
	}
}

func fakeLib(init nvml.Return, devices ...*mock.Device) *mock.Interface {
	return &mock.Interface{
		InitFunc:           func() nvml.Return { return init },
		ShutdownFunc:       func() nvml.Return { return nvml.SUCCESS },
		DeviceGetCountFunc: func() (int, nvml.Return) { return len(devices), nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) {
			if i < 0 || i >= len(devices) {
				return nil, nvml.ERROR_INVALID_ARGUMENT
			}
			return devices[i], nvml.SUCCESS
		},
	}
}

func TestNVMLReadsEveryDevice(t *testing.T) {
	lib := fakeLib(nvml.SUCCESS,
		fakeDevice("NVIDIA H200", 0, 141*gib, 0, 31, 75_250),
		fakeDevice("NVIDIA H200", 80*gib, 141*gib, 97, 64, 612_500),
	)
	src := newNVML(lib)
	var s Snapshot
	for range 2 {
		var err error
		if s, err = src.Snapshot(); err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
	}
	want := Snapshot{State: Available, Devices: []Device{
		{Index: 0, Name: "NVIDIA H200", MemoryUsedBytes: 0, MemoryTotalBytes: 141 * gib, UtilizationPercent: 0, TemperatureC: 31, PowerWatts: 75.25},
		{Index: 1, Name: "NVIDIA H200", MemoryUsedBytes: 80 * gib, MemoryTotalBytes: 141 * gib, UtilizationPercent: 97, TemperatureC: 64, PowerWatts: 612.5},
	}}
	if s.State != want.State || s.Reason != "" || len(s.Devices) != len(want.Devices) {
		t.Fatalf("snapshot = %+v, want %+v", s, want)
	}
	for i := range want.Devices {
		if s.Devices[i] != want.Devices[i] {
			t.Errorf("device %d = %+v, want %+v", i, s.Devices[i], want.Devices[i])
		}
	}
	if got := Describe(s); got != "2 x NVIDIA H200 (141 GiB)" {
		t.Errorf("Describe = %q", got)
	}
	if n := len(lib.InitCalls()); n != 1 {
		t.Errorf("Init called %d times over two snapshots, want 1", n)
	}
	if err := src.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := src.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if n := len(lib.ShutdownCalls()); n != 1 {
		t.Errorf("Shutdown called %d times, want 1", n)
	}
	if _, err := src.Snapshot(); err == nil {
		t.Error("Snapshot after Close succeeded")
	}
}

func TestNVMLWithoutDriverIsNoNVIDIAGPU(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lib    *mock.Interface
		reason string
		// shutdowns is 1 where Init succeeded and Close must undo it.
		shutdowns int
	}{
		{"library not found", fakeLib(nvml.ERROR_LIBRARY_NOT_FOUND), "libnvidia-ml.so.1 not found", 0},
		{"driver not loaded", fakeLib(nvml.ERROR_DRIVER_NOT_LOADED), "NVIDIA driver not loaded", 0},
		{"no devices", fakeLib(nvml.SUCCESS), "NVML reports no devices", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newNVML(tc.lib)
			for range 3 {
				s, err := src.Snapshot()
				if err != nil {
					t.Fatalf("Snapshot returned an error: %v", err)
				}
				if s.State != NoNVIDIAGPU || s.Reason != tc.reason || len(s.Devices) != 0 {
					t.Fatalf("snapshot = %+v, want NoNVIDIAGPU with reason %q", s, tc.reason)
				}
			}
			if got, want := Describe(Snapshot{State: NoNVIDIAGPU, Reason: tc.reason}), "no NVIDIA GPU ("+tc.reason+")"; got != want {
				t.Errorf("Describe = %q, want %q", got, want)
			}
			// A machine without a driver is settled: the library is not
			// asked again on every poll.
			if n := len(tc.lib.InitCalls()); n != 1 {
				t.Errorf("Init called %d times, want 1", n)
			}
			if err := src.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if n := len(tc.lib.ShutdownCalls()); n != tc.shutdowns {
				t.Errorf("Shutdown called %d times, want %d", n, tc.shutdowns)
			}
		})
	}
}

func TestNVMLInitFailureIsRetried(t *testing.T) {
	dev := fakeDevice("NVIDIA L4", 1*gib, 23*gib, 5, 40, 20_000)
	lib := fakeLib(nvml.SUCCESS, dev)
	lib.InitFunc = func() nvml.Return { return nvml.ERROR_NO_PERMISSION }
	src := newNVML(lib)
	_, err := src.Snapshot()
	if err == nil || !errors.Is(err, nvml.ERROR_NO_PERMISSION) || !strings.Contains(err.Error(), "Init") {
		t.Fatalf("Snapshot error = %v, want one naming Init and wrapping ERROR_NO_PERMISSION", err)
	}
	lib.InitFunc = func() nvml.Return { return nvml.SUCCESS }
	s, err := src.Snapshot()
	if err != nil || s.State != Available || len(s.Devices) != 1 {
		t.Fatalf("after Init recovered: snapshot = %+v, err = %v", s, err)
	}
}

func TestNVMLDeviceCallFailureNamesDeviceAndCall(t *testing.T) {
	breakers := map[string]func(*mock.Device){
		"GetName": func(d *mock.Device) {
			d.GetNameFunc = func() (string, nvml.Return) { return "", nvml.ERROR_GPU_IS_LOST }
		},
		"GetMemoryInfo_v2": func(d *mock.Device) {
			d.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) { return nvml.Memory_v2{}, nvml.ERROR_GPU_IS_LOST }
		},
		"GetUtilizationRates": func(d *mock.Device) {
			d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{}, nvml.ERROR_GPU_IS_LOST }
		},
		"GetTemperature": func(d *mock.Device) {
			d.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 0, nvml.ERROR_GPU_IS_LOST }
		},
		"GetPowerUsage": func(d *mock.Device) {
			d.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 0, nvml.ERROR_GPU_IS_LOST }
		},
	}
	for call, breakIt := range breakers {
		t.Run(call, func(t *testing.T) {
			bad := fakeDevice("NVIDIA A10G", 0, 24*gib, 0, 30, 10_000)
			breakIt(bad)
			src := newNVML(fakeLib(nvml.SUCCESS, fakeDevice("NVIDIA A10G", 0, 24*gib, 0, 30, 10_000), bad))
			_, err := src.Snapshot()
			if err == nil {
				t.Fatal("Snapshot succeeded with a failing device")
			}
			if msg := err.Error(); !strings.Contains(msg, "device 1") || !strings.Contains(msg, call) {
				t.Errorf("error %q does not name device 1 and %s", msg, call)
			}
			if !errors.Is(err, nvml.ERROR_GPU_IS_LOST) {
				t.Errorf("error %v does not wrap ERROR_GPU_IS_LOST", err)
			}
		})
	}
	t.Run("DeviceGetHandleByIndex", func(t *testing.T) {
		lib := fakeLib(nvml.SUCCESS, fakeDevice("NVIDIA A10G", 0, 24*gib, 0, 30, 10_000))
		lib.DeviceGetCountFunc = func() (int, nvml.Return) { return 2, nvml.SUCCESS }
		_, err := newNVML(lib).Snapshot()
		if err == nil || !strings.Contains(err.Error(), "device 1") || !strings.Contains(err.Error(), "DeviceGetHandleByIndex") {
			t.Errorf("error = %v, want one naming device 1 and DeviceGetHandleByIndex", err)
		}
	})
}

func TestNVMLUnsupportedSensorReadsZero(t *testing.T) {
	dev := fakeDevice("NVIDIA H200", 2*gib, 141*gib, 50, 45, 300_000)
	dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED }
	dev.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	s, err := newNVML(fakeLib(nvml.SUCCESS, dev)).Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	want := Device{Name: "NVIDIA H200", MemoryUsedBytes: 2 * gib, MemoryTotalBytes: 141 * gib, TemperatureC: 45}
	if len(s.Devices) != 1 || s.Devices[0] != want {
		t.Errorf("devices = %+v, want [%+v]", s.Devices, want)
	}
}

func TestNVMLConcurrentSnapshots(t *testing.T) {
	lib := fakeLib(nvml.SUCCESS, fakeDevice("NVIDIA H200", 0, 141*gib, 1, 30, 70_000))
	src := newNVML(lib)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if _, err := src.Snapshot(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := len(lib.InitCalls()); n != 1 {
		t.Errorf("Init called %d times, want 1", n)
	}
	if err := src.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestNVMLOnThisMachine uses the real libnvidia-ml.so.1, where there is one.
func TestNVMLOnThisMachine(t *testing.T) {
	src := NewNVML()
	defer func() {
		if err := src.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	s, err := src.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if s.State == NoNVIDIAGPU {
		// Not a missing tool: CI machines have no GPU, so this skip is
		// expected there and listed in the test summary of `make test`.
		t.Skipf("needs an NVIDIA driver and GPU, which CI machines lack (it runs on the GPU machine): %s", s.Reason)
	}
	if len(s.Devices) == 0 {
		t.Fatalf("snapshot %+v is Available with no devices", s)
	}
	for _, d := range s.Devices {
		t.Logf("%+v", d)
		if d.Name == "" || d.MemoryTotalBytes == 0 || d.MemoryUsedBytes > d.MemoryTotalBytes {
			t.Errorf("device %d: implausible name or memory: %+v", d.Index, d)
		}
		if d.UtilizationPercent < 0 || d.UtilizationPercent > 100 || d.TemperatureC > 120 || d.PowerWatts > 2000 {
			t.Errorf("device %d: implausible readings: %+v", d.Index, d)
		}
	}
	t.Log(Describe(s))
}

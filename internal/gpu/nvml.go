//go:build linux && cgo

package gpu

import (
	"errors"
	"fmt"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// nvmlLib is the part of nvml.Interface that NVML uses, so that tests can
// stand in go-nvml's generated mocks for a driver.
type nvmlLib interface {
	Init() nvml.Return
	Shutdown() nvml.Return
	DeviceGetCount() (int, nvml.Return)
	DeviceGetHandleByIndex(int) (nvml.Device, nvml.Return)
}

var _ Source = (*NVML)(nil)

// NVML is the Source backed by the NVIDIA driver's libnvidia-ml.so.1.
type NVML struct {
	lib nvmlLib

	// mu serializes Snapshot and Close, so that Shutdown never runs under a
	// Snapshot still reading devices. A snapshot is a handful of short
	// driver queries, so callers that wait for each other lose little.
	mu     sync.Mutex
	inited bool
	closed bool
	// absent is the reason NVML can never report devices here; once set,
	// Snapshot answers from it without touching the library again.
	absent string
}

// NewNVML returns a Source that reads the node's NVIDIA GPUs. It loads
// nothing until the first Snapshot, and needs no driver: on a machine
// without one its snapshots say NoNVIDIAGPU, as NoGPU's do.
func NewNVML() *NVML {
	return newNVML(nvml.New())
}

func newNVML(lib nvmlLib) *NVML {
	return &NVML{lib: lib}
}

// Snapshot reads every device. The first call loads and initializes NVML.
func (n *NVML) Snapshot() (Snapshot, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return Snapshot{}, errors.New("gpu: NVML snapshot after Close")
	}
	if n.absent == "" && !n.inited {
		if err := n.init(); err != nil {
			return Snapshot{}, err
		}
	}
	if n.absent != "" {
		return Snapshot{State: NoNVIDIAGPU, Reason: n.absent}, nil
	}

	count, ret := n.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return Snapshot{}, fmt.Errorf("gpu: NVML DeviceGetCount: %w", ret)
	}
	if count == 0 {
		return Snapshot{State: NoNVIDIAGPU, Reason: "NVML reports no devices"}, nil
	}
	devices := make([]Device, count)
	for i := range devices {
		d, err := n.device(i)
		if err != nil {
			return Snapshot{}, err
		}
		devices[i] = d
	}
	return Snapshot{State: Available, Devices: devices}, nil
}

// init runs nvml.Init. A machine without the library or the kernel driver
// is settled for good; any other failure is left to the next Snapshot, so
// that a driver still coming up when the worker starts is picked up later.
func (n *NVML) init() error {
	switch ret := n.lib.Init(); ret {
	case nvml.SUCCESS:
		n.inited = true
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		n.absent = "libnvidia-ml.so.1 not found"
	case nvml.ERROR_DRIVER_NOT_LOADED:
		n.absent = "NVIDIA driver not loaded"
	default:
		return fmt.Errorf("gpu: NVML Init: %w", ret)
	}
	return nil
}

func (n *NVML) device(i int) (Device, error) {
	fail := func(call string, ret nvml.Return) (Device, error) {
		return Device{}, fmt.Errorf("gpu: device %d: NVML %s: %w", i, call, ret)
	}
	h, ret := n.lib.DeviceGetHandleByIndex(i)
	if ret != nvml.SUCCESS {
		return fail("DeviceGetHandleByIndex", ret)
	}
	d := Device{Index: i}
	if d.Name, ret = h.GetName(); ret != nvml.SUCCESS {
		return fail("GetName", ret)
	}
	// v2, not v1: v1 counts driver-reserved memory as used (see the package
	// comment).
	mem, ret := h.GetMemoryInfo_v2()
	if ret != nvml.SUCCESS {
		return fail("GetMemoryInfo_v2", ret)
	}
	d.MemoryUsedBytes, d.MemoryTotalBytes = mem.Used, mem.Total

	// A device may lack a sensor for good (utilization under MIG, power on
	// some vGPU guests); failing on that would fail every snapshot, so an
	// unsupported reading stays zero.
	switch util, ret := h.GetUtilizationRates(); ret {
	case nvml.SUCCESS:
		d.UtilizationPercent = float64(util.Gpu)
	case nvml.ERROR_NOT_SUPPORTED:
	default:
		return fail("GetUtilizationRates", ret)
	}
	switch temp, ret := h.GetTemperature(nvml.TEMPERATURE_GPU); ret {
	case nvml.SUCCESS:
		d.TemperatureC = float64(temp)
	case nvml.ERROR_NOT_SUPPORTED:
	default:
		return fail("GetTemperature", ret)
	}
	switch milliwatts, ret := h.GetPowerUsage(); ret {
	case nvml.SUCCESS:
		d.PowerWatts = float64(milliwatts) / 1000
	case nvml.ERROR_NOT_SUPPORTED:
	default:
		return fail("GetPowerUsage", ret)
	}
	return d, nil
}

// Close shuts NVML down if a Snapshot initialized it. Later calls do
// nothing.
func (n *NVML) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	if !n.inited {
		return nil
	}
	if ret := n.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("gpu: NVML Shutdown: %w", ret)
	}
	return nil
}

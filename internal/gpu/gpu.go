// Package gpu reports what the node's GPUs are doing, for heartbeats,
// metrics and run reports.
//
// Telemetry comes from a Source: NoGPU, or NVML (NewNVML), which reads
// the driver through github.com/NVIDIA/go-nvml. NVML loads
// libnvidia-ml.so.1 with dlopen at Init (cgo, but no link-time driver
// dependency), and implements Snapshot by calling nvml.Init once, then per
// device DeviceGetHandleByIndex, GetName, GetMemoryInfo_v2 (Used, Total),
// GetUtilizationRates (Gpu), GetTemperature(TEMPERATURE_GPU) and
// GetPowerUsage (milliwatts, divided by 1000). GetMemoryInfo_v2 rather than
// GetMemoryInfo: on an idle H200 (driver 580) the v1 call counted about 615
// MiB of driver-reserved memory as used where nvidia-smi showed 0. When
// nvml.Init returns ERROR_LIBRARY_NOT_FOUND or ERROR_DRIVER_NOT_LOADED, or
// DeviceGetCount is zero, it returns the same NoNVIDIAGPU state as NoGPU, so
// a worker can use it unconditionally. A reading that a device does not
// support at all (utilization under MIG, say) stays zero, because failing on
// it would fail every snapshot; any other failed call is an error naming the
// device and the call. go-nvml needs cgo and Linux; other
// builds (the Docker image's CGO_ENABLED=0 one among them) get an NVML whose
// snapshots say NoNVIDIAGPU and why.
package gpu

import (
	"fmt"
	"strings"
)

// Device is one GPU at the moment it was read.
type Device struct {
	Index              int     `json:"index"`
	Name               string  `json:"name"`
	MemoryUsedBytes    uint64  `json:"memory_used_bytes"`
	MemoryTotalBytes   uint64  `json:"memory_total_bytes"`
	UtilizationPercent float64 `json:"utilization_percent"`
	TemperatureC       float64 `json:"temperature_c"`
	PowerWatts         float64 `json:"power_watts"`
}

// State says whether a node has GPUs to report on at all.
type State string

const (
	// Available means Devices holds at least one GPU.
	Available State = "available"
	// NoNVIDIAGPU means there is nothing to read: no driver, no device, or a
	// build without NVML. It is a steady state, not a failure: callers report
	// it once and stop polling instead of retrying.
	NoNVIDIAGPU State = "no NVIDIA GPU"
)

// Snapshot is what a Source saw at one moment.
type Snapshot struct {
	State State `json:"state"`
	// Reason says why the state is NoNVIDIAGPU.
	Reason  string   `json:"reason,omitempty"`
	Devices []Device `json:"devices,omitempty"`
}

// Source reads GPU telemetry. An error means GPUs exist but reading them
// failed this time (worth retrying); a machine without GPUs is a Snapshot
// in the NoNVIDIAGPU state, never an error.
type Source interface {
	Snapshot() (Snapshot, error)
}

// NoGPU is the Source of a node without NVIDIA GPUs or of a build without
// NVML support.
type NoGPU struct {
	Reason string
}

// Snapshot always reports NoNVIDIAGPU.
func (n NoGPU) Snapshot() (Snapshot, error) {
	reason := n.Reason
	if reason == "" {
		reason = "this build has no NVML support"
	}
	return Snapshot{State: NoNVIDIAGPU, Reason: reason}, nil
}

// Describe sums a snapshot up in one line, as the node's gpu_description.
func Describe(s Snapshot) string {
	if s.State != Available || len(s.Devices) == 0 {
		if s.Reason == "" {
			return string(NoNVIDIAGPU)
		}
		return fmt.Sprintf("%s (%s)", NoNVIDIAGPU, s.Reason)
	}
	// Devices of one model are counted together: "2 x NVIDIA A10G (24 GiB)".
	type group struct {
		name  string
		total uint64
		n     int
	}
	var groups []group
	for _, d := range s.Devices {
		if i := len(groups) - 1; i >= 0 && groups[i].name == d.Name && groups[i].total == d.MemoryTotalBytes {
			groups[i].n++
			continue
		}
		groups = append(groups, group{d.Name, d.MemoryTotalBytes, 1})
	}
	parts := make([]string, len(groups))
	for i, g := range groups {
		parts[i] = fmt.Sprintf("%d x %s (%.0f GiB)", g.n, g.name, float64(g.total)/(1<<30))
	}
	return strings.Join(parts, ", ")
}

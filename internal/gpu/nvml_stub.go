//go:build !linux || !cgo

package gpu

import "runtime"

var _ Source = (*NVML)(nil)

// NVML stands in for the NVML-backed Source where go-nvml cannot be built:
// it loads the driver with dlopen, which needs cgo, and supports only
// Linux. It reports NoNVIDIAGPU, so callers need no build tags of their own.
type NVML struct{}

// NewNVML returns a Source whose snapshots say why this build cannot read
// GPUs.
func NewNVML() *NVML {
	return &NVML{}
}

// Snapshot always reports NoNVIDIAGPU.
func (*NVML) Snapshot() (Snapshot, error) {
	reason := "built without cgo, which NVML needs"
	if runtime.GOOS != "linux" {
		reason = "NVML is not supported on " + runtime.GOOS
	}
	return NoGPU{Reason: reason}.Snapshot()
}

// Close does nothing: nothing was loaded.
func (*NVML) Close() error {
	return nil
}

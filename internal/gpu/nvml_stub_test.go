//go:build !linux || !cgo

package gpu

import (
	"strings"
	"testing"
)

func TestNVMLWithoutCgoSaysWhy(t *testing.T) {
	src := NewNVML()
	s, err := src.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if s.State != NoNVIDIAGPU || len(s.Devices) != 0 {
		t.Errorf("snapshot = %+v, want NoNVIDIAGPU and no devices", s)
	}
	if !strings.Contains(s.Reason, "cgo") && !strings.Contains(s.Reason, "not supported") {
		t.Errorf("reason %q does not say why", s.Reason)
	}
	if err := src.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

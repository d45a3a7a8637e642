package cli

import (
	"fmt"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
)

// fanOutNote sums up a fanned-out step's items for progress and summary
// lines: "items 7/10 ok, 1 failed, 2 running".
func fanOutNote(s contract.StepStatus) string {
	fo := s.FanOut
	if fo == nil {
		return ""
	}
	note := fmt.Sprintf("items %d/%d ok", fo.Succeeded, fo.Items)
	for _, part := range []struct {
		n    int
		what string
	}{{fo.Failed, "failed"}, {fo.Skipped, "skipped"}, {fo.Canceled, "canceled"}, {fo.Running, "running"}, {fo.Cached, "cached"}} {
		if part.n > 0 {
			note += fmt.Sprintf(", %d %s", part.n, part.what)
		}
	}
	return note
}

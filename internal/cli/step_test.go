package cli

import (
	"strings"
	"testing"
)

// `gauntlet step TYPE --help` shows TYPE's declared inputs and outputs;
// without a type it is the command's own help.
func TestStepHelpShowsTheTypesDeclarations(t *testing.T) {
	code, out, stderr := runCLI(t, nil, "step", "train", "--help")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"train (runs as an activity", "Inputs (with:):", "positive_label", "required", "Outputs:", "model_digest"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI(t, nil, "step", "--help")
	if code != 0 || !strings.Contains(out, "--with") || strings.Contains(out, "Inputs (with:)") {
		t.Errorf("exit %d, help of the command:\n%s", code, out)
	}
}

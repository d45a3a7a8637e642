package steps

import (
	"strings"
	"testing"
)

// `gauntlet step TYPE --help` shows what the type declares.
func TestDescribeShowsTheDeclarations(t *testing.T) {
	for _, ty := range All() {
		var b strings.Builder
		if err := Describe(&b, ty); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if !strings.HasPrefix(out, ty.Name+" (") {
			t.Errorf("%s: help begins %q", ty.Name, out[:min(len(out), 40)])
		}
		for _, in := range ty.Inputs {
			if !strings.Contains(out, "  "+in.Name+" ") {
				t.Errorf("%s: help lacks input %s", ty.Name, in.Name)
			}
		}
		for _, o := range ty.Outputs {
			if !strings.Contains(out, "  "+o) {
				t.Errorf("%s: help lacks output %s", ty.Name, o)
			}
		}
		for _, line := range strings.Split(out, "\n") {
			if len([]rune(line)) > 100 || strings.TrimRight(line, " ") != line {
				t.Errorf("%s: line of %d runes or with trailing spaces: %q", ty.Name, len([]rune(line)), line)
			}
		}
	}
	var b strings.Builder
	train, _ := Lookup("train")
	_ = Describe(&b, train)
	out := b.String()
	for _, want := range []string{"runs as an activity", "data ", "required  the data: a path", "seed of the split", "model_digest", "sha256 of the model's SHA256SUMS"} {
		if !strings.Contains(out, want) {
			t.Errorf("train's help lacks %q:\n%s", want, out)
		}
	}
}

package testkit

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that records Fatalf and Skip instead of ending
// the test, so that the test can look at what Need decided.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }
func (r *recorder) Skip(args ...any)                  { r.skip = fmt.Sprint(args...) }

func TestNeedFailsUnderCIAndSkipsElsewhere(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent-tool")
	for _, c := range []struct {
		ci       string
		wantFail bool
	}{
		{"true", true}, {"1", true}, {"TRUE", true},
		{"", false}, {"false", false}, {"0", false}, {"yes", false},
	} {
		t.Run("CI="+c.ci, func(t *testing.T) {
			t.Setenv("CI", c.ci)
			t.Setenv("PATH", t.TempDir())
			for name, call := range map[string]func(*recorder) string{
				"Tool":      func(r *recorder) string { return Tool(r, "absent-tool") },
				"Installed": func(r *recorder) string { return Installed(r, missing) },
			} {
				r := &recorder{TB: t}
				call(r)
				got, other := r.skip, r.fatal
				if c.wantFail {
					got, other = r.fatal, r.skip
				}
				if got == "" || other != "" {
					t.Fatalf("%s: fatal %q, skip %q; want only a %s", name, r.fatal, r.skip, map[bool]string{true: "failure", false: "skip"}[c.wantFail])
				}
				if !strings.Contains(got, "absent-tool") || !strings.Contains(got, "`make tools`") {
					t.Errorf("%s: %q does not name the tool and `make tools`", name, got)
				}
			}
		})
	}
}

func TestToolFindsWhatIsThere(t *testing.T) {
	t.Setenv("CI", "true")
	r := &recorder{TB: t}
	if p := Tool(r, "go"); p == "" || r.fatal != "" || r.skip != "" {
		t.Fatalf("Tool(go) = %q, fatal %q, skip %q", p, r.fatal, r.skip)
	}
	dir := t.TempDir()
	if p := Installed(r, dir); p != dir || r.fatal != "" || r.skip != "" {
		t.Fatalf("Installed(%s) = %q, fatal %q, skip %q", dir, p, r.fatal, r.skip)
	}
}

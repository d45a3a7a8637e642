package testkit

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// allowedSkips are the files whose tests may call t.Skip directly, with how
// many such calls each holds and why none of them is a missing tool, which
// must go through Need, Tool or Installed so that CI fails instead of
// passing without the test. `make test` lists every skip with its reason.
var allowedSkips = map[string]struct {
	calls int
	why   string
}{
	"internal/cli/secrets_integration_test.go": {2, "-short"},
	"internal/cli/preempt_integration_test.go": {1, "-short"},
	"internal/cli/demo_test.go":                {1, "-short"},
	"internal/cli/pytorch_integration_test.go": {1, "-short"},
	"internal/cli/integration_test.go":         {1, "-short"},
	"internal/cli/faults_integration_test.go":  {2, "-short"},
	"internal/gpu/nvml_test.go":                {1, "no NVIDIA GPU: CI machines have none"},
	"internal/report/report_test.go":           {1, "root ignores directory permissions"},
	"internal/steps/provision_test.go":         {1, "not Linux: the local-node module reads /proc"},
	"internal/tf/workspace_test.go":            {1, "not Linux: the local-node module reads /proc"},
	"internal/tf/aws_plan_test.go":             {1, "no AWS provider mirror: providers come from a registry these machines cannot reach, so `make tools` cannot install one"},
	"internal/testkit/need.go":                 {1, "Need itself, outside CI"},
}

var skipCall = regexp.MustCompile(`[.]Skip(f|Now)?[(]`)

// TestNoToolSkipsOutsideTestkit keeps the rule that a test never passes by
// skipping for a missing tool: a new direct t.Skip fails here until it is
// either routed through Need or listed above with its reason.
func TestNoToolSkipsOutsideTestkit(t *testing.T) {
	root := repoRoot(t)
	found := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "node_modules", "bin", ".gauntlet":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// Only code that can hold a *testing.T skips a test; a Skip
		// method of anything else (a reader skipping rows) is not one.
		if !strings.Contains(string(b), `"testing"`) {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		for i, line := range strings.Split(string(b), "\n") {
			if skipCall.MatchString(line) && !strings.HasPrefix(strings.TrimSpace(line), "//") {
				found[rel] = append(found[rel], rel+":"+strconv.Itoa(i+1)+": "+strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for file, sites := range found {
		if a, ok := allowedSkips[file]; !ok || a.calls != len(sites) {
			t.Errorf("%s calls Skip %d times (allowed: %d). A missing tool goes through testkit.Need, Tool or Installed, which fail under CI=true; "+
				"a skip for another reason is listed in allowedSkips with why:\n%s", file, len(sites), a.calls, strings.Join(sites, "\n"))
		}
	}
	for file, a := range allowedSkips {
		if len(found[file]) == 0 {
			t.Errorf("allowedSkips lists %s (%s), which no longer skips: drop it", file, a.why)
		}
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

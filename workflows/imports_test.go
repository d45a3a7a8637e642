package workflows_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// allowedGauntlet are the packages of this module that workflow code may
// reach: contracts, plain data and pure decisions. A package that does I/O,
// starts servers or computes models belongs behind an activity.
var allowedGauntlet = []string{
	"github.com/gauntlet-ml/gauntlet/internal/canary",        // canary analysis and tracker (no sources)
	"github.com/gauntlet-ml/gauntlet/internal/contract",      // names and payloads shared with activities and clients
	"github.com/gauntlet-ml/gauntlet/internal/dag",           // the step graph
	"github.com/gauntlet-ml/gauntlet/internal/monitor",       // monitor policy and report types (no checks)
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec", // the resolved definition
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/tmpl", // templates and conditions over the run's state
	"github.com/gauntlet-ml/gauntlet/internal/searchattr",    // search attribute keys
	"github.com/gauntlet-ml/gauntlet/internal/signing",       // signed-approval verification
	"github.com/gauntlet-ml/gauntlet/internal/stepio",        // the one decoder of step inputs
	"github.com/gauntlet-ml/gauntlet/internal/wfsteps",       // input types of the steps workflow code carries out
}

// allowedModules are third-party modules workflow code may reach besides
// what the Temporal SDK itself imports: the template language and the
// YAML parser the spec package holds with its types.
var allowedModules = []string{
	"github.com/expr-lang/expr",
	"github.com/goccy/go-yaml",
}

// TestWorkflowsReachOnlyTheAllowList fails when the workflows package
// reaches, directly or through another package, anything outside the
// standard library, the Temporal SDK's own dependencies and the lists
// above: the build keeps workflow code free of I/O and heavy
// dependencies, not habit.
func TestWorkflowsReachOnlyTheAllowList(t *testing.T) {
	sdk := map[string]bool{}
	for _, p := range goListDeps(t, "go.temporal.io/sdk/workflow", "go.temporal.io/sdk/worker", "go.temporal.io/sdk/interceptor",
		"go.temporal.io/sdk/temporal", "go.temporal.io/api/enums/v1", "go.temporal.io/api/serviceerror") {
		sdk[p.path] = true
	}
	var bad []string
	for _, p := range goListDeps(t, "github.com/gauntlet-ml/gauntlet/workflows") {
		switch {
		case p.standard || sdk[p.path] || p.path == "github.com/gauntlet-ml/gauntlet/workflows":
		case p.module == "github.com/gauntlet-ml/gauntlet":
			if !slices.Contains(allowedGauntlet, p.path) {
				bad = append(bad, p.path)
			}
		case !slices.Contains(allowedModules, p.module):
			bad = append(bad, p.path+" (module "+p.module+")")
		}
	}
	if len(bad) > 0 {
		t.Fatalf("workflows reaches packages outside its allow-list (workflows/imports_test.go):\n  %s\n"+
			"move the I/O behind an activity, or split the pure part into a package of its own", strings.Join(bad, "\n  "))
	}
}

type listed struct {
	path, module string
	standard     bool
}

func goListDeps(t *testing.T, pkgs ...string) []listed {
	t.Helper()
	args := append([]string{"list", "-deps", "-f", "{{.ImportPath}} {{.Standard}} {{with .Module}}{{.Path}}{{end}}"}, pkgs...)
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	var res []listed
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		l := listed{path: f[0], standard: f[1] == "true"}
		if len(f) > 2 {
			l.module = f[2]
		}
		res = append(res, l)
	}
	return res
}

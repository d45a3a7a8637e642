package fleettest

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/testkit"
)

// Unavailable stops a test that lacks something the fleet needs: a skip on
// a developer's machine, a failure under CI=true, where every tool must be
// installed.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	testkit.Need(t, format, args...)
}

// Tool returns the absolute path of a program the fleet runs. It looks in
// the repository's bin/ (where scripts/install-fleet.sh builds the Temporal
// server, its SQL tool and the S3 server), then on PATH, then in Debian's
// PostgreSQL directory, whose programs are not on PATH.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if p, ok := findTool(name); ok {
		return p
	}
	Unavailable(t, "fleettest: %s not found in bin/, on PATH or under /usr/lib/postgresql; `make tools` installs it", name)
	return ""
}

func findTool(name string) (string, bool) {
	if root, err := RepoRoot(); err == nil {
		p := filepath.Join(root, "bin", name)
		if isExecutable(p) {
			return p, true
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs, true
		}
	}
	// Debian installs one directory per major version; prefer the newest.
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.Reverse(dirs)
	for _, d := range dirs {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p, true
		}
	}
	return "", false
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

var repoRoot = sync.OnceValues(func() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
})

// RepoRoot is the directory of the go.mod above the test's working
// directory: go test runs a package's tests in its own directory.
func RepoRoot() (string, error) { return repoRoot() }

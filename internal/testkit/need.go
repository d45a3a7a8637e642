package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true, or any other value
// strconv.ParseBool reads as true).
func InCI() bool {
	ci, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && ci
}

// Need stops a test that cannot run because something it needs is missing;
// the message names what and how to get it (usually `make tools`). Under CI
// the test fails: a run that skipped it would pass without having tested
// anything. Elsewhere it is skipped with the same message, which the test
// summary of `make test` lists.
func Need(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s [CI=true: a test fails rather than skip for what it needs]", msg)
		return
	}
	t.Skip(msg)
}

// Tool returns the path of the command name found on PATH, or stops the
// test through Need, naming the command and `make tools`.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Need(t, "needs %s, which is not on PATH: run `make tools` (scripts/install-tools.sh installs it)", name)
	}
	return p
}

// Installed returns path when it exists, or stops the test through Need,
// naming the path and `make tools`. For tools the tests expect at a fixed
// place (Debian's /usr/bin/chromium, the browser test's npm package).
func Installed(t testing.TB, path string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Need(t, "needs %s: run `make tools` (scripts/install-tools.sh installs it): %v", path, err)
	}
	return path
}

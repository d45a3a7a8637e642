package main

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// fixtureRun is `go test -json` of testdata/fixture: a module whose
// packages pass, fail, skip, exit mid-test, do not compile and have no tests.
func fixtureRun(t *testing.T) []byte {
	t.Helper()
	cmd := exec.Command("go", "test", "-json", "-count=1", "./...")
	cmd.Dir = "testdata/fixture"
	cmd.Env = append(os.Environ(), "GOFLAGS=", "CI=")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err == nil {
		t.Fatal("go test of the fixture passed; it must fail")
	} else if _, ok := err.(*exec.ExitError); !ok {
		t.Fatalf("go test: %v\n%s", err, stderr.String())
	}
	return out.Bytes()
}

func summarize(t *testing.T, in []byte, verbose bool) (string, int) {
	t.Helper()
	var w bytes.Buffer
	s := newSummary(&w, verbose, "example.com/fixture/")
	if err := s.read(bytes.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	failed := s.finish()
	// Durations vary from run to run; the tests compare everything else.
	return duration.ReplaceAllString(w.String(), "(D)"), failed
}

var duration = regexp.MustCompile(`\(\d+\.\d+s\)`)

func TestSummaryOfARealTestRun(t *testing.T) {
	in := append([]byte("a line that is not an event\n"), fixtureRun(t)...)
	out, failed := summarize(t, in, false)
	t.Log(out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if last := lines[len(lines)-1]; last != "tests: 5 passed, 5 failed, 3 skipped" {
		t.Errorf("last line %q", last)
	}
	if failed != 5 {
		t.Errorf("finish returned %d failed, want 5", failed)
	}
	for _, want := range []string{
		"a line that is not an event\n",
		"ok  \texample.com/fixture/passes\t",
		"?   \texample.com/fixture/notests\t[no test files]\n",
		// a failed test as plain go test prints it: its FAIL line, then its log
		"--- FAIL: TestFail (D)\n    skips_test.go:10: logged before\n    skips_test.go:11: first failure\n        second line\n",
		"--- FAIL: TestParentFailsItself (D)\n    skips_test.go:27: the parent failed\n",
		"FAIL\texample.com/fixture/skips\t",
		"broken_test.go:6:33: undefined: undefinedFunction\n",
		"--- FAIL: TestExits\n    exits_test.go:11: about to exit\n",
		"\nskipped (3):\n" +
			"  skips TestSub/skip: a subtest's reason\n" +
			"  skips TestSkip: needs sometool: run `make tools` continued\n" +
			"  skips TestSkipWithoutReason: no reason given\n",
		"\nfailed (5):\n" +
			"  exits TestExits: did not finish: its test binary ended during it (timeout, panic or os.Exit)\n" +
			"  skips TestFail\n" +
			"  skips TestSub/fail\n" +
			"  skips TestParentFailsItself\n" +
			"  broken: build failed: example.com/fixture/broken [example.com/fixture/broken.test]\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, noise := range []string{"=== RUN", "a passing test's log", "quiet", "logged before the skip", "--- PASS", "--- SKIP", "\nPASS\n"} {
		if strings.Contains(out, noise) {
			t.Errorf("output has %q, which plain go test does not print", noise)
		}
	}

	verbose, _ := summarize(t, in, true)
	for _, want := range []string{"=== RUN   TestPass\n", "a passing test's log, not printed\n", "--- SKIP: TestSkip", "ok  \texample.com/fixture/passes\t"} {
		if !strings.Contains(verbose, want) {
			t.Errorf("-v output lacks %q", want)
		}
	}
	if !strings.HasSuffix(verbose, "tests: 5 passed, 5 failed, 3 skipped\n") {
		t.Errorf("-v output does not end with the counts:\n%s", verbose)
	}
}

func TestSummaryOfAPassingRun(t *testing.T) {
	in := `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"p","Test":"TestA","Output":"--- PASS: TestA (0.00s)\n"}
{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Output":"PASS\n"}
{"Action":"output","Package":"p","Output":"ok  \tp\t0.01s\n"}
{"Action":"pass","Package":"p"}
`
	out, failed := summarize(t, []byte(in), false)
	if out != "ok  \tp\t0.01s\ntests: 1 passed, 0 failed, 0 skipped\n" || failed != 0 {
		t.Errorf("got %d failed and\n%s", failed, out)
	}
}

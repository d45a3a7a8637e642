// Command testsummary reads `go test -json` on its standard input, prints
// what plain `go test` would (the ok/FAIL line of each package, the output
// of failed tests and of failed packages) as it streams, and ends with the
// tests that were skipped and why, the tests that failed, and one line
//
//	tests: N passed, N failed, N skipped
//
// `make test` pipes the test run through it under pipefail, so the exit
// status stays the one of go test. Counts are of leaf tests (a test with
// subtests counts through them, unless it failed on its own) plus packages
// that failed without a failing test (build failure, timeout, panic).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

func main() {
	verbose := flag.Bool("v", false, "print every test's output, as go test -v does")
	trim := flag.String("trim", "", "prefix to strip from package paths in the summary (e.g. the module path and a slash)")
	flag.Parse()
	s := newSummary(os.Stdout, *verbose, *trim)
	if err := s.read(os.Stdin); err != nil {
		fmt.Fprintf(os.Stderr, "testsummary: reading go test -json: %v\n", err)
		os.Exit(2)
	}
	if s.finish() > 0 {
		os.Exit(1)
	}
}

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	ImportPath  string
	FailedBuild string
}

type key struct{ pkg, test string }

type test struct {
	key
	output []string
	result string // "pass", "fail", "skip"; "" while it runs
	reason string // why it was skipped, or why it counts as failed
}

type summary struct {
	w       io.Writer
	verbose bool
	trim    string

	tests   map[key]*test
	order   []*test
	pkgOut  map[string][]string // package-level output, printed when the package fails
	pkgFail []key               // packages that failed, with why in test
}

func newSummary(w io.Writer, verbose bool, trim string) *summary {
	return &summary{w: w, verbose: verbose, trim: trim, tests: map[key]*test{}, pkgOut: map[string][]string{}}
}

func (s *summary) read(r io.Reader) error {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			s.line(line)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (s *summary) line(line string) {
	var e event
	if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &e) != nil || e.Action == "" {
		// Not an event: go test or a tool printed it as it is.
		fmt.Fprint(s.w, line)
		return
	}
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.w, e.Output)
	case "output":
		if s.verbose {
			fmt.Fprint(s.w, e.Output)
		}
		if e.Test == "" {
			s.packageOutput(e.Package, e.Output)
			return
		}
		t := s.test(e.Package, e.Test)
		t.output = append(t.output, e.Output)
	case "run":
		s.test(e.Package, e.Test)
	case "pass", "fail", "skip":
		if e.Test == "" {
			s.packageEnd(e)
			return
		}
		t := s.test(e.Package, e.Test)
		t.result = e.Action
		switch e.Action {
		case "fail":
			if !s.verbose {
				s.printFailed(t)
			}
		case "skip":
			t.reason = skipReason(t.output)
		}
		t.output = nil
	}
}

func (s *summary) test(pkg, name string) *test {
	k := key{pkg, name}
	t, ok := s.tests[k]
	if !ok {
		t = &test{key: k}
		s.tests[k] = t
		s.order = append(s.order, t)
	}
	return t
}

// packageOutput prints the lines plain go test prints for every package
// (ok, no test files) and keeps the others for a failure.
func (s *summary) packageOutput(pkg, out string) {
	if s.verbose {
		return
	}
	if strings.HasPrefix(out, "ok  ") || strings.HasPrefix(out, "?   ") {
		fmt.Fprint(s.w, out)
		return
	}
	s.pkgOut[pkg] = append(s.pkgOut[pkg], out)
}

func (s *summary) packageEnd(e event) {
	out := s.pkgOut[e.Package]
	delete(s.pkgOut, e.Package)
	if e.Action != "fail" {
		return
	}
	// A test binary that panicked or timed out leaves its running tests
	// without an end; they failed with it.
	failedTest := false
	for _, t := range s.order {
		if t.pkg != e.Package {
			continue
		}
		if t.result == "" {
			t.result, t.reason = "fail", "did not finish: its test binary ended during it (timeout, panic or os.Exit)"
			if !s.verbose {
				s.printFailed(t)
			}
			t.output = nil
		}
		failedTest = failedTest || t.result == "fail"
	}
	if !s.verbose {
		for _, o := range out {
			fmt.Fprint(s.w, o)
		}
	}
	if !failedTest {
		why := "failed without a failing test (TestMain, init or the test binary itself)"
		if e.FailedBuild != "" {
			why = "build failed: " + e.FailedBuild
		}
		s.pkgFail = append(s.pkgFail, key{e.Package, why})
	}
}

// printFailed prints a failed test's output the way plain go test does:
// its --- FAIL line first, then what it logged, without the === lines of -v.
func (s *summary) printFailed(t *test) {
	var head string
	var body []string
	for _, o := range t.output {
		switch {
		case strings.HasPrefix(o, "=== "):
		case head == "" && strings.HasPrefix(strings.TrimLeft(o, " "), "--- FAIL: "+t.test+" "):
			head = o
		default:
			body = append(body, o)
		}
	}
	if head == "" {
		head = "--- FAIL: " + t.test + "\n"
	}
	fmt.Fprint(s.w, head)
	for _, o := range body {
		fmt.Fprint(s.w, o)
	}
}

// logLine matches the start of a t.Log, t.Error or t.Skip message:
// indentation, file:line, colon.
var logLine = regexp.MustCompile(`^\s+[^\s:]+\.go:\d+: `)

// skipReason is the last message the skipped test logged (its t.Skip
// message), without file:line, continuation lines joined.
func skipReason(output []string) string {
	start := -1
	for i, o := range output {
		if logLine.MatchString(o) {
			start = i
		}
	}
	if start < 0 {
		return "no reason given"
	}
	var parts []string
	for i, o := range output[start:] {
		if strings.HasPrefix(strings.TrimSpace(o), "--- SKIP: ") {
			break
		}
		if i == 0 {
			o = logLine.ReplaceAllString(o, "")
		}
		if o = strings.TrimSpace(o); o != "" {
			parts = append(parts, o)
		}
	}
	return strings.Join(parts, " ")
}

// finish prints the lists and the final line, and returns how many failed.
func (s *summary) finish() int {
	parent := map[key]bool{}
	failedBelow := map[key]bool{}
	for _, t := range s.order {
		for n := t.test; strings.Contains(n, "/"); {
			n = n[:strings.LastIndex(n, "/")]
			parent[key{t.pkg, n}] = true
			if t.result == "fail" {
				failedBelow[key{t.pkg, n}] = true
			}
		}
	}
	var passed, skipped []*test
	var failed []string
	for _, t := range s.order {
		switch {
		case t.result == "fail" && !failedBelow[t.key]:
			line := s.name(t.key)
			if t.reason != "" {
				line += ": " + t.reason
			}
			failed = append(failed, line)
		case parent[t.key]:
		case t.result == "pass":
			passed = append(passed, t)
		case t.result == "skip":
			skipped = append(skipped, t)
		}
	}
	for _, p := range s.pkgFail {
		failed = append(failed, strings.TrimPrefix(p.pkg, s.trim)+": "+p.test)
	}
	if len(skipped) > 0 {
		sort.SliceStable(skipped, func(i, j int) bool { return skipped[i].reason < skipped[j].reason })
		fmt.Fprintf(s.w, "\nskipped (%d):\n", len(skipped))
		for _, t := range skipped {
			fmt.Fprintf(s.w, "  %s: %s\n", s.name(t.key), t.reason)
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(s.w, "\nfailed (%d):\n", len(failed))
		for _, f := range failed {
			fmt.Fprintf(s.w, "  %s\n", f)
		}
	}
	fmt.Fprintf(s.w, "tests: %d passed, %d failed, %d skipped\n", len(passed), len(failed), len(skipped))
	return len(failed)
}

func (s *summary) name(k key) string {
	return strings.TrimPrefix(k.pkg, s.trim) + " " + k.test
}

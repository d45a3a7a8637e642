package cli

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

func TestGlobalsPreferFlagsThenEnvThenDefaults(t *testing.T) {
	cases := []struct {
		name      string
		env       map[string]string
		args      []string
		wantAddr  string
		wantNS    string
		wantQueue string
	}{
		{"defaults", nil, nil, "127.0.0.1:7233", "default", "gauntlet"},
		{"env", map[string]string{"TEMPORAL_ADDRESS": "temporal:7233", "TEMPORAL_NAMESPACE": "ml", "GAUNTLET_TASK_QUEUE": "gpu"}, nil, "temporal:7233", "ml", "gpu"},
		{"flags win", map[string]string{"TEMPORAL_ADDRESS": "temporal:7233", "TEMPORAL_NAMESPACE": "ml", "GAUNTLET_TASK_QUEUE": "gpu"},
			[]string{"--address", "other:1234", "-n", "prod", "--task-queue", "cpu"}, "other:1234", "prod", "cpu"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := &app{getenv: func(k string) string { return tc.env[k] }}
			root := a.rootCommand()
			if err := root.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			if err := a.resolveGlobals(root.Flags()); err != nil {
				t.Fatal(err)
			}
			if a.conn.Address != tc.wantAddr || a.conn.Namespace != tc.wantNS || a.taskQueue != tc.wantQueue {
				t.Fatalf("got %s %s %s", a.conn.Address, a.conn.Namespace, a.taskQueue)
			}
		})
	}
}

func TestUsageErrorsExitTwoWithOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"run"},
		{"run", "smoke", "--param", "novalue"},
		{"version", "--output", "yaml"},
		{"dev", "--port", "70000"},
	} {
		code, _, stderr := runCLI(t, nil, args...)
		if code != ExitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, ExitUsage, stderr)
		}
		if strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.HasPrefix(stderr, "gauntlet: ") {
			t.Errorf("%v: want one line on stderr, got %q", args, stderr)
		}
	}
}

func TestUnreachableTemporalExitsSix(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	code, _, stderr := runCLI(t, nil, "status", "some-run", "--address", addr, "--connect-timeout", "1s")
	if code != ExitUnreachable {
		t.Fatalf("exit %d, want %d: %s", code, ExitUnreachable, stderr)
	}
	if !strings.Contains(stderr, "cannot reach Temporal at "+addr) || !strings.Contains(stderr, "gauntlet dev") {
		t.Fatalf("message does not say what to do: %q", stderr)
	}
}

func TestParseParams(t *testing.T) {
	got, err := parseParams([]string{"a=1", "b=x=y", " c =", "d="})
	if err != nil {
		t.Fatal(err)
	}
	if got["a"] != "1" || got["b"] != "x=y" || got["c"] != "" || got["d"] != "" {
		t.Fatalf("%v", got)
	}
	if _, err := parseParams([]string{"a=1", "a=2"}); err == nil || codeOf(err) != ExitUsage {
		t.Fatalf("duplicate param: %v", err)
	}
	if _, err := parseParams([]string{"=1"}); err == nil {
		t.Fatal("empty key accepted")
	}
}

func TestRunIDIsNameAndUTCTime(t *testing.T) {
	at := time.Date(2026, 11, 25, 23, 4, 5, 678_000_000, time.FixedZone("X", 3600))
	if got := RunID("smoke", at); got != "smoke-20261125T220405.678Z" {
		t.Fatalf("got %s", got)
	}
}

func TestValidateReportsPositionsAndExitsSeven(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: bad\nsteps:\n  - id: a\n    uses: echo\n    neds: [b]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ := runCLI(t, nil, "validate", bad)
	if code != ExitInvalid {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stdout, bad+":5:5:") || !strings.Contains(stdout, `did you mean "needs"`) {
		t.Fatalf("stdout %q", stdout)
	}
	code, stdout, stderr := runCLI(t, nil, "validate", filepath.Join(repoRoot(t), "pipelines"))
	if code != ExitOK {
		t.Fatalf("shipped pipelines invalid (exit %d): %s %s", code, stdout, stderr)
	}
}

func TestPlanPrintsLevelsAndDot(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "p.yaml")
	src := "name: p\nsteps:\n  - {id: a, uses: echo}\n  - {id: b, uses: echo, needs: [a]}\n  - {id: c, uses: echo, needs: [a]}\n  - {id: d, uses: echo, needs: [b, c]}\n"
	if err := os.WriteFile(f, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, nil, "plan", f)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "3 levels") || !strings.Contains(out, "2: b (echo), c (echo)") {
		t.Fatalf("plan: %q", out)
	}
	code, out, _ = runCLI(t, nil, "plan", f, "--dot")
	if code != 0 || !strings.Contains(out, `"b" -> "d"`) || !strings.HasPrefix(out, "digraph") {
		t.Fatalf("dot: %q", out)
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
			t.Fatal("no go.mod above the test")
		}
		dir = parent
	}
}

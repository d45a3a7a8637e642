package extstep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fast keeps the tests quick without changing what they check.
var fast = Options{Grace: 200 * time.Millisecond, ProgressEvery: 10 * time.Millisecond, HeartbeatEvery: 20 * time.Millisecond}

func runShell(t *testing.T, env *fakeEnv, script string, with map[string]any) (map[string]any, error) {
	t.Helper()
	return fast.Run(context.Background(), env, Command{Shell: script}, Input{RunID: "run-1", Pipeline: "pipe", StepID: "train", With: with})
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	return e
}

func TestSuccessMergesOutputsJSONAndDirectives(t *testing.T) {
	env := newFakeEnv(t)
	out, err := runShell(t, env, `
echo "::output greeting=hello model=m1"
echo "not a directive ::output x=y"
printf '{"accuracy": 0.9, "greeting": "from-json", "log": "mine"}' > "$GAUNTLET_OUTPUT_DIR/outputs.json"
echo '::output quoted="a b"' >&2
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"accuracy": 0.9,
		"greeting": "from-json",
		"model":    "m1",
		"quoted":   "a b",
	}
	got := map[string]any{}
	for k, v := range out {
		if k != OutputDirKey && k != LogKey {
			got[k] = v
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("outputs\n got %v\nwant %v", got, want)
	}
	// output_dir and log are the attempt's, in the store: the command's
	// "log" is replaced.
	if b, err := os.ReadFile(filepath.Join(env.local(t, out[OutputDirKey]), "outputs.json")); err != nil || !strings.Contains(string(b), "from-json") {
		t.Fatalf("output_dir holds %q, %v", b, err)
	}
	if b, err := os.ReadFile(env.local(t, out[LogKey])); err != nil || !strings.Contains(string(b), "::output greeting=hello") {
		t.Fatalf("log holds %q, %v", b, err)
	}
}

func TestMissingOutputsFileMeansNoOutputs(t *testing.T) {
	env := newFakeEnv(t)
	out, err := runShell(t, env, `true`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[OutputDirKey] == nil || out[LogKey] == nil {
		t.Fatalf("outputs = %v, want only %s and %s", out, OutputDirKey, LogKey)
	}
}

func TestOutputDirIsFreshPerAttempt(t *testing.T) {
	env := newFakeEnv(t)
	// The first attempt leaves a file; the second must not see it.
	if _, err := runShell(t, env, `echo '{"n": 1}' > "$GAUNTLET_OUTPUT_DIR/outputs.json"; exit 1`, nil); err == nil {
		t.Fatal("first attempt succeeded")
	}
	out, err := runShell(t, env, `ls "$GAUNTLET_OUTPUT_DIR" | wc -l | sed 's/ //g; s/^/::output files=/'`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out["files"] != "0" {
		t.Fatalf("second attempt's output dir holds %v files", out["files"])
	}
	if _, err := os.Stat(filepath.Join(env.dir, "attempt-2", "output")); err != nil {
		t.Fatalf("attempt 2's output dir: %v", err)
	}
}

func TestProgressReachesHeartbeats(t *testing.T) {
	env := newFakeEnv(t)
	_, err := runShell(t, env, `
echo "::progress epoch=1/3 loss=0.9"
echo "::progress epoch=2/3 loss=0.5 phase=train"
echo '::progress epoch=3/3 loss="0.25 (best)"' >&2
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	hbs := env.heartbeats()
	if len(hbs) < 2 {
		t.Fatalf("got %d heartbeats, want a start one and at least one with progress", len(hbs))
	}
	if len(hbs[0].Progress) != 0 {
		t.Errorf("first heartbeat carries progress %v before the command ran", hbs[0].Progress)
	}
	for _, hb := range hbs {
		if hb.Attempt != 1 {
			t.Errorf("heartbeat attempt = %d, want 1", hb.Attempt)
		}
	}
	// Keys persist across lines; the last value of each wins.
	want := map[string]string{"epoch": "3/3", "loss": "0.25 (best)", "phase": "train"}
	if got := hbs[len(hbs)-1].Progress; !reflect.DeepEqual(got, want) {
		t.Fatalf("last progress = %v, want %v", got, want)
	}
}

func TestParseDirective(t *testing.T) {
	cases := []struct {
		line  string
		kind  string
		pairs map[string]string
	}{
		{"::progress epoch=3/20 loss=0.41", "progress", map[string]string{"epoch": "3/20", "loss": "0.41"}},
		{"::progress\tstep=1\r", "progress", map[string]string{"step": "1"}},
		{`::output path="/tmp/a b" n=1`, "output", map[string]string{"path": "/tmp/a b", "n": "1"}},
		{`::output msg="unterminated`, "output", map[string]string{"msg": `"unterminated`}},
		{"::progress bare epoch=2 =x", "progress", map[string]string{"epoch": "2"}},
		{"::progress", "progress", map[string]string{}},
		{"::progressive epoch=1", "", nil},
		{" ::progress epoch=1", "", nil},
		{"epoch=1", "", nil},
	}
	for _, c := range cases {
		kind, pairs := parseDirective(c.line)
		if kind != c.kind || !reflect.DeepEqual(pairs, c.pairs) {
			t.Errorf("parseDirective(%q) = %q %v, want %q %v", c.line, kind, pairs, c.kind, c.pairs)
		}
	}
}

func TestEnvContract(t *testing.T) {
	t.Setenv("EXTSTEP_TEST_API_TOKEN", "worker-secret")
	t.Setenv("EXTSTEP_TEST_PLAIN", "visible")
	t.Setenv("GAUNTLET_OUTPUT_DIR", "/stale/from/worker")
	t.Setenv("GAUNTLET_EXTRA", "worker-only")
	env := newFakeEnv(t)
	with := map[string]any{
		"epochs":       20.0,
		"learningRate": 0.05,
		"name":         "x y",
		"use-gpu":      true,
		"layers":       []any{64.0, 32.0},
	}
	script := `
q() { printf '::output %s="%s"\n' "$1" "$2"; }
q run_id "$GAUNTLET_RUN_ID"
q pipeline "$GAUNTLET_PIPELINE"
q step_id "$GAUNTLET_STEP_ID"
q attempt "$GAUNTLET_ATTEMPT"
q out "$GAUNTLET_OUTPUT_DIR"
q ckpt "$GAUNTLET_CHECKPOINT_DIR"
q epochs "$GAUNTLET_INPUT_EPOCHS"
q lr "$GAUNTLET_INPUT_LEARNING_RATE"
q name "$GAUNTLET_INPUT_NAME"
q gpu "$GAUNTLET_INPUT_USE_GPU"
q layers "${GAUNTLET_INPUT_LAYERS-unset}"
q token "${EXTSTEP_TEST_API_TOKEN-unset}"
q plain "${EXTSTEP_TEST_PLAIN-unset}"
q extra "${GAUNTLET_EXTRA-unset}"
q declared "${MY_SECRET_KEY-unset}"
q pwd "$(pwd -P)"
cp "$GAUNTLET_INPUTS" inputs-copy.json
`
	cmd := Command{Shell: script, Env: map[string]string{"MY_SECRET_KEY": "declared-by-step"}, Workdir: "src"}
	out, err := fast.Run(context.Background(), env, cmd, Input{RunID: "run-1", Pipeline: "pipe", StepID: "train", With: with})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := filepath.EvalSymlinks(env.dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"run_id":   "run-1",
		"pipeline": "pipe",
		"step_id":  "train",
		"attempt":  "1",
		"out":      filepath.Join(env.dir, "attempt-1", "output"),
		"ckpt":     filepath.Join(env.dir, "checkpoint"),
		"epochs":   "20",
		"lr":       "0.05",
		"name":     "x y",
		"gpu":      "true",
		"layers":   "unset",
		"token":    "unset",
		"plain":    "visible",
		"extra":    "unset",
		"declared": "declared-by-step",
		"pwd":      filepath.Join(dir, "src"),
	}
	for k, v := range want {
		if out[k] != v {
			t.Errorf("%s = %q, want %q", k, out[k], v)
		}
	}
	data, err := os.ReadFile(filepath.Join(env.dir, "src", "inputs-copy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, with) {
		t.Fatalf("GAUNTLET_INPUTS holds %v, want %v", got, with)
	}
}

func TestEnvKey(t *testing.T) {
	cases := map[string]string{
		"epochs":        "EPOCHS",
		"learningRate":  "LEARNING_RATE",
		"learning-rate": "LEARNING_RATE",
		"crash_after":   "CRASH_AFTER",
		"data.path":     "DATA_PATH",
		"layer2Size":    "LAYER2_SIZE",
		"--x--":         "X",
		"é":             "",
	}
	for in, want := range cases {
		if got := EnvKey(in); got != want {
			t.Errorf("EnvKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBadCommandsArePermanent(t *testing.T) {
	cases := []struct {
		name string
		cmd  Command
		with map[string]any
		kind string
	}{
		{"neither shell nor argv", Command{}, nil, KindBadInput},
		{"both shell and argv", Command{Shell: "true", Argv: []string{"true"}}, nil, KindBadInput},
		{"reserved env", Command{Shell: "true", Env: map[string]string{"GAUNTLET_STEP_ID": "x"}}, nil, KindBadInput},
		{"colliding inputs", Command{Shell: "true"}, map[string]any{"a-b": 1.0, "a_b": 2.0}, KindBadInput},
		{"missing absolute workdir", Command{Shell: "true", Workdir: "/nonexistent/extstep"}, nil, KindBadInput},
		{"program not in PATH", Command{Argv: []string{"extstep-no-such-program"}}, nil, KindCommandNotFound},
		{"missing program path", Command{Argv: []string{"./no-such-program"}}, nil, KindCommandNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := fast.Run(context.Background(), newFakeEnv(t), c.cmd, Input{StepID: "s", With: c.with})
			e := asError(t, err)
			if e.Kind != c.kind || e.Retryable() {
				t.Fatalf("kind %s retryable %v (%v), want permanent %s", e.Kind, e.Retryable(), err, c.kind)
			}
		})
	}
}

func TestArgvUsesCommandPath(t *testing.T) {
	env := newFakeEnv(t)
	bin := t.TempDir()
	tool := filepath.Join(bin, "extstep-tool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\nprintf '::output args=\"%s\"\\n' \"$*\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := Command{Argv: []string{"extstep-tool", "a b", "c"}, Env: map[string]string{"PATH": bin + ":/usr/bin:/bin"}}
	out, err := fast.Run(context.Background(), env, cmd, Input{StepID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if out["args"] != "a b c" {
		t.Fatalf("args = %q", out["args"])
	}
}

func TestInvalidOutputsJSONIsPermanent(t *testing.T) {
	cases := map[string]struct{ body, want string }{
		"syntax":   {`{"a": 1,\n "b": }`, "line 2, column 7"},
		"array":    {`[1, 2]`, "want a JSON object, got array"},
		"null":     {`null`, "want a JSON object, got null"},
		"trailing": {`{"a": 1} x`, "line 1, column 10"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			env := newFakeEnv(t)
			_, err := runShell(t, env, fmt.Sprintf(`printf '%s' > "$GAUNTLET_OUTPUT_DIR/outputs.json"`, c.body), nil)
			e := asError(t, err)
			if e.Kind != KindBadOutput || e.Retryable() {
				t.Fatalf("kind %s retryable %v, want permanent %s", e.Kind, e.Retryable(), KindBadOutput)
			}
			path := filepath.Join(env.dir, "attempt-1", "output", "outputs.json")
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not name %s and %q", err, path, c.want)
			}
		})
	}
}

func TestExitCodeMapping(t *testing.T) {
	cases := []struct {
		script    string
		kind      string
		retryable bool
		code      int
		signal    syscall.Signal
	}{
		{"exit 1", KindCommandFailed, true, 1, 0},
		{"exit 3", KindCommandFailed, true, 3, 0},
		{"exit 2", KindBadInput, false, 2, 0},
		{"exit 64", KindBadInput, false, 64, 0},
		{"exit 65", KindBadInput, false, 65, 0},
		{"exit 78", KindBadInput, false, 78, 0},
		{"exit 127", KindCommandNotFound, false, 127, 0},
		{"kill -KILL $$", KindCommandKilled, true, -1, syscall.SIGKILL},
		{"kill -SEGV $$", KindCommandKilled, true, -1, syscall.SIGSEGV},
	}
	for _, c := range cases {
		t.Run(c.script, func(t *testing.T) {
			_, err := runShell(t, newFakeEnv(t), c.script, nil)
			e := asError(t, err)
			if e.Kind != c.kind || e.Retryable() != c.retryable || e.ExitCode != c.code || e.Signal != c.signal {
				t.Fatalf("got kind %s retryable %v code %d signal %v; want %s %v %d %v",
					e.Kind, e.Retryable(), e.ExitCode, e.Signal, c.kind, c.retryable, c.code, c.signal)
			}
		})
	}
}

func TestLogFileAndTail(t *testing.T) {
	env := newFakeEnv(t)
	const lines = 120
	_, err := runShell(t, env, fmt.Sprintf(`i=1; while [ $i -le %d ]; do echo "line-$i"; i=$((i+1)); done; echo "oops" >&2; exit 1`, lines), nil)
	e := asError(t, err)
	logPath := filepath.Join(env.dir, "logs", "attempt-1.log")
	if e.Log != logPath {
		t.Fatalf("Log = %q, want %q", e.Log, logPath)
	}
	var all []string
	for i := 1; i <= lines; i++ {
		all = append(all, fmt.Sprintf("line-%d", i))
	}
	all = append(all, "oops")
	wantTail := all[len(all)-50:]
	if !reflect.DeepEqual(e.Tail, wantTail) {
		t.Fatalf("tail = %v\nwant %v", e.Tail, wantTail)
	}
	if !strings.Contains(err.Error(), strings.Join(wantTail, "\n")) {
		t.Fatalf("error message lacks the tail: %q", err)
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), strings.Join(all, "\n")+"\n") {
		t.Fatalf("log does not start with the whole output:\n%s", data)
	}
}

func TestLogLimit(t *testing.T) {
	env := newFakeEnv(t)
	o := fast
	o.LogLimit = 1000
	// 200 lines of 11 bytes overflow the limit; the last line still counts
	// as a directive although it is not logged.
	out, err := o.Run(context.Background(), env, Command{Shell: `i=0; while [ $i -lt 200 ]; do echo "0123456789"; i=$((i+1)); done; echo "::output after=cut"`}, Input{StepID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if out["after"] != "cut" {
		t.Fatalf("directive after the limit lost: %v", out)
	}
	data, err := os.ReadFile(env.local(t, out[LogKey]))
	if err != nil {
		t.Fatal(err)
	}
	body, rest, found := strings.Cut(string(data), "\n[gauntlet: log cut at 1000 bytes")
	if !found || len(body) != 1000 {
		t.Fatalf("log is %d bytes before the cut marker (found %v), want 1000", len(body), found)
	}
	if strings.Contains(rest, "0123456789") {
		t.Fatal("output after the cut was logged")
	}
}

func TestAttemptNumbering(t *testing.T) {
	env := newFakeEnv(t)
	attempt := func() string {
		t.Helper()
		out, err := runShell(t, env, `echo "::output attempt=$GAUNTLET_ATTEMPT"`, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out["attempt"].(string)
	}
	if got := attempt(); got != "1" {
		t.Fatalf("first attempt = %s", got)
	}
	// Same directory, no heartbeat to resume: the logs count.
	if got := attempt(); got != "2" {
		t.Fatalf("attempt after a logged one = %s, want 2", got)
	}
	// A heartbeat from a later attempt (one that ran on another worker)
	// wins over the local logs.
	env.resume = []byte(`{"attempt": 6}`)
	if got := attempt(); got != "7" {
		t.Fatalf("attempt after heartbeat 6 = %s, want 7", got)
	}
}

// An input that is an artifact pointer arrives as a local path, with the
// pointer beside it; what the command writes under artifacts/<key> leaves
// as output <key>, a pointer.
func TestArtifactsInAndOut(t *testing.T) {
	env := newFakeEnv(t)
	src := filepath.Join(t.TempDir(), "data.csv")
	if err := os.WriteFile(src, []byte("a,b\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := env.artifacts.Publish(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	out, err := runShell(t, env, `
set -e
echo "::output ref=$GAUNTLET_INPUT_DATA_REF path=$GAUNTLET_INPUT_DATA head=$(head -1 "$GAUNTLET_INPUT_DATA")"
grep -q "\"data\": \"$GAUNTLET_INPUT_DATA\"" "$GAUNTLET_INPUTS"
mkdir -p "$GAUNTLET_OUTPUT_DIR/artifacts/model/weights"
echo w > "$GAUNTLET_OUTPUT_DIR/artifacts/model/weights/w.bin"
echo '{}' > "$GAUNTLET_OUTPUT_DIR/artifacts/model/manifest.json"
cp "$GAUNTLET_INPUT_DATA" "$GAUNTLET_OUTPUT_DIR/artifacts/copy"
echo tmp > "$GAUNTLET_OUTPUT_DIR/artifacts/.partial"
`, map[string]any{"data": in.String(), "label": "y"})
	if err != nil {
		t.Fatal(err)
	}
	if out["ref"] != in.String() || out["head"] != "a,b" || !filepath.IsAbs(out["path"].(string)) {
		t.Errorf("input: ref %v path %v first line %v", out["ref"], out["path"], out["head"])
	}
	model := env.local(t, out["model"])
	if b, err := os.ReadFile(filepath.Join(model, "weights", "w.bin")); err != nil || string(b) != "w\n" {
		t.Errorf("model artifact: %q, %v", b, err)
	}
	if out["copy"] != in.String() {
		t.Errorf("copy %v: the same bytes are the same blob %s", out["copy"], in)
	}
	if _, ok := out[".partial"]; ok {
		t.Error("a hidden temporary file became an output")
	}
}

func TestArtifactOutputErrors(t *testing.T) {
	for name, c := range map[string]struct {
		script string
		with   map[string]any
		kind   string
		msg    string
	}{
		"set twice": {`mkdir -p "$GAUNTLET_OUTPUT_DIR/artifacts"; echo 1 > "$GAUNTLET_OUTPUT_DIR/artifacts/model"; echo "::output model=x"`, nil, KindBadOutput, "set both"},
		"reserved":  {`mkdir -p "$GAUNTLET_OUTPUT_DIR/artifacts"; echo 1 > "$GAUNTLET_OUTPUT_DIR/artifacts/log"`, nil, KindBadOutput, "Gauntlet sets"},
		"symlink":   {`mkdir -p "$GAUNTLET_OUTPUT_DIR/artifacts/m"; ln -s /etc/passwd "$GAUNTLET_OUTPUT_DIR/artifacts/m/x"`, nil, KindBadOutput, "not a regular file"},
		"ref clash": {`true`, map[string]any{"model": "REF", "model_ref": "x"}, KindBadInput, "GAUNTLET_INPUT_MODEL_REF"},
	} {
		t.Run(name, func(t *testing.T) {
			env := newFakeEnv(t)
			if c.with["model"] == "REF" {
				p, err := env.artifacts.Publish(context.Background(), env.dir)
				if err != nil {
					t.Fatal(err)
				}
				c.with["model"] = p.String()
			}
			_, err := runShell(t, env, c.script, c.with)
			e := asError(t, err)
			if e.Kind != c.kind || e.Retryable() || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("kind %s retryable %v: %v; want %s naming %q", e.Kind, e.Retryable(), err, c.kind, c.msg)
			}
		})
	}
}

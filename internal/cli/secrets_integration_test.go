package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/testkit"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/gauntlet-ml/gauntlet/activities"
	"github.com/gauntlet-ml/gauntlet/internal/codec"
	"github.com/gauntlet-ml/gauntlet/internal/secrets"
	"github.com/gauntlet-ml/gauntlet/internal/tclient"
	"github.com/gauntlet-ml/gauntlet/internal/workerhost"
)

// leakPipeline's commands try every way a secret reaches a run: the
// worker's environment (withheld by the run: contract), an output line and
// a failure's quoted log tail (the values read from files, as a command
// finds credentials on the machine it runs on).
const leakPipeline = `name: leak
params:
  token_file: {type: string}
  creds_file: {type: string}
steps:
  - id: peek
    run: |
      echo "from the environment: [$GITHUB_TOKEN] [$AWS_SECRET_ACCESS_KEY]"
      echo "::output seen=[$GITHUB_TOKEN$AWS_SECRET_ACCESS_KEY]"
  - id: leak
    needs: [peek]
    continue_on_error: true
    retry: {max_attempts: 3, initial_interval: 1s}
    with: {token_file: "${{ params.token_file }}"}
    run: |
      echo "from a file: $(cat "$GAUNTLET_INPUT_TOKEN_FILE")"
      echo "::output leaked=$(cat "$GAUNTLET_INPUT_TOKEN_FILE") kept=yes"
  - id: crash
    needs: [leak]
    retry: {max_attempts: 3, initial_interval: 1s}
    with: {creds_file: "${{ params.creds_file }}"}
    run: |
      echo "access denied for secret key $(cat "$GAUNTLET_INPUT_CREDS_FILE")"
      exit 1
`

func TestSecretsStayOutOfHistoryAndLogs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Temporal server; skipped with -short")
	}
	ghToken, awsKey := randomValue(t, "ghp_"), randomValue(t, "aws/")
	planted := []string{ghToken, awsKey}
	// Before the stack starts: the worker reads its secrets once, then.
	t.Setenv("GITHUB_TOKEN", ghToken)
	t.Setenv("AWS_SECRET_ACCESS_KEY", awsKey)

	dir := t.TempDir()
	pipes := filepath.Join(dir, "pipelines")
	smoke, err := os.ReadFile(filepath.Join(repoRoot(t), "pipelines", "smoke.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tokenFile, credsFile := filepath.Join(dir, "token"), filepath.Join(dir, "credentials")
	for path, text := range map[string]string{
		filepath.Join(pipes, "smoke.yaml"): string(smoke),
		filepath.Join(pipes, "leak.yaml"):  leakPipeline,
		tokenFile:                          ghToken + "\n",
		credsFile:                          awsKey + "\n",
	} {
		writeTestFile(t, path, text)
	}
	stack := startLoggedEmbedded(t, pipes)
	env := map[string]string{"TEMPORAL_ADDRESS": stack.frontend, "GAUNTLET_PIPELINES": pipes, "GAUNTLET_USER": "ci"}
	var cliOutput strings.Builder

	code, out, stderr := runCLI(t, env, "run", "smoke", "--id", "secrets-smoke", "--wait", "-o", "json")
	cliOutput.WriteString(out + stderr)
	if code != ExitOK {
		t.Fatalf("smoke run: exit %d: %s %s", code, out, stderr)
	}

	code, out, stderr = runCLI(t, env, "run", "leak", "--id", "secrets-leak", "--wait", "-o", "json",
		"--param", "token_file="+tokenFile, "--param", "creds_file="+credsFile)
	cliOutput.WriteString(out + stderr)
	if code != ExitFailed {
		t.Fatalf("leak run: exit %d, want %d: %s %s", code, ExitFailed, out, stderr)
	}
	var rep RunReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("leak run report: %v\n%s", err, out)
	}
	peek, leak, crash := reportStep(t, rep.Status, "peek"), reportStep(t, rep.Status, "leak"), reportStep(t, rep.Status, "crash")
	if peek.State != contract.StateSucceeded || peek.Outputs["seen"] != "[]" {
		t.Errorf("the run: command saw the worker's secret variables: %+v", peek)
	}
	if leak.State != contract.StateFailed || !strings.Contains(leak.Error, `output "leaked"`) || strings.Contains(leak.Error, "kept") {
		t.Errorf("leak step: %+v", leak)
	}
	if crash.State != contract.StateFailed || !strings.Contains(crash.Error, "access denied for secret key "+secrets.Mask) {
		t.Errorf("crash step: %+v", crash)
	}
	// Neither is retried: another attempt would print the same secret.
	if leak.Attempt != 1 || crash.Attempt != 1 {
		t.Errorf("attempts: leak %d, crash %d, want 1 each", leak.Attempt, crash.Attempt)
	}

	c, err := tclient.Dial(context.Background(), tclient.Options{Address: stack.frontend, Namespace: "default"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	failedAs := map[string]int{}
	for _, id := range []string{"secrets-smoke", "secrets-leak"} {
		events := fetchHistory(t, c, id)
		hay := historyHaystack(t, events, nil)
		for _, f := range secrets.Scan(hay, planted) {
			t.Errorf("history of %s holds planted secret %d (%s form) at %d: ...%s...", id, f.Secret, f.Form, f.Offset, around(hay, f))
		}
		for _, ev := range events {
			if a := ev.GetActivityTaskFailedEventAttributes(); a != nil {
				failedAs[a.GetFailure().GetApplicationFailureInfo().GetType()]++
			}
		}
	}
	if failedAs[activities.KindSecretInOutput] != 2 {
		t.Errorf("activity failures by type %v, want the leak and crash steps as %s", failedAs, activities.KindSecretInOutput)
	}
	// The scan sees inside payloads: the leak run's other inputs are there.
	if hay := historyHaystack(t, fetchHistory(t, c, "secrets-leak"), nil); len(secrets.Scan(hay, []string{tokenFile})) == 0 {
		t.Fatal("the history scan does not find the token_file param: it cannot see a payload's contents")
	}

	logs := stack.logs.String() + readOptional(t, stack.serverLog) + cliOutput.String()
	for _, f := range secrets.Scan([]byte(logs), planted) {
		t.Errorf("logs hold planted secret %d (%s form): ...%s...", f.Secret, f.Form, around([]byte(logs), f))
	}
	// The worker's log lines are in what was scanned.
	if !strings.Contains(stack.logs.String(), "kind="+activities.KindSecretInOutput) {
		t.Errorf("the dev stack's output has no worker log line about the withheld step:\n%s", stack.logs.String())
	}
}

// probePipeline echoes a param into outputs, so that the param is in the
// workflow input, activity inputs and results, queries and the run result.
const probePipeline = `name: probe
params:
  note: {type: string}
steps:
  - {id: first, uses: echo, with: {text: "${{ params.note }}"}}
  - {id: second, uses: echo, needs: [first], with: {again: "${{ steps.first.outputs.text }}"}}
`

func TestCodecEncryptsPayloadsAtRest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Temporal server; skipped with -short")
	}
	dir := t.TempDir()
	pipes := filepath.Join(dir, "pipelines")
	writeTestFile(t, filepath.Join(pipes, "probe.yaml"), probePipeline)
	keysFile := filepath.Join(dir, "codec.keys")
	writeTestFile(t, keysFile, "# retired, kept to read old runs\n"+codecEntry(t, "2026-q1")+"\n"+codecEntry(t, "2026-q2")+"\n")
	stack := startLoggedEmbedded(t, pipes, "--codec-keys", keysFile)
	if !strings.Contains(stack.logs.String(), "key 2026-q2 encrypts") {
		t.Fatalf("dev does not say it encrypts:\n%s", stack.logs.String())
	}
	plainEnv := map[string]string{"TEMPORAL_ADDRESS": stack.frontend, "GAUNTLET_PIPELINES": pipes}
	keyedEnv := map[string]string{"TEMPORAL_ADDRESS": stack.frontend, "GAUNTLET_PIPELINES": pipes, workerhost.EnvCodecKeysFile: keysFile}
	note := randomValue(t, "quartz-heron-")

	code, out, stderr := runCLI(t, keyedEnv, "run", "probe", "--id", "probe-sealed", "--param", "note="+note, "--wait", "-o", "json")
	if code != ExitOK {
		t.Fatalf("run: exit %d: %s %s", code, out, stderr)
	}
	var rep RunReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || reportStep(t, rep.Status, "second").Outputs["again"] != note {
		t.Fatalf("run report (%v): %s", err, out)
	}

	c, err := tclient.Dial(context.Background(), tclient.Options{Address: stack.frontend, Namespace: "default"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	events := fetchHistory(t, c, "probe-sealed")
	if f := secrets.Scan(historyHaystack(t, events, nil), []string{note}); len(f) > 0 {
		t.Fatalf("history holds the param in plain text (%d times, first %s form)", len(f), f[0].Form)
	}
	input := events[0].GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()
	if len(input) == 0 || string(input[0].GetMetadata()[converter.MetadataEncoding]) != codec.EncodingEncrypted || string(input[0].GetMetadata()[codec.MetadataKeyID]) != "2026-q2" {
		t.Fatalf("workflow input is not encrypted with the current key: %v", input)
	}
	keys, err := workerhost.LoadCodec(keysFile, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if f := secrets.Scan(historyHaystack(t, events, keys), []string{note}); len(f) == 0 {
		t.Fatal("the param is not in the decrypted history either: the scan proves nothing")
	}

	code, out, stderr = runCLI(t, keyedEnv, "status", "probe-sealed", "-o", "json")
	if code != ExitOK {
		t.Fatalf("status with keys: exit %d: %s %s", code, out, stderr)
	}
	var st RunReport
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Params["note"] != note || reportStep(t, st.Status, "first").Outputs["text"] != note {
		t.Fatalf("status with keys does not show the run decrypted (%v): %s", err, out)
	}
	_, out, stderr = runCLI(t, plainEnv, "status", "probe-sealed", "-o", "json")
	if strings.Contains(out+stderr, note) {
		t.Fatalf("status without keys shows the param: %s %s", out, stderr)
	}

	// A run started plain, as before encryption, is run by the keyed worker
	// and read by the keyed CLI.
	code, out, stderr = runCLI(t, plainEnv, "run", "probe", "--id", "probe-plain", "--param", "note=written plain")
	if code != ExitOK {
		t.Fatalf("plain start: exit %d: %s %s", code, out, stderr)
	}
	waitFor(t, func() bool {
		code, out, _ := runCLI(t, keyedEnv, "status", "probe-plain", "-o", "json")
		return code == ExitOK && strings.Contains(out, `"state": "succeeded"`) && strings.Contains(out, `"written plain"`)
	})

	t.Run("codec-server decodes for the UI", func(t *testing.T) { checkCodecServer(t, keysFile, input, note) })
}

// checkCodecServer runs `gauntlet codec-server` and posts to it what the
// Temporal UI posts: a history payload, from the UI's origin, with a token.
func checkCodecServer(t *testing.T, keysFile string, sealed []*commonpb.Payload, want string) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	writeTestFile(t, tokenFile, "codec-t0ken\n")
	const origin = "http://ui.example:8233"
	ctx, cancel := context.WithCancel(context.Background())
	out := &testkit.Buffer{}
	done := make(chan int, 1)
	go func() {
		a := &app{stdout: out, stderr: out, getenv: func(string) string { return "" }}
		root := a.rootCommand()
		root.SetArgs([]string{"codec-server", "--addr", "127.0.0.1:0", "--codec-keys", keysFile, "--auth-token-file", tokenFile, "--cors-origin", origin})
		done <- codeOf(root.ExecuteContext(ctx))
	}()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != ExitOK {
				t.Errorf("codec-server exit %d after shutdown: %s", code, out.String())
			}
		case <-time.After(15 * time.Second):
			t.Error("codec-server did not stop within 15s of its context ending")
		}
	}()
	listening := regexp.MustCompile(`codec server on (http://\S+)`)
	var base string
	waitFor(t, func() bool {
		m := listening.FindStringSubmatch(out.String())
		if m != nil {
			base = m[1]
		}
		return m != nil
	})

	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: sealed})
	if err != nil {
		t.Fatal(err)
	}
	post := func(token string) (*http.Response, []byte) {
		req, err := http.NewRequest(http.MethodPost, base+"/decode", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Namespace", "default")
		req.Header.Set("Origin", origin)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	if resp, b := post(""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without the token: %d %s", resp.StatusCode, b)
	}
	resp, b := post("codec-t0ken")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != origin {
		t.Fatalf("decode: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	var decoded commonpb.Payloads
	if err := protojson.Unmarshal(b, &decoded); err != nil || len(decoded.Payloads) != len(sealed) {
		t.Fatalf("decode response (%v): %s", err, b)
	}
	if enc := string(decoded.Payloads[0].GetMetadata()[converter.MetadataEncoding]); enc != converter.MetadataEncodingJSON || !bytes.Contains(decoded.Payloads[0].GetData(), []byte(want)) {
		t.Fatalf("decoded payload %q: %s", enc, decoded.Payloads[0].GetData())
	}
}

func TestCodecServerNeedsKeys(t *testing.T) {
	code, _, stderr := runCLI(t, nil, "codec-server", "--addr", "127.0.0.1:0")
	if code != ExitUsage || !strings.Contains(stderr, "--codec-keys") {
		t.Fatalf("without keys: exit %d %q", code, stderr)
	}
	keys := filepath.Join(t.TempDir(), "codec.keys")
	writeTestFile(t, keys, codecEntry(t, "k1")+"\n")
	code, _, stderr = runCLI(t, nil, "codec-server", "--addr", "127.0.0.1:0", "--codec-keys", keys, "--cors-origin", "http://127.0.0.1:8233/")
	if code != ExitUsage || !strings.Contains(stderr, "--cors-origin") {
		t.Fatalf("origin with a path: exit %d %q", code, stderr)
	}
	code, _, stderr = runCLI(t, nil, "status", "some-run", "--codec-keys", filepath.Join(t.TempDir(), "missing.keys"))
	if code != ExitUsage || !strings.Contains(stderr, "--codec-keys") {
		t.Fatalf("missing key file: exit %d %q", code, stderr)
	}
}

// loggedStack is an embedded dev stack whose output the test reads.
type loggedStack struct {
	frontend  string
	logs      *testkit.Buffer
	serverLog string
}

// startLoggedEmbedded is startEmbedded keeping the stack's output (its
// stdout and worker log lines) and the Temporal server's log file at hand.
func startLoggedEmbedded(t *testing.T, pipelines string, extra ...string) loggedStack {
	t.Helper()
	frontend, port := freeAddr(t)
	_, uiPort := freeAddr(t)
	s := loggedStack{frontend: frontend, logs: &testkit.Buffer{}, serverLog: filepath.Join(t.TempDir(), "temporal.log")}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		a := &app{stdout: s.logs, stderr: s.logs, getenv: func(string) string { return "" }}
		root := a.rootCommand()
		root.SetArgs(append([]string{"dev", "--ephemeral", "--headless", "--port", fmt.Sprint(port), "--ui-port", fmt.Sprint(uiPort),
			"--pipelines", pipelines, "--state-dir", t.TempDir(), "--log-file", s.serverLog}, extra...))
		done <- codeOf(root.ExecuteContext(ctx))
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitFor(t, func() bool {
		select {
		case code := <-done:
			done <- code // for the cleanup
			t.Fatalf("dev exited with %d before ready: %s", code, s.logs.String())
		default:
		}
		return strings.Contains(s.logs.String(), "Ready in")
	})
	return s
}

func fetchHistory(t *testing.T, c client.Client, id string) []*historypb.HistoryEvent {
	t.Helper()
	var events []*historypb.HistoryEvent
	iter := c.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	return events
}

// historyHaystack is the history as protojson followed by the data of
// every payload in it, decoded by dec when it is given. protojson shows a
// payload as base64 of the whole of it, in which a value inside the
// payload is not to be found.
func historyHaystack(t *testing.T, events []*historypb.HistoryEvent, dec converter.PayloadCodec) []byte {
	t.Helper()
	h := &historypb.History{Events: events}
	hay, err := protojson.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var payloads []*commonpb.Payload
	collectPayloads(h.ProtoReflect(), &payloads)
	if dec != nil {
		if payloads, err = dec.Decode(payloads); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range payloads {
		hay = append(append(hay, '\n'), p.GetData()...)
	}
	return hay
}

func collectPayloads(m protoreflect.Message, out *[]*commonpb.Payload) {
	if p, ok := m.Interface().(*commonpb.Payload); ok {
		*out = append(*out, p)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			for i := 0; i < v.List().Len(); i++ {
				collectPayloads(v.List().Get(i).Message(), out)
			}
		case fd.IsMap() && fd.MapValue().Kind() == protoreflect.MessageKind:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				collectPayloads(mv.Message(), out)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Kind() == protoreflect.MessageKind:
			collectPayloads(v.Message(), out)
		}
		return true
	})
}

func reportStep(t *testing.T, st contract.Status, id string) contract.StepStatus {
	t.Helper()
	for _, s := range st.Steps {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("run %s has no step %s: %+v", st.RunID, id, st)
	return contract.StepStatus{}
}

// randomValue is unique to the test run, so that finding it anywhere means
// the test put it there.
func randomValue(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

func codecEntry(t *testing.T, id string) string {
	t.Helper()
	e, err := codec.GenerateKey(rand.Reader, id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func writeTestFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readOptional(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// around shows where a finding is with the secret itself masked, so that
// a failing test does not print it either.
func around(hay []byte, f secrets.Finding) string {
	from, to := max(0, f.Offset-60), min(len(hay), f.Offset+f.Len+60)
	return string(hay[from:f.Offset]) + secrets.Mask + string(hay[f.Offset+f.Len:to])
}

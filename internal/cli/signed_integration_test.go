package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSignedApprovalThroughTheCLI(t *testing.T) {
	dir := t.TempDir()
	var ring strings.Builder
	for _, name := range []string{"alice", "bob"} {
		code, out, stderr := runCLI(t, nil, "keys", "generate", name, "--out", filepath.Join(dir, name+".pem"))
		if code != ExitOK || !strings.HasPrefix(out, name+" ssh-ed25519 ") {
			t.Fatalf("keys generate %s: exit %d %q %s", name, code, out, stderr)
		}
		ring.WriteString(out)
	}
	if code, _, stderr := runCLI(t, nil, "keys", "generate", "alice", "--out", filepath.Join(dir, "alice.pem")); code != ExitUsage || !strings.Contains(stderr, "never overwritten") {
		t.Fatalf("keys generate over an existing key: exit %d %s", code, stderr)
	}
	keys := filepath.Join(dir, "reviewers.keys")
	pipes := t.TempDir()
	const pipeline = "name: signed\nsteps:\n  - {id: train, uses: echo, with: {auc: 0.9}}\n" +
		"  - {id: approve, uses: approval, needs: [train], with: {reviewers: [alice, bob], required: 1, require_signatures: true}}\n"
	if err := os.WriteFile(keys, []byte(ring.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pipes, "signed.yaml"), []byte(pipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	frontend := startEmbedded(t, pipes, "--reviewer-keys", keys)
	env := map[string]string{"TEMPORAL_ADDRESS": frontend, "GAUNTLET_PIPELINES": pipes, "GAUNTLET_USER": "bob"}
	if code, out, stderr := runCLI(t, env, "run", "signed", "--id", "signed-1"); code != ExitOK {
		t.Fatalf("run: exit %d %s %s", code, out, stderr)
	}
	waitFor(t, func() bool {
		code, out, _ := runCLI(t, env, "status", "signed-1", "--output", "json")
		return code == ExitOK && strings.Contains(out, `"state": "waiting"`)
	})
	if code, _, stderr := runCLI(t, env, "approve", "signed-1"); code == ExitOK || !strings.Contains(stderr, "requires a signed decision") {
		t.Fatalf("unsigned approval: exit %d %s", code, stderr)
	}
	// alice's key does not speak for bob.
	if code, _, stderr := runCLI(t, env, "approve", "signed-1", "--key", filepath.Join(dir, "alice.pem")); code == ExitOK || !strings.Contains(stderr, "requires a signed decision") {
		t.Fatalf("approval signed with another reviewer's key: exit %d %s", code, stderr)
	}
	if code, out, stderr := runCLI(t, env, "approve", "signed-1", "--key", filepath.Join(dir, "bob.pem"), "--comment", "signed off"); code != ExitOK {
		t.Fatalf("signed approval: exit %d %s %s", code, out, stderr)
	}
	waitFor(t, func() bool {
		code, out, _ := runCLI(t, env, "status", "signed-1", "--output", "json")
		return code == ExitOK && strings.Contains(out, `"state": "succeeded"`) && strings.Contains(out, `"key_id": "SHA256:`)
	})
	// The audit trail: the whole history, with the signed vote in it.
	export := filepath.Join(dir, "signed-1.json")
	if code, _, stderr := runCLI(t, env, "history", "signed-1", "--out", export); code != ExitOK {
		t.Fatalf("history: exit %d %s", code, stderr)
	}
	hist, err := os.ReadFile(export)
	if err != nil || !strings.Contains(string(hist), `"eventId"`) || !strings.Contains(string(hist), "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED") {
		t.Fatalf("exported history lacks events or the accepted update (%v): %.300s", err, hist)
	}
	if code, _, _ := runCLI(t, env, "history", "no-such-run"); code != ExitNotFound {
		t.Fatalf("history of an unknown run: exit %d, want %d", code, ExitNotFound)
	}
}

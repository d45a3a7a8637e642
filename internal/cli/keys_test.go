package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/codec"
)

func readRing(t *testing.T, path string) codec.Keys {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := codec.ParseKeys(b, path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeysCodecBuildsAndRotatesARing(t *testing.T) {
	ring := filepath.Join(t.TempDir(), "codec.keys")
	if code, out, stderr := runCLI(t, nil, "keys", "codec", "2026-q1", "--ring", ring); code != 0 || !strings.Contains(out, "encrypts from now on") {
		t.Fatalf("first key: exit %d, %q %q", code, out, stderr)
	}
	if fi, err := os.Stat(ring); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ring mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if k := readRing(t, ring); k.Current != "2026-q1" || len(k.ByID["2026-q1"]) != codec.KeySize {
		t.Fatalf("ring %+v", k.Current)
	}
	// Staged: every reader can decrypt with it before it encrypts.
	if code, out, stderr := runCLI(t, nil, "keys", "codec", "2026-q2", "--ring", ring, "--stage"); code != 0 || !strings.Contains(out, "staged") {
		t.Fatalf("staged key: exit %d, %q %q", code, out, stderr)
	}
	k := readRing(t, ring)
	if k.Current != "2026-q1" || len(k.ByID) != 2 {
		t.Fatalf("after staging: current %s, %d keys", k.Current, len(k.ByID))
	}
	if code, _, stderr := runCLI(t, nil, "keys", "codec", "2026-q3", "--ring", ring); code != 0 {
		t.Fatalf("third key: exit %d %q", code, stderr)
	}
	k = readRing(t, ring)
	if k.Current != "2026-q3" || len(k.ByID) != 3 || string(k.ByID["2026-q1"]) == string(k.ByID["2026-q3"]) {
		t.Fatalf("after rotation: current %s, %d keys", k.Current, len(k.ByID))
	}
}

func TestKeysCodecRefusesWhatWouldBreakTheRing(t *testing.T) {
	dir := t.TempDir()
	ring := filepath.Join(dir, "codec.keys")
	if code, _, stderr := runCLI(t, nil, "keys", "codec", "q1", "--ring", ring); code != 0 {
		t.Fatalf("exit %d %q", code, stderr)
	}
	before, _ := os.ReadFile(ring)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a reused id", []string{"q1", "--ring", ring}, "already has a key"},
		{"an id that cannot be stored", []string{"q 2", "--ring", ring}, "ids are letters"},
		{"no ring", []string{"q2"}, "--ring FILE is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, nil, append([]string{"keys", "codec"}, tc.args...)...)
			if code != ExitUsage || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr, ExitUsage, tc.want)
			}
			if after, _ := os.ReadFile(ring); string(after) != string(before) {
				t.Fatal("a refused key changed the ring")
			}
		})
	}
	broken := filepath.Join(dir, "broken.keys")
	if err := os.WriteFile(broken, []byte("q1:not-base64\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, nil, "keys", "codec", "q2", "--ring", broken); code != ExitUsage || !strings.Contains(stderr, "broken.keys:1") {
		t.Fatalf("a corrupt ring: exit %d, %q", code, stderr)
	}
	if code, _, stderr := runCLI(t, nil, "keys", "codec", "q1", "--ring", filepath.Join(dir, "new.keys"), "--stage"); code != ExitUsage || !strings.Contains(stderr, "--stage needs") {
		t.Fatalf("staging into an empty ring: exit %d, %q", code, stderr)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("refused writes left files behind: %d entries", len(entries))
	}
}

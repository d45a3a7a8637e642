package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const hashBase = `
name: h
params:
  a: {type: number, default: 1}
  b: {type: string, default: x}
steps:
  - id: s
    uses: notify
    with: {k: 1, m: {p: 2, q: [1, 2]}}
`

// Same content, keys and params in another order, other formatting.
const hashReordered = `
steps:
  - with:
      m: {q: [1, 2], p: 2}
      k: 1.0
    uses: notify
    id: s
params:
  b: {default: "x", type: string}
  a: {default: 1, type: number}
name: "h"
`

func mustParse(t *testing.T, src string) *Spec {
	t.Helper()
	s, diags := ParseAndValidate("h.yaml", []byte(src), testCatalog)
	if len(diags) > 0 {
		t.Fatalf("diagnostics:\n%s", diags.Error())
	}
	return s
}

func TestHash(t *testing.T) {
	h := func(src string) string {
		s := mustParse(t, src)
		sum, err := s.Hash()
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	base := h(hashBase)
	if !strings.HasPrefix(base, "sha256:") || len(base) != len("sha256:")+64 {
		t.Fatalf("malformed hash %q", base)
	}
	if got := h(hashReordered); got != base {
		t.Errorf("reordered spec hashes differently: %s vs %s", got, base)
	}
	for _, change := range []struct{ old, new string }{
		{"k: 1,", "k: 2,"},
		{"default: x", "default: y"},
		{"q: [1, 2]", "q: [2, 1]"},
		{"name: h", "name: h2"},
	} {
		changed := strings.Replace(hashBase, change.old, change.new, 1)
		if changed == hashBase {
			t.Fatalf("change %q not applied", change.old)
		}
		if h(changed) == base {
			t.Errorf("changing %q to %q keeps the hash", change.old, change.new)
		}
	}
}

func TestResolveParams(t *testing.T) {
	s := mustParse(t, `
name: p
params:
  ratio: {type: number, default: 0.5}
  n: {type: integer}
  fast: {type: boolean, default: false}
  wait: {type: duration, default: 5m}
  mode: {type: enum, values: [a, b], default: a}
  owner: {type: string, required: true}
  note: {type: string}
steps: [{id: s, uses: notify}]
`)
	got, err := ResolveParams(s, map[string]any{"ratio": "0.8", "n": "3", "fast": "true", "wait": "2d", "owner": "me"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"ratio": 0.8, "n": 3.0, "fast": true, "wait": "2d", "mode": "a", "owner": "me", "note": nil}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("param %s = %#v, want %#v", k, got[k], w)
		}
	}
	typed, err := ResolveParams(s, map[string]any{"n": 7, "ratio": 1, "owner": "x", "mode": "b"})
	if err != nil || typed["n"] != 7.0 || typed["ratio"] != 1.0 || typed["mode"] != "b" {
		t.Fatalf("typed values: %v, %v", typed, err)
	}

	_, err = ResolveParams(s, map[string]any{"ratio": "lots", "n": "2.5", "fast": "maybe", "wait": "5x", "mode": "c", "ownr": "me", "note": 3})
	if err == nil {
		t.Fatal("want errors")
	}
	for _, w := range []string{
		`param "fast": "maybe" is not true or false`,
		`param "mode": "c" is not one of "a", "b"`,
		`param "n": "2.5" is not a whole number`,
		`param "note": 3 is not a string`,
		`unknown param "ownr"; did you mean "owner"?`,
		`param "ratio": "lots" is not a number`,
		`param "wait": invalid duration "5x"`,
		`missing required param "owner"`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("errors lack %q:\n%v", w, err)
		}
	}
}

func TestDuration(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		out  string
	}{
		{"30s", 30 * time.Second, "30s"},
		{"48h", 48 * time.Hour, "2d"},
		{"2d", 48 * time.Hour, "2d"},
		{"1d12h", 36 * time.Hour, "1d12h"},
		{"90m", 90 * time.Minute, "1h30m"},
		{"1.5s", 1500 * time.Millisecond, "1.5s"},
		{"250ms", 250 * time.Millisecond, "250ms"},
		{"0s", 0, "0s"},
	} {
		d, err := ParseDuration(tt.in)
		if err != nil || time.Duration(d) != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, time.Duration(d), err, tt.want)
			continue
		}
		if d.String() != tt.out {
			t.Errorf("%q prints as %q, want %q", tt.in, d.String(), tt.out)
		}
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Errorf("%q does not read back: %v %v", d.String(), back, err)
		}
	}
	for _, bad := range []string{"", "5", "5x", "-1s", "d", "2dd", "99999999999999d", "1d-5h"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) must fail", bad)
		}
	}
}

func TestDot(t *testing.T) {
	s, diags := Load(filepath.Join(repoRoot, "pipelines", "smoke.yaml"), testCatalog)
	if len(diags) > 0 {
		t.Fatal(diags.Error())
	}
	dot, err := s.Dot()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`digraph "smoke"`, `"train" -> "evaluate";`, `"train" -> "fairness";`, `label="fairness\nfairness-gate"`} {
		if !strings.Contains(dot, w) {
			t.Errorf("dot lacks %q:\n%s", w, dot)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, diags := Load(filepath.Join(t.TempDir(), "nope.yaml"), nil)
	if len(diags) != 1 || !strings.Contains(diags[0].String(), "cannot read pipeline") {
		t.Fatalf("diags = %v", diags)
	}
	if _, err := os.Stat("nope.yaml"); err == nil {
		t.Fatal("unexpected file")
	}
}

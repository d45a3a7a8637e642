package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNewJSONWithStep(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	WithStep(l, "smoke-20260101T000000Z", "train", 2).Info("epoch done", "loss", 0.25)
	l.Debug("hidden below info")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1 (debug filtered): %q", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("not JSON: %v: %s", err, lines[0])
	}
	want := map[string]any{"msg": "epoch done", "level": "INFO", KeyRunID: "smoke-20260101T000000Z", KeyStepID: "train", KeyAttempt: 2.0, "loss": 0.25}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("%s = %v, want %v", k, rec[k], v)
		}
	}
}

func TestNewTextWithRunAndLevels(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, "", "DEBUG")
	if err != nil {
		t.Fatal(err)
	}
	WithRun(l, "r1", "credit-risk").Debug("resolved")
	got := buf.String()
	for _, part := range []string{"level=DEBUG", "msg=resolved", "run_id=r1", "pipeline=credit-risk"} {
		if !strings.Contains(got, part) {
			t.Errorf("%q lacks %q", got, part)
		}
	}

	buf.Reset()
	l, err = New(&buf, "text", "warn")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("quiet")
	l.Warn("loud")
	if strings.Contains(buf.String(), "quiet") || !strings.Contains(buf.String(), "loud") {
		t.Errorf("warn level let through %q", buf.String())
	}
}

func TestNewRejects(t *testing.T) {
	for _, c := range []struct{ format, level, want string }{
		{"xml", "info", `log format "xml"`},
		{"json", "loud", `log level "loud"`},
	} {
		_, err := New(&bytes.Buffer{}, c.format, c.level)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%q, %q) error = %v, want one naming %s", c.format, c.level, err, c.want)
		}
	}
}

package secrets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

const tok = "ghp_S3cr3tT0ken"

type creds struct {
	User     string
	Password string `json:"-"`
	Token    string `json:"token"`
}

type valuer struct{}

func (valuer) LogValue() slog.Value { return slog.StringValue("resolved " + tok) }

func logBoth(t *testing.T, secrets func() []string, log func(l *slog.Logger)) []string {
	t.Helper()
	var out []string
	for _, mk := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var b bytes.Buffer
		log(slog.New(NewRedactingHandler(mk(&b), secrets)))
		out = append(out, b.String())
	}
	return out
}

func TestRedactingHandler(t *testing.T) {
	static := func() []string { return []string{tok, "4242", "hunter22"} }
	outs := logBoth(t, static, func(l *slog.Logger) {
		l = l.With("auth", "Bearer "+tok).WithGroup("step").With("pin", 4242)
		l.Info("calling API with "+tok,
			"err", fmt.Errorf("401 for token %s", tok),
			"creds", creds{User: "bob", Password: "hunter22", Token: tok},
			"raw", []byte(tok),
			"lazy", valuer{},
			slog.Group("nested", "header", "token="+tok, "n", 1),
			"d", 3*time.Second,
			tok, "as key",
		)
	})
	for _, out := range outs {
		if strings.Contains(out, tok) || strings.Contains(out, "hunter22") || strings.Contains(out, "4242") {
			t.Errorf("secret in log output:\n%s", out)
		}
		for _, want := range []string{Mask, "bob", "calling API with " + Mask} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	}
	// Groups are kept: the step group holds pin and the record's attrs.
	if !strings.Contains(outs[0], "step.pin="+Mask) || !strings.Contains(outs[0], "step.nested.n=1") || !strings.Contains(outs[0], "step.d=3s") {
		t.Errorf("group structure lost:\n%s", outs[0])
	}
}

// A secret learned after a logger was derived is masked in the attributes
// that logger already holds.
func TestRedactingHandlerLateSecret(t *testing.T) {
	var s Set
	var b bytes.Buffer
	l := slog.New(NewRedactingHandler(slog.NewTextHandler(&b, nil), s.Values)).With("dsn", "postgres://u:pw-late-1@db")
	l.Info("before")
	s.Add("pw-late-1")
	l.Info("after")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("output:\n%s", b.String())
	}
	if !strings.Contains(lines[0], "pw-late-1") {
		t.Errorf("unknown secret masked before it was added: %s", lines[0])
	}
	if strings.Contains(lines[1], "pw-late-1") || !strings.Contains(lines[1], Mask) {
		t.Errorf("secret added later not masked: %s", lines[1])
	}
}

func TestRedactingHandlerPassesThrough(t *testing.T) {
	var b bytes.Buffer
	h := NewRedactingHandler(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelWarn}), func() []string { return nil })
	if h.Enabled(context.Background(), slog.LevelInfo) {
		t.Error("Enabled ignores the inner handler's level")
	}
	l := slog.New(h)
	err := errors.New("plain failure")
	l.Warn("hello", "err", err, "n", 3)
	if !strings.Contains(b.String(), `msg=hello err="plain failure" n=3`) {
		t.Errorf("output changed without secrets: %s", b.String())
	}
	if h.WithGroup("") != h || h.WithAttrs(nil) != h {
		t.Error("empty WithGroup/WithAttrs should return the handler itself")
	}
}

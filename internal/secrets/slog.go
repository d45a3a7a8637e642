package secrets

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// NewRedactingHandler wraps inner so that no known secret value reaches it:
// the message, attribute keys and values (groups, LogValuers, errors and
// other values as they would be printed) are masked.
//
// secrets is called for every record, so it must be cheap and safe for
// concurrent use (Set.Values is both). Attributes given to WithAttrs are
// kept unredacted and masked at each record with the secrets known then, so
// a secret learned after a logger was derived is still masked.
func NewRedactingHandler(inner slog.Handler, secrets func() []string) slog.Handler {
	return &redactor{inner: inner, secrets: secrets, cache: &derived{}}
}

type redactor struct {
	inner   slog.Handler
	secrets func() []string
	ops     []op // WithGroup and WithAttrs calls, in order
	cache   *derived
}

// op is one WithGroup (group != "") or WithAttrs call.
type op struct {
	group string
	attrs []slog.Attr
}

// derived caches inner with the ops applied for the last secret list, so
// that the inner handler's preformatting is not redone for every record.
type derived struct {
	mu      sync.Mutex
	secrets []string
	handler slog.Handler
}

func (h *redactor) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

func (h *redactor) Handle(ctx context.Context, r slog.Record) error {
	list := usable(h.secrets())
	rp := newReplacer(list)
	out := slog.NewRecord(r.Time, r.Level, replace(rp, r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a, rp, list))
		return true
	})
	return h.target(list, rp).Handle(ctx, out)
}

func (h *redactor) target(list []string, rp *strings.Replacer) slog.Handler {
	if len(h.ops) == 0 {
		return h.inner
	}
	h.cache.mu.Lock()
	defer h.cache.mu.Unlock()
	if h.cache.handler != nil && slices.Equal(h.cache.secrets, list) {
		return h.cache.handler
	}
	t := h.inner
	for _, o := range h.ops {
		if o.group != "" {
			t = t.WithGroup(o.group)
			continue
		}
		attrs := make([]slog.Attr, len(o.attrs))
		for i, a := range o.attrs {
			attrs[i] = redactAttr(a, rp, list)
		}
		t = t.WithAttrs(attrs)
	}
	h.cache.secrets, h.cache.handler = list, t
	return t
}

func (h *redactor) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.with(op{attrs: slices.Clone(attrs)})
}

func (h *redactor) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.with(op{group: name})
}

func (h *redactor) with(o op) *redactor {
	return &redactor{inner: h.inner, secrets: h.secrets, ops: append(slices.Clone(h.ops), o), cache: &derived{}}
}

func replace(rp *strings.Replacer, s string) string {
	if rp == nil {
		return s
	}
	return rp.Replace(s)
}

func redactAttr(a slog.Attr, rp *strings.Replacer, list []string) slog.Attr {
	if rp == nil {
		return a
	}
	key := rp.Replace(a.Key)
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(key, rp.Replace(v.String()))
	case slog.KindGroup:
		group := v.Group()
		attrs := make([]slog.Attr, len(group))
		for i, g := range group {
			attrs[i] = redactAttr(g, rp, list)
		}
		return slog.Attr{Key: key, Value: slog.GroupValue(attrs...)}
	case slog.KindAny:
		return slog.Attr{Key: key, Value: redactAny(v, rp, list)}
	default:
		// Numbers, times and durations: a numeric PIN is still a secret.
		if s := v.String(); rp.Replace(s) != s {
			return slog.String(key, rp.Replace(s))
		}
		return slog.Attr{Key: key, Value: v}
	}
}

// redactAny masks a value whichever way the inner handler prints it: text
// handlers use its error text or %+v, JSON handlers json.Marshal. If any of
// those holds a secret, the value becomes its masked %+v text.
func redactAny(v slog.Value, rp *strings.Replacer, list []string) slog.Value {
	x := v.Any()
	switch x := x.(type) {
	case []byte:
		// %+v would print the bytes as numbers, and JSON as base64.
		if s := string(x); rp.Replace(s) != s {
			return slog.StringValue(rp.Replace(s))
		}
		return v
	case error:
		if s := x.Error(); rp.Replace(s) != s {
			return slog.StringValue(rp.Replace(s))
		}
	}
	text := fmt.Sprintf("%+v", x)
	leaks := rp.Replace(text) != text
	if !leaks {
		if js, err := json.Marshal(x); err == nil {
			leaks = len(Scan(js, list)) > 0
		}
	}
	if leaks {
		return slog.StringValue(rp.Replace(text))
	}
	return v
}

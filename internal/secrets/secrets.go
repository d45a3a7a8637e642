// Package secrets keeps secret values out of workflow inputs, outputs and
// logs: it finds known secret values in bytes about to be stored (Scan),
// masks them in text (Redact) and in log records (NewRedactingHandler), and
// tells which environment variables hold secrets (IsSecretName).
package secrets

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/gauntlet-ml/gauntlet/internal/extstep"
)

// MinLen is the shortest value treated as a secret. Masking every "1" or
// "on" in the logs would make them unreadable while protecting nothing: a
// value that short can be guessed anyway.
const MinLen = 4

// Mask replaces a secret in redacted text.
const Mask = "[REDACTED]"

// Forms a secret is found in.
const (
	FormRaw    = "raw"
	FormJSON   = "json"   // as escaped inside a JSON string
	FormBase64 = "base64" // standard base64 of the value alone, as JSON encodes []byte
)

// Finding is one occurrence of a secret. It names the secret by index, never
// by value, so that a finding can be logged or returned in an error.
type Finding struct {
	Secret int    // index into the secrets passed to Scan
	Offset int    // byte offset in the haystack
	Len    int    // length of the occurrence in the haystack
	Form   string // FormRaw, FormJSON or FormBase64
}

// Scan reports every occurrence of the secrets in haystack, in the forms a
// payload can carry them: raw, escaped in a JSON string, and base64 (how
// encoding/json writes a []byte). Findings are ordered by offset. Secrets
// shorter than MinLen are skipped.
func Scan(haystack []byte, secrets []string) []Finding {
	var out []Finding
	for i, s := range secrets {
		if len(s) < MinLen {
			continue
		}
		for _, f := range forms(s) {
			needle := []byte(f.text)
			for from := 0; ; {
				j := bytes.Index(haystack[from:], needle)
				if j < 0 {
					break
				}
				out = append(out, Finding{Secret: i, Offset: from + j, Len: len(needle), Form: f.form})
				from += j + len(needle)
			}
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Offset != out[b].Offset {
			return out[a].Offset < out[b].Offset
		}
		return out[a].Secret < out[b].Secret
	})
	return out
}

type form struct{ form, text string }

// forms lists the distinct encodings of s that Scan looks for.
func forms(s string) []form {
	out := []form{{FormRaw, s}}
	seen := map[string]bool{s: true}
	add := func(name, text string) {
		if !seen[text] {
			seen[text] = true
			out = append(out, form{name, text})
		}
	}
	// encoding/json escapes <, > and & by default, and some encoders do
	// not: both spellings can reach storage.
	for _, escapeHTML := range []bool{true, false} {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(escapeHTML)
		if enc.Encode(s) == nil {
			quoted := strings.TrimSuffix(b.String(), "\n")
			add(FormJSON, quoted[1:len(quoted)-1])
		}
	}
	add(FormBase64, base64.StdEncoding.EncodeToString([]byte(s)))
	return out
}

// Redact masks every secret in s. Longer secrets are masked first, so a
// secret that contains another is masked whole.
func Redact(s string, secrets []string) string {
	r := newReplacer(usable(secrets))
	if r == nil {
		return s
	}
	return r.Replace(s)
}

// usable returns the distinct secrets of at least MinLen, longest first.
func usable(secrets []string) []string {
	out := make([]string, 0, len(secrets))
	for _, s := range secrets {
		if len(s) >= MinLen {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if len(out[a]) != len(out[b]) {
			return len(out[a]) > len(out[b])
		}
		return out[a] < out[b]
	})
	return slices.Compact(out)
}

// newReplacer masks the raw and JSON-escaped forms of secrets, which must
// be sorted longest first: strings.Replacer tries its pairs in order.
func newReplacer(secrets []string) *strings.Replacer {
	if len(secrets) == 0 {
		return nil
	}
	var pairs []string
	for _, s := range secrets {
		for _, f := range forms(s) {
			if f.form != FormBase64 {
				pairs = append(pairs, f.text, Mask)
			}
		}
	}
	return strings.NewReplacer(pairs...)
}

// IsSecretName reports whether an environment variable's name marks it as
// holding a secret. It uses the word list that keeps such variables from
// external steps (extstep.Denied), without the GAUNTLET_ prefix rule: that
// prefix withholds Gauntlet's own contract variables, which are not secret,
// while GAUNTLET_CODEC_KEYS still is by its words.
func IsSecretName(name string) bool {
	up := strings.ToUpper(name)
	for strings.HasPrefix(up, extstep.ReservedPrefix) {
		up = strings.TrimPrefix(up, extstep.ReservedPrefix)
	}
	return extstep.Denied(up)
}

// FromEnv returns the values of the secret variables in environ (as from
// os.Environ), distinct and sorted, for a redacting log handler.
func FromEnv(environ []string) []string {
	var out []string
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if ok && len(val) >= MinLen && IsSecretName(name) {
			out = append(out, val)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// Set is a concurrency-safe, growing list of secret values: the worker adds
// what it learns (environment, codec keys, tokens a step declares) and a
// redacting handler reads it through Values.
type Set struct {
	mu     sync.RWMutex
	values []string
}

// Add records secret values; short and repeated ones are ignored.
func (s *Set) Add(values ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range values {
		if len(v) >= MinLen && !slices.Contains(s.values, v) {
			s.values = append(s.values, v)
		}
	}
}

// Values returns a copy of the recorded secrets.
func (s *Set) Values() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.values)
}

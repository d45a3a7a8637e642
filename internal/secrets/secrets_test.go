package secrets

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func TestScanForms(t *testing.T) {
	token := "tok-<&>-\"quoted\""
	payload, err := json.Marshal(map[string]any{
		"token": token,
		"raw":   []byte("AKIAEXAMPLEKEY"),
		"note":  "password is hunter22",
	})
	if err != nil {
		t.Fatal(err)
	}
	got := Scan(payload, []string{token, "AKIAEXAMPLEKEY", "hunter22", "abc", ""})
	want := map[int]string{0: FormJSON, 1: FormBase64, 2: FormRaw}
	if len(got) != len(want) {
		t.Fatalf("findings %+v, want one per secret %v", got, want)
	}
	for _, f := range got {
		if want[f.Secret] != f.Form {
			t.Errorf("secret %d found as %s, want %s", f.Secret, f.Form, want[f.Secret])
		}
	}
	for i := 1; i < len(got); i++ {
		if got[i].Offset < got[i-1].Offset {
			t.Errorf("findings out of order: %+v", got)
		}
	}
}

func TestScanOffsets(t *testing.T) {
	hay := []byte("xx secret1 yy secret1secret1")
	got := Scan(hay, []string{"secret1"})
	var offsets []int
	for _, f := range got {
		if string(hay[f.Offset:f.Offset+f.Len]) != "secret1" {
			t.Errorf("finding %+v does not point at the secret", f)
		}
		offsets = append(offsets, f.Offset)
	}
	if !reflect.DeepEqual(offsets, []int{3, 14, 21}) {
		t.Fatalf("offsets %v", offsets)
	}
	if got := Scan([]byte("nothing here"), []string{"secret1"}); got != nil {
		t.Fatalf("clean haystack: %+v", got)
	}
	// An HTML-unescaping encoder writes < and > as is.
	if got := Scan([]byte(`{"v":"a<b>c\"d"}`), []string{`a<b>c"d`}); len(got) != 1 || got[0].Form != FormJSON {
		t.Fatalf("unescaped-HTML JSON: %+v", got)
	}
}

func TestRedact(t *testing.T) {
	secrets := []string{"db-pass", "db-pass-2026", "abc"}
	got := Redact(`url=postgres://u:db-pass-2026@h old=db-pass short=abc json="q\"uo"`, append(secrets, `q"uo`))
	want := `url=postgres://u:[REDACTED]@h old=[REDACTED] short=abc json="[REDACTED]"`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if Redact("plain", nil) != "plain" {
		t.Fatal("changed text without secrets")
	}
}

func TestIsSecretName(t *testing.T) {
	secret := []string{"AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "db_password", "GAUNTLET_CODEC_KEYS", "TEMPORAL_TLS_KEY", "GAUNTLET_GAUNTLET_TOKEN", "PGPASSWD", "SSH_AUTH_SOCK"}
	plain := []string{"HOME", "PATH", "GAUNTLET_RUN_ID", "GAUNTLET_OUTPUT_DIR", "TEMPORAL_ADDRESS", ""}
	for _, n := range secret {
		if !IsSecretName(n) {
			t.Errorf("%s not secret", n)
		}
	}
	for _, n := range plain {
		if IsSecretName(n) {
			t.Errorf("%s secret", n)
		}
	}
}

func TestFromEnv(t *testing.T) {
	env := []string{"HOME=/root", "API_TOKEN=tok-123", "OTHER_TOKEN=tok-123", "PIN_KEY=12", "DB_PASSWORD=", "GAUNTLET_RUN_ID=run-1", "AWS_SECRET_ACCESS_KEY=abcd/efgh", "broken"}
	got := FromEnv(env)
	if want := []string{"abcd/efgh", "tok-123"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestSet(t *testing.T) {
	var s Set
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Add("secret-a", "xy", "secret-b")
			_ = s.Values()
		}()
	}
	wg.Wait()
	got := s.Values()
	if len(got) != 2 {
		t.Fatalf("values %q", got)
	}
	got[0] = "changed"
	if s.Values()[0] == "changed" {
		t.Fatal("Values exposes the internal slice")
	}
}

// Whatever Redact leaves, no secret survives outside a mask: a secret may
// only reappear where a mask's own characters complete it.
func FuzzRedact(f *testing.F) {
	f.Add("key=abcd1234 other", "abcd1234")
	f.Add(`{"a":"x<y>"}`, "x<y>")
	f.Add("D]abab", "D]ab")
	f.Fuzz(func(t *testing.T, text, secret string) {
		out := Redact(text, []string{secret})
		var masks [][2]int
		for from := 0; ; {
			j := strings.Index(out[from:], Mask)
			if j < 0 {
				break
			}
			masks = append(masks, [2]int{from + j, from + j + len(Mask)})
			from += j + 1
		}
		for _, fd := range Scan([]byte(out), []string{secret}) {
			if fd.Form == FormBase64 {
				continue
			}
			overlaps := false
			for _, m := range masks {
				if fd.Offset < m[1] && m[0] < fd.Offset+fd.Len {
					overlaps = true
				}
			}
			if !overlaps {
				t.Fatalf("Redact(%q, %q) = %q leaves it at %d (%s)", text, secret, out, fd.Offset, fd.Form)
			}
		}
	})
}

func TestBase64NotRedactedInText(t *testing.T) {
	// Redact works on text a person reads; base64 of a secret is found by
	// Scan, which payload checks use, but not rewritten: it could be part
	// of unrelated base64 data.
	s := "secret-value"
	enc := base64.StdEncoding.EncodeToString([]byte(s))
	if Redact(enc, []string{s}) != enc {
		t.Fatal("base64 text rewritten")
	}
	if f := Scan([]byte(enc), []string{s}); len(f) != 1 || f[0].Form != FormBase64 {
		t.Fatalf("Scan: %+v", f)
	}
}

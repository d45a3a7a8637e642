package workerhost

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/gauntlet-ml/gauntlet/internal/codec"
)

func keyEntry(t *testing.T, id string) string {
	t.Helper()
	e, err := codec.GenerateKey(rand.Reader, id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "codec.keys")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadCodecSources(t *testing.T) {
	flagFile := writeFile(t, keyEntry(t, "from-flag")+"\n")
	envFile := writeFile(t, keyEntry(t, "from-env-file")+"\n")
	inline := keyEntry(t, "old") + "," + keyEntry(t, "from-env")
	all := map[string]string{EnvCodecKeysFile: envFile, EnvCodecKeys: inline}
	cases := []struct {
		name, flag string
		env        map[string]string
		want       string // current key id; "" for no codec
	}{
		{"none", "", nil, ""},
		{"flag wins", flagFile, all, "from-flag"},
		{"file variable over keys variable", "", all, "from-env-file"},
		{"keys variable", "", map[string]string{EnvCodecKeys: inline}, "from-env"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadCodec(tc.flag, envOf(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if c != nil {
					t.Fatalf("got a codec (%s) without keys", c)
				}
				return
			}
			if c == nil || !strings.HasPrefix(c.String(), "key "+tc.want+" encrypts") {
				t.Fatalf("got %v, want current key %s", c, tc.want)
			}
		})
	}
}

func TestLoadCodecErrorsNameTheSource(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.keys")
	short := writeFile(t, "k1:c2hvcnQ=\n")
	cases := []struct {
		name, flag string
		env        map[string]string
		wants      []string
	}{
		{"missing flag file", missing, nil, []string{"--codec-keys", missing}},
		{"bad flag file", short, nil, []string{"--codec-keys " + short + ":1", `"k1"`}},
		{"missing env file", "", map[string]string{EnvCodecKeysFile: missing}, []string{EnvCodecKeysFile, missing}},
		{"bad env keys", "", map[string]string{EnvCodecKeys: "k1"}, []string{EnvCodecKeys + ":1", "ID:BASE64KEY"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadCodec(tc.flag, envOf(tc.env))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, want := range tc.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "c2hvcnQ=") {
				t.Errorf("error quotes key material: %q", err)
			}
		})
	}
}

// A client with the option stores neither payloads nor failure messages in
// plain text, reads both back, and still reads payloads written plain.
func TestCodecDialOption(t *testing.T) {
	c, err := LoadCodec(writeFile(t, keyEntry(t, "k1")), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	var co client.Options
	c.DialOption(&co)
	const param = "s3://bucket/customers-2026.parquet"

	p, err := co.DataConverter.ToPayload(map[string]string{"data": param})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := proto.Marshal(p)
	if bytes.Contains(raw, []byte(param)) {
		t.Fatal("payload holds the parameter in plain text")
	}
	var back map[string]string
	if err := co.DataConverter.FromPayload(p, &back); err != nil || back["data"] != param {
		t.Fatalf("round trip: %v %v", back, err)
	}
	plain, err := converter.GetDefaultDataConverter().ToPayload("written before encryption")
	if err != nil {
		t.Fatal(err)
	}
	var old string
	if err := co.DataConverter.FromPayload(plain, &old); err != nil || old != "written before encryption" {
		t.Fatalf("plain payload: %q %v", old, err)
	}

	f := co.FailureConverter.ErrorToFailure(errors.New("cannot read " + param))
	raw, _ = proto.Marshal(f)
	if bytes.Contains(raw, []byte(param)) {
		t.Fatal("failure holds the message in plain text")
	}
	if got := co.FailureConverter.FailureToError(f).Error(); !strings.Contains(got, "cannot read "+param) {
		t.Fatalf("decoded failure %q", got)
	}
}

func TestLoggerMasksEnvironmentSecretsAndCodecKeys(t *testing.T) {
	entry := keyEntry(t, "k1")
	c, err := LoadCodec(writeFile(t, entry), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := strings.Cut(entry, ":")
	const token = "ghp_w0rkerT0kenValue"
	var b bytes.Buffer
	l, err := NewLogger(&b, NewSecrets([]string{"GITHUB_TOKEN=" + token, "HOME=/home/gauntlet"}, c), "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("calling with "+token, "key", key, "home", "/home/gauntlet")
	out := b.String()
	if strings.Contains(out, token) || strings.Contains(out, key) {
		t.Fatalf("secret in log:\n%s", out)
	}
	if !strings.Contains(out, "/home/gauntlet") {
		t.Fatalf("a plain variable was masked:\n%s", out)
	}
}

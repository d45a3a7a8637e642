package signing

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/testkit"
)

func TestParseKeyForms(t *testing.T) {
	alice, _ := newKey(t)
	bob, _ := newKey(t)
	carol, _ := newKey(t)
	spki, err := x509.MarshalPKIXPublicKey(bob)
	if err != nil {
		t.Fatal(err)
	}
	file := "\xef\xbb\xbf# reviewers of credit-risk\n\n" +
		"alice " + FormatPublicKey(alice) + " alice@laptop\r\n" +
		"  bob.smith@example.com\t" + base64.StdEncoding.EncodeToString(spki) + "\n" +
		"carol " + base64.StdEncoding.EncodeToString(carol) + "  # raw key\n"
	ring, err := Parse([]byte(file), "reviewers.keys")
	if err != nil {
		t.Fatal(err)
	}
	want := KeyRing{"alice": alice, "bob.smith@example.com": bob, "carol": carol}
	if len(ring) != len(want) {
		t.Fatalf("ring has %d keys, want %d", len(ring), len(want))
	}
	for name, pub := range want {
		if !pub.Equal(ring[name]) {
			t.Errorf("%s: wrong key", name)
		}
	}
	again, err := Parse(FormatKeyRing(ring), "formatted")
	if err != nil {
		t.Fatalf("FormatKeyRing output does not parse: %v", err)
	}
	for name, pub := range want {
		if !pub.Equal(again[name]) {
			t.Errorf("%s: key changed through FormatKeyRing", name)
		}
	}
}

func TestParseErrors(t *testing.T) {
	alice, _ := newKey(t)
	key := FormatPublicKey(alice)
	raw := base64.StdEncoding.EncodeToString(alice)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecSPKI, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, file, want string
	}{
		{"empty", "# nobody yet\n", "keys.txt: no reviewer keys"},
		{"yaml habit", "# x\nalice: " + raw + "\n", `keys.txt:2: reviewer name "alice:" has ':'`},
		{"no key", "\n\nalice\n", "keys.txt:3: alice has no key"},
		{"bad base64", "alice not-base64!\n", "keys.txt:1: key of alice: not base64"},
		{"short key", "alice " + base64.StdEncoding.EncodeToString([]byte("short")) + "\n", "keys.txt:1: key of alice: 5 bytes"},
		{"rsa ssh", "alice ssh-rsa AAAAB3NzaC1yc2E=\n", "keys.txt:1: key of alice: ssh-rsa keys are not supported"},
		{"ssh without body", "alice ssh-ed25519\n", "keys.txt:1: key of alice: ssh-ed25519 without the base64 key"},
		{"ssh wrong body", "alice ssh-ed25519 " + raw + "\n", "keys.txt:1: key of alice: base64 body is not an ssh-ed25519 key"},
		{"duplicate name", "alice " + key + "\n#\nalice " + raw + "\n", "keys.txt:3: alice already has a key on line 1"},
		{"shared key", "alice " + key + "\nbob " + raw + "\n", "keys.txt:2: bob has the same key as alice (line 1)"},
		{"not ed25519 spki", "alice " + base64.StdEncoding.EncodeToString(ecSPKI) + "\n", "keys.txt:1: key of alice: a *ecdsa.PublicKey, not an Ed25519 key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.file), "keys.txt")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestPrivateKeyForms(t *testing.T) {
	pub, priv := newKey(t)
	pemBytes, err := MarshalPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := MarshalSeed(priv)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"pem": pemBytes, "seed": []byte(seed + "\n")} {
		got, err := ParsePrivateKey(data, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !got.Equal(priv) || !pub.Equal(got.Public()) {
			t.Fatalf("%s: key changed through encoding", name)
		}
	}
}

func TestPrivateKeyErrors(t *testing.T) {
	_, priv := newKey(t)
	seed, _ := MarshalSeed(priv)
	cases := map[string]struct{ data, want string }{
		"garbage":   {"hello", "alice.key: neither PEM nor a base64 seed"},
		"short":     {base64.StdEncoding.EncodeToString([]byte("short")), "alice.key: base64 seed has 5 bytes, want 32"},
		"encrypted": {"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "passphrase-protected"},
		"openssh":   {"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n", "OpenSSH private keys are not supported"},
		"cert":      {"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", `PEM block "CERTIFICATE"`},
		"broken":    {"-----BEGIN PRIVATE KEY-----\n" + seed, "unreadable PEM block"},
		"bad der":   {"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "PKCS#8"},
	}
	for name, c := range cases {
		_, err := ParsePrivateKey([]byte(c.data), "alice.key")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), seed) {
			t.Errorf("%s: error quotes the key", name)
		}
	}
}

// A key made by openssl signs decisions that verify against its public key
// as openssl prints it, in both key file forms.
func TestOpenSSLKey(t *testing.T) {
	testkit.Tool(t, "openssl")
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "alice.pem")
	if out, err := exec.Command("openssl", "genpkey", "-algorithm", "ed25519", "-out", keyPath).CombinedOutput(); err != nil {
		t.Fatalf("openssl genpkey: %v: %s", err, out)
	}
	pubPEM, err := exec.Command("openssl", "pkey", "-in", keyPath, "-pubout").Output()
	if err != nil {
		t.Fatalf("openssl pkey -pubout: %v", err)
	}
	data, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ParsePrivateKey(data, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(pubPEM)), "\n")
	if len(lines) != 3 {
		t.Fatalf("unexpected openssl public key output:\n%s", pubPEM)
	}
	ring, err := Parse([]byte("alice "+lines[1]+"\n"), "from-openssl")
	if err != nil {
		t.Fatal(err)
	}
	sig, err := Sign(priv, approval(), signedAt)
	if err != nil {
		t.Fatal(err)
	}
	if err := ring.Verify(SignedDecision{Approval: approval(), Signature: sig}, signedAt, time.Minute); err != nil {
		t.Fatal(err)
	}
	// Our own PEM is one openssl reads back to the same public key.
	ours, err := MarshalPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours, data) {
		cmd := exec.Command("openssl", "pkey", "-pubout")
		cmd.Stdin = bytes.NewReader(ours)
		again, err := cmd.Output()
		if err != nil || !bytes.Equal(again, pubPEM) {
			t.Fatalf("openssl reads our PEM as %s (%v), want %s", again, err, pubPEM)
		}
	}
}

func TestGenerateKeyBadRandom(t *testing.T) {
	if _, _, err := GenerateKey(bytes.NewReader(nil)); err == nil {
		t.Fatal("GenerateKey with an empty random source succeeded")
	}
}

func FuzzParse(f *testing.F) {
	pub := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)).Public().(ed25519.PublicKey)
	f.Add([]byte("alice " + FormatPublicKey(pub) + " laptop\n"))
	f.Add([]byte("# c\n\nbob " + base64.StdEncoding.EncodeToString(pub) + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ring, err := Parse(data, "fuzz")
		if err != nil {
			if ring != nil {
				t.Fatal("error with a key ring")
			}
			return
		}
		seen := map[string]bool{}
		for name, pub := range ring {
			if name == "" || len(pub) != ed25519.PublicKeySize || seen[string(pub)] {
				t.Fatalf("bad entry %q (%d bytes)", name, len(pub))
			}
			seen[string(pub)] = true
		}
		again, err := Parse(FormatKeyRing(ring), "formatted")
		if err != nil {
			t.Fatalf("formatted ring does not parse: %v", err)
		}
		if len(again) != len(ring) {
			t.Fatal("formatting changed the ring")
		}
		for name, pub := range ring {
			if !pub.Equal(again[name]) {
				t.Fatalf("formatting changed %s's key", name)
			}
		}
	})
}

package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode"
)

const sshKeyType = "ssh-ed25519"

// Parse reads a reviewers' key file. source names the file in errors.
//
// The format is one reviewer per line, "NAME KEY [COMMENT]", with blank
// lines and lines starting with # ignored. KEY is one of
//
//	ssh-ed25519 AAAAC3Nz...      an OpenSSH public key (a line of id_ed25519.pub)
//	MCowBQYDK2VwAyEA...          base64 DER SubjectPublicKeyInfo (the body of
//	                             `openssl pkey -pubout`)
//	<44 base64 characters>       the raw 32-byte key (what FormatKeyRing writes)
//
// Names are letters, digits and ._@+- so that "alice:" (a YAML habit) is
// refused instead of becoming a reviewer that never matches. Two reviewers
// may not share a key: one person could then fill a quorum alone.
func Parse(data []byte, source string) (KeyRing, error) {
	ring := KeyRing{}
	nameLine := map[string]int{}
	keyLine := map[string]int{}
	keyOwner := map[string]string{}
	// Editors on Windows may start the file with a byte order mark.
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n := i + 1
		fields := strings.Fields(line)
		name := fields[0]
		if err := checkName(name); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", source, n, err)
		}
		if len(fields) < 2 {
			return nil, fmt.Errorf("%s:%d: %s has no key: want NAME KEY", source, n, name)
		}
		pub, err := parsePublicKey(fields[1:])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: key of %s: %w", source, n, name, err)
		}
		if prev, dup := nameLine[name]; dup {
			return nil, fmt.Errorf("%s:%d: %s already has a key on line %d", source, n, name, prev)
		}
		if owner, dup := keyOwner[string(pub)]; dup {
			return nil, fmt.Errorf("%s:%d: %s has the same key as %s (line %d): each reviewer needs their own key", source, n, name, owner, keyLine[string(pub)])
		}
		nameLine[name], keyLine[string(pub)], keyOwner[string(pub)] = n, n, name
		ring[name] = pub
	}
	if len(ring) == 0 {
		return nil, fmt.Errorf("%s: no reviewer keys (want lines of NAME KEY)", source)
	}
	return ring, nil
}

func checkName(name string) error {
	for _, r := range name {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("._@+-", r) {
			return fmt.Errorf("reviewer name %q has %q: names are letters, digits and ._@+-, followed by a space and the key", name, r)
		}
	}
	return nil
}

// parsePublicKey reads the key fields of a line; anything after the key is
// a comment, as in authorized_keys.
func parsePublicKey(fields []string) (ed25519.PublicKey, error) {
	if strings.HasPrefix(fields[0], "ssh-") {
		if fields[0] != sshKeyType {
			return nil, fmt.Errorf("%s keys are not supported, only %s", fields[0], sshKeyType)
		}
		if len(fields) < 2 {
			return nil, fmt.Errorf("%s without the base64 key after it", sshKeyType)
		}
		blob, err := base64.StdEncoding.DecodeString(fields[1])
		if err != nil {
			return nil, fmt.Errorf("%s key is not base64: %w", sshKeyType, err)
		}
		return parseSSHWire(blob)
	}
	der, err := base64.StdEncoding.DecodeString(fields[0])
	if err != nil {
		return nil, fmt.Errorf("not base64 (want ssh-ed25519 AAAA..., base64 SubjectPublicKeyInfo, or a base64 32-byte key): %w", err)
	}
	if len(der) == ed25519.PublicKeySize {
		return ed25519.PublicKey(der), nil
	}
	key, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%d bytes: neither a raw 32-byte Ed25519 key nor a SubjectPublicKeyInfo (%v)", len(der), err)
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an Ed25519 key", key)
	}
	return pub, nil
}

// sshWire is the SSH wire form of a key: two length-prefixed strings.
func sshWire(pub ed25519.PublicKey) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(sshKeyType)))
	out = append(out, sshKeyType...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(pub)))
	return append(out, pub...)
}

func parseSSHWire(blob []byte) (ed25519.PublicKey, error) {
	typ, rest, ok := sshString(blob)
	if !ok || string(typ) != sshKeyType {
		return nil, fmt.Errorf("base64 body is not an %s key", sshKeyType)
	}
	key, rest, ok := sshString(rest)
	if !ok || len(rest) != 0 || len(key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("malformed %s key body", sshKeyType)
	}
	return ed25519.PublicKey(bytes.Clone(key)), nil
}

func sshString(b []byte) (s, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, false
	}
	return b[4 : 4+n], b[4+n:], true
}

// FormatKeyRing writes a key ring in the format Parse reads, one reviewer
// per line in name order, keys as OpenSSH public keys.
func FormatKeyRing(k KeyRing) []byte {
	names := make([]string, 0, len(k))
	for name := range k {
		names = append(names, name)
	}
	sort.Strings(names)
	var b bytes.Buffer
	for _, name := range names {
		fmt.Fprintf(&b, "%s %s\n", name, FormatPublicKey(k[name]))
	}
	return b.Bytes()
}

// FormatPublicKey renders a public key as an OpenSSH public key
// ("ssh-ed25519 AAAA..."), the KEY of a key file line.
func FormatPublicKey(pub ed25519.PublicKey) string {
	return sshKeyType + " " + base64.StdEncoding.EncodeToString(sshWire(pub))
}

// GenerateKey makes a reviewer's key pair from rand (crypto/rand.Reader in
// production).
func GenerateKey(rand io.Reader) (ed25519.PublicKey, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, nil, fmt.Errorf("generate Ed25519 key: %w", err)
	}
	return pub, priv, nil
}

// MarshalPrivateKey encodes a private key as PEM PKCS#8 ("PRIVATE KEY"),
// the form `openssl genpkey -algorithm ed25519` writes. Write it with mode
// 0600.
func MarshalPrivateKey(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey reads a reviewer's private key: PEM PKCS#8 ("PRIVATE
// KEY", as from `openssl genpkey -algorithm ed25519` or MarshalPrivateKey)
// or the base64 32-byte seed. source names the file in errors, which never
// quote key material.
func ParsePrivateKey(data []byte, source string) (ed25519.PrivateKey, error) {
	text := bytes.TrimSpace(data)
	if bytes.HasPrefix(text, []byte("-----BEGIN")) {
		block, _ := pem.Decode(text)
		if block == nil {
			return nil, fmt.Errorf("%s: unreadable PEM block", source)
		}
		switch block.Type {
		case "PRIVATE KEY":
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("%s: the key is passphrase-protected; decrypt it to a file only you can read with `openssl pkey -in %s -out KEY.pem`", source, source)
		case "OPENSSH PRIVATE KEY":
			return nil, fmt.Errorf("%s: OpenSSH private keys are not supported; create a key with `gauntlet keys generate` or `openssl genpkey -algorithm ed25519`", source)
		default:
			return nil, fmt.Errorf("%s: PEM block %q, want \"PRIVATE KEY\" (PKCS#8)", source, block.Type)
		}
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: PKCS#8: %w", source, err)
		}
		priv, ok := key.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s: a %T key, want Ed25519", source, key)
		}
		return priv, nil
	}
	seed, err := base64.StdEncoding.DecodeString(string(text))
	if err != nil {
		return nil, fmt.Errorf("%s: neither PEM nor a base64 seed", source)
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s: base64 seed has %d bytes, want %d", source, len(seed), ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// MarshalSeed encodes a private key as the base64 seed form that
// ParsePrivateKey reads, for keys kept in a secret store as one line.
func MarshalSeed(priv ed25519.PrivateKey) (string, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return "", errors.New("encode seed: not an Ed25519 private key")
	}
	return base64.StdEncoding.EncodeToString(priv.Seed()), nil
}

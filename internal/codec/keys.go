package codec

import (
	"encoding/base64"
	"fmt"
	"io"
	"strings"
)

// KeySize is the AES-256 key length in bytes.
const KeySize = 32

// Keys is a key ring: every key that may have encrypted a stored payload,
// by id, and the id of the one that encrypts new payloads.
type Keys struct {
	Current string
	ByID    map[string][]byte
}

// ParseKeys reads a key ring. source names the file or variable in errors,
// which never quote key material.
//
// Entries are "ID:BASE64KEY", separated by newlines or commas (so the same
// text fits a file and an environment variable); blank lines and lines
// starting with # are ignored. Each key is 32 random bytes, base64. The last
// entry is the current key: rotating is appending a new line, and the older
// keys stay to decrypt what they encrypted. Ids are letters, digits and
// ._- because they are stored in every payload's metadata.
func ParseKeys(data []byte, source string) (Keys, error) {
	k := Keys{ByID: map[string][]byte{}}
	where := map[string]int{}
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for _, entry := range strings.Split(line, ",") {
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			id, b64, ok := strings.Cut(entry, ":")
			id, b64 = strings.TrimSpace(id), strings.TrimSpace(b64)
			if !ok || b64 == "" {
				return Keys{}, fmt.Errorf("%s:%d: an entry is not ID:BASE64KEY", source, n)
			}
			if err := checkID(id); err != nil {
				return Keys{}, fmt.Errorf("%s:%d: %w", source, n, err)
			}
			key, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				return Keys{}, fmt.Errorf("%s:%d: key %q is not base64", source, n, id)
			}
			if len(key) != KeySize {
				return Keys{}, fmt.Errorf("%s:%d: key %q has %d bytes, want %d (make one with `openssl rand -base64 32`)", source, n, id, len(key), KeySize)
			}
			if prev, dup := where[id]; dup {
				return Keys{}, fmt.Errorf("%s:%d: key id %q is already used on line %d", source, n, id, prev)
			}
			where[id] = n
			k.ByID[id] = key
			k.Current = id
		}
	}
	if k.Current == "" {
		return Keys{}, fmt.Errorf("%s: no keys (want lines of ID:BASE64KEY)", source)
	}
	return k, nil
}

func checkID(id string) error {
	if id == "" {
		return fmt.Errorf("empty key id")
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return fmt.Errorf("key id %q has %q: ids are letters, digits and ._-", id, r)
		}
	}
	return nil
}

// WithCurrent returns the ring with another key encrypting, for a rollout
// where every worker must hold a new key before any encrypts with it.
func (k Keys) WithCurrent(id string) (Keys, error) {
	if _, ok := k.ByID[id]; !ok {
		return Keys{}, fmt.Errorf("current key id %q is not in the key ring (ids: %s)", id, strings.Join(sortedIDs(k.ByID), ", "))
	}
	k.Current = id
	return k, nil
}

// GenerateKey returns a new random key as a key ring entry, "ID:BASE64KEY",
// for `gauntlet keys generate --codec`.
func GenerateKey(rand io.Reader, id string) (string, error) {
	if err := checkID(id); err != nil {
		return "", err
	}
	key := make([]byte, KeySize)
	if _, err := io.ReadFull(rand, key); err != nil {
		return "", fmt.Errorf("generate key %q: %w", id, err)
	}
	return id + ":" + base64.StdEncoding.EncodeToString(key), nil
}

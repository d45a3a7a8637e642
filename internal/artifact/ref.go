package artifact

import (
	"encoding/json"
	"fmt"
	"strings"
)

const maxRefNameLen = 512

// ValidateRefName checks a ref name: slash-separated segments of letters,
// digits, '.', '_' and '-', none empty or starting with '.'. The leading-dot
// rule keeps names clear of the file backend's temporary files, and the
// restricted alphabet keeps them usable as both file paths and S3 keys.
func ValidateRefName(name string) error {
	if name == "" || len(name) > maxRefNameLen {
		return fmt.Errorf("artifact: invalid ref name %q: want 1 to %d characters", name, maxRefNameLen)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg[0] == '.' {
			return fmt.Errorf("artifact: invalid ref name %q: empty segment or segment starting with '.'", name)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
			if !ok {
				return fmt.Errorf("artifact: invalid ref name %q: character %q not allowed", name, c)
			}
		}
	}
	return nil
}

// refEnvelope is what a ref is stored as. The generation grows on every write,
// so a ref never returns to an earlier byte sequence: versions derived from
// the stored bytes (S3 ETags) cannot suffer ABA when data is set back to an
// old value. The checksum catches a corrupted or hand-edited ref.
type refEnvelope struct {
	Generation uint64 `json:"generation"`
	SHA256     Digest `json:"sha256"`
	Data       []byte `json:"data"`
}

func encodeRef(gen uint64, data []byte) ([]byte, error) {
	b, err := json.Marshal(refEnvelope{Generation: gen, SHA256: DigestBytes(data), Data: data})
	if err != nil {
		return nil, fmt.Errorf("encode ref: %w", err)
	}
	return b, nil
}

func decodeRef(name string, b []byte) (refEnvelope, error) {
	var env refEnvelope
	if err := json.Unmarshal(b, &env); err != nil {
		return env, fmt.Errorf("artifact: ref %s: malformed: %w", name, err)
	}
	if got := DigestBytes(env.Data); got != env.SHA256 {
		return env, fmt.Errorf("artifact: ref %s: data hashes to %s, envelope says %s: %w", name, got, env.SHA256, ErrDigestMismatch)
	}
	return env, nil
}

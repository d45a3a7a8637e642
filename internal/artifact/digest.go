package artifact

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strings"
)

// Digest names content by its SHA-256, written "sha256:<64 hex digits>" like
// OCI digests so it is self-describing in logs and manifests.
type Digest string

const digestPrefix = "sha256:"

// ParseDigest validates s and returns it as a Digest. A bare 64-digit hex
// string is accepted too, since that is what people copy from listings.
func ParseDigest(s string) (Digest, error) {
	h := strings.TrimPrefix(s, digestPrefix)
	if len(h) != sha256.Size*2 || !isLowerHex(h) {
		return "", fmt.Errorf("artifact: invalid digest %q: want sha256:<64 lowercase hex digits>", s)
	}
	return Digest(digestPrefix + h), nil
}

// Hex returns the digest's hex part.
func (d Digest) Hex() string { return strings.TrimPrefix(string(d), digestPrefix) }

func (d Digest) String() string { return string(d) }

func digestOf(h hash.Hash) Digest {
	return Digest(digestPrefix + hex.EncodeToString(h.Sum(nil)))
}

// DigestBytes returns the digest of b.
func DigestBytes(b []byte) Digest {
	sum := sha256.Sum256(b)
	return Digest(digestPrefix + hex.EncodeToString(sum[:]))
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// verifyingReader hashes what passes through it and turns the final io.EOF
// into ErrDigestMismatch when the content is not what its name promises.
type verifyingReader struct {
	r    io.ReadCloser
	h    hash.Hash
	want Digest
	uri  string
}

func newVerifyingReader(r io.ReadCloser, want Digest, uri string) io.ReadCloser {
	return &verifyingReader{r: r, h: sha256.New(), want: want, uri: uri}
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if got := digestOf(v.h); got != v.want {
			return n, fmt.Errorf("artifact: read %s: content hashes to %s: %w", v.uri, got, ErrDigestMismatch)
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.r.Close() }

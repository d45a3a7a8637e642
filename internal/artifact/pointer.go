package artifact

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// Kind says whether a Pointer names a single file (a blob) or a directory
// (a tree, see Tree).
type Kind string

// Kinds of artifact a Pointer names.
const (
	KindBlob Kind = "blobs"
	KindTree Kind = "trees"
)

// Pointer names an immutable artifact by what it holds and where: the
// content digest and the store that keeps it. It is what crosses step
// boundaries (in workflow histories, `run:` step environments and the CLI)
// in place of a local path, which means nothing on another host.
//
// Its text form is a URL under the store's location:
//
//	s3://bucket/prefix/trees/sha256/<hex>   a directory
//	file:///var/gauntlet/artifacts/blobs/sha256/<hex>   a file
//
// A blob's text form is the object's real location; a tree's index is a
// blob too, and "trees" only says to read it as a directory.
type Pointer struct {
	// Store is the location of the store (Store.Location), without any
	// query: endpoints and regions are a worker's settings, not part of
	// an artifact's identity.
	Store  string
	Kind   Kind
	Digest Digest
}

// ErrNotPointer reports text that is not an artifact pointer; callers
// that also accept paths or URLs of other kinds test for it.
var ErrNotPointer = errors.New("not an artifact pointer")

// String is the pointer's text form.
func (p Pointer) String() string {
	return p.Store + "/" + string(p.Kind) + "/sha256/" + p.Digest.Hex()
}

// MarshalText writes the text form, so a Pointer is a plain string in JSON.
func (p Pointer) MarshalText() ([]byte, error) {
	if p.Store == "" || p.Digest == "" {
		return nil, errors.New("artifact: empty pointer")
	}
	return []byte(p.String()), nil
}

// UnmarshalText reads the text form.
func (p *Pointer) UnmarshalText(b []byte) error {
	q, err := ParsePointer(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// ParsePointer reads a pointer's text form. Text that does not end in
// /blobs/sha256/<hex> or /trees/sha256/<hex> fails with ErrNotPointer; a
// store location that Open would refuse fails with a message naming it.
func ParsePointer(s string) (Pointer, error) {
	var p Pointer
	for _, k := range []Kind{KindTree, KindBlob} {
		marker := "/" + string(k) + "/sha256/"
		i := strings.LastIndex(s, marker)
		if i <= 0 {
			continue
		}
		d, err := ParseDigest(s[i+len(marker):])
		if err != nil {
			return p, fmt.Errorf("artifact: pointer %q: %w", shown(s), err)
		}
		p = Pointer{Store: s[:i], Kind: k, Digest: d}
		break
	}
	if p.Digest == "" {
		return p, fmt.Errorf("artifact: %q: %w (want STORE/trees/sha256/HEX or STORE/blobs/sha256/HEX)", shown(s), ErrNotPointer)
	}
	if err := checkLocation(p.Store); err != nil {
		return Pointer{}, fmt.Errorf("artifact: pointer %q: %w", shown(s), err)
	}
	return p, nil
}

// shown is s as an error may repeat it: a URL loses its user information
// and query, either of which may hold a secret.
func shown(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		if strings.ContainsAny(s, "@?") {
			return "(a malformed URL)"
		}
		return s
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	return u.String()
}

// checkLocation accepts the canonical locations Store.Location returns:
// file:///absolute/path or s3://bucket[/prefix], with no credentials, query
// or fragment.
func checkLocation(loc string) error {
	u, err := url.Parse(loc)
	if err != nil {
		return errors.New("malformed store location")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("a store location carries no credentials, query or fragment")
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return errors.New("want file:///absolute/path")
		}
	case "s3":
		if u.Host == "" {
			return errors.New("s3 location without a bucket")
		}
	default:
		return fmt.Errorf("unsupported store scheme %q (want file or s3)", u.Scheme)
	}
	return nil
}

// PointerTo names the artifact d of kind k in store s.
func PointerTo(s Store, k Kind, d Digest) Pointer {
	return Pointer{Store: s.Location(), Kind: k, Digest: d}
}

// Publish stores the file or directory at path and returns its pointer: a
// directory becomes a tree, a regular file a blob.
func Publish(ctx context.Context, s Store, path string) (Pointer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Pointer{}, fmt.Errorf("artifact: publish: %w", err)
	}
	if fi.IsDir() {
		d, err := PutDir(ctx, s, path)
		if err != nil {
			return Pointer{}, fmt.Errorf("artifact: publish %s: %w", path, err)
		}
		return PointerTo(s, KindTree, d), nil
	}
	if !fi.Mode().IsRegular() {
		return Pointer{}, fmt.Errorf("artifact: publish %s: %w nor a directory", path, ErrNotRegular)
	}
	f, err := os.Open(path)
	if err != nil {
		return Pointer{}, fmt.Errorf("artifact: publish: %w", err)
	}
	defer f.Close()
	info, err := s.Put(ctx, f)
	if err != nil {
		return Pointer{}, fmt.Errorf("artifact: publish %s: %w", path, err)
	}
	return PointerTo(s, KindBlob, info.Digest), nil
}

// ErrOtherStore reports a pointer into a store other than the one a worker
// was given: every worker of a fleet must share one store.
var ErrOtherStore = errors.New("artifact is in another store")

// Check refuses a pointer that does not name a store s.
func (p Pointer) Check(s Store) error {
	if p.Store != s.Location() {
		return fmt.Errorf("%s: %w: this worker's store is %s (every worker and the CLI must be given the same --store / GAUNTLET_STORE)",
			p, ErrOtherStore, s.Location())
	}
	return nil
}

// Package artifact stores pipeline outputs: immutable content-addressed blobs,
// directory trees built from them, and small mutable named refs updated with
// compare-and-swap. Two backends satisfy one contract: a local
// directory (file://) and an S3 bucket (s3://).
//
// Compare-and-swap on refs works differently per backend:
//
//   - file: writers of a ref take an exclusive flock(2) on a sibling lock
//     file, compare the stored generation with the expected version, and
//     replace the ref by rename. Readers need no lock. flock is advisory and
//     per host: every writer must go through this package, and the directory
//     must not be shared over NFS by writers on several hosts.
//   - s3: PutObject with If-None-Match: * (create) or If-Match: <etag>
//     (replace); S3 evaluates the condition atomically and answers 412 (or
//     409 for a concurrent conditional write) to the loser. AWS S3 supports
//     this since November 2024, and so does gofakes3 (the tests). A store that
//     ignores the headers would silently turn CAS into last-writer-wins;
//     check yours before pointing Gauntlet at it.
//
// Blobs are never deleted by this package; a failed tree upload can leave
// complete but unreferenced blobs, which are harmless and reused on retry.
//
// The package knows nothing of Temporal; the activity layer decides what to
// retry using IsRetryable.
package artifact

import (
	"context"
	"errors"
	"io"
)

// Store is the storage contract both backends satisfy. Blobs are immutable and
// identified by the SHA-256 of their content; refs are small mutable named
// objects whose every write is conditional on the version the writer last saw.
type Store interface {
	// Put stores the content of r as a blob. Storing content that is already
	// present is a no-op that returns the same BlobInfo.
	Put(ctx context.Context, r io.Reader) (BlobInfo, error)
	// Get opens a blob. The reader verifies the content against d and fails
	// with ErrDigestMismatch instead of io.EOF when it does not match, so a
	// caller that reads to the end never silently consumes corrupt data.
	Get(ctx context.Context, d Digest) (io.ReadCloser, error)
	// Stat reports a blob's size, or ErrNotFound.
	Stat(ctx context.Context, d Digest) (BlobInfo, error)
	// ListBlobs returns the blobs whose hex digest starts with hexPrefix,
	// sorted by digest.
	ListBlobs(ctx context.Context, hexPrefix string) ([]BlobInfo, error)

	// GetRef reads a named ref, or returns ErrNotFound.
	GetRef(ctx context.Context, name string) (Ref, error)
	// PutRef writes a named ref if its current version is ifVersion; an empty
	// ifVersion means the ref must not exist yet. It returns the new version,
	// or an error matching ErrConflict when the ref moved in the meantime.
	PutRef(ctx context.Context, name string, data []byte, ifVersion string) (string, error)
	// ListRefs returns the names of refs starting with prefix, sorted.
	ListRefs(ctx context.Context, prefix string) ([]string, error)

	// URI names a blob in this store, e.g. s3://bucket/prefix/blobs/sha256/<hex>.
	URI(d Digest) string
	// Location is the store's canonical location, file:///abs/path or
	// s3://bucket/prefix without any query: what Pointers name it by.
	Location() string
}

// BlobInfo describes a stored blob.
type BlobInfo struct {
	Digest Digest `json:"digest"`
	Size   int64  `json:"size"`
}

// Ref is a named ref as read from the store. Version is opaque: pass it back
// to PutRef to update the ref only if nobody else has since.
type Ref struct {
	Name    string
	Data    []byte
	Version string
}

var (
	// ErrNotFound reports a missing blob or ref.
	ErrNotFound = errors.New("not found")
	// ErrConflict reports a PutRef whose expected version is not current.
	ErrConflict = errors.New("version conflict")
	// ErrDigestMismatch reports stored content that does not hash to its name.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrNotRegular reports a symbolic link or other special file where an
	// artifact needs a regular file or directory.
	ErrNotRegular = errors.New("not a regular file")
)

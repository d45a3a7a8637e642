package artifact

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// fileStore keeps artifacts in a local directory:
//
//	<root>/blobs/sha256/<hex>   blob content
//	<root>/refs/<name>@ref      ref envelope
//	<root>/refs/<name>@lock     flock(2) target serialising writers of one ref
//
// '@' cannot occur in ref names, so a ref file never collides with the
// directory of a longer ref name ("a" and "a/b" coexist).
type fileStore struct {
	root string
}

const (
	refSuffix  = "@ref"
	lockSuffix = "@lock"
	tmpPattern = ".tmp-*"
)

func openFileStore(root string) (*fileStore, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("artifact: open %s: %w", root, err)
	}
	s := &fileStore{root: abs}
	for _, dir := range []string{s.blobDir(), filepath.Join(abs, "refs")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("artifact: open %s: %w", abs, err)
		}
	}
	return s, nil
}

func (s *fileStore) blobDir() string { return filepath.Join(s.root, "blobs", "sha256") }

func (s *fileStore) blobPath(d Digest) string { return filepath.Join(s.blobDir(), d.Hex()) }

func (s *fileStore) refPath(name string) string {
	return filepath.Join(s.root, "refs", filepath.FromSlash(name)+refSuffix)
}

func (s *fileStore) Location() string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(s.root)}).String()
}

func (s *fileStore) URI(d Digest) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(s.blobPath(d))}).String()
}

func (s *fileStore) Put(ctx context.Context, r io.Reader) (BlobInfo, error) {
	h := sha256.New()
	var size int64
	tmp, err := writeTemp(s.blobDir(), func(w io.Writer) error {
		n, err := io.Copy(io.MultiWriter(w, h), contextReader{ctx, r})
		size = n
		return err
	})
	if err != nil {
		return BlobInfo{}, fmt.Errorf("artifact: put blob: %w", err)
	}
	info := BlobInfo{Digest: digestOf(h), Size: size}
	final := s.blobPath(info.Digest)
	if _, err := os.Stat(final); err == nil {
		// Same content is already there: keep the original untouched.
		os.Remove(tmp)
		return info, nil
	}
	if err := commitTemp(tmp, final); err != nil {
		return BlobInfo{}, fmt.Errorf("artifact: put %s: %w", info.Digest, err)
	}
	return info, nil
}

func (s *fileStore) Get(ctx context.Context, d Digest) (io.ReadCloser, error) {
	if _, err := ParseDigest(string(d)); err != nil {
		return nil, err
	}
	f, err := os.Open(s.blobPath(d))
	if err != nil {
		return nil, fmt.Errorf("artifact: get %s: %w", d, notFound(err))
	}
	return newVerifyingReader(f, d, s.URI(d)), nil
}

func (s *fileStore) Stat(ctx context.Context, d Digest) (BlobInfo, error) {
	if _, err := ParseDigest(string(d)); err != nil {
		return BlobInfo{}, err
	}
	fi, err := os.Stat(s.blobPath(d))
	if err != nil {
		return BlobInfo{}, fmt.Errorf("artifact: stat %s: %w", d, notFound(err))
	}
	return BlobInfo{Digest: d, Size: fi.Size()}, nil
}

func (s *fileStore) ListBlobs(ctx context.Context, hexPrefix string) ([]BlobInfo, error) {
	entries, err := os.ReadDir(s.blobDir())
	if err != nil {
		return nil, fmt.Errorf("artifact: list blobs: %w", err)
	}
	var out []BlobInfo
	for _, e := range entries {
		d, err := ParseDigest(e.Name())
		if err != nil || !strings.HasPrefix(e.Name(), hexPrefix) || !e.Type().IsRegular() {
			continue // temporary files and strays are not blobs
		}
		fi, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("artifact: list blobs: %w", err)
		}
		out = append(out, BlobInfo{Digest: d, Size: fi.Size()})
	}
	return out, nil
}

func (s *fileStore) GetRef(ctx context.Context, name string) (Ref, error) {
	if err := ValidateRefName(name); err != nil {
		return Ref{}, err
	}
	b, err := os.ReadFile(s.refPath(name))
	if err != nil {
		return Ref{}, fmt.Errorf("artifact: get ref %s: %w", name, notFound(err))
	}
	env, err := decodeRef(name, b)
	if err != nil {
		return Ref{}, err
	}
	return Ref{Name: name, Data: env.Data, Version: strconv.FormatUint(env.Generation, 10)}, nil
}

// PutRef serialises writers of one ref with an exclusive flock on a sibling
// lock file, checks the version under the lock and replaces the ref by
// rename. Readers take no lock: rename makes them see the old or the new ref,
// never a mix. flock is released by the kernel when a process dies, so a
// crashed writer leaves no stale lock behind.
func (s *fileStore) PutRef(ctx context.Context, name string, data []byte, ifVersion string) (string, error) {
	if err := ValidateRefName(name); err != nil {
		return "", err
	}
	path := s.refPath(name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("artifact: put ref %s: %w", name, err)
	}
	unlock, err := lockFile(strings.TrimSuffix(path, refSuffix) + lockSuffix)
	if err != nil {
		return "", fmt.Errorf("artifact: put ref %s: %w", name, err)
	}
	defer unlock()

	var gen uint64
	cur := ""
	switch b, err := os.ReadFile(path); {
	case err == nil:
		env, err := decodeRef(name, b)
		if err != nil {
			return "", err
		}
		gen = env.Generation
		cur = strconv.FormatUint(gen, 10)
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("artifact: put ref %s: %w", name, err)
	}
	if cur != ifVersion {
		return "", conflictError(name, ifVersion, cur)
	}
	body, err := encodeRef(gen+1, data)
	if err != nil {
		return "", fmt.Errorf("artifact: put ref %s: %w", name, err)
	}
	tmp, err := writeTemp(filepath.Dir(path), func(w io.Writer) error {
		_, err := w.Write(body)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("artifact: put ref %s: %w", name, err)
	}
	if err := commitTemp(tmp, path); err != nil {
		return "", fmt.Errorf("artifact: put ref %s: %w", name, err)
	}
	return strconv.FormatUint(gen+1, 10), nil
}

func (s *fileStore) ListRefs(ctx context.Context, prefix string) ([]string, error) {
	base := filepath.Join(s.root, "refs")
	var out []string
	err := filepath.WalkDir(base, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(base, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if e.IsDir() {
			// Skip subtrees that cannot hold a name starting with prefix.
			if rel != "." && !strings.HasPrefix(prefix, rel+"/") && !strings.HasPrefix(rel, prefix) {
				return fs.SkipDir
			}
			return nil
		}
		if name, ok := strings.CutSuffix(rel, refSuffix); ok && strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("artifact: list refs %q: %w", prefix, err)
	}
	// The walk order puts "a/b" before "a" ('/' sorts before '@'); sort by
	// name to match S3's listing order.
	slices.Sort(out)
	return out, nil
}

func conflictError(name, want, cur string) error {
	return fmt.Errorf("artifact: put ref %s: expected version %q, found %q: %w", name, want, cur, ErrConflict)
}

func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// writeTemp writes a temporary file in dir (so the later rename stays on one
// file system and is atomic) and syncs it. On failure the file is removed.
func writeTemp(dir string, fill func(io.Writer) error) (path string, err error) {
	f, err := os.CreateTemp(dir, tmpPattern)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := fill(f); err != nil {
		return "", err
	}
	if err := f.Chmod(0o644); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	return f.Name(), f.Close()
}

// commitTemp renames tmp over final and syncs the directory so the rename
// itself survives a crash.
func commitTemp(tmp, final string) error {
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(final))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Closing the descriptor releases the lock.
	return func() { f.Close() }, nil
}

// contextReader stops a long copy once the context is done.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Package cache materialises artifacts from a store into a worker's local
// disk: a content-addressed directory of verified, read-only copies that
// concurrent steps (and several worker processes on one host) share,
// bounded in size, and safe across crashes.
//
// Layout under the cache directory:
//
//	entries/<kind>-<hex>    a blob (file) or tree (directory), read-only
//	staging/<kind>-<hex>/   where one entry is assembled before its rename
//	staging/ingest-*        content arriving from outside the store (Ingest),
//	                        named by its digest only once it has all arrived
//	locks/<kind>-<hex>      flock(2) target of one entry
//
// An entry is only ever visible complete: it is fetched (and verified
// against its digest by the artifact package) under staging and renamed
// into entries in one step. Whoever holds an entry's exclusive lock may
// clear its staging directory, which is how a crashed fetch's leftovers go.
// A step using an entry holds a shared lock on it until it releases its
// lease; eviction takes the exclusive lock without waiting and skips an
// entry it cannot take, so nothing is removed under a reader.
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
)

// ErrFull reports that an artifact does not fit in the cache even after
// evicting everything not in use.
var ErrFull = errors.New("local artifact cache full")

// ErrTooLarge reports an artifact larger than the whole cache, or content
// given to Ingest beyond its bound: no eviction can make it fit.
var ErrTooLarge = errors.New("larger than the local artifact cache allows")

// Cache is one cache directory.
type Cache struct {
	dir string
	max int64
	// mu serialises eviction within this process; other processes are
	// kept apart by the entry locks.
	mu sync.Mutex
}

// Open opens (creating if needed) the cache in dir, holding at most
// maxBytes of artifacts; maxBytes <= 0 means no bound.
func Open(dir string, maxBytes int64) (*Cache, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c := &Cache{dir: abs, max: maxBytes}
	for _, d := range []string{c.entriesDir(), c.stagingDir(), c.locksDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("cache: open %s: %w", abs, err)
		}
	}
	c.clearIngests()
	return c, nil
}

// Max is the cache's bound in bytes; 0 means none.
func (c *Cache) Max() int64 { return max(c.max, 0) }

// Dir is the cache directory.
func (c *Cache) Dir() string { return c.dir }

func (c *Cache) entriesDir() string { return filepath.Join(c.dir, "entries") }
func (c *Cache) stagingDir() string { return filepath.Join(c.dir, "staging") }
func (c *Cache) locksDir() string   { return filepath.Join(c.dir, "locks") }

func entryName(p artifact.Pointer) string { return string(p.Kind) + "-" + p.Digest.Hex() }

// Lease is a materialised artifact in use. Its path stays valid, and its
// content unchanged, until Release.
type Lease struct {
	path string
	lock *os.File
	once sync.Once
}

// Path is the local file (blob) or directory (tree).
func (l *Lease) Path() string { return l.path }

// Release lets the cache evict the entry again.
func (l *Lease) Release() {
	l.once.Do(func() { l.lock.Close() })
}

// Get materialises the artifact p names, fetching it from s unless an
// earlier fetch on this host left it in the cache. s must be the store p
// names.
func (c *Cache) Get(ctx context.Context, s artifact.Store, p artifact.Pointer) (*Lease, error) {
	if err := p.Check(s); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	name := entryName(p)
	final := filepath.Join(c.entriesDir(), name)
	for {
		lease, err := c.tryShared(name, final)
		if err != nil || lease != nil {
			return lease, err
		}
		if err := c.fill(ctx, s, p, name, final); err != nil {
			return nil, err
		}
	}
}

// tryShared returns a lease on an existing entry, or nil when there is none
// yet.
func (c *Cache) tryShared(name, final string) (*Lease, error) {
	lock, err := c.lock(name, syscall.LOCK_SH)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(final); err != nil {
		lock.Close()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("cache: %w", err)
	}
	touch(final)
	return &Lease{path: final, lock: lock}, nil
}

// fill fetches one entry under its exclusive lock. Another fetcher that
// got the lock first leaves the entry in place, and fill returns at once.
func (c *Cache) fill(ctx context.Context, s artifact.Store, p artifact.Pointer, name, final string) error {
	lock, err := c.lock(name, syscall.LOCK_EX)
	if err != nil {
		return err
	}
	defer lock.Close()
	if _, err := os.Lstat(final); err == nil {
		return nil
	}
	size, err := c.sizeOf(ctx, s, p)
	if err != nil {
		return fmt.Errorf("cache: %s: %w", p, err)
	}
	if err := c.makeRoom(size, name); err != nil {
		return fmt.Errorf("cache: %s (%d bytes) into %s: %w", p, size, c.dir, err)
	}
	stage := filepath.Join(c.stagingDir(), name)
	if err := os.RemoveAll(stage); err != nil {
		return fmt.Errorf("cache: clear %s: %w", stage, err)
	}
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	defer os.RemoveAll(stage)
	data := filepath.Join(stage, "data")
	switch p.Kind {
	case artifact.KindTree:
		err = artifact.FetchTree(ctx, s, p.Digest, data)
	default:
		err = artifact.Fetch(ctx, s, p.Digest, data)
	}
	if err != nil {
		return fmt.Errorf("cache: %s: %w", p, err)
	}
	if err := os.Rename(data, final); err != nil {
		return fmt.Errorf("cache: %s: %w", p, err)
	}
	// After the rename, which needs a directory's write permission to
	// move it; a crash in between leaves a complete, writable entry.
	if err := readOnly(final); err != nil {
		return fmt.Errorf("cache: %s: %w", p, err)
	}
	return nil
}

func (c *Cache) lock(name string, how int) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(c.locksDir(), name), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cache: lock %s: %w", name, err)
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("cache: lock %s: %w", name, err)
	}
	return f, nil
}

// sizeOf is what an artifact takes on disk: a blob's size, or the sum of a
// tree's files.
func (c *Cache) sizeOf(ctx context.Context, s artifact.Store, p artifact.Pointer) (int64, error) {
	if p.Kind != artifact.KindTree {
		info, err := s.Stat(ctx, p.Digest)
		return info.Size, err
	}
	t, err := artifact.ReadTree(ctx, s, p.Digest)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, f := range t.Files {
		n += f.Size
	}
	return n, nil
}

// makeRoom evicts least recently used entries that nobody holds until
// need more bytes fit under the bound.
func (c *Cache) makeRoom(need int64, except string) error {
	if c.max <= 0 {
		return nil
	}
	if need > c.max {
		return fmt.Errorf("%w: the artifact alone is larger than the cache's %d bytes", ErrTooLarge, c.max)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	entries, err := c.list()
	if err != nil {
		return err
	}
	var used int64
	for _, e := range entries {
		used += e.size
	}
	// Oldest first.
	slices.SortFunc(entries, func(a, b entry) int { return a.used.Compare(b.used) })
	for _, e := range entries {
		if used+need <= c.max {
			break
		}
		if e.name == except {
			continue
		}
		lock, err := c.lockNow(e.name)
		if err != nil {
			continue
		}
		if err := removeEntry(filepath.Join(c.entriesDir(), e.name)); err == nil {
			used -= e.size
		}
		lock.Close()
	}
	if used+need > c.max {
		return fmt.Errorf("%w: %d of %d bytes are held by steps using them", ErrFull, used, c.max)
	}
	return nil
}

// Ingest stores what r yields as a blob entry named by its SHA-256, for
// content that comes from outside the store (a data set behind a URL),
// and returns a lease on it with the digest. At most limit bytes are
// read (limit <= 0: the cache's bound, if any); more fails with
// ErrTooLarge. Content already cached is kept, and the copy just read is
// dropped.
func (c *Cache) Ingest(ctx context.Context, r io.Reader, limit int64) (*Lease, artifact.Digest, error) {
	if limit <= 0 {
		limit = c.max
	}
	if limit > 0 && c.max > 0 {
		limit = min(limit, c.max)
	}
	f, err := os.CreateTemp(c.stagingDir(), "ingest-*")
	if err != nil {
		return nil, "", fmt.Errorf("cache: %w", err)
	}
	tmp := f.Name()
	defer func() {
		f.Close()
		os.Remove(tmp)
	}()
	// A lock on the staged file tells clearIngests in another process
	// that it is still being written.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return nil, "", fmt.Errorf("cache: lock %s: %w", tmp, err)
	}
	h := sha256.New()
	src := io.Reader(ctxReader{ctx, r})
	if limit > 0 {
		src = io.LimitReader(src, limit+1)
	}
	size, err := io.Copy(io.MultiWriter(f, h), src)
	if err != nil {
		return nil, "", fmt.Errorf("cache: ingest: %w", err)
	}
	if limit > 0 && size > limit {
		return nil, "", fmt.Errorf("cache: ingest into %s: %w (%d bytes)", c.dir, ErrTooLarge, limit)
	}
	if err := f.Sync(); err != nil {
		return nil, "", fmt.Errorf("cache: ingest: %w", err)
	}
	d, err := artifact.ParseDigest(hex.EncodeToString(h.Sum(nil)))
	if err != nil {
		return nil, "", err
	}
	p := artifact.Pointer{Kind: artifact.KindBlob, Digest: d}
	name := entryName(p)
	final := filepath.Join(c.entriesDir(), name)
	// Content already here may be held (by this very process, whose
	// shared lock an exclusive one would wait for forever).
	if lease, err := c.tryShared(name, final); err != nil || lease != nil {
		return lease, d, err
	}
	if err := c.place(name, final, size, tmp); err != nil {
		return nil, "", err
	}
	lease, err := c.tryShared(name, final)
	if err == nil && lease == nil {
		// Evicted between the rename and the lease: only an eviction
		// racing a cache far too small for its work gets here.
		err = fmt.Errorf("cache: %s: %w: evicted as soon as it arrived", d, ErrFull)
	}
	return lease, d, err
}

// place renames the staged file tmp into the entry unless it is there.
func (c *Cache) place(name, final string, size int64, tmp string) error {
	lock, err := c.lock(name, syscall.LOCK_EX)
	if err != nil {
		return err
	}
	defer lock.Close()
	if _, err := os.Lstat(final); err == nil {
		return nil
	}
	if err := c.makeRoom(size, name); err != nil {
		return fmt.Errorf("cache: %s (%d bytes) into %s: %w", name, size, c.dir, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return readOnly(final)
}

// clearIngests removes what crashed Ingest calls left: staged files whose
// lock nobody holds.
func (c *Cache) clearIngests() {
	left, _ := filepath.Glob(filepath.Join(c.stagingDir(), "ingest-*"))
	for _, p := range left {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			os.Remove(p)
		}
		f.Close()
	}
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

func (c *Cache) lockNow(name string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(c.locksDir(), name), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

type entry struct {
	name string
	size int64
	used time.Time
}

func (c *Cache) list() ([]entry, error) {
	des, err := os.ReadDir(c.entriesDir())
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	var out []entry
	for _, de := range des {
		p := filepath.Join(c.entriesDir(), de.Name())
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		size, err := diskSize(p)
		if err != nil {
			continue
		}
		out = append(out, entry{name: de.Name(), size: size, used: fi.ModTime()})
	}
	return out, nil
}

// Size is the bytes the cache's entries hold.
func (c *Cache) Size() (int64, error) {
	entries, err := c.list()
	var n int64
	for _, e := range entries {
		n += e.size
	}
	return n, err
}

func diskSize(path string) (int64, error) {
	var n int64
	err := filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// touch records a use: eviction goes by modification time, which the
// read-only entries otherwise never change.
func touch(path string) {
	now := time.Now()
	_ = os.Chtimes(path, now, now)
}

// readOnly takes write permission away from every file and directory
// under path: a step that writes into a shared artifact is a bug, and
// this makes it fail where it happens.
func readOnly(path string) error {
	return filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o444)
		if d.IsDir() {
			mode = 0o555
		}
		return os.Chmod(p, mode)
	})
}

// removeEntry gives write permission back to directories so that their
// contents can be removed.
func removeEntry(path string) error {
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(path)
}

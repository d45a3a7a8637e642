package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/artifacttest"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/cache"
)

// countingStore counts blob reads, to tell a cache hit from a fetch.
type countingStore struct {
	artifact.Store
	gets atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, d artifact.Digest) (io.ReadCloser, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, d)
}

func publishDir(t *testing.T, s artifact.Store, files map[string]string) artifact.Pointer {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ptr, err := artifact.Publish(context.Background(), s, dir)
	if err != nil {
		t.Fatal(err)
	}
	return ptr
}

func TestGetTreeAndBlob(t *testing.T) {
	s, _ := artifacttest.FileStore(t)
	c, err := cache.Open(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	tree := publishDir(t, s, map[string]string{"manifest.json": `{"a":1}`, "weights/w.bin": "0123"})
	l, err := c.Get(context.Background(), s, tree)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	b, err := os.ReadFile(filepath.Join(l.Path(), "weights", "w.bin"))
	if err != nil || string(b) != "0123" {
		t.Fatalf("w.bin = %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(l.Path(), "manifest.json"), []byte("x"), 0o644); err == nil && os.Geteuid() != 0 {
		t.Fatal("a cached artifact is writable")
	}
	fi, err := os.Stat(filepath.Join(l.Path(), "manifest.json"))
	if err != nil || fi.Mode().Perm()&0o222 != 0 {
		t.Fatalf("manifest.json mode %v, %v: want read-only", fi.Mode(), err)
	}

	f := filepath.Join(t.TempDir(), "data.csv")
	if err := os.WriteFile(f, []byte("a,b\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	blob, err := artifact.Publish(context.Background(), s, f)
	if err != nil {
		t.Fatal(err)
	}
	if blob.Kind != artifact.KindBlob || !strings.HasSuffix(blob.String(), "/blobs/sha256/"+blob.Digest.Hex()) {
		t.Fatalf("blob pointer %s", blob)
	}
	bl, err := c.Get(context.Background(), s, blob)
	if err != nil {
		t.Fatal(err)
	}
	defer bl.Release()
	if b, _ := os.ReadFile(bl.Path()); string(b) != "a,b\n1,2\n" {
		t.Fatalf("blob content %q", b)
	}
}

// TestConcurrentGetsFetchOnce has many steps (two cache handles, as two
// processes would have) ask for one artifact at once: it is fetched once.
func TestConcurrentGetsFetchOnce(t *testing.T) {
	fs, _ := artifacttest.FileStore(t)
	s := &countingStore{Store: fs}
	tree := publishDir(t, s, map[string]string{"a": "1", "b": "2", "c/d": "3"})
	dir := t.TempDir()
	c1, err := cache.Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := cache.Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.gets.Store(0)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := c1
			if i%2 == 1 {
				c = c2
			}
			l, err := c.Get(context.Background(), s, tree)
			if err != nil {
				errs <- err
				return
			}
			defer l.Release()
			if b, err := os.ReadFile(filepath.Join(l.Path(), "c", "d")); err != nil || string(b) != "3" {
				errs <- errors.New("wrong content: " + string(b))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The index read for sizing, the index read by the fetch, three files.
	if n := s.gets.Load(); n != 5 {
		t.Fatalf("%d blob reads for 20 concurrent gets, want 5 (one fetch)", n)
	}
}

// TestCorruptArtifactLeavesNothing serves a tree whose file does not hash
// to its name: the get fails naming the mismatch, and no entry or staging
// directory is left for the next step to trust.
func TestCorruptArtifactLeavesNothing(t *testing.T) {
	s, root := artifacttest.FileStore(t)
	tree := publishDir(t, s, map[string]string{"weights.bin": "the real weights"})
	blob := artifact.DigestBytes([]byte("the real weights"))
	path := filepath.Join(root, "blobs", "sha256", blob.Hex())
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("tampered weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c, err := cache.Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(context.Background(), s, tree)
	if !errors.Is(err, artifact.ErrDigestMismatch) {
		t.Fatalf("err = %v, want a digest mismatch", err)
	}
	if !strings.Contains(err.Error(), tree.String()) {
		t.Fatalf("error %q does not name the artifact", err)
	}
	for _, sub := range []string{"entries", "staging"} {
		if des, _ := os.ReadDir(filepath.Join(dir, sub)); len(des) != 0 {
			t.Fatalf("%s holds %d items after a failed fetch", sub, len(des))
		}
	}
}

// TestCrashedFetchIsCleared leaves a half-assembled staging directory, as
// a killed worker would, and gets the artifact again.
func TestCrashedFetchIsCleared(t *testing.T) {
	s, _ := artifacttest.FileStore(t)
	tree := publishDir(t, s, map[string]string{"a": "complete"})
	dir := t.TempDir()
	stage := filepath.Join(dir, "staging", "trees-"+tree.Digest.Hex(), "data")
	if err := os.MkdirAll(stage, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stage, "a"), []byte("compl"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.Get(context.Background(), s, tree)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if b, _ := os.ReadFile(filepath.Join(l.Path(), "a")); string(b) != "complete" {
		t.Fatalf("content %q", b)
	}
	if des, _ := os.ReadDir(filepath.Join(dir, "staging")); len(des) != 0 {
		t.Fatalf("staging not cleared: %d items", len(des))
	}
}

// TestEvictionSparesEntriesInUse bounds the cache to two artifacts:
// the least recently used one that no step holds goes, and when every
// entry is held a new one is refused with ErrFull naming the cache.
func TestEvictionSparesEntriesInUse(t *testing.T) {
	s, _ := artifacttest.FileStore(t)
	body := func(c byte) string { return string(bytes.Repeat([]byte{c}, 100)) }
	a := publishDir(t, s, map[string]string{"f": body('a')})
	b := publishDir(t, s, map[string]string{"f": body('b')})
	d := publishDir(t, s, map[string]string{"f": body('d')})
	dir := t.TempDir()
	c, err := cache.Open(dir, 250)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	held, err := c.Get(ctx, s, a)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := c.Get(ctx, s, b)
	if err != nil {
		t.Fatal(err)
	}
	lb.Release()
	// a is older than b, but held: b goes.
	ld, err := c.Get(ctx, s, d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(held.Path()); err != nil {
		t.Fatalf("the held entry was evicted: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "entries", "trees-"+b.Digest.Hex())); !os.IsNotExist(err) {
		t.Fatalf("b was not evicted: %v", err)
	}
	// Both entries held: no room for b.
	_, err = c.Get(ctx, s, b)
	if !errors.Is(err, cache.ErrFull) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("err = %v, want ErrFull naming %s", err, dir)
	}
	held.Release()
	ld.Release()
	if l, err := c.Get(ctx, s, b); err != nil {
		t.Fatalf("after release: %v", err)
	} else {
		l.Release()
	}
	if n, _ := c.Size(); n > 250 {
		t.Fatalf("cache holds %d bytes, bound 250", n)
	}
}

func TestPointerFromAnotherStoreIsRefused(t *testing.T) {
	s1, _ := artifacttest.FileStore(t)
	s2, _ := artifacttest.FileStore(t)
	p := publishDir(t, s1, map[string]string{"a": "1"})
	c, err := cache.Open(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(context.Background(), s2, p)
	if !errors.Is(err, artifact.ErrOtherStore) || !strings.Contains(err.Error(), "--store") {
		t.Fatalf("err = %v, want ErrOtherStore saying how to fix it", err)
	}
}

func TestIngestNamesContentByDigest(t *testing.T) {
	dir := t.TempDir()
	c, err := cache.Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l1, d1, err := c.Ingest(ctx, strings.NewReader("a,b\n1,2\n"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := artifact.DigestBytes([]byte("a,b\n1,2\n")); d1 != want {
		t.Errorf("digest %s, want %s", d1, want)
	}
	// The same content again, while the first lease is held in this
	// process, is the same entry.
	l2, d2, err := c.Ingest(ctx, strings.NewReader("a,b\n1,2\n"), 0)
	if err != nil || d2 != d1 || l2.Path() != l1.Path() {
		t.Fatalf("second ingest: %v, %s, %s", err, d2, l2.Path())
	}
	fi, err := os.Stat(l1.Path())
	if err != nil || fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("entry mode %v, %v: want read-only", fi.Mode(), err)
	}
	l1.Release()
	l2.Release()

	if _, _, err := c.Ingest(ctx, strings.NewReader("0123456789"), 4); !errors.Is(err, cache.ErrTooLarge) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("over the bound: %v, want ErrTooLarge naming %s", err, dir)
	}
	staged, _ := filepath.Glob(filepath.Join(dir, "staging", "ingest-*"))
	if len(staged) != 0 {
		t.Errorf("left in staging: %v", staged)
	}
}

func TestCrashedIngestIsCleared(t *testing.T) {
	dir := t.TempDir()
	if _, err := cache.Open(dir, 0); err != nil {
		t.Fatal(err)
	}
	left := filepath.Join(dir, "staging", "ingest-123")
	if err := os.WriteFile(left, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Open(dir, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a crashed ingest's file is still there: %v", err)
	}
}

package artifact_test

import (
	"bytes"
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
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
)

// fixture is a fresh, empty store plus a way to corrupt it behind its back.
type fixture struct {
	store artifact.Store
	// tamper replaces the stored bytes of blob d without going through the store.
	tamper func(t *testing.T, d artifact.Digest, data []byte)
}

// runContract checks the behaviour every backend must share.
func runContract(t *testing.T, newFixture func(t *testing.T) fixture) {
	tests := []struct {
		name string
		fn   func(t *testing.T, f fixture)
	}{
		{"BlobRoundTrip", testBlobRoundTrip},
		{"PutIsIdempotent", testPutIdempotent},
		{"Missing", testMissing},
		{"TamperedBlobFailsRead", testTamperedBlob},
		{"ListBlobsByPrefix", testListBlobs},
		{"FailedPutLeavesNothing", testFailedPut},
		{"TreeRoundTrip", testTreeRoundTrip},
		{"FailedTreePutLeavesNoTree", testFailedTreePut},
		{"TamperedTreeFetchLeavesNoDir", testTamperedTreeFetch},
		{"FetchTreeRefusesNonEmptyDest", testFetchTreeNonEmpty},
		{"RefCompareAndSwap", testRefCAS},
		{"RefNames", testRefNames},
		{"ConcurrentRefIncrements", testConcurrentIncrements},
		{"ConcurrentCreateOneWins", testConcurrentCreate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newFixture(t)) })
	}
}

func sha(b []byte) artifact.Digest {
	sum := sha256.Sum256(b)
	return artifact.Digest("sha256:" + hex.EncodeToString(sum[:]))
}

func readBlob(t *testing.T, s artifact.Store, d artifact.Digest) ([]byte, error) {
	t.Helper()
	rc, err := s.Get(context.Background(), d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func mustPut(t *testing.T, s artifact.Store, b []byte) artifact.BlobInfo {
	t.Helper()
	info, err := s.Put(context.Background(), bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	return info
}

func testBlobRoundTrip(t *testing.T, f fixture) {
	ctx := context.Background()
	for _, content := range [][]byte{{}, []byte("hello"), bytes.Repeat([]byte("weights"), 300_000)} {
		info := mustPut(t, f.store, content)
		if want := (artifact.BlobInfo{Digest: sha(content), Size: int64(len(content))}); info != want {
			t.Fatalf("Put = %+v, want %+v", info, want)
		}
		got, err := readBlob(t, f.store, info.Digest)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("Get %s: %d bytes, err %v; want %d bytes", info.Digest, len(got), err, len(content))
		}
		st, err := f.store.Stat(ctx, info.Digest)
		if err != nil || st != info {
			t.Fatalf("Stat = %+v, %v; want %+v", st, err, info)
		}
		if uri := f.store.URI(info.Digest); !strings.HasSuffix(uri, info.Digest.Hex()) {
			t.Fatalf("URI %q does not name %s", uri, info.Digest)
		}
		dst := filepath.Join(t.TempDir(), "blob")
		if err := artifact.Fetch(ctx, f.store, info.Digest, dst); err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if b, err := os.ReadFile(dst); err != nil || !bytes.Equal(b, content) {
			t.Fatalf("fetched file differs (err %v)", err)
		}
	}
}

func testPutIdempotent(t *testing.T, f fixture) {
	content := []byte("same bytes")
	first := mustPut(t, f.store, content)
	second := mustPut(t, f.store, content)
	if first != second {
		t.Fatalf("second Put = %+v, first %+v", second, first)
	}
	blobs, err := f.store.ListBlobs(context.Background(), "")
	if err != nil || len(blobs) != 1 {
		t.Fatalf("ListBlobs = %v, %v; want exactly one blob", blobs, err)
	}
}

func testMissing(t *testing.T, f fixture) {
	ctx := context.Background()
	d := sha([]byte("never stored"))
	if _, err := f.store.Get(ctx, d); !errors.Is(err, artifact.ErrNotFound) {
		t.Errorf("Get missing: %v, want ErrNotFound", err)
	}
	if _, err := f.store.Stat(ctx, d); !errors.Is(err, artifact.ErrNotFound) {
		t.Errorf("Stat missing: %v, want ErrNotFound", err)
	}
	if _, err := f.store.GetRef(ctx, "no/such/ref"); !errors.Is(err, artifact.ErrNotFound) {
		t.Errorf("GetRef missing: %v, want ErrNotFound", err)
	}
	for _, bad := range []artifact.Digest{"", "sha256:xyz", "../../etc/passwd", artifact.Digest("md5:" + d.Hex())} {
		if _, err := f.store.Get(ctx, bad); err == nil || errors.Is(err, artifact.ErrNotFound) {
			t.Errorf("Get(%q): %v, want an invalid-digest error", bad, err)
		}
	}
}

func testTamperedBlob(t *testing.T, f fixture) {
	content := []byte("the real model weights")
	info := mustPut(t, f.store, content)
	f.tamper(t, info.Digest, []byte("the fake model weights"))
	_, err := readBlob(t, f.store, info.Digest)
	if !errors.Is(err, artifact.ErrDigestMismatch) {
		t.Fatalf("reading tampered blob: %v, want ErrDigestMismatch", err)
	}
	if !strings.Contains(err.Error(), info.Digest.Hex()) {
		t.Errorf("error %q does not name the blob", err)
	}
	if artifact.IsRetryable(err) {
		t.Errorf("digest mismatch classified retryable")
	}
	dst := filepath.Join(t.TempDir(), "blob")
	if err := artifact.Fetch(context.Background(), f.store, info.Digest, dst); !errors.Is(err, artifact.ErrDigestMismatch) {
		t.Fatalf("Fetch of tampered blob: %v, want ErrDigestMismatch", err)
	}
	if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Fetch left %s behind after a failed verification", dst)
	}
}

func testListBlobs(t *testing.T, f fixture) {
	var want []artifact.BlobInfo
	for i := range 20 {
		want = append(want, mustPut(t, f.store, []byte("blob "+strconv.Itoa(i))))
	}
	slices.SortFunc(want, func(a, b artifact.BlobInfo) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	all, err := f.store.ListBlobs(context.Background(), "")
	if err != nil || !slices.Equal(all, want) {
		t.Fatalf("ListBlobs(\"\") = %v, %v; want %v", all, err, want)
	}
	prefix := want[7].Digest.Hex()[:1]
	var wantPrefixed []artifact.BlobInfo
	for _, b := range want {
		if strings.HasPrefix(b.Digest.Hex(), prefix) {
			wantPrefixed = append(wantPrefixed, b)
		}
	}
	got, err := f.store.ListBlobs(context.Background(), prefix)
	if err != nil || !slices.Equal(got, wantPrefixed) {
		t.Fatalf("ListBlobs(%q) = %v, %v; want %v", prefix, got, err, wantPrefixed)
	}
}

// failAfter yields n bytes of data and then fails, like a network source
// that dies part way through an upload.
type failAfter struct {
	n   int
	err error
}

func (r *failAfter) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	k := min(len(p), r.n)
	for i := range k {
		p[i] = byte(i)
	}
	r.n -= k
	return k, nil
}

var errSourceDied = errors.New("source died")

func testFailedPut(t *testing.T, f fixture) {
	_, err := f.store.Put(context.Background(), &failAfter{n: 3 << 20, err: errSourceDied})
	if !errors.Is(err, errSourceDied) {
		t.Fatalf("Put from failing reader: %v, want it to wrap the reader's error", err)
	}
	blobs, err := f.store.ListBlobs(context.Background(), "")
	if err != nil || len(blobs) != 0 {
		t.Fatalf("after failed Put, ListBlobs = %v, %v; want nothing", blobs, err)
	}
}

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		got[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func testTreeRoundTrip(t *testing.T, f fixture) {
	ctx := context.Background()
	files := map[string]string{
		"manifest.json":             `{"schema":"v1"}`,
		"model.safetensors":         strings.Repeat("w", 100_000),
		"a.txt":                     "dot sorts before slash",
		"a/b/c.txt":                 "nested",
		"preprocessing/scaler.json": `{"mean":[1,2]}`,
		"empty":                     "",
	}
	src := writeTree(t, files)
	d, err := artifact.PutDir(ctx, f.store, src)
	if err != nil {
		t.Fatalf("PutDir: %v", err)
	}
	again, err := artifact.PutDir(ctx, f.store, writeTree(t, files))
	if err != nil || again != d {
		t.Fatalf("same tree stored again: %s, %v; want %s", again, err, d)
	}
	tree, err := artifact.ReadTree(ctx, f.store, d)
	if err != nil {
		t.Fatalf("ReadTree: %v", err)
	}
	if len(tree.Files) != len(files) {
		t.Fatalf("tree lists %d files, want %d", len(tree.Files), len(files))
	}
	for _, tf := range tree.Files {
		if want := files[tf.Path]; tf.Digest != sha([]byte(want)) || tf.Size != int64(len(want)) {
			t.Errorf("tree entry %+v does not describe %q", tf, tf.Path)
		}
	}
	dst := filepath.Join(t.TempDir(), "fetched", "model")
	if err := artifact.FetchTree(ctx, f.store, d, dst); err != nil {
		t.Fatalf("FetchTree: %v", err)
	}
	if got := readTree(t, dst); !mapsEqual(got, files) {
		t.Fatalf("fetched tree = %v, want %v", got, files)
	}

	before, _ := f.store.ListBlobs(ctx, "")
	files["manifest.json"] = `{"schema":"v2"}`
	changed, err := artifact.PutDir(ctx, f.store, writeTree(t, files))
	if err != nil || changed == d {
		t.Fatalf("changed tree: %s, %v; want a digest other than %s", changed, err, d)
	}
	after, _ := f.store.ListBlobs(ctx, "")
	if len(after) != len(before)+2 {
		t.Errorf("changing one file added %d blobs, want 2 (the file and the index)", len(after)-len(before))
	}
	if _, err := artifact.ReadTree(ctx, f.store, tree.Files[0].Digest); err == nil {
		t.Errorf("ReadTree accepted a plain file blob as a tree index")
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// brokenFS serves fstest files but fails reading one of them half way.
type brokenFS struct {
	fstest.MapFS
	broken string
}

func (b brokenFS) Open(name string) (fs.File, error) {
	f, err := b.MapFS.Open(name)
	if err != nil || name != b.broken {
		return f, err
	}
	return brokenFile{f}, nil
}

type brokenFile struct{ fs.File }

func (brokenFile) Read(p []byte) (int, error) { return 0, errSourceDied }

func testFailedTreePut(t *testing.T, f fixture) {
	ctx := context.Background()
	fsys := brokenFS{MapFS: fstest.MapFS{
		"a.bin": {Data: []byte("first file")},
		"b.bin": {Data: []byte("second file")},
		"c.bin": {Data: []byte("third file")},
	}, broken: "b.bin"}
	if _, err := artifact.PutTree(ctx, f.store, fsys); !errors.Is(err, errSourceDied) {
		t.Fatalf("PutTree with a failing file: %v, want the read error", err)
	}
	blobs, err := f.store.ListBlobs(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		if _, err := artifact.ReadTree(ctx, f.store, b.Digest); err == nil {
			t.Fatalf("a tree index %s is visible after a failed PutTree", b.Digest)
		}
	}
}

func testTamperedTreeFetch(t *testing.T, f fixture) {
	ctx := context.Background()
	d, err := artifact.PutDir(ctx, f.store, writeTree(t, map[string]string{"x": "1", "y/z": "2"}))
	if err != nil {
		t.Fatal(err)
	}
	f.tamper(t, sha([]byte("2")), []byte("3"))
	dst := filepath.Join(t.TempDir(), "model")
	if err := artifact.FetchTree(ctx, f.store, d, dst); !errors.Is(err, artifact.ErrDigestMismatch) {
		t.Fatalf("FetchTree with a tampered file: %v, want ErrDigestMismatch", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(dst)); len(entries) != 0 {
		t.Fatalf("failed FetchTree left %v behind", entries)
	}
}

func testFetchTreeNonEmpty(t *testing.T, f fixture) {
	ctx := context.Background()
	d, err := artifact.PutDir(ctx, f.store, writeTree(t, map[string]string{"x": "new"}))
	if err != nil {
		t.Fatal(err)
	}
	dst := writeTree(t, map[string]string{"keep": "old"})
	if err := artifact.FetchTree(ctx, f.store, d, dst); err == nil {
		t.Fatal("FetchTree into a non-empty directory succeeded")
	}
	if got := readTree(t, dst); !mapsEqual(got, map[string]string{"keep": "old"}) {
		t.Fatalf("destination changed to %v", got)
	}
	empty := t.TempDir()
	if err := artifact.FetchTree(ctx, f.store, d, empty); err != nil {
		t.Fatalf("FetchTree into an empty directory: %v", err)
	}
}

func testRefCAS(t *testing.T, f fixture) {
	ctx := context.Background()
	s := f.store
	const name = "models/credit-risk/aliases"
	v1, err := s.PutRef(ctx, name, []byte("A"), "")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := s.PutRef(ctx, name, []byte("B"), ""); !errors.Is(err, artifact.ErrConflict) {
		t.Fatalf("create of existing ref: %v, want ErrConflict", err)
	}
	ref, err := s.GetRef(ctx, name)
	if err != nil || string(ref.Data) != "A" || ref.Version != v1 || ref.Name != name {
		t.Fatalf("GetRef = %+v, %v; want data A version %s", ref, err, v1)
	}
	v2, err := s.PutRef(ctx, name, []byte("B"), v1)
	if err != nil || v2 == v1 {
		t.Fatalf("update: %q, %v", v2, err)
	}
	if _, err := s.PutRef(ctx, name, []byte("C"), v1); !errors.Is(err, artifact.ErrConflict) {
		t.Fatalf("update with stale version: %v, want ErrConflict", err)
	}
	// Setting the data back to A must not revive version v1 (no ABA).
	v3, err := s.PutRef(ctx, name, []byte("A"), v2)
	if err != nil {
		t.Fatal(err)
	}
	if v3 == v1 {
		t.Fatalf("same data got the same version %q again", v3)
	}
	if _, err := s.PutRef(ctx, name, []byte("D"), v1); !errors.Is(err, artifact.ErrConflict) {
		t.Fatalf("update with a version from before an A→B→A cycle: %v, want ErrConflict", err)
	}
	_, err = s.PutRef(ctx, name, []byte("D"), "garbage")
	if !errors.Is(err, artifact.ErrConflict) {
		t.Fatalf("update with a made-up version: %v, want ErrConflict", err)
	}
	if artifact.IsRetryable(err) {
		t.Errorf("conflict classified retryable")
	}
	if ref, _ := s.GetRef(ctx, name); string(ref.Data) != "A" || ref.Version != v3 {
		t.Fatalf("after rejected writes ref = %+v, want data A version %s", ref, v3)
	}
}

func testRefNames(t *testing.T, f fixture) {
	ctx := context.Background()
	s := f.store
	names := []string{"a", "a/b", "a/b/c", "ab", "models/x/state", "models/y/state", "we-ird_name.v2", "z.json"}
	for _, n := range names {
		if _, err := s.PutRef(ctx, n, []byte(n), ""); err != nil {
			t.Fatalf("PutRef %q: %v", n, err)
		}
	}
	for _, n := range names {
		if ref, err := s.GetRef(ctx, n); err != nil || string(ref.Data) != n {
			t.Fatalf("GetRef %q = %q, %v", n, ref.Data, err)
		}
	}
	for prefix, want := range map[string][]string{
		"":         names,
		"a":        {"a", "a/b", "a/b/c", "ab"},
		"a/":       {"a/b", "a/b/c"},
		"models/":  {"models/x/state", "models/y/state"},
		"models/x": {"models/x/state"},
		"nothing":  nil,
	} {
		got, err := s.ListRefs(ctx, prefix)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ListRefs(%q) = %v, %v; want %v", prefix, got, err, want)
		}
	}
	for _, bad := range []string{"", "/a", "a/", "a//b", "../x", "a/../b", ".hidden", "a/.b", "a@ref", "sp ace", "a\\b", strings.Repeat("x", 600)} {
		if _, err := s.PutRef(ctx, bad, []byte("x"), ""); err == nil {
			t.Errorf("PutRef accepted invalid name %q", bad)
		}
		if _, err := s.GetRef(ctx, bad); err == nil || errors.Is(err, artifact.ErrNotFound) {
			t.Errorf("GetRef(%q): %v, want an invalid-name error", bad, err)
		}
	}
}

// testConcurrentIncrements runs read-modify-write loops from many goroutines;
// if compare-and-swap ever let two writers both win, increments would be lost.
func testConcurrentIncrements(t *testing.T, f fixture) {
	ctx := context.Background()
	const name, workers, each = "counter", 6, 8
	if _, err := f.store.PutRef(ctx, name, []byte("0"), ""); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < each; {
				ref, err := f.store.GetRef(ctx, name)
				if err != nil {
					errs <- err
					return
				}
				n, err := strconv.Atoi(string(ref.Data))
				if err != nil {
					errs <- err
					return
				}
				_, err = f.store.PutRef(ctx, name, []byte(strconv.Itoa(n+1)), ref.Version)
				switch {
				case err == nil:
					done++
				case !errors.Is(err, artifact.ErrConflict):
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ref, err := f.store.GetRef(ctx, name)
	if err != nil || string(ref.Data) != strconv.Itoa(workers*each) {
		t.Fatalf("counter = %q, %v; want %d", ref.Data, err, workers*each)
	}
}

func testConcurrentCreate(t *testing.T, f fixture) {
	ctx := context.Background()
	const workers = 8
	var wg sync.WaitGroup
	results := make([]error, workers)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i] = f.store.PutRef(ctx, "lock/once", []byte(fmt.Sprint(i)), "")
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range results {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("workers %d and %d both created the ref", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, artifact.ErrConflict):
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no worker created the ref")
	}
	ref, err := f.store.GetRef(ctx, "lock/once")
	if err != nil || string(ref.Data) != fmt.Sprint(winner) {
		t.Fatalf("ref holds %q, %v; want the winner's %d", ref.Data, err, winner)
	}
}

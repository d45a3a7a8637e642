package workspace_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/artifacttest"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/cache"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
)

const csv = "a,b,label\n1,x,yes\n2,y,no\n"

func digestOf(s string) artifact.Digest {
	sum := sha256.Sum256([]byte(s))
	return artifact.Digest("sha256:" + hex.EncodeToString(sum[:]))
}

func open(t *testing.T, store artifact.Store, client *http.Client) *workspace.Workspace {
	t.Helper()
	c, err := cache.Open(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return workspace.New(store, c, client, 1<<16)
}

func kind(err error) string {
	var e *workspace.Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ""
}

func TestDataFromEverywhere(t *testing.T) {
	ctx := context.Background()
	fake := artifacttest.NewFakeS3(t)
	store := fake.Open(t, "fleet")
	// Data outside the store, in the same bucket: read with the same
	// settings, here the endpoint the environment names.
	t.Setenv("AWS_ENDPOINT_URL_S3", fake.Server.URL)
	t.Setenv("AWS_REGION", "us-east-1")
	if _, err := fake.Backend.PutObject(artifacttest.Bucket, "data/train.csv", map[string]string{}, strings.NewReader(csv), int64(len(csv)), nil); err != nil {
		t.Fatal(err)
	}
	web := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/train.csv" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, csv)
	}))
	defer web.Close()
	ws := open(t, store, web.Client())
	s := ws.Session()
	defer s.Close()

	local := filepath.Join(t.TempDir(), "train.csv")
	if err := os.WriteFile(local, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	blob, err := s.Publish(ctx, local)
	if err != nil {
		t.Fatal(err)
	}
	want := digestOf(csv)
	for _, src := range []string{local, "file://" + local, "s3://" + artifacttest.Bucket + "/data/train.csv", web.URL + "/train.csv?token=abc", blob.String()} {
		d, err := s.Data(ctx, src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		b, err := os.ReadFile(d.Path)
		if err != nil || string(b) != csv {
			t.Fatalf("%s: %s holds %q, %v", src, d.Path, b, err)
		}
		if d.Digest != want {
			t.Errorf("%s: digest %s, want %s", src, d.Digest, want)
		}
		if strings.Contains(d.Source, "token") {
			t.Errorf("%s: source %q keeps the query", src, d.Source)
		}
	}
	if d, err := s.Data(ctx, "builtin:credit-risk?rows=10"); err != nil || d.Path != "builtin:credit-risk?rows=10" || d.Digest != "" {
		t.Errorf("builtin: %+v, %v", d, err)
	}
}

func TestDataErrors(t *testing.T) {
	ctx := context.Background()
	store, _ := artifacttest.FileStore(t)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/gone.csv":
			http.NotFound(w, r)
		case "/denied.csv":
			http.Error(w, "no", http.StatusForbidden)
		case "/flaky.csv":
			http.Error(w, "later", http.StatusServiceUnavailable)
		case "/big.csv":
			io.WriteString(w, strings.Repeat("x", 1<<17))
		}
	}))
	defer web.Close()
	ws := open(t, store, web.Client())
	s := ws.Session()
	defer s.Close()
	other := artifact.Pointer{Store: "s3://elsewhere/p", Kind: artifact.KindBlob, Digest: digestOf("x")}
	tree := artifact.PointerTo(store, artifact.KindTree, digestOf("x"))
	for _, c := range []struct {
		src, kind string
		retryable bool
	}{
		{"", workspace.KindBadInput, false},
		{filepath.Join(t.TempDir(), "missing.csv"), workspace.KindBadInput, false},
		{"ftp://host/data.csv", workspace.KindBadInput, false},
		{"https://user:pw@host/data.csv", workspace.KindBadInput, false},
		{other.String(), workspace.KindBadInput, false},
		{tree.String(), workspace.KindBadInput, false},
		{artifact.PointerTo(store, artifact.KindBlob, digestOf("absent")).String(), workspace.KindNotFound, false},
		{web.URL + "/gone.csv?sig=s3cr3t", workspace.KindNotFound, false},
		{web.URL + "/denied.csv?sig=s3cr3t", workspace.KindDenied, false},
		{web.URL + "/flaky.csv?sig=s3cr3t", workspace.KindUnavailable, true},
		{web.URL + "/big.csv?sig=s3cr3t", workspace.KindTooLarge, false},
		{"http://127.0.0.1:1/refused.csv?sig=s3cr3t", workspace.KindUnavailable, true},
	} {
		_, err := s.Data(ctx, c.src)
		if err == nil {
			t.Errorf("%q: no error", c.src)
			continue
		}
		if got := kind(err); got != c.kind {
			t.Errorf("%q: kind %q, want %q (%v)", c.src, got, c.kind, err)
		}
		var we *workspace.Error
		if errors.As(err, &we) && we.Retryable() != c.retryable {
			t.Errorf("%q: retryable %v, want %v", c.src, we.Retryable(), c.retryable)
		}
		for _, secret := range []string{"s3cr3t", "pw@"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%q: error %q shows a secret", c.src, err)
			}
		}
	}
}

func TestMaterializeHoldsUntilClose(t *testing.T) {
	ctx := context.Background()
	store, _ := artifacttest.FileStore(t)
	c, err := cache.Open(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	ws := workspace.New(store, c, nil, 0)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s := ws.Session()
	p, err := s.Publish(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	path, err := s.Materialize(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(path, "manifest.json")); err != nil || string(b) != "{}" {
		t.Fatalf("materialised %q, %v", b, err)
	}
	// An entry in use is never evicted: a second session cannot take its
	// room while the first holds it.
	c2, err := cache.Open(c.Dir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, []byte("xx"), 0o644); err != nil {
		t.Fatal(err)
	}
	bp, err := s.Publish(ctx, big)
	if err != nil {
		t.Fatal(err)
	}
	s2 := workspace.New(store, c2, nil, 0).Session()
	if _, err := s2.Materialize(ctx, bp); kind(err) != workspace.KindCacheFull {
		t.Fatalf("with the cache held: %v, want %s", err, workspace.KindCacheFull)
	}
	s.Close()
	if _, err := s2.Materialize(ctx, bp); err != nil {
		t.Fatalf("after the first session closed: %v", err)
	}
	s2.Close()
}

func TestCheckNamesTheStore(t *testing.T) {
	fake := artifacttest.NewFakeS3(t)
	store := fake.Open(t, "fleet")
	ws := open(t, store, nil)
	if err := ws.Check(context.Background()); err != nil {
		t.Fatalf("a working store: %v", err)
	}
	fake.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, `<Error><Code>InvalidAccessKeyId</Code><Message>no</Message></Error>`, http.StatusForbidden)
		return true
	})
	err := ws.Check(context.Background())
	if kind(err) != workspace.KindDenied || !strings.Contains(err.Error(), store.Location()) {
		t.Errorf("wrong credentials: %v, want %s naming %s", err, workspace.KindDenied, store.Location())
	}
	fake.Server.Close()
	err = ws.Check(context.Background())
	if kind(err) != workspace.KindUnavailable || !strings.Contains(err.Error(), store.Location()) {
		t.Errorf("unreachable: %v, want %s naming %s", err, workspace.KindUnavailable, store.Location())
	}
	if strings.Contains(err.Error(), "test-secret") {
		t.Errorf("error %q shows the secret key", err)
	}
}

func TestEndpointFromEnvironmentIsPathStyle(t *testing.T) {
	fake := artifacttest.NewFakeS3(t)
	t.Setenv("AWS_ENDPOINT_URL", fake.Server.URL)
	t.Setenv("AWS_REGION", "us-east-1")
	store, err := artifact.Open(context.Background(), "s3://"+artifacttest.Bucket+"/env?max_attempts=1")
	if err != nil {
		t.Fatal(err)
	}
	// A virtual-hosted request would go to gauntlet-test.127.0.0.1:PORT,
	// which does not resolve.
	if _, err := store.Put(context.Background(), strings.NewReader("x")); err != nil {
		t.Fatalf("put through AWS_ENDPOINT_URL: %v", err)
	}
	if keys := fake.Keys(t); len(keys) != 1 || !strings.HasPrefix(keys[0], "env/blobs/") {
		t.Errorf("keys %v", keys)
	}
}

func TestStoreURLDefault(t *testing.T) {
	state := t.TempDir()
	got, err := workspace.StoreURL("", state)
	if err != nil || got != "file://"+filepath.Join(state, "artifacts") {
		t.Errorf("default store %q, %v", got, err)
	}
	if got, _ := workspace.StoreURL("s3://b/p", state); got != "s3://b/p" {
		t.Errorf("given store %q", got)
	}
	if _, err := workspace.Open(context.Background(), workspace.Config{Store: "ftp://x", StateDir: state}); kind(err) != workspace.KindBadInput {
		t.Errorf("ftp store: %v", err)
	}
}

// A blob altered in the store fails its digest on the way in: nothing is
// materialised, and the error names the artifact and is not retried.
func TestCorruptArtifactIsNotRetried(t *testing.T) {
	ctx := context.Background()
	store, root := artifacttest.FileStore(t)
	ws := open(t, store, nil)
	s := ws.Session()
	defer s.Close()
	f := filepath.Join(t.TempDir(), "data.csv")
	if err := os.WriteFile(f, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := s.Publish(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(root, "blobs", "sha256", p.Digest.Hex())
	if err := os.Chmod(blob, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blob, []byte("a,b,label\n9,x,yes\n2,y,no\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = s.Materialize(ctx, p)
	var we *workspace.Error
	if !errors.As(err, &we) || we.Kind != workspace.KindCorrupt || we.Retryable() || !strings.Contains(err.Error(), p.Digest.Hex()) {
		t.Fatalf("corrupt blob: %v, want %s naming it", err, workspace.KindCorrupt)
	}
	if n, _ := ws.Cache().Size(); n != 0 {
		t.Errorf("the cache holds %d bytes of a corrupt artifact", n)
	}
}

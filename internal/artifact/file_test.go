package artifact_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/artifacttest"
)

func newFileFixture(t *testing.T) fixture {
	s, root := artifacttest.FileStore(t)
	return fixture{
		store: s,
		tamper: func(t *testing.T, d artifact.Digest, data []byte) {
			if err := os.WriteFile(filepath.Join(root, "blobs", "sha256", d.Hex()), data, 0o644); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func TestFileContract(t *testing.T) { runContract(t, newFileFixture) }

// A failed write must not leave its temporary file behind either: over many
// retried steps those would fill the disk unseen.
func TestFilePutFailureLeavesNoTempFile(t *testing.T) {
	root := t.TempDir()
	s, err := artifact.Open(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(context.Background(), &failAfter{n: 1 << 20, err: errSourceDied}); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	entries, err := os.ReadDir(filepath.Join(root, "blobs", "sha256"))
	if err != nil || len(entries) != 0 {
		t.Fatalf("blob directory holds %v (%v) after a failed Put", entries, err)
	}
}

func TestOpenFileLocations(t *testing.T) {
	ctx := context.Background()
	t.Chdir(t.TempDir())
	if _, err := artifact.Open(ctx, ""); err != nil {
		t.Fatalf("Open default: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(artifact.DefaultLocation, "blobs")); err != nil || !fi.IsDir() {
		t.Fatalf("default location not created under the working directory: %v", err)
	}
	s, err := artifact.Open(ctx, "relative/store")
	if err != nil {
		t.Fatal(err)
	}
	d := mustPut(t, s, []byte("x")).Digest
	if uri := s.URI(d); !strings.HasPrefix(uri, "file:///") {
		t.Errorf("URI %q is not an absolute file URL", uri)
	}
	for _, bad := range []string{"file://relative/path", "file://host/abs", "file:///abs?x=1", "ftp://host/x", "gs://bucket/x"} {
		if _, err := artifact.Open(ctx, bad); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
}

func TestFileCorruptRefIsDetected(t *testing.T) {
	ctx := context.Background()
	s, root := artifacttest.FileStore(t)
	if _, err := s.PutRef(ctx, "m/aliases", []byte(`{"champion":1}`), ""); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "refs", "m", "aliases@ref")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Change the data but not its recorded checksum, as a hand edit would.
	edited := strings.Replace(string(b), `"data":"`, `"data":"AAAA`, 1)
	if edited == string(b) {
		t.Fatalf("unexpected ref encoding %s", b)
	}
	if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRef(ctx, "m/aliases"); !errors.Is(err, artifact.ErrDigestMismatch) {
		t.Fatalf("GetRef of an edited ref: %v, want ErrDigestMismatch", err)
	}
}

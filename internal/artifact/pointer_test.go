package artifact_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/artifacttest"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
)

func TestPointerRoundTripsOnBothBackends(t *testing.T) {
	fake := artifacttest.NewFakeS3(t)
	for name, s := range map[string]artifact.Store{
		"file": func() artifact.Store { s, _ := artifacttest.FileStore(t); return s }(),
		"s3":   fake.Open(t, "runs/p"),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "m.json"), []byte("{}"), 0o644); err != nil {
				t.Fatal(err)
			}
			p, err := artifact.Publish(context.Background(), s, dir)
			if err != nil {
				t.Fatal(err)
			}
			if p.Kind != artifact.KindTree || !strings.HasPrefix(p.String(), s.Location()+"/trees/sha256/") {
				t.Fatalf("pointer %s in store %s", p, s.Location())
			}
			b, err := json.Marshal(map[string]artifact.Pointer{"model": p})
			if err != nil {
				t.Fatal(err)
			}
			var back map[string]artifact.Pointer
			if err := json.Unmarshal(b, &back); err != nil || back["model"] != p {
				t.Fatalf("JSON round trip: %v %+v", err, back)
			}
			if err := p.Check(s); err != nil {
				t.Fatal(err)
			}
		})
	}
	if got := fake.Open(t, "").Location(); got != "s3://"+artifacttest.Bucket {
		t.Fatalf("location without prefix %q", got)
	}
}

func TestParsePointerRefusesWhatIsNotOne(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in       string
		notOne   bool
		mentions string
	}{
		{"/data/train.csv", true, "want STORE/trees/sha256/HEX"},
		{"builtin:credit-risk?rows=10", true, ""},
		{"s3://bucket/trees/sha256/abc", false, "invalid digest"},
		{"s3://bucket/p?endpoint=x/trees/sha256/" + hex, false, "no credentials, query or fragment"},
		{"s3://user:pw@bucket/trees/sha256/" + hex, false, "no credentials"},
		{"file://relative/blobs/sha256/" + hex, false, "file:///absolute/path"},
		{"http://host/blobs/sha256/" + hex, false, "unsupported store scheme"},
	} {
		_, err := artifact.ParsePointer(tc.in)
		if err == nil {
			t.Errorf("%q parsed", tc.in)
			continue
		}
		if errors.Is(err, artifact.ErrNotPointer) != tc.notOne || !strings.Contains(err.Error(), tc.mentions) {
			t.Errorf("%q: %v", tc.in, err)
		}
		if strings.Contains(err.Error(), "pw@") {
			t.Errorf("%q: the error repeats a credential: %v", tc.in, err)
		}
	}
	p, err := artifact.ParsePointer("s3://bucket/a/b/trees/sha256/" + hex)
	if err != nil || p.Store != "s3://bucket/a/b" || p.Kind != artifact.KindTree || p.Digest.Hex() != hex {
		t.Fatalf("%+v %v", p, err)
	}
}

// TestContractReadsPointerDigests keeps the workflow side's reading of a
// pointer's digest (contract.ArtifactDigest, which may not import this
// package) in step with ParsePointer.
func TestContractReadsPointerDigests(t *testing.T) {
	s, _ := artifacttest.FileStore(t)
	for _, body := range []string{"a", "b", "c"} {
		f := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{f, filepath.Dir(f)} {
			p, err := artifact.Publish(context.Background(), s, path)
			if err != nil {
				t.Fatal(err)
			}
			if got := contract.ArtifactDigest(p.String()); got != string(p.Digest) {
				t.Fatalf("contract reads %s from %s", got, p)
			}
		}
	}
	for _, notOne := range []string{"/models/candidate", "s3://b/p/other/sha256/" + strings.Repeat("a", 64), "s3://b/trees/sha256/abc"} {
		if got := contract.ArtifactDigest(notOne); got != "" {
			t.Errorf("contract reads %q from %q", got, notOne)
		}
		if _, err := artifact.ParsePointer(notOne); err == nil {
			t.Errorf("ParsePointer accepts %q", notOne)
		}
	}
}

package artifact_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/artifacttest"
)

func newS3Fixture(t *testing.T) fixture {
	f := artifacttest.NewFakeS3(t)
	const prefix = "team/artifacts"
	return fixture{
		store: f.Open(t, prefix),
		tamper: func(t *testing.T, d artifact.Digest, data []byte) {
			key := prefix + "/blobs/sha256/" + d.Hex()
			if _, err := f.Backend.PutObject(artifacttest.Bucket, key, map[string]string{}, bytes.NewReader(data), int64(len(data)), nil); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func TestS3Contract(t *testing.T) { runContract(t, newS3Fixture) }

func TestS3KeysStayUnderPrefix(t *testing.T) {
	f := artifacttest.NewFakeS3(t)
	s := f.Open(t, "a/b")
	mustPut(t, s, []byte("x"))
	if _, err := s.PutRef(context.Background(), "r", []byte("y"), ""); err != nil {
		t.Fatal(err)
	}
	for _, k := range f.Keys(t) {
		if !strings.HasPrefix(k, "a/b/blobs/") && !strings.HasPrefix(k, "a/b/refs/") {
			t.Errorf("key %q outside the store's prefix", k)
		}
	}
}

// dropHalfway reads half of each PUT body and then cuts the connection, as a
// network failure in the middle of an upload would.
func dropHalfway(t *testing.T) artifacttest.Fault {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPut {
			return false
		}
		io.CopyN(io.Discard, r.Body, r.ContentLength/2)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return true
		}
		conn.Close()
		return true
	}
}

func serverError(status int, code string) artifacttest.Fault {
	return func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>`+code+`</Code><Message>injected</Message></Error>`)
		return true
	}
}

func TestS3DroppedUploadLeavesNothing(t *testing.T) {
	ctx := context.Background()
	f := artifacttest.NewFakeS3(t)
	s := f.Open(t, "")
	v1, err := s.PutRef(ctx, "model/aliases", []byte("champion=1"), "")
	if err != nil {
		t.Fatal(err)
	}
	before := f.Keys(t)

	f.SetFault(dropHalfway(t))
	_, err = s.Put(ctx, bytes.NewReader(bytes.Repeat([]byte("big model "), 200_000)))
	if err == nil || !artifact.IsRetryable(err) {
		t.Fatalf("Put over a dropped connection: %v; want a retryable error", err)
	}
	_, err = s.PutRef(ctx, "model/aliases", []byte("champion=2"), v1)
	if err == nil || !artifact.IsRetryable(err) {
		t.Fatalf("PutRef over a dropped connection: %v; want a retryable error", err)
	}
	f.SetFault(nil)

	if after := f.Keys(t); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("keys after failed uploads = %v, want unchanged %v", after, before)
	}
	ref, err := s.GetRef(ctx, "model/aliases")
	if err != nil || string(ref.Data) != "champion=1" || ref.Version != v1 {
		t.Fatalf("ref after failed update = %+v, %v; want the original", ref, err)
	}
}

func TestS3ErrorClassification(t *testing.T) {
	ctx := context.Background()
	f := artifacttest.NewFakeS3(t)
	s := f.Open(t, "")
	info := mustPut(t, s, []byte("present"))
	v, err := s.PutRef(ctx, "r", []byte("x"), "")
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		status int
		code   string
	}{
		{http.StatusInternalServerError, "InternalError"},
		{http.StatusServiceUnavailable, "SlowDown"},
		{http.StatusBadGateway, "BadGateway"},
	} {
		f.SetFault(serverError(tc.status, tc.code))
		calls := map[string]error{}
		_, calls["Stat"] = s.Stat(ctx, info.Digest)
		_, calls["Put"] = s.Put(ctx, strings.NewReader("new content"))
		_, calls["GetRef"] = s.GetRef(ctx, "r")
		_, calls["PutRef"] = s.PutRef(ctx, "r", []byte("y"), v)
		_, calls["ListBlobs"] = s.ListBlobs(ctx, "")
		for op, err := range calls {
			if err == nil || !artifact.IsRetryable(err) {
				t.Errorf("%s under %d %s: %v; want a retryable error", op, tc.status, tc.code, err)
			}
			if errors.Is(err, artifact.ErrNotFound) || errors.Is(err, artifact.ErrConflict) {
				t.Errorf("%s under %d: %v misclassified as not-found or conflict", op, tc.status, err)
			}
		}
	}

	f.SetFault(serverError(http.StatusForbidden, "AccessDenied"))
	if _, err := s.Stat(ctx, info.Digest); err == nil || artifact.IsRetryable(err) {
		t.Errorf("403 AccessDenied: %v; want a permanent error", err)
	}
	f.SetFault(nil)
	if _, err := s.Stat(ctx, artifact.DigestBytes([]byte("absent"))); !errors.Is(err, artifact.ErrNotFound) || artifact.IsRetryable(err) {
		t.Errorf("404: %v; want permanent ErrNotFound", err)
	}
}

func TestOpenS3Locations(t *testing.T) {
	ctx := context.Background()
	f := artifacttest.NewFakeS3(t)
	for _, bad := range []string{
		"s3://AKIA:s3cr3tvalue@bucket/prefix?region=us-east-1",
		"s3://bucket/p?region=us-east-1&secret_access_key=s3cr3tvalue",
		"s3://bucket/p?region=us-east-1&region=eu-west-1",
		"s3://bucket/p?region=us-east-1&endpoint=ftp://host",
		"s3://bucket/p?region=us-east-1&endpoint=http://k:s@host",
		"s3://bucket/p?region=us-east-1&max_attempts=0",
		"s3:///p?region=us-east-1",
		"s3://bucket/p", // no region anywhere: the test cleared AWS_REGION
	} {
		_, err := artifact.Open(ctx, bad)
		if err == nil {
			t.Errorf("Open(%q) succeeded", bad)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3tvalue") {
			t.Errorf("Open(%q) error leaks the secret: %v", bad, err)
		}
	}
	t.Setenv("AWS_REGION", "eu-west-1")
	if _, err := artifact.Open(ctx, "s3://bucket?endpoint="+f.Server.URL); err != nil {
		t.Errorf("region from the environment: %v", err)
	}
}

// Package artifacttest provides artifact stores for tests of packages built
// on the artifact store: a directory store and an S3 store served by gofakes3
// over real HTTP to the real SDK client, with fault injection.
package artifacttest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Bucket is the bucket FakeS3 serves.
const Bucket = "gauntlet-test"

// FileStore opens a store in a fresh temporary directory and returns it with
// that directory.
func FileStore(t testing.TB) (artifact.Store, string) {
	t.Helper()
	root := t.TempDir()
	s, err := artifact.Open(context.Background(), "file://"+root)
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

// FakeS3 is gofakes3 behind an httptest server.
type FakeS3 struct {
	Backend *s3mem.Backend
	Server  *httptest.Server
	fault   atomic.Value // of Fault
}

// Fault may answer a request itself and report true, or let it through.
type Fault func(w http.ResponseWriter, r *http.Request) bool

// NewFakeS3 starts a fake S3 holding an empty Bucket. It points the AWS SDK's
// default credential chain at dummy environment credentials and away from the
// machine's own AWS configuration, so it must not be used by parallel tests.
func NewFakeS3(t testing.TB) *FakeS3 {
	t.Helper()
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "test-key",
		"AWS_SECRET_ACCESS_KEY":       "test-secret",
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_REGION":                  "",
		"AWS_DEFAULT_REGION":          "",
		"AWS_CONFIG_FILE":             none,
		"AWS_SHARED_CREDENTIALS_FILE": none,
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_ENDPOINT_URL":            "",
		"AWS_ENDPOINT_URL_S3":         "",
	} {
		t.Setenv(k, v)
	}
	f := &FakeS3{Backend: s3mem.New()}
	if err := f.Backend.CreateBucket(Bucket); err != nil {
		t.Fatal(err)
	}
	h := gofakes3.New(f.Backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server()
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fn, _ := f.fault.Load().(Fault); fn != nil && fn(w, r) {
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Server.Close)
	return f
}

// Open opens the store at s3://Bucket/prefix with SDK retries off, so
// injected faults surface on the first attempt.
func (f *FakeS3) Open(t testing.TB, prefix string) artifact.Store {
	t.Helper()
	s, err := artifact.Open(context.Background(),
		"s3://"+Bucket+"/"+prefix+"?region=us-east-1&max_attempts=1&endpoint="+f.Server.URL)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// SetFault installs fn for subsequent requests; nil removes it.
func (f *FakeS3) SetFault(fn Fault) { f.fault.Store(fn) }

// Keys lists every key in Bucket, bypassing HTTP.
func (f *FakeS3) Keys(t testing.TB) []string {
	t.Helper()
	res, err := f.Backend.ListBucket(Bucket, nil, gofakes3.ListBucketPage{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range res.Contents {
		keys = append(keys, o.Key)
	}
	return keys
}

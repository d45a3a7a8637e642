package fleettest

import (
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestS3AcrossHosts(t *testing.T) {
	f := New(t)
	store, app := f.AddHost("store"), f.AddHost("app")
	s := StartS3(t, store, "artifacts")
	t.Logf("S3 server answered %s after start", s.Startup.Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A client on another host writes and reads, conditions included.
	c := s.Client(app)
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("artifacts"), Key: aws.String("runs/1/model.bin"), Body: strings.NewReader("weights")}); err != nil {
		t.Fatalf("put from app: %v", err)
	}
	if err := s.CheckConditionalWrites(ctx, app); err != nil {
		t.Fatalf("conditional writes from app: %v", err)
	}

	// The object is a file in the store host's private directory only.
	obj := filepath.Join(store.Dir(), "s3", "artifacts", "runs", "1", "model.bin")
	if out, err := store.Output(Spec{Args: []string{"cat", obj}}); err != nil || string(out) != "weights" {
		t.Fatalf("object on the store host: %q, %v", out, err)
	}
	if _, err := app.Output(Spec{Args: []string{"cat", obj}}); err == nil {
		t.Fatal("the app host sees the store's files")
	}

	// Wrong credentials are refused, and the refusal names no secret.
	bad := s3.New(s3.Options{
		Region: S3Region, BaseEndpoint: aws.String(s.Endpoint()), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKey, "not-"+s.SecretKey(), ""),
		HTTPClient:  &http.Client{Transport: &http.Transport{DialContext: app.DialContext}},
	})
	_, err := bad.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("artifacts"), Key: aws.String("runs/1/model.bin")})
	if code := statusCode(err); code != http.StatusForbidden || strings.Contains(err.Error(), s.SecretKey()) {
		t.Fatalf("wrong secret: %v (status %d); want 403 without the secret", err, code)
	}

	if err := s.Proc.Stop(30 * time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if strings.Contains(s.Proc.Output(), s.SecretKey()) {
		t.Fatal("the server log holds the secret key")
	}
}

// TestConditionalCheckCatchesIgnoredConditions runs the check against a
// server that stores every PUT, conditions or not: it must refuse it.
func TestConditionalCheckCatchesIgnoredConditions(t *testing.T) {
	f := New(t)
	h := f.AddHost("store")
	l, err := h.Listen("tcp", h.Addr(S3Port))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	objects := map[string][]byte{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.Method {
		case http.MethodPut:
			b, _ := io.ReadAll(r.Body)
			objects[r.URL.Path] = b
			w.Header().Set("ETag", fmt.Sprintf(`"%x"`, md5.Sum(b)))
		case http.MethodGet:
			w.Write(objects[r.URL.Path])
		case http.MethodDelete:
			delete(objects, r.URL.Path)
			w.WriteHeader(http.StatusNoContent)
		}
	})}
	go srv.Serve(l)
	defer srv.Close()

	s := &S3{Host: h, Bucket: "artifacts", AccessKey: "key", secretKey: "secret"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = s.CheckConditionalWrites(ctx, h)
	if err == nil || !strings.Contains(err.Error(), "ignores the condition") {
		t.Fatalf("check against a server ignoring conditions: %v", err)
	}
}

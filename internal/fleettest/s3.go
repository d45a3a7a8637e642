package fleettest

import (
	"bytes"
	"context"
	"errors"
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

// S3Port is the port every fleet S3 server listens on, on its host's address.
const S3Port = 7070

// S3Region is the region the server signs for.
const S3Region = "us-east-1"

// S3 is an S3-compatible server on a host: Versity's S3 gateway (versitygw,
// Apache-2.0) over the host's private directory. It implements conditional
// writes (If-None-Match: *, If-Match: <etag>) atomically, with lock files,
// which is what compare-and-swap on S3 needs.
type S3 struct {
	Host   *Host
	Proc   *Proc
	Bucket string
	// AccessKey and the secret are generated per server. The secret goes
	// to the server and to clients through the environment only.
	AccessKey string
	// Startup is how long the server took from start until it answered a
	// signed request.
	Startup time.Duration

	secretKey string
}

// StartS3 starts the server on h, creates bucket, and checks that
// conditional writes behave as compare-and-swap needs (see
// CheckConditionalWrites).
func StartS3(t testing.TB, h *Host, bucket string) *S3 {
	t.Helper()
	gw := Tool(t, "versitygw")
	s := &S3{Host: h, Bucket: bucket, AccessKey: "fleet" + secret(t)[:12], secretKey: secret(t)}
	dir := filepath.Join(h.Dir(), "s3")
	if _, err := h.Output(Spec{Args: []string{"mkdir", "-p", dir}}); err != nil {
		t.Fatalf("fleettest: %v", err)
	}
	start := time.Now()
	var err error
	s.Proc, err = h.Start("s3", Spec{
		Args: []string{gw, "--port", h.Addr(S3Port), "--region", S3Region, "--quiet", "posix", dir},
		Env:  []string{"ROOT_ACCESS_KEY_ID=" + s.AccessKey, "ROOT_SECRET_ACCESS_KEY=" + s.secretKey},
	}, nil)
	if err != nil {
		t.Fatalf("fleettest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := s.Client(h)
	for {
		_, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
		if err == nil {
			break
		}
		select {
		case <-s.Proc.Done():
			t.Fatalf("fleettest: S3 server on %s exited (%v): %s", h.Name, s.Proc.Err(), tail(s.Proc.Output(), 20))
		case <-ctx.Done():
			t.Fatalf("fleettest: S3 server on %s does not answer: %v", h.Name, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	s.Startup = time.Since(start)
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("fleettest: create bucket %s: %v", bucket, err)
	}
	if err := s.CheckConditionalWrites(ctx, h); err != nil {
		t.Fatalf("fleettest: S3 server on %s: %v", h.Name, err)
	}
	return s
}

// Endpoint is the server's URL on the fleet's network.
func (s *S3) Endpoint() string { return "http://" + s.Host.Addr(S3Port) }

// Env is what an AWS SDK client needs to reach the server: credentials,
// region and the endpoint override. Address the bucket path-style
// (s3://bucket/key is http://endpoint/bucket/key): the server has no DNS
// name per bucket.
func (s *S3) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.secretKey,
		"AWS_REGION=" + S3Region,
		"AWS_ENDPOINT_URL_S3=" + s.Endpoint(),
	}
}

// SecretKey is the secret access key, for a client in the test process.
func (s *S3) SecretKey() string { return s.secretKey }

// Client is an S3 client in the test process that connects from host from.
func (s *S3) Client(from *Host) *s3.Client {
	return s3.New(s3.Options{
		Region:       S3Region,
		BaseEndpoint: aws.String(s.Endpoint()),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.secretKey, ""),
		HTTPClient:   &http.Client{Transport: &http.Transport{DialContext: from.DialContext}},
	})
}

// CheckConditionalWrites proves on a scratch key that the server evaluates
// PutObject's conditions: If-None-Match: * creates once, If-Match replaces
// only the version it names, and of several writers replacing the same
// version exactly one wins. A server that ignored the headers would turn
// every compare-and-swap into last-writer-wins.
func (s *S3) CheckConditionalWrites(ctx context.Context, from *Host) error {
	c := s.Client(from)
	key := fmt.Sprintf("fleettest/cas-check-%d", time.Now().UnixNano())
	put := func(body string, cond func(*s3.PutObjectInput)) (string, error) {
		in := &s3.PutObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key), Body: strings.NewReader(body)}
		cond(in)
		out, err := c.PutObject(ctx, in)
		if err != nil {
			return "", err
		}
		return aws.ToString(out.ETag), nil
	}
	ifNone := func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") }
	ifMatch := func(etag string) func(*s3.PutObjectInput) {
		return func(in *s3.PutObjectInput) { in.IfMatch = aws.String(etag) }
	}
	defer func() {
		_, _ = c.DeleteObject(context.WithoutCancel(ctx), &s3.DeleteObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
	}()

	etag, err := put("v1", ifNone)
	if err != nil {
		return fmt.Errorf("conditional create of s3://%s/%s: %w", s.Bucket, key, err)
	}
	if _, err := put("v1 again", ifNone); statusCode(err) != http.StatusPreconditionFailed {
		return fmt.Errorf("second create with If-None-Match: * of s3://%s/%s: %v; want 412: the server ignores the condition", s.Bucket, key, err)
	}
	if _, err := put("stale", ifMatch(`"00000000000000000000000000000000"`)); statusCode(err) != http.StatusPreconditionFailed {
		return fmt.Errorf("replace with a wrong If-Match of s3://%s/%s: %v; want 412", s.Bucket, key, err)
	}

	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() { _, errs[i] = put(fmt.Sprintf("writer %d", i), ifMatch(etag)) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch code := statusCode(err); {
		case err == nil && winner >= 0:
			return fmt.Errorf("writers %d and %d both replaced version %s of s3://%s/%s: If-Match is not atomic", winner, i, etag, s.Bucket, key)
		case err == nil:
			winner = i
		case code != http.StatusPreconditionFailed && code != http.StatusConflict:
			return fmt.Errorf("concurrent replace of s3://%s/%s: %w", s.Bucket, key, err)
		}
	}
	if winner < 0 {
		return fmt.Errorf("none of %d writers replaced version %s of s3://%s/%s", writers, etag, s.Bucket, key)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
	if err != nil {
		return err
	}
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	if err != nil {
		return err
	}
	if want := fmt.Sprintf("writer %d", winner); !bytes.Equal(body, []byte(want)) {
		return fmt.Errorf("s3://%s/%s holds %q after writer %d won", s.Bucket, key, body, winner)
	}
	return nil
}

// statusCode is the HTTP status of a failed S3 call, or 0.
func statusCode(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

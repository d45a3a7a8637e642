package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// s3Store keeps artifacts in a bucket with the same layout as fileStore,
// under an optional key prefix:
//
//	<prefix>blobs/sha256/<hex>
//	<prefix>refs/<name>
//
// Every object is written by a single PutObject, so readers see a whole
// object or none. Ref updates are conditional writes (If-None-Match: * to
// create, If-Match: <etag> to replace), which S3 has evaluated atomically
// since November 2024. An S3-compatible store that ignores these headers
// silently loses compare-and-swap; see the package documentation.
type s3Store struct {
	client *s3.Client
	bucket string
	prefix string // "" or ends with "/"
}

// maxRefSize bounds what GetRef reads into memory: refs are meant to be small.
const maxRefSize = 16 << 20

func (s *s3Store) blobKey(d Digest) string { return s.prefix + "blobs/sha256/" + d.Hex() }

func (s *s3Store) refKey(name string) string { return s.prefix + "refs/" + name }

func (s *s3Store) URI(d Digest) string { return "s3://" + s.bucket + "/" + s.blobKey(d) }

func (s *s3Store) Location() string {
	return "s3://" + s.bucket + strings.TrimSuffix("/"+s.prefix, "/")
}

// Put spools the content to a local temporary file first: the key is the
// content's hash, which is only known at the end, and a seekable body lets the
// SDK sign and retry the upload. The SHA-256 is sent as the object checksum
// so S3 itself rejects an upload that arrives altered.
func (s *s3Store) Put(ctx context.Context, r io.Reader) (BlobInfo, error) {
	spool, err := os.CreateTemp("", "gauntlet-artifact-*")
	if err != nil {
		return BlobInfo{}, fmt.Errorf("artifact: put blob: spool: %w", err)
	}
	defer func() {
		spool.Close()
		os.Remove(spool.Name())
	}()
	h := sha256.New()
	size, err := io.Copy(io.MultiWriter(spool, h), contextReader{ctx, r})
	if err != nil {
		return BlobInfo{}, fmt.Errorf("artifact: put blob: %w", err)
	}
	info := BlobInfo{Digest: digestOf(h), Size: size}
	key := s.blobKey(info.Digest)

	switch _, err := s.Stat(ctx, info.Digest); {
	case err == nil:
		return info, nil
	case !errors.Is(err, ErrNotFound):
		return BlobInfo{}, fmt.Errorf("artifact: put %s: %w", info.Digest, err)
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return BlobInfo{}, fmt.Errorf("artifact: put %s: rewind spool: %w", info.Digest, err)
	}
	_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:         &s.bucket,
		Key:            &key,
		Body:           spool,
		ContentLength:  aws.Int64(size),
		ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(h.Sum(nil))),
	})
	if err != nil {
		return BlobInfo{}, fmt.Errorf("artifact: put %s: %w", s.URI(info.Digest), err)
	}
	return info, nil
}

func (s *s3Store) Get(ctx context.Context, d Digest) (io.ReadCloser, error) {
	if _, err := ParseDigest(string(d)); err != nil {
		return nil, err
	}
	key := s.blobKey(d)
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return nil, fmt.Errorf("artifact: get %s: %w", s.URI(d), s3NotFound(err))
	}
	return newVerifyingReader(out.Body, d, s.URI(d)), nil
}

func (s *s3Store) Stat(ctx context.Context, d Digest) (BlobInfo, error) {
	if _, err := ParseDigest(string(d)); err != nil {
		return BlobInfo{}, err
	}
	key := s.blobKey(d)
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return BlobInfo{}, fmt.Errorf("artifact: stat %s: %w", s.URI(d), s3NotFound(err))
	}
	return BlobInfo{Digest: d, Size: aws.ToInt64(out.ContentLength)}, nil
}

func (s *s3Store) ListBlobs(ctx context.Context, hexPrefix string) ([]BlobInfo, error) {
	dir := s.prefix + "blobs/sha256/"
	var out []BlobInfo
	err := s.list(ctx, dir+hexPrefix, func(key string, size int64) {
		if d, err := ParseDigest(strings.TrimPrefix(key, dir)); err == nil {
			out = append(out, BlobInfo{Digest: d, Size: size})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("artifact: list blobs %q: %w", hexPrefix, err)
	}
	return out, nil
}

func (s *s3Store) GetRef(ctx context.Context, name string) (Ref, error) {
	if err := ValidateRefName(name); err != nil {
		return Ref{}, err
	}
	key := s.refKey(name)
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return Ref{}, fmt.Errorf("artifact: get ref %s: %w", name, s3NotFound(err))
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, maxRefSize+1))
	if err != nil {
		return Ref{}, fmt.Errorf("artifact: get ref %s: %w", name, err)
	}
	if len(b) > maxRefSize {
		return Ref{}, fmt.Errorf("artifact: get ref %s: larger than %d bytes", name, maxRefSize)
	}
	env, err := decodeRef(name, b)
	if err != nil {
		return Ref{}, err
	}
	return Ref{Name: name, Data: env.Data, Version: s3Version(env.Generation, aws.ToString(out.ETag))}, nil
}

// PutRef's version is "<generation>:<etag>". The ETag is what S3 compares;
// carrying the generation alongside saves reading the object again to learn
// the next one, and is trustworthy because If-Match pins the exact bytes that
// generation was read from.
func (s *s3Store) PutRef(ctx context.Context, name string, data []byte, ifVersion string) (string, error) {
	if err := ValidateRefName(name); err != nil {
		return "", err
	}
	in := &s3.PutObjectInput{Bucket: &s.bucket, Key: aws.String(s.refKey(name))}
	var gen uint64
	if ifVersion == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		g, etag, ok := strings.Cut(ifVersion, ":")
		n, err := strconv.ParseUint(g, 10, 64)
		if !ok || err != nil || etag == "" {
			return "", conflictError(name, ifVersion, "(not a version of this store)")
		}
		gen = n
		in.IfMatch = aws.String(`"` + etag + `"`)
	}
	body, err := encodeRef(gen+1, data)
	if err != nil {
		return "", fmt.Errorf("artifact: put ref %s: %w", name, err)
	}
	in.Body = strings.NewReader(string(body))
	in.ContentLength = aws.Int64(int64(len(body)))
	out, err := s.client.PutObject(ctx, in)
	if err != nil {
		switch s3StatusCode(err) {
		// 412: the condition failed. 409: a concurrent conditional write to
		// the same key won the race. 404: If-Match on a deleted object.
		case http.StatusPreconditionFailed, http.StatusConflict, http.StatusNotFound:
			return "", fmt.Errorf("artifact: put ref %s: expected version %q: %w: %w", name, ifVersion, ErrConflict, err)
		}
		return "", fmt.Errorf("artifact: put ref %s: %w", name, err)
	}
	return s3Version(gen+1, aws.ToString(out.ETag)), nil
}

func (s *s3Store) ListRefs(ctx context.Context, prefix string) ([]string, error) {
	dir := s.prefix + "refs/"
	var out []string
	err := s.list(ctx, dir+prefix, func(key string, _ int64) {
		out = append(out, strings.TrimPrefix(key, dir))
	})
	if err != nil {
		return nil, fmt.Errorf("artifact: list refs %q: %w", prefix, err)
	}
	return out, nil
}

func (s *s3Store) list(ctx context.Context, prefix string, each func(key string, size int64)) error {
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, o := range page.Contents {
			each(aws.ToString(o.Key), aws.ToInt64(o.Size))
		}
	}
	return nil
}

func s3Version(gen uint64, etag string) string {
	return strconv.FormatUint(gen, 10) + ":" + strings.Trim(etag, `"`)
}

func s3StatusCode(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func s3NotFound(err error) error {
	if s3StatusCode(err) == http.StatusNotFound {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

package workspace

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
)

// BuiltinScheme starts the URIs of generated data sets, which the loader
// makes rather than reads.
const BuiltinScheme = "builtin:"

// Data is a data set ready for the loader.
type Data struct {
	// Path is the local file to read, or the builtin: URI to generate.
	Path string
	// Source is what errors and lineage call the data: the absolute path,
	// the URL without credentials or query, or the artifact pointer.
	Source string
	// Digest is the SHA-256 of the file's bytes; empty for builtin: data.
	Digest artifact.Digest
}

// Data resolves src into a local file: a path or file:// URL is read where
// it is; an artifact pointer (a blob another step wrote), an s3:// object
// (inside the store's bucket or not, with the same credential chain) or an
// http(s):// URL is fetched into the cache, where it stays until the
// session closes. The loader detects the format from the content.
func (s *Session) Data(ctx context.Context, src string) (Data, error) {
	src = strings.TrimSpace(src)
	if src == "" {
		return Data{}, &Error{Kind: KindBadInput, Err: errors.New("no data source given")}
	}
	if strings.HasPrefix(src, BuiltinScheme) {
		return Data{Path: src, Source: src}, nil
	}
	if p, err := artifact.ParsePointer(src); err == nil {
		if p.Kind != artifact.KindBlob {
			return Data{}, &Error{Kind: KindBadInput, Err: fmt.Errorf("%s is a directory artifact; data is one file", p)}
		}
		path, err := s.Materialize(ctx, p)
		if err != nil {
			return Data{}, err
		}
		return Data{Path: path, Source: p.String(), Digest: p.Digest}, nil
	} else if !errors.Is(err, artifact.ErrNotPointer) {
		return Data{}, &Error{Kind: KindBadInput, Err: err}
	}
	if !strings.Contains(src, "://") {
		return localData(src)
	}
	u, err := url.Parse(src)
	if err != nil {
		return Data{}, &Error{Kind: KindBadInput, Err: fmt.Errorf("%s: malformed URL", Redact(src))}
	}
	if u.User != nil {
		return Data{}, &Error{Kind: KindBadInput, Err: fmt.Errorf("%s: credentials in a data URL are refused: they would be kept in the run's history (s3:// uses the AWS SDK's credential chain)", Redact(src))}
	}
	switch u.Scheme {
	case "file":
		if (u.Host != "" && u.Host != "localhost") || !filepath.IsAbs(u.Path) || u.RawQuery != "" {
			return Data{}, &Error{Kind: KindBadInput, Err: fmt.Errorf("%s: want file:///absolute/path", Redact(src))}
		}
		return localData(u.Path)
	case "s3":
		body, size, err := artifact.OpenS3Object(ctx, src)
		if err != nil {
			return Data{}, classify(err)
		}
		defer body.Close()
		if size > s.w.maxDownload {
			return Data{}, &Error{Kind: KindTooLarge, Err: fmt.Errorf("%s: %d bytes, more than the %d a data set may have", Redact(src), size, s.w.maxDownload)}
		}
		return s.ingest(ctx, src, body)
	case "http", "https":
		return s.fetchHTTP(ctx, u)
	}
	return Data{}, &Error{Kind: KindBadInput, Err: fmt.Errorf("%s: unsupported scheme %q (want a path, file://, s3://, https://, an artifact pointer or builtin:)", Redact(src), u.Scheme)}
}

func (s *Session) fetchHTTP(ctx context.Context, u *url.URL) (Data, error) {
	name := Redact(u.String())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Data{}, &Error{Kind: KindBadInput, Err: fmt.Errorf("GET %s: malformed request", name)}
	}
	resp, err := s.w.http.Do(req)
	if err != nil {
		// url.Error repeats the whole URL, query included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Data{}, classify(fmt.Errorf("GET %s: %w", name, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Data{}, classify(&httpStatus{url: name, code: resp.StatusCode})
	}
	if resp.ContentLength > s.w.maxDownload {
		return Data{}, &Error{Kind: KindTooLarge, Err: fmt.Errorf("GET %s: %d bytes, more than the %d a data set may have", name, resp.ContentLength, s.w.maxDownload)}
	}
	return s.ingest(ctx, u.String(), resp.Body)
}

func (s *Session) ingest(ctx context.Context, src string, r io.Reader) (Data, error) {
	l, d, err := s.w.cache.Ingest(ctx, r, s.w.maxDownload)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Data{}, classify(fmt.Errorf("fetch %s: %w", Redact(src), err))
	}
	if err := s.hold(l); err != nil {
		return Data{}, err
	}
	return Data{Path: l.Path(), Source: Redact(src), Digest: d}, nil
}

// localData hashes a file on this host.
func localData(path string) (Data, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Data{}, &Error{Kind: KindBadInput, Err: fmt.Errorf("%s: %w", path, err)}
	}
	f, err := os.Open(abs)
	if err != nil {
		return Data{}, &Error{Kind: KindBadInput, Err: err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Data{}, classify(err)
	}
	if !fi.Mode().IsRegular() {
		return Data{}, &Error{Kind: KindBadInput, Err: fmt.Errorf("%s: not a regular file", abs)}
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return Data{}, classify(fmt.Errorf("read %s: %w", abs, err))
	}
	d, err := artifact.ParseDigest(hex.EncodeToString(h.Sum(nil)))
	if err != nil {
		return Data{}, err
	}
	return Data{Path: abs, Source: abs, Digest: d}, nil
}

// Redact is a data source or URL as errors, logs and lineage may show it:
// without user information, query or fragment, any of which may hold a
// secret (a presigned URL's signature, a token).
func Redact(src string) string {
	if !strings.Contains(src, "://") {
		return src
	}
	u, err := url.Parse(src)
	if err != nil {
		scheme, _, _ := strings.Cut(src, "://")
		return scheme + "://(malformed URL)"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}

// IsNotExist reports a data source or artifact that is not there.
func IsNotExist(err error) bool {
	var e *Error
	return errors.Is(err, fs.ErrNotExist) || errors.As(err, &e) && e.Kind == KindNotFound
}

// Fingerprint is the content digest of what a step input names, when it
// names a file or directory: a file, directory or URL (s3://, http(s)://,
// file://) is read and hashed (a directory is published, as a step taking
// it would); a pointer's digest is its own text, and any other value (a
// column name, a builtin: URI) is not content. It is how a step cache key
// tells a CSV edited in place from the one a result was cached for.
func (s *Session) Fingerprint(ctx context.Context, v string) (artifact.Digest, bool, error) {
	v = strings.TrimSpace(v)
	if v == "" || strings.HasPrefix(v, BuiltinScheme) {
		return "", false, nil
	}
	if _, err := artifact.ParsePointer(v); err == nil || !errors.Is(err, artifact.ErrNotPointer) {
		return "", false, nil
	}
	if !strings.Contains(v, "://") {
		fi, err := os.Stat(v)
		if err != nil {
			return "", false, nil
		}
		if fi.IsDir() {
			p, err := s.Publish(ctx, v)
			if err != nil {
				return "", false, err
			}
			return p.Digest, true, nil
		}
	}
	scheme, _, _ := strings.Cut(v, "://")
	switch scheme {
	case v, "file", "s3", "http", "https":
	default:
		return "", false, nil
	}
	d, err := s.Data(ctx, v)
	if err != nil {
		return "", false, err
	}
	return d.Digest, true, nil
}

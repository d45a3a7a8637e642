package workspace

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"strconv"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/cache"
)

// Kinds of Error. They become the Temporal error type of a failed step,
// which `retry.non_retryable` can name.
const (
	// KindUnavailable: the store or a data source did not answer, timed
	// out, throttled or failed on its side (5xx). Retried.
	KindUnavailable = "StoreUnavailable"
	// KindDenied: the store or source refused the credentials (401, 403)
	// or they are missing. Not retried: another attempt has the same ones.
	KindDenied = "StoreAccessDenied"
	// KindNotFound: the artifact or data object does not exist. Not
	// retried.
	KindNotFound = "ArtifactNotFound"
	// KindCorrupt: content that does not hash to its digest. Not retried.
	KindCorrupt = "ArtifactCorrupt"
	// KindCacheFull: the local cache cannot hold the artifact while other
	// steps on this host use what it holds. Retried: they end.
	KindCacheFull = "CacheFull"
	// KindTooLarge: larger than the whole local cache or the download
	// bound. Not retried.
	KindTooLarge = "ArtifactTooLarge"
	// KindBadInput: a malformed location, an unsupported scheme, a
	// pointer into another store, a missing local file. Not retried.
	KindBadInput = "BadInput"
)

// Error is a failure to reach, read or write an artifact or a data source.
type Error struct {
	Kind string
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Retryable says whether another attempt may succeed.
func (e *Error) Retryable() bool { return e.Kind == KindUnavailable || e.Kind == KindCacheFull }

// ErrorKind is the kind a failed step reports.
func (e *Error) ErrorKind() string { return e.Kind }

// Classify gives a store error from outside the workspace (a checkpoint
// read or written through the Store directly) its kind, as the workspace's
// own errors have; it returns an *Error unchanged.
func Classify(err error) error { return classify(err) }

// classify wraps err, whose message names the location, with its kind.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var we *Error
	if errors.As(err, &we) {
		return err
	}
	return &Error{Kind: kindOf(err), Err: err}
}

func kindOf(err error) string {
	var hs *httpStatus
	status := 0
	if errors.As(err, &hs) {
		status = hs.code
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var api smithy.APIError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return KindUnavailable
	case errors.Is(err, artifact.ErrOtherStore), errors.Is(err, artifact.ErrNotRegular):
		return KindBadInput
	case errors.Is(err, artifact.ErrDigestMismatch):
		return KindCorrupt
	case errors.Is(err, artifact.ErrNotFound), status == http.StatusNotFound:
		return KindNotFound
	case errors.Is(err, cache.ErrTooLarge):
		return KindTooLarge
	case errors.Is(err, cache.ErrFull):
		return KindCacheFull
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return KindDenied
	case errors.As(err, &api) && deniedCodes[api.ErrorCode()]:
		return KindDenied
	case errors.Is(err, fs.ErrNotExist):
		return KindBadInput
	case artifact.IsRetryable(err), status >= 500, status == http.StatusTooManyRequests, status == http.StatusRequestTimeout:
		return KindUnavailable
	case status >= 400:
		return KindBadInput
	}
	// Local file system errors (a full disk) and the unforeseen: worth
	// another attempt, perhaps on another host.
	return KindUnavailable
}

// deniedCodes are S3's and the SDK's names for credentials that are wrong
// or missing.
var deniedCodes = map[string]bool{
	"AccessDenied": true, "InvalidAccessKeyId": true, "SignatureDoesNotMatch": true,
	"ExpiredToken": true, "InvalidToken": true,
}

// httpStatus is a non-2xx answer of an http(s) data source.
type httpStatus struct {
	url  string
	code int
}

func (e *httpStatus) Error() string {
	return "GET " + e.url + ": " + http.StatusText(e.code) + " (" + strconv.Itoa(e.code) + ")"
}

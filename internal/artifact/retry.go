package artifact

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
)

// IsRetryable reports whether err is transient: an S3 5xx, throttling, a
// timeout or a dropped connection, where trying the same call again may
// succeed. Everything else (missing objects, version conflicts, corrupt
// content, bad input, local file system errors) is permanent: retrying with
// the same input fails the same way.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, ErrConflict) ||
		errors.Is(err, ErrNotFound) || errors.Is(err, ErrDigestMismatch) {
		return false
	}
	if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary {
		return true
	}
	return retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary
}

package steps

import (
	"errors"
	"fmt"
)

// Error classifies a step failure. Kind becomes the Temporal error type that
// `retry.non_retryable` in a pipeline names; Retryable false stops Temporal
// from retrying what another attempt cannot fix (bad data, a failed gate).
type Error struct {
	Kind      string
	Retryable bool
	Err       error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Permanent marks err as not worth retrying.
func Permanent(kind string, err error) error {
	return &Error{Kind: kind, Retryable: false, Err: err}
}

// Permanentf formats a permanent failure.
func Permanentf(kind, format string, args ...any) error {
	return Permanent(kind, fmt.Errorf(format, args...))
}

// Classify reports the kind and retryability of err. Errors that say for
// themselves whether they are retryable (a `Retryable() bool` method, as the
// data loaders' errors have) are honoured, with their kind when they name
// one (an `ErrorKind() string` method, as the artifact store's errors
// have); anything else is retryable.
func Classify(err error) (kind string, retryable bool) {
	var se *Error
	if errors.As(err, &se) {
		return se.Kind, se.Retryable
	}
	var k interface {
		ErrorKind() string
		Retryable() bool
	}
	if errors.As(err, &k) {
		return k.ErrorKind(), k.Retryable()
	}
	var r interface{ Retryable() bool }
	if errors.As(err, &r) {
		if r.Retryable() {
			return "Transient", true
		}
		return "BadInput", false
	}
	return "StepError", true
}

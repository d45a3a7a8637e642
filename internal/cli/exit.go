package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gauntlet-ml/gauntlet/internal/tclient"
)

// Exit codes are part of the CLI's contract with CI systems; the README lists
// them and they never change meaning.
const (
	ExitOK          = 0
	ExitFailed      = 1 // the run or command failed
	ExitUsage       = 2 // bad flags or arguments
	ExitRejected    = 3 // a reviewer rejected the model
	ExitTimedOut    = 4 // --timeout passed or the run timed out
	ExitCanceled    = 5 // the run was canceled or terminated
	ExitUnreachable = 6 // Temporal could not be reached
	ExitInvalid     = 7 // a pipeline definition or its params are invalid
	ExitNotFound    = 8 // no such run, pipeline, schedule or model
)

// exitError carries the exit code a failure maps to.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

func usagef(format string, args ...any) error {
	return withCode(ExitUsage, fmt.Errorf(format, args...))
}

// codeOf maps an error to the process exit code.
func codeOf(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ue *tclient.UnreachableError
	if errors.As(err, &ue) {
		return ExitUnreachable
	}
	return ExitFailed
}

// Argument checks that fail with the usage exit code.
func exactArgs(n int) cobra.PositionalArgs { return usageArgs(cobra.ExactArgs(n)) }
func minArgs(n int) cobra.PositionalArgs   { return usageArgs(cobra.MinimumNArgs(n)) }

var noArgs = usageArgs(cobra.NoArgs)

func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		return withCode(ExitUsage, check(cmd, args))
	}
}

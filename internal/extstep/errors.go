package extstep

import (
	"fmt"
	"strings"
	"syscall"
)

// Failure kinds. They become Temporal error types, so a pipeline can name
// them in `retry.non_retryable`.
const (
	// KindBadInput: the step's command, env or inputs are wrong, or the
	// command said so with exit code 2, 64, 65 or 78. Permanent.
	KindBadInput = "BadInput"
	// KindCommandNotFound: the program cannot be found or executed
	// (exit 126 or 127 from the shell, or exec failing). Permanent.
	KindCommandNotFound = "CommandNotFound"
	// KindBadOutput: outputs.json is not a JSON object. Permanent.
	KindBadOutput = "BadOutput"
	// KindCommandFailed: any other non-zero exit. Retryable.
	KindCommandFailed = "CommandFailed"
	// KindCommandKilled: the command died by a signal Gauntlet did not send
	// (OOM killer, preemption). Retryable.
	KindCommandKilled = "CommandKilled"
	// KindCancelled: the context ended (Temporal cancel or timeout) and the
	// process group was terminated. Retryable; Temporal decides.
	KindCancelled = "Cancelled"
	// KindHost: Gauntlet could not prepare the attempt (disk full, a
	// directory it cannot create). Retryable.
	KindHost = "HostError"
)

// permanentExit maps exit codes that mean "another attempt cannot help" to
// their kind. 2 is the conventional usage error (argparse, getopt); 64, 65
// and 78 are EX_USAGE, EX_DATAERR and EX_CONFIG from sysexits.h; 126 and 127
// are the shell's "cannot execute" and "not found".
var permanentExit = map[int]string{
	2:   KindBadInput,
	64:  KindBadInput,
	65:  KindBadInput,
	78:  KindBadInput,
	126: KindCommandNotFound,
	127: KindCommandNotFound,
}

// Error is a failed run. Kind and Retryable drive Temporal's retry policy;
// ExitCode and Signal say how the command ended, and Tail holds its last
// output lines, which are also part of the message so that they show in the
// Temporal UI next to the failure.
type Error struct {
	Kind string
	// ExitCode is the command's exit status, or -1 when it did not exit
	// normally (killed, never started).
	ExitCode int
	// Signal is the signal that killed the command, 0 if none did.
	Signal syscall.Signal
	// Log is the attempt's log file, empty when the failure came first.
	Log  string
	Tail []string
	Err  error

	retryable bool
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	if len(e.Tail) > 0 {
		fmt.Fprintf(&b, "\n--- last %d lines of %s ---\n", len(e.Tail), e.Log)
		b.WriteString(strings.Join(e.Tail, "\n"))
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether another attempt may succeed. It follows the
// `Retryable() bool` convention that steps.Classify honours.
func (e *Error) Retryable() bool { return e.retryable }

func permanent(kind string, err error) *Error {
	return &Error{Kind: kind, ExitCode: -1, Err: err}
}

func retryable(kind string, err error) *Error {
	return &Error{Kind: kind, ExitCode: -1, Err: err, retryable: true}
}

// exitError classifies a command that ended with status ws.
func exitError(ws syscall.WaitStatus) *Error {
	if ws.Signaled() {
		sig := ws.Signal()
		e := retryable(KindCommandKilled, fmt.Errorf("command killed by signal %d (%v)", int(sig), sig))
		e.Signal = sig
		return e
	}
	code := ws.ExitStatus()
	if kind, ok := permanentExit[code]; ok {
		e := permanent(kind, fmt.Errorf("command exited with status %d (%s, not retried)", code, kind))
		e.ExitCode = code
		return e
	}
	e := retryable(KindCommandFailed, fmt.Errorf("command exited with status %d", code))
	e.ExitCode = code
	return e
}

package extstep

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/checkpoint"
)

// Command is an external command. Its fields match spec.Command, so a
// pipeline's command converts with extstep.Command(*c).
type Command struct {
	Shell   string            `json:"shell,omitempty"`
	Argv    []string          `json:"argv,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	Workdir string            `json:"workdir,omitempty"`
}

// Input identifies the execution and carries the step's resolved `with`.
type Input struct {
	RunID    string
	Pipeline string
	StepID   string
	With     map[string]any
	// Checkpoint is the ref of the step's checkpoint in the artifact store
	// (checkpoint.Name): GAUNTLET_CHECKPOINT_DIR is restored from it
	// before the command starts and published to it on ::checkpoint lines
	// and at the end. Empty keeps the directory on this host alone.
	Checkpoint string
}

// Env is what Run needs of its host; steps.Env satisfies it.
type Env interface {
	Progress(details any)
	Resume(v any) bool
	Dir() string
	Logger() *slog.Logger
	// Artifacts materialises the pointers among the inputs and publishes
	// what the command wrote (see ArtifactsDir).
	Artifacts() *workspace.Session
}

// Heartbeat is what Run passes to Env.Progress: the attempt number, so the
// next attempt can number itself, and the latest value of every key the
// command reported with `::progress`.
type Heartbeat struct {
	Attempt  int               `json:"attempt"`
	Progress map[string]string `json:"progress,omitempty"`
	// Checkpoint is the label of the newest checkpoint in the store, as
	// the command's ::checkpoint line gave it.
	Checkpoint string `json:"checkpoint,omitempty"`
}

// Options tune Run; zero fields take the defaults.
type Options struct {
	// Grace is how long the process group has between SIGTERM and SIGKILL.
	// Default 10s.
	Grace time.Duration
	// ProgressEvery is the shortest gap between two progress reports.
	// Default 1s.
	ProgressEvery time.Duration
	// HeartbeatEvery is the longest gap between two reports while the
	// command runs, progress or not, so that a heartbeat timeout means the
	// worker is gone rather than that the command is quiet. Default 2s.
	HeartbeatEvery time.Duration
	// LogLimit caps the attempt log in bytes. Default 64 MiB.
	LogLimit int64
	// TailLines is how many last lines a failure message quotes. Default 50.
	TailLines int
	// DrainWait bounds the wait for the output pipe to close once the
	// process group is gone; only a process that left the group (setsid)
	// can hold it longer. Default 2s.
	DrainWait time.Duration
}

func (o Options) withDefaults() Options {
	if o.Grace <= 0 {
		o.Grace = 10 * time.Second
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = time.Second
	}
	if o.HeartbeatEvery <= 0 {
		o.HeartbeatEvery = 2 * time.Second
	}
	if o.LogLimit <= 0 {
		o.LogLimit = 64 << 20
	}
	if o.TailLines <= 0 {
		o.TailLines = 50
	}
	if o.DrainWait <= 0 {
		o.DrainWait = 2 * time.Second
	}
	return o
}

// Reserved output keys; Gauntlet's values replace any the command sets.
const (
	OutputDirKey = "output_dir"
	LogKey       = "log"
)

// Run runs cmd under the contract with the default Options.
func Run(ctx context.Context, env Env, cmd Command, in Input) (map[string]any, error) {
	return Options{}.Run(ctx, env, cmd, in)
}

// Run runs cmd under the contract described in the package documentation
// and returns its outputs. Failures are *Error.
func (o Options) Run(ctx context.Context, env Env, cmd Command, in Input) (map[string]any, error) {
	o = o.withDefaults()
	if err := ctx.Err(); err != nil {
		return nil, retryable(KindCancelled, fmt.Errorf("step %s not started: %w", in.StepID, err))
	}
	if (cmd.Shell == "") == (len(cmd.Argv) == 0) {
		return nil, permanent(KindBadInput, errors.New("command: exactly one of shell and argv must be set"))
	}
	if len(cmd.Argv) > 0 && cmd.Argv[0] == "" {
		return nil, permanent(KindBadInput, errors.New("command: argv[0] is empty"))
	}
	dir, err := filepath.Abs(env.Dir())
	if err != nil {
		return nil, retryable(KindHost, fmt.Errorf("step directory: %w", err))
	}

	var prev Heartbeat
	env.Resume(&prev)
	attempt := max(prev.Attempt, lastLoggedAttempt(filepath.Join(dir, "logs"))) + 1
	p := attemptPaths{
		attempt:    attempt,
		outputDir:  filepath.Join(dir, fmt.Sprintf("attempt-%d", attempt), "output"),
		checkpoint: filepath.Join(dir, "checkpoint"),
		inputs:     filepath.Join(dir, fmt.Sprintf("attempt-%d", attempt), "inputs.json"),
	}
	logPath := filepath.Join(dir, "logs", fmt.Sprintf("attempt-%d.log", attempt))
	with, refs, err := materializeInputs(ctx, env, in.With)
	if err != nil {
		return nil, err
	}
	var ckpt *checkpoint.Dir
	if in.Checkpoint != "" {
		if ckpt, err = openCheckpoint(ctx, env, in.Checkpoint, p.checkpoint); err != nil {
			return nil, err
		}
	}
	if err := prepareDirs(p, logPath, with); err != nil {
		return nil, retryable(KindHost, err)
	}

	workdir, err := resolveWorkdir(dir, cmd.Workdir)
	if err != nil {
		return nil, err
	}
	local := in
	local.With = with
	environ, err := buildEnv(os.Environ(), cmd, local, refs, p)
	if err != nil {
		return nil, permanent(KindBadInput, err)
	}
	path, args, err := resolveProgram(cmd, workdir, environ)
	if err != nil {
		return nil, err
	}

	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, retryable(KindHost, fmt.Errorf("open log: %w", err))
	}
	defer logFile.Close()

	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, retryable(KindHost, fmt.Errorf("output pipe: %w", err))
	}
	defer pr.Close()
	c := &exec.Cmd{
		Path:   path,
		Args:   args,
		Dir:    workdir,
		Env:    environ,
		Stdout: pw,
		Stderr: pw,
		// Its own group, so that cancelling reaches every descendant and
		// none of the worker's signals (a Ctrl-C on `gauntlet step`) do.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}

	log := env.Logger().With("step", in.StepID, "attempt", attempt)
	// A superseded checkpoint stops the command as a cancellation does.
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var ckSync *checkpointSync
	if ckpt != nil {
		ckSync = newCheckpointSync(ckpt, log, stop)
		if r := ckpt.Restored(); r != nil {
			fmt.Fprintf(logFile, "[gauntlet: checkpoint %q restored from the store into %s (published by %s at %s)]\n",
				r.Label, p.checkpoint, r.Host, r.At.Format(time.RFC3339))
			log.Info("checkpoint restored from the store", "ref", ckpt.Name(), "checkpoint", r.Label, "published_by", r.Host)
		}
	}
	env.Progress(Heartbeat{Attempt: attempt, Checkpoint: ckSync.last()})
	if err := c.Start(); err != nil {
		pw.Close()
		return nil, startError(err)
	}
	pw.Close()
	pgid := c.Process.Pid
	log.Info("command started", "pid", pgid, "log", logPath)

	st := newStream(logFile, o.LogLimit, o.TailLines)
	if ckSync != nil {
		st.onCheckpoint = ckSync.request
		go ckSync.run(ctx, st.markDirty)
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		st.consume(pr)
	}()
	stopReports := make(chan struct{})
	var reports sync.WaitGroup
	reports.Go(func() { o.report(env, attempt, st, ckSync, stopReports) })

	waited := make(chan error, 1)
	go func() { waited <- c.Wait() }()
	var waitErr error
	cancelled := false
	select {
	case waitErr = <-waited:
		sweep(pgid, o.Grace, false)
	case <-ctx.Done():
		cancelled = true
		log.Info("cancelling command", "pid", pgid, "cause", context.Cause(ctx))
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		termAt := time.Now()
		timer := time.NewTimer(o.Grace)
		select {
		case waitErr = <-waited:
			timer.Stop()
			sweep(pgid, o.Grace-time.Since(termAt), true)
		case <-timer.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			waitErr = <-waited
			sweep(pgid, 0, true)
		}
	}

	select {
	case <-drained:
	case <-time.After(o.DrainWait):
		log.Warn("output pipe still open after the process group ended; a process left the group", "pid", pgid)
		_ = pr.SetReadDeadline(time.Now())
		<-drained
	}
	if ckSync != nil {
		// What the command left is what the next attempt resumes from,
		// however this one ended.
		end := "at exit"
		if c.ProcessState != nil {
			end += " (" + c.ProcessState.String() + ")"
		}
		if err := ckSync.finish(ctx, end); err != nil {
			fmt.Fprintf(logFile, "[gauntlet: %v]\n", err)
		}
	}
	close(stopReports)
	reports.Wait()
	if err := st.writeError(); err != nil {
		log.Warn("attempt log incomplete", "log", logPath, "err", err)
	}

	if c.ProcessState == nil {
		// wait4 itself failed (the worker ignores SIGCHLD, or something
		// else reaped the child): the outcome is unknown, so try again.
		return nil, retryable(KindHost, fmt.Errorf("wait for command: %w", waitErr))
	}
	fmt.Fprintf(logFile, "[gauntlet: %s]\n", c.ProcessState)
	log.Info("command ended", "pid", pgid, "state", c.ProcessState.String())

	var fail *Error
	switch {
	case cancelled && errors.Is(context.Cause(ctx), checkpoint.ErrSuperseded):
		fail = retryable(KindCheckpointSuperseded, fmt.Errorf("command stopped: %w", context.Cause(ctx)))
	case cancelled:
		fail = retryable(KindCancelled, fmt.Errorf("command cancelled (%s): %w", c.ProcessState, context.Cause(ctx)))
	case !c.ProcessState.Success():
		ws, _ := c.ProcessState.Sys().(syscall.WaitStatus)
		fail = exitError(ws)
	}
	if fail != nil {
		fail.Log, fail.Tail = logPath, st.lastLines()
		return nil, fail
	}

	outputs, err := readOutputs(filepath.Join(p.outputDir, "outputs.json"), st.directiveOutputs())
	if err != nil {
		return nil, err
	}
	if err := publishOutputs(ctx, env, outputs, p.outputDir, logPath); err != nil {
		return nil, err
	}
	return outputs, nil
}

// report sends heartbeats until stop is closed, then a last one if the
// progress changed since the previous report.
func (o Options) report(env Env, attempt int, st *stream, ck *checkpointSync, stop <-chan struct{}) {
	tick := time.NewTicker(o.ProgressEvery)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-stop:
			if prog, dirty := st.takeProgress(); dirty {
				env.Progress(Heartbeat{Attempt: attempt, Progress: prog, Checkpoint: ck.last()})
			}
			return
		case now := <-tick.C:
			prog, dirty := st.takeProgress()
			if dirty || now.Sub(last) >= o.HeartbeatEvery {
				env.Progress(Heartbeat{Attempt: attempt, Progress: prog, Checkpoint: ck.last()})
				last = now
			}
		}
	}
}

var attemptLog = regexp.MustCompile(`^attempt-([0-9]+)\.log$`)

// lastLoggedAttempt is the highest attempt with a log in dir, so attempts
// keep counting on the same worker even when a previous attempt died
// before Temporal recorded its heartbeat.
func lastLoggedAttempt(dir string) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if m := attemptLog.FindStringSubmatch(e.Name()); m != nil {
			if k, err := strconv.Atoi(m[1]); err == nil {
				n = max(n, k)
			}
		}
	}
	return n
}

func prepareDirs(p attemptPaths, logPath string, with map[string]any) error {
	// A fresh output directory: a retried attempt must not report files an
	// earlier one left.
	if err := os.RemoveAll(p.outputDir); err != nil {
		return fmt.Errorf("clear output dir: %w", err)
	}
	for _, d := range []string{p.outputDir, p.checkpoint, filepath.Dir(logPath)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := writeInputs(p.inputs, with); err != nil {
		return fmt.Errorf("write inputs: %w", err)
	}
	return nil
}

// resolveWorkdir places a relative workdir under the step directory,
// creating it; an absolute one must exist, as it belongs to the host.
func resolveWorkdir(stepDir, workdir string) (string, error) {
	if workdir == "" {
		return stepDir, nil
	}
	if !filepath.IsAbs(workdir) {
		wd := filepath.Join(stepDir, workdir)
		if err := os.MkdirAll(wd, 0o755); err != nil {
			return "", retryable(KindHost, fmt.Errorf("create workdir: %w", err))
		}
		return wd, nil
	}
	fi, err := os.Stat(workdir)
	if err != nil {
		return "", permanent(KindBadInput, fmt.Errorf("workdir: %w", err))
	}
	if !fi.IsDir() {
		return "", permanent(KindBadInput, fmt.Errorf("workdir %s is not a directory", workdir))
	}
	return workdir, nil
}

// resolveProgram returns the executable and argv. A bare argv[0] is looked
// up in the command's PATH; one with a slash is relative to the workdir.
func resolveProgram(cmd Command, workdir string, environ []string) (string, []string, error) {
	if cmd.Shell != "" {
		return "/bin/sh", []string{"/bin/sh", "-c", cmd.Shell}, nil
	}
	name := cmd.Argv[0]
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			name = filepath.Join(workdir, name)
		}
		return name, cmd.Argv, nil
	}
	pathEnv := ""
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	p, err := lookPath(name, pathEnv)
	if err != nil {
		return "", nil, permanent(KindCommandNotFound, fmt.Errorf("command %q not found in PATH %q", name, pathEnv))
	}
	return p, cmd.Argv, nil
}

// startError classifies a failed exec: a missing or non-executable program
// will not appear by retrying; anything else (fork failing for lack of
// memory or processes) may pass.
func startError(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOEXEC) {
		return permanent(KindCommandNotFound, fmt.Errorf("start command: %w", err))
	}
	return retryable(KindHost, fmt.Errorf("start command: %w", err))
}

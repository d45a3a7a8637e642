package fleettest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Host is one simulated machine of a fleet: its own network stack with one
// address on the fleet's network, and its own private directory.
type Host struct {
	Name string
	IP   netip.Addr

	f       *Fleet
	ns      string   // network namespace name
	mnt     string   // file the mount namespace is bound to
	netns   *os.File // open network namespace, for DialContext
	created bool
	mounted bool
}

// Dir is the host's private directory: the same path on every host, its own
// contents on each. Processes started on the host begin there.
func (h *Host) Dir() string { return h.f.Dir() }

// TempDir is the host's private TMPDIR.
func (h *Host) TempDir() string { return filepath.Join(h.f.Dir(), "tmp") }

// Addr joins the host's address with a port.
func (h *Host) Addr(port uint16) string { return netip.AddrPortFrom(h.IP, port).String() }

// Spec describes a process to run on a host.
type Spec struct {
	Args []string // program and arguments; never put a secret here, use Env
	// Env is added to a minimal environment: PATH, LANG, HOME and TMPDIR
	// (both in the host's private directory), which an entry here for the
	// same name replaces. The test's own environment is not passed on.
	Env   []string
	User  string    // run as this user instead of root
	Dir   string    // working directory; the host's private directory when empty
	Stdin io.Reader // nil: no input
}

// Command prepares spec to run inside the host's namespaces.
func (h *Host) Command(ctx context.Context, spec Spec) (*exec.Cmd, error) {
	if len(spec.Args) == 0 {
		return nil, errors.New("fleettest: empty command")
	}
	args := []string{"--net=" + filepath.Join("/run/netns", h.ns), "--mount=" + h.mnt}
	if spec.User != "" {
		u, err := user.Lookup(spec.User)
		if err != nil {
			return nil, fmt.Errorf("fleettest: %w", err)
		}
		args = append(args, "--setuid="+u.Uid, "--setgid="+u.Gid)
	}
	dir := spec.Dir
	if dir == "" {
		dir = h.Dir()
	}
	// env changes directory once inside the mount namespace: nsenter's
	// --wd opens the directory before entering it, which leaves the
	// process in the directory the host's private one hides, where
	// getcwd(3) fails.
	args = append(args, "--", h.f.env, "--chdir="+dir)
	args = append(args, spec.Args...)
	cmd := exec.CommandContext(ctx, h.f.nsenter, args...)
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"LANG=C.UTF-8",
		"HOME=" + h.Dir(),
		"TMPDIR=" + h.TempDir(),
	}, spec.Env...)
	cmd.Stdin = spec.Stdin
	// The test binary's death takes its servers along (nsenter execs the
	// program in place, so this is the program itself). Dropping root
	// clears it, which Kill at cleanup and the next New's reaping cover.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd, nil
}

// Output runs spec to completion and returns its standard output. The
// error carries the command's name and its standard error.
func (h *Host) Output(spec Spec) ([]byte, error) {
	return h.OutputContext(context.Background(), spec)
}

// OutputContext is Output, killed when ctx ends.
func (h *Host) OutputContext(ctx context.Context, spec Spec) ([]byte, error) {
	cmd, err := h.Command(ctx, spec)
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s on %s: %w: %s", filepath.Base(spec.Args[0]), h.Name, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// Start runs spec in the background until it exits, Stop is called or the
// test ends. Its standard output and error go to a log file that the
// fleet prints the end of when the test fails. stop is the signal that
// asks it to shut down cleanly (nil: SIGTERM).
func (h *Host) Start(name string, spec Spec, stop os.Signal) (*Proc, error) {
	cmd, err := h.Command(context.Background(), spec)
	if err != nil {
		return nil, err
	}
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	logPath := filepath.Join(h.f.root, "logs", h.Name+"-"+name+".log")
	for i := 2; ; i++ { // one log per process, even for a name used before
		if _, err := os.Lstat(logPath); errors.Is(err, os.ErrNotExist) {
			break
		}
		logPath = filepath.Join(h.f.root, "logs", fmt.Sprintf("%s-%s-%d.log", h.Name, name, i))
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if stop == nil {
		stop = syscall.SIGTERM
	}
	p := &Proc{Name: name, Host: h, LogPath: logPath, cmd: cmd, stop: stop, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s on %s: %w", name, h.Name, err)
	}
	h.f.procs = append(h.f.procs, p)
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Kill ends every process on the host at once, as a power cut would: a
// SIGKILL to each process in its network namespace, repeated until none
// is left (a process may fork while it is being killed). The host's
// private directory survives, as a disk would.
func (h *Host) Kill() error {
	for range 200 {
		pids, err := h.pids()
		if err != nil {
			return fmt.Errorf("list processes of %s: %w", h.ns, err)
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("processes of %s keep appearing", h.ns)
}

// Pids lists the processes running on the host.
func (h *Host) Pids() ([]int, error) { return h.pids() }

// DialContext connects from this host: the socket is made on a thread
// that has joined the host's network namespace, and stays in it. Give it
// to clients in the test process (gRPC's WithContextDialer, an
// http.Transport) to talk to the fleet as a process on this host would.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := h.inNetwork(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen opens a listener on this host's network, for a server in the
// test process that the fleet's processes reach as one on this host.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := h.inNetwork(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// inNetwork runs fn on an OS thread that has joined the host's network
// namespace; sockets fn makes belong to that namespace for good.
func (h *Host) inNetwork(fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(h.netns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("enter network of %s: %w", h.Name, err)
			return
		}
		err = fn()
		// A thread that cannot go back stays locked: the runtime then
		// ends it with this goroutine instead of reusing it elsewhere.
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- err
	}()
	return <-ch
}

// errStopped is what Stop returns for a process that was already stopped.
var errStopped = errors.New("already stopped")

// Proc is a process started on a host.
type Proc struct {
	Name    string
	Host    *Host
	LogPath string

	cmd  *exec.Cmd
	stop os.Signal
	done chan struct{}
	err  error

	mu      sync.Mutex
	stopped bool
}

// Pid is the process ID, as the test process sees it.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how the process ended; valid once Done is closed.
func (p *Proc) Err() error { return p.err }

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Output is what the process has written so far.
func (p *Proc) Output() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// Stop asks the process to shut down with its stop signal and kills it
// after grace. It returns nil when the process exited on its own or on
// the signal, and the exit error otherwise.
func (p *Proc) Stop(grace time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		if p.stopped {
			return errStopped
		}
		p.stopped = true
		return p.exitError()
	default:
	}
	p.stopped = true
	_ = p.cmd.Process.Signal(p.stop)
	select {
	case <-p.done:
		return p.exitError()
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s on %s did not stop within %s of %v; killed", p.Name, p.Host.Name, grace, p.stop)
	}
}

func (p *Proc) exitError() error {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && (ws.Signal() == p.stop || ws.Signal() == syscall.SIGKILL) {
			return nil
		}
		return fmt.Errorf("%s on %s: %w", p.Name, p.Host.Name, p.err)
	}
	return p.err
}

// String names the process and its host, for messages.
func (p *Proc) String() string { return p.Name + " on " + p.Host.Name }

package fleettest

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// runDir holds one directory per fleet with the files that keep its hosts'
// mount namespaces alive. It must be a private mount: a namespace file can
// only be bound on a mount that does not propagate (ip netns does the same
// for /run/netns).
const runDir = "/run/fleettest"

// subnet is every fleet's host network. Each fleet has its own bridge in a
// namespace of its own, so fleets never see each other's addresses and the
// root namespace has no route to any of them.
var subnet = netip.MustParsePrefix("10.231.0.0/24")

var fleetSeq atomic.Int64

// Fleet is a set of hosts that share a private network and nothing else.
type Fleet struct {
	t    testing.TB
	id   string
	root string // shared filesystem: logs, configuration, the mount point of host-private dirs
	run  string // runDir/id
	lan  string // network namespace of the bridge

	ip, nsenter, unshare, env string

	mu    sync.Mutex
	hosts []*Host
	procs []*Proc
}

// New creates an empty fleet that is torn down when the test ends. It
// needs root, ip (iproute2) and util-linux's nsenter and unshare.
func New(t testing.TB) *Fleet {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "fleettest: network namespaces need root (CI runs as root)")
	}
	f := &Fleet{
		t:       t,
		ip:      Tool(t, "ip"),
		nsenter: Tool(t, "nsenter"),
		unshare: Tool(t, "unshare"),
		env:     Tool(t, "env"),
	}
	if err := ensureRunDir(); err != nil {
		t.Fatalf("fleettest: %v", err)
	}
	// A client in the test process that forgets Host.DialContext would
	// send fleet traffic out of the default route; this route makes such a
	// dial fail on the spot instead. It stays: the subnet is the fleets'.
	if err := f.ipCmd("route", "replace", "unreachable", subnet.String()); err != nil {
		t.Fatalf("fleettest: %v", err)
	}
	reapStale(f.ip)
	f.id = fmt.Sprintf("gf%dx%d", os.Getpid(), fleetSeq.Add(1))
	root, err := os.MkdirTemp("", "fleet-"+f.id+"-")
	if err != nil {
		t.Fatalf("fleettest: %v", err)
	}
	f.root = root
	f.run = filepath.Join(runDir, f.id)
	t.Cleanup(f.close)
	// Servers that drop root (PostgreSQL) must traverse the root to reach
	// their configuration and the private mount point.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatalf("fleettest: %v", err)
	}
	for _, d := range []string{f.Dir(), filepath.Join(root, "logs"), filepath.Join(root, "conf"), f.run} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("fleettest: %v", err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.run, "owner"), []byte(ownerStamp(os.Getpid())+"\n"+root+"\n"), 0o644); err != nil {
		t.Fatalf("fleettest: %v", err)
	}
	f.lan = f.id + "-lan"
	if err := f.ipCmd("netns", "add", f.lan); err != nil {
		t.Fatalf("fleettest: %v", err)
	}
	for _, args := range [][]string{
		{"-n", f.lan, "link", "set", "lo", "up"},
		{"-n", f.lan, "link", "add", "br0", "type", "bridge"},
		{"-n", f.lan, "link", "set", "br0", "up"},
	} {
		if err := f.ipCmd(args...); err != nil {
			t.Fatalf("fleettest: %v", err)
		}
	}
	return f
}

// Subnet is the network every host of the fleet has an address in.
func (f *Fleet) Subnet() netip.Prefix { return subnet }

// Dir is the path at which each host has its own private directory. The
// test process sees an empty directory there.
func (f *Fleet) Dir() string { return filepath.Join(f.root, "local") }

// ConfDir returns a directory on the filesystem every host shares, for
// configuration the test writes before starting a server: the stand-in for
// what configuration management would install.
func (f *Fleet) ConfDir(name string) string {
	d := filepath.Join(f.root, "conf", name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		f.t.Fatalf("fleettest: %v", err)
	}
	return d
}

var hostName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$`)

// AddHost creates a host with the next free address on the fleet's
// network and an empty private directory at Dir.
func (f *Fleet) AddHost(name string) *Host {
	f.t.Helper()
	if !hostName.MatchString(name) || name == "lan" {
		f.t.Fatalf("fleettest: host name %q: want a lower-case letter, then up to 19 of [a-z0-9-], not \"lan\"", name)
	}
	f.mu.Lock()
	for _, h := range f.hosts {
		if h.Name == name {
			f.mu.Unlock()
			f.t.Fatalf("fleettest: host %q exists", name)
		}
	}
	idx := len(f.hosts) + 1
	h := &Host{Name: name, f: f, ns: f.id + "-" + name, mnt: filepath.Join(f.run, name+".mnt")}
	h.IP = subnet.Addr()
	for range idx + 9 { // hosts from .10 up, below the broadcast address
		h.IP = h.IP.Next()
	}
	f.hosts = append(f.hosts, h)
	f.mu.Unlock()
	if idx > 200 {
		f.t.Fatalf("fleettest: more than 200 hosts")
	}
	if err := h.create(idx); err != nil {
		f.t.Fatalf("fleettest: host %s: %v", name, err)
	}
	return h
}

func (h *Host) create(idx int) error {
	f := h.f
	if err := f.ipCmd("netns", "add", h.ns); err != nil {
		return err
	}
	h.created = true
	peer := "v" + strconv.Itoa(idx)
	cidr := fmt.Sprintf("%s/%d", h.IP, subnet.Bits())
	for _, args := range [][]string{
		{"link", "add", "eth0", "netns", h.ns, "type", "veth", "peer", "name", peer, "netns", f.lan},
		{"-n", f.lan, "link", "set", peer, "master", "br0", "up"},
		{"-n", h.ns, "link", "set", "lo", "up"},
		{"-n", h.ns, "addr", "add", cidr, "dev", "eth0"},
		{"-n", h.ns, "link", "set", "eth0", "up"},
	} {
		if err := f.ipCmd(args...); err != nil {
			return err
		}
	}
	nf, err := os.Open(filepath.Join("/run/netns", h.ns))
	if err != nil {
		return err
	}
	h.netns = nf
	if err := os.WriteFile(h.mnt, nil, 0o644); err != nil {
		return err
	}
	// A mount namespace bound to a file outlives the command that made it:
	// every process started on the host enters it and sees the tmpfs.
	out, err := exec.Command(f.unshare, "--mount="+h.mnt, "--propagation", "private",
		"mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", f.Dir()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("unshare --mount: %v: %s", err, bytes.TrimSpace(out))
	}
	h.mounted = true
	_, err = h.Output(Spec{Args: []string{"mkdir", "-m", "1777", h.TempDir()}})
	return err
}

func (f *Fleet) ipCmd(args ...string) error {
	out, err := exec.Command(f.ip, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// close stops every process, then removes the hosts. It runs as a test
// cleanup, so it reports problems instead of stopping at the first.
func (f *Fleet) close() {
	f.mu.Lock()
	procs := append([]*Proc(nil), f.procs...)
	hosts := append([]*Host(nil), f.hosts...)
	f.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		if err := p.Stop(10 * time.Second); err != nil && !errors.Is(err, errStopped) {
			f.t.Logf("fleettest: %s on %s: %v", p.Name, p.Host.Name, err)
		}
	}
	if f.t.Failed() {
		for _, p := range procs {
			f.t.Logf("fleettest: last lines of %s on %s (%s):\n%s", p.Name, p.Host.Name, p.LogPath, tail(p.Output(), 40))
		}
	}
	for _, h := range hosts {
		if err := h.remove(); err != nil {
			f.t.Errorf("fleettest: removing host %s: %v", h.Name, err)
		}
	}
	if _, err := os.Stat(filepath.Join("/run/netns", f.lan)); f.lan != "" && err == nil {
		if err := f.ipCmd("netns", "del", f.lan); err != nil {
			f.t.Errorf("fleettest: %v", err)
		}
	}
	if f.run != "" {
		_ = os.RemoveAll(f.run)
	}
	if f.root != "" {
		_ = os.RemoveAll(f.root)
	}
}

func (h *Host) remove() error {
	var errs []error
	// A fleet reaped as stale (see reapStale) is already gone.
	_, err := os.Stat(filepath.Join("/run/netns", h.ns))
	exists := err == nil
	if h.created && exists {
		errs = append(errs, h.Kill())
	}
	if h.netns != nil {
		errs = append(errs, h.netns.Close())
	}
	if h.mounted {
		if err := unix.Unmount(h.mnt, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", h.mnt, err))
		}
	}
	if h.created && exists {
		errs = append(errs, h.f.ipCmd("netns", "del", h.ns))
	}
	return errors.Join(errs...)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	// Server logs carry stack traces on one line; the start says enough.
	for i, l := range lines {
		if len(l) > 400 {
			lines[i] = l[:400] + "…"
		}
	}
	return strings.Join(lines, "\n")
}

// ensureRunDir makes runDir a private mount once per boot.
func ensureRunDir() error {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(runDir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if fields := strings.Fields(line); len(fields) > 4 && fields[4] == runDir {
			return nil
		}
	}
	if err := unix.Mount(runDir, runDir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", runDir, err)
	}
	if err := unix.Mount("", runDir, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", runDir, err)
	}
	return nil
}

// ownerStamp identifies a process across PID reuse: its PID and its start
// time in clock ticks since boot.
func ownerStamp(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return strconv.Itoa(pid) + " " + f[19]
}

var staleID = regexp.MustCompile(`^gf(\d+)x\d+$`)

// reapStale removes what a killed test binary left: its processes,
// namespaces, mounts and directories. Best effort: a failure here only
// leaves the leftovers for the next run to try again.
func reapStale(ip string) {
	entries, err := os.ReadDir(runDir)
	if err != nil {
		return
	}
	netns, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		m := staleID.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		dir := filepath.Join(runDir, e.Name())
		owner, _ := os.ReadFile(filepath.Join(dir, "owner"))
		lines := strings.SplitN(string(owner), "\n", 3)
		pid, _ := strconv.Atoi(m[1])
		if len(lines) >= 1 && lines[0] != "" && ownerStamp(pid) == lines[0] {
			continue // its test is still running
		}
		for _, n := range netns {
			if strings.HasPrefix(n.Name(), e.Name()+"-") {
				h := &Host{ns: n.Name()}
				_ = h.Kill()
				_ = exec.Command(ip, "netns", "del", n.Name()).Run()
			}
		}
		mnts, _ := filepath.Glob(filepath.Join(dir, "*.mnt"))
		for _, m := range mnts {
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
		if len(lines) >= 2 && strings.HasPrefix(lines[1], os.TempDir()) {
			_ = os.RemoveAll(lines[1])
		}
		_ = os.RemoveAll(dir)
	}
}

// pids lists the processes in the host's network namespace, by comparing
// each process's namespace inode with the one bound at /run/netns.
func (h *Host) pids() ([]int, error) {
	var want syscall.Stat_t
	if err := syscall.Stat(filepath.Join("/run/netns", h.ns), &want); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil {
			continue // gone, or a zombie, which has no namespaces left
		}
		if st.Ino == want.Ino && st.Dev == want.Dev {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

package fleettest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a small program to run on hosts: a TCP
// server that answers each connection with a line, and a client that
// prints what a server says.
const helperEnv = "FLEETTEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "serve":
		serve(os.Args[len(os.Args)-2], os.Args[len(os.Args)-1])
	case "fetch":
		fetch(os.Args[len(os.Args)-1])
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

func serve(addr, greeting string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening")
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(1)
		}
		fmt.Fprintln(c, greeting)
		c.Close()
	}
}

func fetch(addr string) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	b, _ := io.ReadAll(c)
	fmt.Print(string(b))
}

func helper(mode string, args ...string) Spec {
	return Spec{Args: append([]string{os.Args[0], "-test.run=^$"}, args...), Env: []string{helperEnv + "=" + mode}}
}

// startServe runs the helper server on h and waits until it listens.
func startServe(t *testing.T, h *Host, addr, greeting string) *Proc {
	t.Helper()
	p, err := h.Start("serve", helper("serve", addr, greeting), nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.Output(), "listening") {
		select {
		case <-p.Done():
			t.Fatalf("helper server exited: %v\n%s", p.Err(), p.Output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("helper server did not listen:\n%s", p.Output())
		}
	}
	return p
}

func TestHostsReachEachOtherAndNothingElse(t *testing.T) {
	f := New(t)
	a, b := f.AddHost("a"), f.AddHost("b")
	if a.IP == b.IP || !f.Subnet().Contains(a.IP) || !f.Subnet().Contains(b.IP) {
		t.Fatalf("addresses %s and %s: want two distinct addresses in %s", a.IP, b.IP, f.Subnet())
	}
	startServe(t, a, a.Addr(9000), "hello from a")

	out, err := b.Output(helper("fetch", a.Addr(9000)))
	if err != nil || strings.TrimSpace(string(out)) != "hello from a" {
		t.Fatalf("process on b fetching from a: %q, %v", out, err)
	}

	// The test process dials as if from b.
	c, err := b.DialContext(context.Background(), "tcp", a.Addr(9000))
	if err != nil {
		t.Fatalf("dial a from b: %v", err)
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if line != "hello from a\n" {
		t.Fatalf("dial a from b: read %q", line)
	}

	// The test's own namespace has no way to the fleet: its routing table
	// answers unreachable (asked without sending anything).
	if out, err := exec.Command(f.ip, "route", "get", a.IP.String()).CombinedOutput(); err == nil || !noRoute(string(out)) {
		t.Fatalf("ip route get %s in the test's namespace: %s (%v); want no route", a.IP, out, err)
	}

	// Each host has its own loopback: a server on a's 127.0.0.1 is not on b's.
	startServe(t, a, "127.0.0.1:9001", "a's loopback")
	if out, err := a.Output(helper("fetch", "127.0.0.1:9001")); err != nil || !strings.Contains(string(out), "a's loopback") {
		t.Fatalf("fetch a's loopback on a: %q, %v", out, err)
	}
	if out, err := b.Output(helper("fetch", "127.0.0.1:9001")); err == nil {
		t.Fatalf("b reached a's loopback: %q", out)
	}

	// No host has a route off the fleet's network.
	if out, err := b.Output(Spec{Args: []string{f.ip, "route", "get", "10.232.0.1"}}); err == nil || !noRoute(err.Error()) {
		t.Fatalf("ip route get 10.232.0.1 on b: %s (%v); want no route", out, err)
	}
}

func noRoute(msg string) bool {
	return strings.Contains(msg, "unreachable") || strings.Contains(msg, "No route to host")
}

func TestPrivateDirs(t *testing.T) {
	f := New(t)
	a, b := f.AddHost("a"), f.AddHost("b")
	if a.Dir() != b.Dir() {
		t.Fatalf("hosts' private dirs %s and %s: want one path", a.Dir(), b.Dir())
	}
	file := filepath.Join(a.Dir(), "model.bin")
	if _, err := a.Output(Spec{Args: []string{"sh", "-c", `echo weights > "$1"`, "sh", file}}); err != nil {
		t.Fatal(err)
	}
	if out, err := a.Output(Spec{Args: []string{"cat", file}}); err != nil || string(out) != "weights\n" {
		t.Fatalf("a reads its own file: %q, %v", out, err)
	}
	if out, err := b.Output(Spec{Args: []string{"cat", file}}); err == nil {
		t.Fatalf("b read a's private file: %q", out)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the test process sees a's private file: %v", err)
	}
	// TMPDIR is private too, and writable by a user that is not root.
	out, err := b.Output(Spec{User: "nobody", Args: []string{"sh", "-c", `mktemp && id -un`}})
	if err != nil || !strings.HasPrefix(string(out), b.TempDir()+"/") || !strings.HasSuffix(string(out), "nobody\n") {
		t.Fatalf("mktemp as nobody on b: %q, %v", out, err)
	}
}

func TestKillEndsEveryProcessOnTheHost(t *testing.T) {
	f := New(t)
	a, b := f.AddHost("a"), f.AddHost("b")
	// A parent with children, and a daemon that left its session: Kill
	// must end them all, as a power cut would.
	tree, err := a.Start("tree", Spec{Args: []string{"sh", "-c", "sleep 1000 & sleep 1000 & setsid sleep 1000 & wait"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := b.Start("other", Spec{Args: []string{"sleep", "1000"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitPids(t, a, 4)
	waitPids(t, b, 1)
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	if pids, err := a.Pids(); err != nil || len(pids) != 0 {
		t.Fatalf("after Kill, processes on a: %v, %v", pids, err)
	}
	<-tree.Done()
	if err := tree.Stop(time.Second); err != nil {
		t.Fatalf("a killed process reports %v; want nil (killed is an expected end)", err)
	}
	select {
	case <-other.Done():
		t.Fatal("killing host a ended a process on b")
	default:
	}
	if pids, _ := b.Pids(); !slices.Contains(pids, other.Pid()) {
		t.Fatalf("processes on b: %v; want %d", pids, other.Pid())
	}
}

func waitPids(t *testing.T, h *Host, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		pids, err := h.Pids()
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d processes on %s, want %d", len(pids), h.Name, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCleanupRemovesEverything(t *testing.T) {
	var f *Fleet
	var pids []int
	t.Run("fleet", func(t *testing.T) {
		f = New(t)
		a, db := f.AddHost("a"), f.AddHost("db")
		startServe(t, a, a.Addr(9000), "x")
		// PostgreSQL runs as another user and forks its own children.
		StartPostgres(t, db)
		for _, h := range []*Host{a, db} {
			p, err := h.Pids()
			if err != nil {
				t.Fatal(err)
			}
			pids = append(pids, p...)
		}
		if len(pids) < 3 {
			t.Fatalf("processes on the hosts: %v; want the helper, the postmaster and its children", pids)
		}
	})
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d of the ended fleet: kill 0 = %v; want ESRCH", pid, err)
		}
	}
	out, err := exec.Command(f.ip, "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), f.id+"-") {
		t.Errorf("namespaces of the ended fleet remain:\n%s", out)
	}
	for _, p := range []string{f.root, f.run} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s remains: %v", p, err)
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), f.id) {
		t.Errorf("mounts of the ended fleet remain")
	}
}

// TestReapStale plays a test binary killed mid-test: a fleet whose owner
// is gone is removed by the next New.
func TestReapStale(t *testing.T) {
	f := New(t)
	a := f.AddHost("a")
	p := startServe(t, a, a.Addr(9000), "x")
	owner := filepath.Join(f.run, "owner")
	b, err := os.ReadFile(owner)
	if err != nil {
		t.Fatal(err)
	}
	// A start time no process has: the owner is dead.
	if err := os.WriteFile(owner, []byte(strings.Replace(string(b), " ", " 0", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	New(t)
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the stale fleet's process still runs")
	}
	if _, err := os.Stat(f.root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale root %s remains: %v", f.root, err)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", a.ns)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale namespace %s remains: %v", a.ns, err)
	}
}

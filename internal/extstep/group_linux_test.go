package extstep

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER from linux/prctl.h.
const prSetChildSubreaper = 36

// adoptOrphans makes this test process the reaper of orphaned descendants,
// so that a killed grandchild becomes our zombie and can be reaped: without
// it, an init that does not reap (as in many containers) would keep the
// zombie and kill(pid, 0) would keep succeeding.
func adoptOrphans(t *testing.T) {
	t.Helper()
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		t.Fatalf("prctl(PR_SET_CHILD_SUBREAPER): %v", errno)
	}
	t.Cleanup(func() { syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 0, 0) })
}

// pidFromFIFO blocks until the command writes a pid into a FIFO, which is
// how the tests know the grandchild exists without sleeping.
func pidFromFIFO(t *testing.T, fifo string) int {
	t.Helper()
	data, err := os.ReadFile(fifo)
	if err != nil {
		t.Error(err)
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Errorf("pid %q: %v", data, err)
	}
	return pid
}

// assertGone reaps pid if it is our zombie and checks it no longer exists.
func assertGone(t *testing.T, pid int) {
	t.Helper()
	var ws syscall.WaitStatus
	got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	if err == nil && got == 0 {
		t.Fatalf("process %d is still running", pid)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("kill(%d, 0) = %v, want ESRCH", pid, err)
	}
}

func mkfifo(t *testing.T) string {
	t.Helper()
	fifo := filepath.Join(t.TempDir(), "pid")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	return fifo
}

func TestCancelEndsProcessGroup(t *testing.T) {
	cases := map[string]string{
		// The grandchild dies of SIGTERM with its parent.
		"obeys SIGTERM": `sleep 300 & echo $! > "$PID_FIFO"; wait`,
		// The grandchild ignores SIGTERM (set before it reports its pid) and
		// must be SIGKILLed after the grace period.
		"ignores SIGTERM": `sh -c 'trap "" TERM; echo $$ > "$PID_FIFO"; exec sleep 300' & wait`,
	}
	for name, script := range cases {
		t.Run(name, func(t *testing.T) {
			adoptOrphans(t)
			fifo := mkfifo(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := fast.Run(ctx, newFakeEnv(t), Command{Shell: script, Env: map[string]string{"PID_FIFO": fifo}}, Input{StepID: "s"})
				done <- err
			}()
			pid := pidFromFIFO(t, fifo)
			cancel()
			err := <-done
			if pid == 0 {
				t.FailNow()
			}
			e := asError(t, err)
			if e.Kind != KindCancelled || !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v (kind %s), want a cancellation", err, e.Kind)
			}
			assertGone(t, pid)
		})
	}
}

func TestLeftoverChildrenEndWithTheCommand(t *testing.T) {
	adoptOrphans(t)
	fifo := mkfifo(t)
	done := make(chan error, 1)
	go func() {
		_, err := fast.Run(context.Background(), newFakeEnv(t), Command{Shell: `sleep 300 & echo $! > "$PID_FIFO"; exit 0`, Env: map[string]string{"PID_FIFO": fifo}}, Input{StepID: "s"})
		done <- err
	}()
	pid := pidFromFIFO(t, fifo)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if pid == 0 {
		t.FailNow()
	}
	assertGone(t, pid)
}

func TestCancelledBeforeStartRunsNothing(t *testing.T) {
	env := newFakeEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	marker := filepath.Join(env.dir, "ran")
	_, err := fast.Run(ctx, env, Command{Argv: []string{"/usr/bin/touch", marker}}, Input{StepID: "s"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("command ran: %v", err)
	}
}

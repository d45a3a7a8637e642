package extstep

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pollEvery is how often a terminating group is checked for survivors.
const pollEvery = 20 * time.Millisecond

// killWait bounds the wait for SIGKILLed processes to disappear; one stuck
// in uninterruptible sleep (a hung NFS read) cannot be waited out.
const killWait = 5 * time.Second

// groupAlive reports whether any live process remains in group pgid.
// kill(-pgid, 0) alone is not enough: it succeeds for zombies, and an init
// that does not reap orphans (a container started without --init) keeps
// them forever, so /proc is consulted to ignore them.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if pg, err := strconv.Atoi(f[2]); err == nil && pg == pgid {
			return true
		}
	}
	return false
}

// waitGone polls until group pgid has no live process or d has passed,
// and reports whether it is gone.
func waitGone(pgid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if !groupAlive(pgid) {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
}

// sweep ends whatever is left of group pgid: SIGTERM (unless termSent),
// then SIGKILL for survivors once grace has passed. It reports whether
// SIGKILL was needed.
func sweep(pgid int, grace time.Duration, termSent bool) bool {
	if !groupAlive(pgid) {
		return false
	}
	if !termSent {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
	}
	if grace > 0 && waitGone(pgid, grace) {
		return false
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	waitGone(pgid, killWait)
	return true
}

// lookPath finds name in the command's own PATH, which a step may set in
// its env, rather than the worker's.
func lookPath(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			// POSIX: an empty PATH entry is the current directory, which
			// would make the result depend on the workdir; skip it.
			continue
		}
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

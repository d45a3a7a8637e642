// Package testkit holds the few helpers that tests in several packages
// need alike. Only tests import it.
package testkit

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
)

// Buffer is an io.Writer that a command or goroutine writes to while the
// test reads what it wrote so far.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Alive reports whether pid is a live process. A zombie has exited and
// only waits for a parent that may never reap it (PID 1 in a container),
// so it does not count.
func Alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z"
}

package extstep

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
)

const (
	// maxDirectiveLine bounds how much of one line is held in memory; a
	// longer line is still logged in full (up to the log limit) but cannot
	// be a directive.
	maxDirectiveLine = 64 << 10
	// maxTailLine bounds each line of the tail kept for error messages.
	maxTailLine = 1 << 10
)

// stream consumes the command's merged stdout and stderr: every byte goes
// to the attempt log (up to a limit), the last lines are kept for the
// failure message, and directives update progress and outputs.
type stream struct {
	log      io.Writer
	logLimit int64
	logged   int64
	cut      bool

	tail     []string
	tailNext int
	tailLen  int

	mu       sync.Mutex
	progress map[string]string
	outputs  map[string]string
	dirty    bool
	logErr   error

	// onCheckpoint, when set, is called with the label of each
	// ::checkpoint line; it must not block.
	onCheckpoint func(label string)
}

func newStream(log io.Writer, logLimit int64, tailLines int) *stream {
	return &stream{
		log:      log,
		logLimit: logLimit,
		tail:     make([]string, tailLines),
		progress: map[string]string{},
		outputs:  map[string]string{},
	}
}

// consume reads r until EOF or a read error (the pipe's deadline).
func (s *stream) consume(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	overlong := false
	for {
		chunk, err := br.ReadSlice('\n')
		s.writeLog(chunk)
		if len(line)+len(chunk) <= maxDirectiveLine {
			line = append(line, chunk...)
		} else {
			overlong = true
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(line) > 0 || overlong {
			s.endLine(line, overlong)
		}
		line, overlong = line[:0], false
		if err != nil {
			return
		}
	}
}

func (s *stream) writeLog(p []byte) {
	if s.cut || len(p) == 0 {
		return
	}
	room := s.logLimit - s.logged
	if int64(len(p)) > room {
		p = p[:room]
		s.cut = true
	}
	n, err := s.log.Write(p)
	s.logged += int64(n)
	if s.cut && err == nil {
		_, err = fmt.Fprintf(s.log, "\n[gauntlet: log cut at %d bytes; later output is not kept]\n", s.logLimit)
	}
	if err != nil {
		s.mu.Lock()
		if s.logErr == nil {
			s.logErr = err
		}
		s.mu.Unlock()
		s.cut = true
	}
}

func (s *stream) endLine(raw []byte, overlong bool) {
	if n := len(raw); n > 0 && raw[n-1] == '\n' {
		raw = raw[:n-1]
	}
	text := string(raw)
	if len(s.tail) > 0 {
		t := text
		if len(t) > maxTailLine {
			t = t[:maxTailLine] + "…"
		} else if overlong {
			t += "…"
		}
		s.tail[s.tailNext] = t
		s.tailNext = (s.tailNext + 1) % len(s.tail)
		s.tailLen = min(s.tailLen+1, len(s.tail))
	}
	if overlong {
		return
	}
	kind, rest := directiveOf(text)
	if kind == "" {
		return
	}
	if kind == "checkpoint" {
		if s.onCheckpoint != nil {
			s.onCheckpoint(checkpointLabel(rest))
		}
		return
	}
	pairs := parsePairs(rest)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch kind {
	case "progress":
		maps.Copy(s.progress, pairs)
		s.dirty = true
	case "output":
		maps.Copy(s.outputs, pairs)
	}
}

// markDirty makes the next report go out even without new progress (a
// checkpoint was published).
func (s *stream) markDirty() {
	s.mu.Lock()
	s.dirty = true
	s.mu.Unlock()
}

// takeProgress returns a copy of the progress so far and whether it changed
// since the last call.
func (s *stream) takeProgress() (map[string]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dirty := s.dirty
	s.dirty = false
	return maps.Clone(s.progress), dirty
}

// lastLines is the tail, oldest first. Call it once consume has returned.
func (s *stream) lastLines() []string {
	out := make([]string, 0, s.tailLen)
	start := (s.tailNext - s.tailLen + len(s.tail)) % max(len(s.tail), 1)
	for i := range s.tailLen {
		out = append(out, s.tail[(start+i)%len(s.tail)])
	}
	return out
}

// directiveOutputs returns the `::output` pairs. Call it once consume has
// returned.
func (s *stream) directiveOutputs() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.outputs)
}

func (s *stream) writeError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logErr
}

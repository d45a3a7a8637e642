package serving

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
)

// SampleOptions configure the sample log: a fraction of the scored records,
// with their features and prediction, written as JSON lines for the drift
// monitor, to a local directory, to the artifact store, or both.
type SampleOptions struct {
	// Dir holds the log; empty writes none.
	Dir string
	// Store, when set, receives the samples too, every ShipInterval (see
	// SampleChunk): where a fleet's monitor reads them.
	Store artifact.Store
	// Replica names this server in the store's chunk refs; required with
	// Store and unique in the fleet (see ReplicaName).
	Replica string
	// ShipInterval is how often samples are shipped to Store; default
	// DefaultShipInterval.
	ShipInterval time.Duration
	// Rate is the fraction of records logged, in [0, 1].
	Rate float64
	// MaxBytes rotates the current file once it is this large, and bounds
	// the samples waiting for a Store that cannot be reached.
	MaxBytes int64
	// Keep is how many rotated files are kept besides the current one.
	Keep int
	// Buffer is how many sampled records may wait for the writer; more are
	// dropped (and counted) so that logging never slows a request.
	Buffer int
}

// SampleFile is the name of the current sample log file; rotated files are
// named samples-<UTC time>.jsonl and sort in the order they were written.
const SampleFile = "samples.jsonl"

// Sample is one line of the sample log.
type Sample struct {
	Time     time.Time      `json:"time"`
	Model    string         `json:"model"`
	Version  string         `json:"version"`
	Features map[string]any `json:"features"`
	Score    float64        `json:"score"`
	Label    string         `json:"label"`
}

type sampleLog struct {
	opts    SampleOptions
	ch      chan Sample
	done    chan struct{}
	metrics *Metrics
	errs    func(error)
	ship    *shipper // nil without a Store

	f    *os.File
	w    *bufio.Writer
	size int64
}

func openSampleLog(opts SampleOptions, metrics *Metrics, log *slog.Logger) (*sampleLog, error) {
	errs := func(err error) { log.Error("sample log", "err", err) }
	l := &sampleLog{opts: opts, ch: make(chan Sample, opts.Buffer), done: make(chan struct{}), metrics: metrics, errs: errs}
	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("sample log: %w", err)
		}
		if err := l.open(); err != nil {
			return nil, err
		}
	}
	if opts.Store != nil {
		sh, err := newShipper(opts, metrics, log)
		if err != nil {
			if l.f != nil {
				l.f.Close()
			}
			return nil, err
		}
		l.ship = sh
	}
	go l.run()
	return l, nil
}

// offer queues s unless the writer is behind; it never blocks.
func (l *sampleLog) offer(s Sample) {
	select {
	case l.ch <- s:
	default:
		l.metrics.sampleDropped.Inc()
	}
}

// close writes what is queued, closes the file and ships what is left to
// the store. No offer may follow.
func (l *sampleLog) close() {
	close(l.ch)
	<-l.done
	if l.ship != nil {
		l.ship.close()
	}
}

func (l *sampleLog) run() {
	defer close(l.done)
	for s := range l.ch {
		line, err := json.Marshal(s)
		if err != nil {
			l.metrics.sampleDropped.Inc()
			l.errs(fmt.Errorf("sample log: encode: %w", err))
			continue
		}
		line = append(line, '\n')
		if l.ship != nil {
			l.ship.add(s, line)
		}
		if l.opts.Dir == "" {
			l.metrics.sampled.Inc()
			continue
		}
		if err := l.write(line); err != nil {
			l.metrics.sampleDropped.Inc()
			l.errs(err)
			continue
		}
		l.metrics.sampled.Inc()
		// Flush when the queue is empty: a burst is written in one go, and
		// what was sampled reaches the file without waiting for more.
		if len(l.ch) == 0 {
			if err := l.w.Flush(); err != nil {
				l.errs(fmt.Errorf("sample log: %w", err))
			}
		}
	}
	if l.f != nil {
		if err := l.w.Flush(); err != nil {
			l.errs(fmt.Errorf("sample log: %w", err))
		}
		if err := l.f.Close(); err != nil {
			l.errs(fmt.Errorf("sample log: %w", err))
		}
	}
}

func (l *sampleLog) open() error {
	path := filepath.Join(l.opts.Dir, SampleFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("sample log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("sample log: %w", err)
	}
	l.f, l.size = f, st.Size()
	if l.w == nil {
		l.w = bufio.NewWriterSize(f, 64<<10)
	} else {
		l.w.Reset(f)
	}
	return nil
}

func (l *sampleLog) write(line []byte) error {
	if l.f == nil {
		// A failed rotation left no file; try again rather than stop logging.
		if err := l.open(); err != nil {
			return err
		}
	}
	if l.size > 0 && l.size+int64(len(line)) > l.opts.MaxBytes {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	n, err := l.w.Write(line)
	l.size += int64(n)
	if err != nil {
		return fmt.Errorf("sample log: %w", err)
	}
	return nil
}

// rotate renames the current file aside, removes the oldest rotated files
// beyond Keep and starts a new current file.
func (l *sampleLog) rotate() error {
	err := l.w.Flush()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	if err != nil {
		return fmt.Errorf("sample log: rotate: %w", err)
	}
	name := "samples-" + time.Now().UTC().Format("20060102T150405.000000000") + ".jsonl"
	if err := os.Rename(filepath.Join(l.opts.Dir, SampleFile), filepath.Join(l.opts.Dir, name)); err != nil {
		return fmt.Errorf("sample log: rotate: %w", err)
	}
	rotated, err := l.rotated()
	if err != nil {
		return err
	}
	for len(rotated) > l.opts.Keep {
		if err := os.Remove(filepath.Join(l.opts.Dir, rotated[0])); err != nil {
			return fmt.Errorf("sample log: rotate: %w", err)
		}
		rotated = rotated[1:]
	}
	return l.open()
}

func (l *sampleLog) rotated() ([]string, error) {
	entries, err := os.ReadDir(l.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("sample log: %w", err)
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, "samples-") && strings.HasSuffix(n, ".jsonl") {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

package watch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/serving"
)

// rotatedLayout is the time in a rotated sample log's name, as samplelog.go
// writes it (samples-<UTC time>.jsonl).
const rotatedLayout = "20060102T150405.000000000"

// window is what the samples after Since hold: the present values of each
// feature and, when labels are to be joined, each sample's join key and
// whether its prediction was positive.
type window struct {
	num       map[string][]float64
	cat       map[string][]string
	n         int
	from, to  time.Time
	partial   int
	keys      []string
	predicted []bool
}

func readWindow(ctx context.Context, src Samples, since time.Time, version string, cols []column, positive []string, withKeys bool) (*window, error) {
	w := &window{num: map[string][]float64{}, cat: map[string][]string{}}
	err := src.Logs(ctx, since, func(name string, r io.Reader) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("monitor: reading sample logs: %w", err)
		}
		return w.read(ctx, name, r, since, version, cols, positive, withKeys)
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

// Samples is where a pass reads what the model servers sampled.
type Samples interface {
	// Logs calls fn with each sample log that may hold samples logged
	// after since, oldest first; name is what an error about it says.
	Logs(ctx context.Context, since time.Time, fn func(name string, r io.Reader) error) error
}

// Dirs are model servers' local sample log directories
// (serving.SampleOptions.Dir), one per replica: what the embedded
// deployment target's servers write.
type Dirs []string

// Logs reads each directory's logs oldest first, leaving out rotated files
// that hold nothing after since.
func (d Dirs) Logs(ctx context.Context, since time.Time, fn func(name string, r io.Reader) error) error {
	for _, dir := range d {
		files, err := logFiles(dir, since)
		if err != nil {
			return err
		}
		for _, path := range files {
			if err := readPath(path, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func readPath(path string, fn func(name string, r io.Reader) error) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		// Rotation removed or renamed it since the listing: what it held
		// is older than the files that remain, or was renamed into one
		// of them.
		return nil
	}
	if err != nil {
		return fmt.Errorf("monitor: sample log: %w", err)
	}
	defer f.Close()
	return fn(path, f)
}

// logFiles lists a directory's sample logs oldest first, leaving out rotated
// files that hold nothing after since.
func logFiles(dir string, since time.Time) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("monitor: sample log directory: %w", err)
	}
	var rotated []string
	current := false
	for _, e := range entries {
		name := e.Name()
		if name == serving.SampleFile {
			current = true
			continue
		}
		stamp, ok := strings.CutPrefix(name, "samples-")
		if !ok {
			continue
		}
		stamp, ok = strings.CutSuffix(stamp, ".jsonl")
		if !ok {
			continue
		}
		// A name that is not a rotation time is read: skipping it could
		// hide samples, reading it costs only time.
		if t, err := time.Parse(rotatedLayout, stamp); err == nil && !since.IsZero() && !t.After(since) {
			continue
		}
		rotated = append(rotated, name)
	}
	slices.Sort(rotated)
	if current {
		rotated = append(rotated, serving.SampleFile)
	}
	paths := make([]string, len(rotated))
	for i, name := range rotated {
		paths[i] = filepath.Join(dir, name)
	}
	return paths, nil
}

func (w *window) read(ctx context.Context, name string, r io.Reader, since time.Time, version string, cols []column, positive []string, withKeys bool) error {
	return eachLine(ctx, r, name, func(line int, b []byte, complete bool) error {
		if !complete {
			w.partial++
			return nil
		}
		var s serving.Sample
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("monitor: sample log %s line %d: %w", name, line, err)
		}
		if s.Time.IsZero() || s.Features == nil {
			return fmt.Errorf("monitor: sample log %s line %d: not a sample (no time or no features)", name, line)
		}
		if !s.Time.After(since) || version != "" && s.Version != version {
			return nil
		}
		if err := w.add(s, cols, positive, withKeys); err != nil {
			return fmt.Errorf("monitor: sample log %s line %d: %w", name, line, err)
		}
		return nil
	})
}

func (w *window) add(s serving.Sample, cols []column, positive []string, withKeys bool) error {
	var key strings.Builder
	for _, c := range cols {
		v, ok := s.Features[c.name]
		if !ok {
			return fmt.Errorf("the sample has no feature %q of the model (logged by model %s version %s)", c.name, s.Model, s.Version)
		}
		var text string
		if c.numeric {
			switch x := v.(type) {
			case nil:
			case float64:
				w.num[c.name] = append(w.num[c.name], x)
				text = canonicalNumber(x)
			default:
				return fmt.Errorf("feature %q is %s, want a number or null", c.name, describe(v))
			}
		} else {
			switch x := v.(type) {
			case nil:
				w.cat[c.name] = append(w.cat[c.name], missingCategory)
			case string:
				w.cat[c.name] = append(w.cat[c.name], x)
				text = x
			default:
				return fmt.Errorf("feature %q is %s, want a string or null", c.name, describe(v))
			}
		}
		if withKeys {
			writeKeyPart(&key, text)
		}
	}
	if withKeys {
		w.keys = append(w.keys, key.String())
		w.predicted = append(w.predicted, slices.Contains(positive, s.Label))
	}
	if w.n == 0 || s.Time.Before(w.from) {
		w.from = s.Time
	}
	if w.n == 0 || s.Time.After(w.to) {
		w.to = s.Time
	}
	w.n++
	return nil
}

// eachLine calls fn for every line of r, numbered from 1, without its
// newline; complete is false for a last line that has none.
func eachLine(ctx context.Context, r io.Reader, path string, fn func(line int, b []byte, complete bool) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for line := 1; ; line++ {
		if line%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("monitor: reading %s: %w", path, err)
			}
		}
		b, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			if len(b) == 0 {
				return nil
			}
			return fn(line, b, false)
		}
		if err != nil {
			return fmt.Errorf("monitor: reading %s: %w", path, err)
		}
		if err := fn(line, bytes.TrimSuffix(b[:len(b)-1], []byte{'\r'}), true); err != nil {
			return err
		}
	}
}

// canonicalNumber is the shortest text that reads back as v, so that 39,
// 39.0 and 3.9e1 in a labels file all join the sample that logged 39.
func canonicalNumber(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// writeKeyPart length-prefixes each value so that no value can mimic a
// separator and two different records never share a key.
func writeKeyPart(b *strings.Builder, v string) {
	b.WriteString(strconv.Itoa(len(v)))
	b.WriteByte(':')
	b.WriteString(v)
}

// describe names a decoded JSON value for an error message.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case float64:
		return "the number " + canonicalNumber(x)
	case string:
		return "the string " + strconv.Quote(x)
	case bool:
		return "the boolean " + strconv.FormatBool(x)
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("%T", v)
}

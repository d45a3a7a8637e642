package report

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/atomicfile"
)

// ErrConflict is returned when the report directory already holds a
// different report: evidence that a reviewer may have read is never replaced.
var ErrConflict = errors.New("report directory exists with different content")

// writeFunc writes one file of the report; tests swap it to fail midway.
type writeFunc func(path string, data []byte) error

// Render writes the report for ev into dir, which must not exist yet (or be
// empty). The files are written to a temporary sibling directory that is
// renamed into place, so dir is either absent or complete. Rendering the same
// evidence again (an activity retry after the rename) is a no-op that returns
// the same Result; different evidence for an existing dir is ErrConflict.
func Render(dir string, ev Evidence) (Result, error) {
	return render(dir, ev, atomicfile.Create)
}

func render(dir string, ev Evidence, write writeFunc) (Result, error) {
	parent, base, err := splitDir(dir)
	if err != nil {
		return Result{}, fmt.Errorf("report: %w", err)
	}
	files, err := build(ev)
	if err != nil {
		return Result{}, fmt.Errorf("report: %w", err)
	}
	res := Result{Dir: dir}
	for _, f := range files {
		sum := sha256.Sum256(f.data)
		res.Files = append(res.Files, File{Name: f.name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(f.data))})
	}
	slices.SortFunc(res.Files, func(a, b File) int { return strings.Compare(a.Name, b.Name) })

	if err := writeAtomically(parent, base, files, write); err != nil {
		if !errors.Is(err, os.ErrExist) {
			return Result{}, fmt.Errorf("report: %w", err)
		}
		same, cerr := sameFiles(dir, res.Files)
		if cerr != nil {
			return Result{}, fmt.Errorf("report: %s exists: %w", dir, cerr)
		}
		if !same {
			return Result{}, fmt.Errorf("report: %s: %w", dir, ErrConflict)
		}
	}
	return res, nil
}

type namedFile struct {
	name string
	data []byte
}

// build renders every file in memory, so that no I/O starts before the
// evidence is known to render.
func build(ev Evidence) ([]namedFile, error) {
	if err := ev.validate(); err != nil {
		return nil, err
	}
	js, err := json.MarshalIndent(ev, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", EvidenceFile, err)
	}
	files := []namedFile{{EvidenceFile, append(js, '\n')}}
	pngs, err := plots(&ev)
	if err != nil {
		return nil, err
	}
	files = append(files, pngs...)
	html, err := page(&ev)
	if err != nil {
		return nil, err
	}
	return append(files, namedFile{IndexFile, html}), nil
}

// splitDir returns the parent and the name of the report directory.
func splitDir(dir string) (parent, base string, err error) {
	parent, base = filepath.Split(filepath.Clean(dir))
	if base == "" || base == "." || base == ".." || base == string(filepath.Separator) {
		return "", "", fmt.Errorf("%q does not name a directory that can be created", dir)
	}
	if parent == "" {
		parent = "."
	}
	return parent, base, nil
}

// writeAtomically writes files into a temporary directory in parent and
// renames it to base. On any failure the temporary directory is removed. An
// existing non-empty directory makes the rename fail with an error matching
// os.ErrExist.
func writeAtomically(parent, base string, files []namedFile, write writeFunc) (err error) {
	dir := filepath.Join(parent, base)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("create parent of %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".tmp-")
	if err != nil {
		return fmt.Errorf("create temporary directory for %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			if rerr := os.RemoveAll(tmp); rerr != nil {
				err = errors.Join(err, fmt.Errorf("remove %s: %w", tmp, rerr))
			}
		}
	}()
	for _, f := range files {
		if err := write(filepath.Join(tmp, f.name), f.data); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	// MkdirTemp makes the directory private; a report is meant to be read.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(dir); serr == nil {
			return fmt.Errorf("rename into place: %w", os.ErrExist)
		}
		return fmt.Errorf("rename into place: %w", err)
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// sameFiles reports whether dir holds exactly the given files.
func sameFiles(dir string, want []File) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	if len(entries) != len(want) {
		return false, nil
	}
	for _, f := range want {
		b, err := os.ReadFile(filepath.Join(dir, f.Name))
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != f.SHA256 {
			return false, nil
		}
	}
	return true, nil
}

// Package checkpoint keeps a step's checkpoint directory in the fleet's
// artifact store, so that an attempt on any host resumes from the last
// checkpoint any earlier attempt published: a spot node replaced by a
// machine on another host continues training where the lost one stopped
// rather than at epoch 0.
//
// A checkpoint is a tree (artifact.Tree) named by one ref per run, step and
// inputs, checkpoints/<run>/<step>/<key> (see Name). Every publish stores
// the directory as a tree, then moves the ref with compare-and-swap from
// the version this attempt last saw: an attempt that another has
// overtaken (a node declared lost that still runs) fails with
// ErrSuperseded instead of rolling the checkpoint back. Unchanged files are
// blobs the store already has, so a publish sends only what changed.
//
// The package knows nothing of steps or Temporal: train and the `run:`
// contract open a Dir over the directory their trainer writes.
package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
)

// RefPrefix starts the name of every checkpoint ref.
const RefPrefix = "checkpoints/"

// ErrSuperseded reports a publish that found the ref moved by another
// attempt since this one read or wrote it.
var ErrSuperseded = errors.New("checkpoint superseded: another attempt of the step published since this one")

// Name is the ref of the checkpoint of one run's step for one set of
// inputs (key: a digest of them, so that a step run again with other
// inputs never resumes a checkpoint made for these). Each part becomes one
// segment of the ref name.
func Name(run, step, key string) string {
	return RefPrefix + segment(run) + "/" + segment(step) + "/" + segment(key)
}

// segment makes s one valid ref segment (see artifact.ValidateRefName).
func segment(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] == '.' {
		b = append([]byte{'_'}, b...)
	}
	return string(b)
}

// Record is what a checkpoint ref holds: the tree and who published it.
type Record struct {
	Tree artifact.Digest `json:"tree"`
	// Seq counts the publishes of the ref, 1 for the first.
	Seq int `json:"seq"`
	// Label is the publisher's word for the checkpoint ("epoch 3", or the
	// pairs of a `run:` command's ::checkpoint line).
	Label string `json:"label,omitempty"`
	// Host is the hostname of the machine that published it.
	Host string    `json:"host,omitempty"`
	At   time.Time `json:"at"`
}

// Dir is a local directory kept in step with a checkpoint ref.
type Dir struct {
	store artifact.Store
	name  string
	path  string

	mu       sync.Mutex
	version  string
	current  *Record
	restored *Record
}

// Open makes path hold the checkpoint the ref name points to, replacing
// whatever the directory held (the store is the truth: a directory left by
// an earlier attempt on this host may be older than what another host
// published since), or an empty directory when there is none yet.
func Open(ctx context.Context, store artifact.Store, name, path string) (*Dir, error) {
	if err := artifact.ValidateRefName(name); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	d := &Dir{store: store, name: name, path: path}
	ref, err := store.GetRef(ctx, name)
	switch {
	case errors.Is(err, artifact.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("checkpoint: read %s in %s: %w", name, store.Location(), err)
	default:
		var rec Record
		if err := json.Unmarshal(ref.Data, &rec); err != nil || rec.Tree == "" {
			return nil, fmt.Errorf("checkpoint: ref %s in %s holds no checkpoint record (%v)", name, store.Location(), err)
		}
		d.version, d.current, d.restored = ref.Version, &rec, &rec
	}
	if err := os.RemoveAll(path); err != nil {
		return nil, fmt.Errorf("checkpoint: clear %s: %w", path, err)
	}
	if d.restored == nil {
		if err := os.MkdirAll(path, 0o755); err != nil {
			return nil, fmt.Errorf("checkpoint: %w", err)
		}
		return d, nil
	}
	if err := artifact.FetchTree(ctx, store, d.restored.Tree, path); err != nil {
		return nil, fmt.Errorf("checkpoint: restore %s (%s, %s) into %s: %w", name, d.restored.Tree, d.restored.Label, path, err)
	}
	return d, nil
}

// Path is the local directory.
func (d *Dir) Path() string { return d.path }

// Name is the ref's name.
func (d *Dir) Name() string { return d.name }

// Restored is the checkpoint Open found in the store, nil when there was
// none: the attempt starts from scratch.
func (d *Dir) Restored() *Record { return d.restored }

// Current is the checkpoint the ref points to as this attempt last saw it
// (restored or published), nil before there is one.
func (d *Dir) Current() *Record {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current
}

// Publish stores the directory as a tree and points the ref at it,
// returning the record and whether anything changed: a directory equal to
// the current checkpoint, or an empty one, publishes nothing. Files and
// directories whose names start with '.' are left out: they are the
// temporary files of writes not yet renamed into place.
func (d *Dir) Publish(ctx context.Context, label string) (*Record, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fsys := visible{os.DirFS(d.path)}
	if empty, err := isEmpty(fsys); err != nil {
		return nil, false, fmt.Errorf("checkpoint: %s: %w", d.path, err)
	} else if empty {
		return d.current, false, nil
	}
	tree, err := artifact.PutTree(ctx, d.store, fsys)
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint: store %s: %w", d.path, err)
	}
	if d.current != nil && d.current.Tree == tree {
		return d.current, false, nil
	}
	rec := &Record{Tree: tree, Seq: 1, Label: label, At: time.Now().UTC()}
	if d.current != nil {
		rec.Seq = d.current.Seq + 1
	}
	rec.Host, _ = os.Hostname()
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint: %w", err)
	}
	v, err := d.store.PutRef(ctx, d.name, b, d.version)
	if errors.Is(err, artifact.ErrConflict) {
		return nil, false, fmt.Errorf("checkpoint: %s in %s: %w", d.name, d.store.Location(), ErrSuperseded)
	}
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint: move %s in %s: %w", d.name, d.store.Location(), err)
	}
	d.version, d.current = v, rec
	return rec, true, nil
}

// visible hides names starting with '.' from a directory's file system.
type visible struct{ fs.FS }

func hidden(name string) bool {
	for _, part := range strings.Split(name, "/") {
		if strings.HasPrefix(part, ".") && part != "." {
			return true
		}
	}
	return false
}

func (v visible) Open(name string) (fs.File, error) {
	if hidden(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return v.FS.Open(name)
}

func (v visible) ReadDir(name string) ([]fs.DirEntry, error) {
	if hidden(name) {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	entries, err := fs.ReadDir(v.FS, name)
	out := entries[:0]
	for _, e := range entries {
		if !hidden(path.Join(name, e.Name())) {
			out = append(out, e)
		}
	}
	return out, err
}

// isEmpty reports whether fsys holds no file at all: a trainer that has
// not yet written a checkpoint has nothing to publish.
func isEmpty(fsys fs.FS) (bool, error) {
	empty := true
	err := fs.WalkDir(fsys, ".", func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() {
			empty = false
			return fs.SkipAll
		}
		return nil
	})
	return empty, err
}

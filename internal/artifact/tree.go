package artifact

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// TreeMediaType marks a blob as a tree index.
const TreeMediaType = "application/vnd.gauntlet.tree.v1+json"

// Tree is the index of a directory stored as one artifact: every file is a
// content-addressed blob, and the index, itself a blob, lists them. The
// index's digest names the whole tree, so equal directories get equal
// digests and unchanged files are never stored twice.
//
// Only regular files are kept: empty directories, permissions and
// timestamps are not part of an artifact.
type Tree struct {
	MediaType string     `json:"mediaType"`
	Files     []TreeFile `json:"files"`
}

// TreeFile is one file of a Tree; Path is slash-separated and relative.
type TreeFile struct {
	Path   string `json:"path"`
	Digest Digest `json:"digest"`
	Size   int64  `json:"size"`
}

// PutDir stores the directory dir as a tree and returns the index's digest.
func PutDir(ctx context.Context, s Store, dir string) (Digest, error) {
	return PutTree(ctx, s, os.DirFS(dir))
}

// PutTree stores every regular file of fsys and then the index. The index is
// written last, so a failure part way leaves at most unreferenced complete
// blobs, never a tree that names missing files. Symbolic links and other
// special files are refused rather than silently followed or dropped.
func PutTree(ctx context.Context, s Store, fsys fs.FS) (Digest, error) {
	tree := Tree{MediaType: TreeMediaType, Files: []TreeFile{}}
	err := fs.WalkDir(fsys, ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return nil
		}
		if !e.Type().IsRegular() {
			return fmt.Errorf("%s: %w (%s)", p, ErrNotRegular, e.Type())
		}
		f, err := fsys.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		info, err := s.Put(ctx, f)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		tree.Files = append(tree.Files, TreeFile{Path: p, Digest: info.Digest, Size: info.Size})
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("artifact: put tree: %w", err)
	}
	// Sorted by full path, the index depends only on the files, not on the
	// order a file system happens to list them in.
	slices.SortFunc(tree.Files, func(a, b TreeFile) int { return strings.Compare(a.Path, b.Path) })
	index, err := json.Marshal(tree)
	if err != nil {
		return "", fmt.Errorf("artifact: put tree: encode index: %w", err)
	}
	info, err := s.Put(ctx, bytes.NewReader(index))
	if err != nil {
		return "", fmt.Errorf("artifact: put tree index: %w", err)
	}
	return info.Digest, nil
}

// ReadTree reads and validates the tree index d.
func ReadTree(ctx context.Context, s Store, d Digest) (Tree, error) {
	rc, err := s.Get(ctx, d)
	if err != nil {
		return Tree{}, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return Tree{}, err
	}
	var t Tree
	if err := json.Unmarshal(b, &t); err != nil || t.MediaType != TreeMediaType {
		return Tree{}, fmt.Errorf("artifact: %s is not a tree index", d)
	}
	if err := t.validate(); err != nil {
		return Tree{}, fmt.Errorf("artifact: tree %s: %w", d, err)
	}
	return t, nil
}

// validate rejects indexes that could write outside the destination or
// describe an impossible directory, since an index may come from anywhere.
func (t Tree) validate() error {
	paths := make([]string, 0, len(t.Files))
	seen := make(map[string]bool, len(t.Files))
	for _, f := range t.Files {
		if !fs.ValidPath(f.Path) || f.Path == "." || strings.Contains(f.Path, `\`) {
			return fmt.Errorf("invalid path %q", f.Path)
		}
		if seen[f.Path] {
			return fmt.Errorf("duplicate path %q", f.Path)
		}
		if _, err := ParseDigest(string(f.Digest)); err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		seen[f.Path] = true
		paths = append(paths, f.Path)
	}
	for _, p := range paths {
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if seen[dir] {
				return fmt.Errorf("path %q is both a file and a directory", dir)
			}
		}
	}
	return nil
}

// FetchTree writes the tree d into dst, which must not exist or be an empty
// directory. Files are assembled in a temporary sibling directory and
// renamed into place at the end, so dst appears complete or not at all.
func FetchTree(ctx context.Context, s Store, d Digest, dst string) (err error) {
	t, err := ReadTree(ctx, s, d)
	if err != nil {
		return err
	}
	parent := filepath.Dir(filepath.Clean(dst))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("artifact: fetch %s: %w", d, err)
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-fetch-*")
	if err != nil {
		return fmt.Errorf("artifact: fetch %s: %w", d, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	for _, f := range t.Files {
		p := filepath.Join(tmp, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("artifact: fetch %s: %w", d, err)
		}
		if err := fetchTo(ctx, s, f.Digest, p); err != nil {
			return fmt.Errorf("artifact: fetch %s: %s: %w", d, f.Path, err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("artifact: fetch %s: %w", d, err)
	}
	// syscall.Rename, unlike os.Rename, replaces an empty directory, and
	// refuses a non-empty one, in one atomic step.
	if err := syscall.Rename(tmp, dst); err != nil {
		return fmt.Errorf("artifact: fetch %s into %s: %w", d, dst, err)
	}
	return syncDir(parent)
}

// Fetch writes blob d to the file path, replacing it atomically.
func Fetch(ctx context.Context, s Store, d Digest, path string) error {
	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, func(w io.Writer) error { return copyBlob(ctx, s, d, w) })
	if err != nil {
		return fmt.Errorf("artifact: fetch %s to %s: %w", d, path, err)
	}
	if err := commitTemp(tmp, path); err != nil {
		return fmt.Errorf("artifact: fetch %s to %s: %w", d, path, err)
	}
	return nil
}

// fetchTo writes a blob into a file inside a directory that is not yet
// visible, so no temporary name is needed.
func fetchTo(ctx context.Context, s Store, d Digest, path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if err := copyBlob(ctx, s, d, f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func copyBlob(ctx context.Context, s Store, d Digest, w io.Writer) error {
	rc, err := s.Get(ctx, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(w, rc)
	return err
}

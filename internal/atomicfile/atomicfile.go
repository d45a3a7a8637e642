// Package atomicfile replaces files whole: a reader, or a process that
// starts after a crash, sees the old file or the new one, never half of it.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data through a synced temporary file in the same
// directory (which it makes if missing) and a rename. The file is readable
// by its owner alone, as the temporary file was created.
func Write(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	err = fill(f, data)
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

// Create writes data to a new file at path (0644; an existing file is an
// error) and fsyncs it: for files written into a staging directory that is
// renamed into place whole, which must not point at data still in the page
// cache after a crash.
func Create(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	return fill(f, data)
}

// fill writes data to f, fsyncs and closes it, keeping the first error.
func fill(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesWholeAndLeavesNoTemporaryFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "ring")
	for _, content := range []string{"first\n", "second, longer than the first\n"} {
		if err := Write(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; want %q", got, err, content)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the file", len(entries))
	}
}

func TestWriteIntoADirectoryItCannotUseFailsAndKeepsTheOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := Write(path, []byte("old")); err != nil {
		t.Fatal(err)
	}
	// A directory at the target cannot be replaced by a rename.
	if err := Write(dir, []byte("new")); err == nil {
		t.Fatal("writing over a directory succeeded")
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Fatalf("old file now %q", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("a failed write left %d entries", len(entries))
	}
}

func TestCreateWritesANewFileAndRefusesAnExistingOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "holdout.csv")
	if err := Create(path, []byte("a,b\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != "a,b\n" {
		t.Fatalf("read %q, %v", got, err)
	}
	if err := Create(path, []byte("other")); err == nil {
		t.Fatal("Create replaced an existing file")
	}
	if got, _ := os.ReadFile(path); string(got) != "a,b\n" {
		t.Fatalf("existing file now %q", got)
	}
}

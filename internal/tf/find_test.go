package tf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fakeBinary(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFindOrder(t *testing.T) {
	root := t.TempDir()
	flagBin := fakeBinary(t, filepath.Join(root, "flag", "terraform"))
	envBin := fakeBinary(t, filepath.Join(root, "env", "terraform"))
	repo := filepath.Join(root, "repo")
	repoBin := fakeBinary(t, filepath.Join(repo, "bin", "terraform"))
	if err := os.WriteFile(filepath.Join(repo, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(repo, "internal", "tf")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(sub)
	t.Setenv(EnvTerraform, envBin)

	for _, c := range []struct {
		name, flag, env, want string
	}{
		{"flag wins", flagBin, envBin, flagBin},
		{"then env", "", envBin, envBin},
		{"then bin/terraform at the repository root", "", "", repoBin},
	} {
		t.Setenv(EnvTerraform, c.env)
		got, err := Find(c.flag)
		if err != nil || got != c.want {
			t.Errorf("%s: Find = %q, %v; want %q", c.name, got, err, c.want)
		}
	}
}

func TestFindMissingNamesMakeTools(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv(EnvTerraform, "")
	for _, flag := range []string{"", filepath.Join(dir, "nope")} {
		_, err := Find(flag)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "make tools") {
			t.Errorf("Find(%q) = %v, want ErrNotFound naming make tools", flag, err)
		}
	}
	t.Setenv(EnvTerraform, filepath.Join(dir, "missing"))
	if _, err := Find(""); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), EnvTerraform) {
		t.Errorf("a bad %s gave %v", EnvTerraform, err)
	}
	// A directory is not a binary.
	if _, err := Find(dir); !errors.Is(err, ErrNotFound) {
		t.Errorf("Find(dir) = %v", err)
	}
}

func TestNewWithoutBinary(t *testing.T) {
	_, err := New(Config{Terraform: filepath.Join(t.TempDir(), "terraform"), Dir: t.TempDir()})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "make tools") {
		t.Errorf("New with a missing binary: %v", err)
	}
}

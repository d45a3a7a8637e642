// Package onnxtest finds what the ONNX tests need outside Go: the ONNX
// Runtime library, the ONNX backend test data and Python with PyTorch. A
// missing one skips the test, except under CI=true, where it fails naming
// what to install.
package onnxtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/ort"
	"github.com/gauntlet-ml/gauntlet/internal/testkit"
)

// TestDataDir is where Debian's libonnx-testdata puts the ONNX backend test
// cases, one directory per case under node/.
const TestDataDir = "/usr/share/libonnx-testdata/data"

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	testkit.Need(t, format, args...)
}

// Root is the repository root.
func Root(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("onnxtest: cannot locate the repository")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "..")
}

// LibraryPath is $GAUNTLET_ONNXRUNTIME_LIB, else the library
// scripts/install-onnxruntime.sh puts into bin/onnxruntime/.
func LibraryPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(ort.EnvLibrary); p != "" {
		return p
	}
	return filepath.Join(Root(t), "bin", "onnxruntime", "libonnxruntime.so.1")
}

// Runtime loads ONNX Runtime.
func Runtime(t testing.TB) *ort.Runtime {
	t.Helper()
	p := LibraryPath(t)
	if _, err := os.Stat(p); err != nil {
		missing(t, "ONNX Runtime library %s: %v; run `make tools` (scripts/install-onnxruntime.sh) or set %s", p, err, ort.EnvLibrary)
	}
	rt, err := ort.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// NodeTests is the directory of the ONNX backend's operator test cases.
func NodeTests(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(TestDataDir, "node")
	if _, err := os.Stat(dir); err != nil {
		missing(t, "ONNX backend test data %s: %v; run `make tools` (Debian package libonnx-testdata)", dir, err)
	}
	return dir
}

// Python returns a Python that imports torch and onnx: $GAUNTLET_PYTHON,
// else python3 on PATH, else Debian's /usr/bin/python3 (python3-torch and
// python3-onnx install there, and a python3 of pyenv or a venv earlier on
// PATH does not see them).
func Python(t testing.TB) string {
	t.Helper()
	candidates := []string{os.Getenv("GAUNTLET_PYTHON"), "python3", "/usr/bin/python3"}
	var tried []string
	for _, c := range candidates {
		if c == "" {
			continue
		}
		py, err := exec.LookPath(c)
		if err != nil {
			tried = append(tried, c+": "+err.Error())
			continue
		}
		out, err := exec.Command(py, "-c", "import torch, onnx").CombinedOutput()
		if err == nil {
			return py
		}
		tried = append(tried, fmt.Sprintf("%s: %v: %s", py, err, bytes.TrimSpace(out)))
	}
	missing(t, "no Python that imports torch and onnx (%s); run `make tools` (Debian packages python3-torch, python3-onnx) or set GAUNTLET_PYTHON", strings.Join(tried, "; "))
	return ""
}

// Package onnxtest finds what the ONNX tests need outside Go: the ONNX
// Runtime library, the ONNX backend test data and Python with PyTorch. A
// missing one skips the test, except under CI=true, where it fails naming
// what to install.
package onnxtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/ort"
)

// TestDataDir is where Debian's libonnx-testdata puts the ONNX backend test
// cases, one directory per case under node/.
const TestDataDir = "/usr/share/libonnx-testdata/data"

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
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

// Python returns python3 after checking that it imports torch and onnx.
func Python(t testing.TB) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		missing(t, "python3: %v; run `make tools`", err)
	}
	if out, err := exec.Command(py, "-c", "import torch, onnx").CombinedOutput(); err != nil {
		missing(t, "python3 cannot import torch and onnx: %v: %s; run `make tools` (Debian packages python3-torch, python3-onnx)", err, out)
	}
	return py
}

package workerhost

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxtest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

func modelFlags(t *testing.T, args ...string) *ModelFlags {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	var f ModelFlags
	f.Register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return &f
}

// A library that is not there stops the start, naming where it was given
// and how to install one; none given leaves ONNX to fail at its first
// model; the flag wins over the environment and loads the library.
func TestModelFlags(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	_, err := modelFlags(t, "--onnxruntime-lib", missing).Options(envOf(nil))
	if err == nil || !strings.HasPrefix(err.Error(), "--onnxruntime-lib "+missing) || !strings.Contains(err.Error(), "install-onnxruntime.sh") {
		t.Errorf("missing library by flag: %v", err)
	}
	_, err = modelFlags(t).Options(envOf(map[string]string{EnvONNXRuntime: missing}))
	if err == nil || !strings.HasPrefix(err.Error(), EnvONNXRuntime+" "+missing) {
		t.Errorf("missing library by environment: %v", err)
	}
	if o, err := modelFlags(t).Options(envOf(nil)); err != nil || o != (scoring.Options{}) {
		t.Errorf("nothing given: %+v, %v", o, err)
	}
	onnxtest.Runtime(t)
	lib := onnxtest.LibraryPath(t)
	o, err := modelFlags(t, "--onnxruntime-lib", lib).Options(envOf(map[string]string{EnvONNXRuntime: missing}))
	if err != nil || o.ONNXRuntime != lib {
		t.Errorf("flag over environment: %+v, %v", o, err)
	}
}

package workerhost

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/ort"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

// EnvONNXRuntime names the ONNX Runtime library when --onnxruntime-lib is
// not given.
const EnvONNXRuntime = ort.EnvLibrary

// ModelFlags are how the worker, `gauntlet dev`, `gauntlet step` and
// `gauntlet serve` run models: the ONNX Runtime library.
type ModelFlags struct {
	ONNXRuntime string
	fs          *pflag.FlagSet
}

// Register adds --onnxruntime-lib to fs.
func (f *ModelFlags) Register(fs *pflag.FlagSet) {
	f.fs = fs
	fs.StringVar(&f.ONNXRuntime, "onnxruntime-lib", "", "the ONNX Runtime shared library that runs ONNX models: lib/libonnxruntime.so.VERSION of the official release archive, or bin/onnxruntime/libonnxruntime.so.1 from `make tools` (env "+EnvONNXRuntime+"); without it ONNX models fail saying how to install it, Gauntlet's own format works")
}

// Options resolves the flag, then the environment. A library named either
// way is loaded here, so that one that is missing or is not ONNX Runtime
// stops the start naming where it was given, and every model of the
// process, also those no option reaches, runs on it.
func (f *ModelFlags) Options(getenv func(string) string) (scoring.Options, error) {
	lib, from := f.ONNXRuntime, "--onnxruntime-lib"
	if f.fs == nil || !f.fs.Changed("onnxruntime-lib") {
		lib, from = getenv(EnvONNXRuntime), EnvONNXRuntime
	}
	if lib == "" {
		return scoring.Options{}, nil
	}
	if _, err := ort.Load(lib); err != nil {
		return scoring.Options{}, fmt.Errorf("%s %s: %w", from, lib, err)
	}
	return scoring.Options{ONNXRuntime: lib}, nil
}

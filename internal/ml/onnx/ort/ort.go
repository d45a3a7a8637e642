// Package ort runs ONNX graphs with ONNX Runtime, loaded at run time from its
// shared library. The C API is reached through purego (dlopen and calls
// without cgo), so Gauntlet keeps building with CGO_ENABLED=0 and a binary
// without the library still starts: only ONNX use fails, with an error that
// says how to install the library.
//
// ONNX Runtime's C API is one table of function pointers (OrtApi) whose
// order never changes between releases; new functions are appended. This
// package calls the few it needs by their index in that table.
package ort

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// EnvLibrary names the environment variable holding the library's path.
const EnvLibrary = "GAUNTLET_ONNXRUNTIME_LIB"

// DefaultLibrary is what the dynamic loader is asked for when no path is
// set: a library installed system-wide or on LD_LIBRARY_PATH.
const DefaultLibrary = "libonnxruntime.so.1"

// apiVersion is the C API version requested: ONNX Runtime 1.18 and later
// serve it, and it holds every function used here.
const apiVersion = 18

// Indices into OrtApi, counted from onnxruntime_c_api.h.
const (
	fnGetErrorCode                   = 1
	fnGetErrorMessage                = 2
	fnCreateEnv                      = 3
	fnCreateSessionFromArray         = 8
	fnRun                            = 9
	fnCreateSessionOptions           = 10
	fnSetIntraOpNumThreads           = 24
	fnSessionGetInputCount           = 30
	fnSessionGetOutputCount          = 31
	fnSessionGetInputName            = 36
	fnSessionGetOutputName           = 37
	fnCreateTensorAsOrtValue         = 48
	fnCreateTensorWithDataAsOrtValue = 49
	fnGetTensorMutableData           = 51
	fnGetTensorElementType           = 60
	fnGetDimensionsCount             = 61
	fnGetDimensions                  = 62
	fnGetTensorTypeAndShape          = 65
	fnGetValueType                   = 67
	fnCreateCPUMemoryInfo            = 69
	fnAllocatorFree                  = 76
	fnGetAllocatorWithDefaultOptions = 78
	fnReleaseStatus                  = 93
	fnReleaseSession                 = 95
	fnReleaseValue                   = 96
	fnReleaseTensorTypeAndShapeInfo  = 99
	fnReleaseSessionOptions          = 100
	fnGetAvailableProviders          = 125
	fnReleaseAvailableProviders      = 126
	fnAppendCUDAV2                   = 204
	fnCreateCUDAProviderOptions      = 205
	fnReleaseCUDAProviderOptions     = 208
	fnCount                          = 209
)

const (
	// ORT_LOGGING_LEVEL_FATAL: every error also comes back as a status,
	// which the caller reports with its context; the runtime's own log
	// would repeat it on stderr.
	loggingLevelFatal = 4
	onnxTypeTensor    = 1 // ONNX_TYPE_TENSOR
)

// Execution providers as ONNX Runtime names them.
const (
	CPU  = "CPUExecutionProvider"
	CUDA = "CUDAExecutionProvider"
)

// ErrNoLibrary is matched (errors.Is) when the shared library cannot be
// loaded: ONNX models cannot run on this host until it is installed.
var ErrNoLibrary = errors.New("ONNX Runtime is not installed")

// Runtime is the loaded library with its one environment; it lives as long
// as the process.
type Runtime struct {
	path      string
	version   string
	fn        [fnCount]uintptr
	env       uintptr
	alloc     uintptr
	mem       uintptr // OrtMemoryInfo of CPU memory the caller owns, for RunInto
	providers []string
}

var (
	mu     sync.Mutex
	loaded *Runtime
)

// Load loads the library at path. An empty path means the library this
// process already loaded, else $GAUNTLET_ONNXRUNTIME_LIB, else
// DefaultLibrary through the dynamic loader's search path: a process that
// loads the library its --onnxruntime-lib flag names at start has every
// later model use it, also where no option reaches. ONNX Runtime wants one
// environment per process, so the first successful load is kept; asking
// for another path afterwards is an error.
func Load(path string) (*Runtime, error) {
	mu.Lock()
	defer mu.Unlock()
	if path == "" && loaded != nil {
		return loaded, nil
	}
	if path == "" {
		path = os.Getenv(EnvLibrary)
	}
	if path == "" {
		path = DefaultLibrary
	}
	if loaded != nil {
		if loaded.path != path {
			return nil, fmt.Errorf("ort: ONNX Runtime is already loaded from %s; this process cannot load %s too", loaded.path, path)
		}
		return loaded, nil
	}
	r, err := open(path)
	if err != nil {
		return nil, err
	}
	loaded = r
	return r, nil
}

func open(path string) (*Runtime, error) {
	if !nativeLittle {
		return nil, fmt.Errorf("ort: this host is big-endian, which no ONNX Runtime build supports: %w", ErrNoLibrary)
	}
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, fmt.Errorf("ort: load %s: %v: %w; set %s (or --onnxruntime-lib) to libonnxruntime.so from the official ONNX Runtime release archive (onnxruntime-linux-x64-1.30.0.tgz, lib/), or run scripts/install-onnxruntime.sh (make tools)",
			path, err, ErrNoLibrary, EnvLibrary)
	}
	sym, err := purego.Dlsym(h, "OrtGetApiBase")
	if err != nil {
		return nil, fmt.Errorf("ort: %s is not ONNX Runtime (no OrtGetApiBase): %w", path, ErrNoLibrary)
	}
	base, _, _ := purego.SyscallN(sym)
	if base == 0 {
		return nil, fmt.Errorf("ort: %s: OrtGetApiBase returned nothing: %w", path, ErrNoLibrary)
	}
	getAPI, getVersion := peek(base, 0), peek(base, 1)
	v, _, _ := purego.SyscallN(getVersion)
	r := &Runtime{path: path, version: goString(v)}
	api, _, _ := purego.SyscallN(getAPI, apiVersion)
	if api == 0 {
		return nil, fmt.Errorf("ort: %s is ONNX Runtime %s, which lacks C API version %d (1.18 or newer is needed): %w", path, r.version, apiVersion, ErrNoLibrary)
	}
	for i := range r.fn {
		r.fn[i] = peek(api, i)
	}
	var env uintptr
	logID := cstr("gauntlet")
	if err := r.status(r.call(fnCreateEnv, loggingLevelFatal, uintptr(unsafe.Pointer(logID)), uintptr(unsafe.Pointer(&env)))); err != nil {
		return nil, fmt.Errorf("ort: %s: create environment: %w", path, err)
	}
	r.env = env
	if err := r.status(r.call(fnGetAllocatorWithDefaultOptions, uintptr(unsafe.Pointer(&r.alloc)))); err != nil {
		return nil, fmt.Errorf("ort: %s: default allocator: %w", path, err)
	}
	// OrtDeviceAllocator (0), OrtMemTypeDefault (0): plain CPU memory.
	if err := r.status(r.call(fnCreateCPUMemoryInfo, 0, 0, uintptr(unsafe.Pointer(&r.mem)))); err != nil {
		return nil, fmt.Errorf("ort: %s: memory info: %w", path, err)
	}
	var list uintptr
	var n int32
	if err := r.status(r.call(fnGetAvailableProviders, uintptr(unsafe.Pointer(&list)), uintptr(unsafe.Pointer(&n)))); err != nil {
		return nil, fmt.Errorf("ort: %s: providers: %w", path, err)
	}
	for i := range int(n) {
		r.providers = append(r.providers, goString(peek(list, i)))
	}
	if err := r.status(r.call(fnReleaseAvailableProviders, list, uintptr(n))); err != nil {
		return nil, fmt.Errorf("ort: %s: providers: %w", path, err)
	}
	return r, nil
}

// Path is where the library was loaded from.
func (r *Runtime) Path() string { return r.path }

// Version is the library's release, e.g. "1.30.0".
func (r *Runtime) Version() string { return r.version }

// Providers lists the execution providers the library was built with. A
// provider other than the CPU's lives in a library of its own
// (libonnxruntime_providers_cuda.so beside libonnxruntime.so), so one
// listed here may still fail to start: the npm build lists CUDA and ships
// none of those libraries.
func (r *Runtime) Providers() []string { return slices.Clone(r.providers) }

// call calls OrtApi function i. The directive keeps what a pointer argument
// points to on the heap and alive until the call returns, provided the
// uintptr(unsafe.Pointer(…)) conversion is written in the call's argument
// list, as it is everywhere here.
//
//go:uintptrescapes
func (r *Runtime) call(i int, args ...uintptr) uintptr {
	r1, _, _ := purego.SyscallN(r.fn[i], args...)
	return r1
}

// Error is a failure ONNX Runtime reported.
type Error struct {
	Code int // OrtErrorCode
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("onnxruntime: %s (code %d)", e.Msg, e.Code) }

// status turns an OrtStatus pointer into an error and frees it.
func (r *Runtime) status(st uintptr) error {
	if st == 0 {
		return nil
	}
	code := r.call(fnGetErrorCode, st)
	msg := goString(r.call(fnGetErrorMessage, st))
	r.call(fnReleaseStatus, st)
	return &Error{Code: int(code), Msg: msg}
}

// peek reads the i-th pointer-sized word at the C address p.
func peek(p uintptr, i int) uintptr {
	return *(*uintptr)(unsafe.Add(cptr(p), i*int(unsafe.Sizeof(uintptr(0)))))
}

// cptr turns a C address into a pointer; the conversion through memory is
// what keeps vet's unsafeptr check quiet for addresses that are not Go's.
func cptr(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

// cstr returns a NUL-terminated copy of s.
func cstr(s string) *byte {
	b := append([]byte(s), 0)
	return &b[0]
}

func goString(p uintptr) string {
	if p == 0 {
		return ""
	}
	base := cptr(p)
	n := 0
	for *(*byte)(unsafe.Add(base, n)) != 0 {
		n++
	}
	return string(unsafe.Slice((*byte)(base), n))
}

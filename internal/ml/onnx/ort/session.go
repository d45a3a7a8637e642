package ort

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"unsafe"
)

// Provider choices for a session.
type Provider string

const (
	// ProviderCPU runs on the CPU only.
	ProviderCPU Provider = "cpu"
	// ProviderCUDA requires CUDA: a library without it is an error.
	ProviderCUDA Provider = "cuda"
	// ProviderAuto takes CUDA when the library has it and it starts, the
	// CPU otherwise.
	ProviderAuto Provider = "auto"
)

// Options configures a session.
type Options struct {
	Provider Provider // default ProviderCPU
	// IntraOpThreads bounds the threads one Run uses; 0 lets ONNX Runtime
	// take one per core. A server running many requests at once wants 1.
	IntraOpThreads int
}

// Session is a loaded graph. Run is safe for concurrent use.
type Session struct {
	rt       *Runtime
	inputs   []string
	outputs  []string
	provider string
	// Why CUDA was not used under ProviderAuto, when it was not.
	fallback string

	mu     sync.RWMutex // Run holds it shared, Close exclusively
	h      uintptr
	pins   keep
	inPtr  []*byte
	outPtr []*byte
}

// NewSession parses model (ONNX protobuf bytes) and prepares it to run.
func (r *Runtime) NewSession(model []byte, o Options) (*Session, error) {
	if len(model) == 0 {
		return nil, errors.New("ort: empty model")
	}
	var so uintptr
	if err := r.status(r.call(fnCreateSessionOptions, uintptr(unsafe.Pointer(&so)))); err != nil {
		return nil, fmt.Errorf("ort: session options: %w", err)
	}
	defer r.call(fnReleaseSessionOptions, so)
	if o.IntraOpThreads > 0 {
		if err := r.status(r.call(fnSetIntraOpNumThreads, so, uintptr(o.IntraOpThreads))); err != nil {
			return nil, fmt.Errorf("ort: threads: %w", err)
		}
	}
	s := &Session{rt: r, provider: CPU}
	switch o.Provider {
	case "", ProviderCPU:
	case ProviderCUDA:
		if err := r.appendCUDA(so); err != nil {
			return nil, fmt.Errorf("ort: CUDA execution provider (library %s %s has %v): %w", r.path, r.version, r.providers, err)
		}
		s.provider = CUDA
	case ProviderAuto:
		if !slices.Contains(r.providers, CUDA) {
			s.fallback = fmt.Sprintf("ONNX Runtime %s at %s has no CUDA execution provider", r.version, r.path)
		} else if err := r.appendCUDA(so); err != nil {
			s.fallback = err.Error()
		} else {
			s.provider = CUDA
		}
	default:
		return nil, fmt.Errorf("ort: unknown provider %q (want cpu, cuda or auto)", o.Provider)
	}
	var h uintptr
	if err := r.status(r.call(fnCreateSessionFromArray, r.env, uintptr(unsafe.Pointer(&model[0])), uintptr(len(model)), so, uintptr(unsafe.Pointer(&h)))); err != nil {
		return nil, fmt.Errorf("ort: load model: %w", err)
	}
	s.h = h
	var err error
	if s.inputs, err = s.listNames(fnSessionGetInputCount, fnSessionGetInputName); err == nil {
		s.outputs, err = s.listNames(fnSessionGetOutputCount, fnSessionGetOutputName)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	for _, n := range s.inputs {
		s.inPtr = append(s.inPtr, s.pins.bytes(n))
	}
	for _, n := range s.outputs {
		s.outPtr = append(s.outPtr, s.pins.bytes(n))
	}
	return s, nil
}

func (r *Runtime) appendCUDA(so uintptr) error {
	var opts uintptr
	if err := r.status(r.call(fnCreateCUDAProviderOptions, uintptr(unsafe.Pointer(&opts)))); err != nil {
		return err
	}
	defer r.call(fnReleaseCUDAProviderOptions, opts)
	return r.status(r.call(fnAppendCUDAV2, so, opts))
}

func (s *Session) listNames(count, name int) ([]string, error) {
	r := s.rt
	var n uintptr
	if err := r.status(r.call(count, s.h, uintptr(unsafe.Pointer(&n)))); err != nil {
		return nil, fmt.Errorf("ort: count graph inputs or outputs: %w", err)
	}
	out := make([]string, n)
	for i := range out {
		var p uintptr
		if err := r.status(r.call(name, s.h, uintptr(i), r.alloc, uintptr(unsafe.Pointer(&p)))); err != nil {
			return nil, fmt.Errorf("ort: graph input or output %d: %w", i, err)
		}
		out[i] = goString(p)
		if err := r.status(r.call(fnAllocatorFree, r.alloc, p)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Inputs names the graph's inputs, in the order Run takes them.
func (s *Session) Inputs() []string { return slices.Clone(s.inputs) }

// Outputs names the graph's outputs, in the order Run returns them.
func (s *Session) Outputs() []string { return slices.Clone(s.outputs) }

// Provider is the execution provider the session runs on: CUDA when it was
// registered (ONNX Runtime may still place single nodes it has no CUDA
// kernel for on the CPU), CPU otherwise.
func (s *Session) Provider() string { return s.provider }

// Fallback says why a ProviderAuto session runs on the CPU; empty otherwise.
func (s *Session) Fallback() string { return s.fallback }

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("ort: session is closed")

// Close frees the session. Runs in flight finish first.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h == 0 {
		return nil
	}
	s.rt.call(fnReleaseSession, s.h)
	s.h = 0
	s.pins.p.Unpin()
	return nil
}

// Run feeds one tensor per graph input, in Inputs order, and returns every
// output, in Outputs order.
func (s *Session) Run(in []Tensor) ([]Tensor, error) {
	if len(in) != len(s.inputs) {
		return nil, fmt.Errorf("ort: %d input tensors for a graph with %d inputs %q", len(in), len(s.inputs), s.inputs)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.h == 0 {
		return nil, ErrClosed
	}
	r := s.rt
	vals := make([]uintptr, len(in))
	defer func() {
		for _, v := range vals {
			if v != 0 {
				r.call(fnReleaseValue, v)
			}
		}
	}()
	for i, t := range in {
		v, err := r.newValue(t)
		if err != nil {
			return nil, fmt.Errorf("ort: input %q: %w", s.inputs[i], err)
		}
		vals[i] = v
	}
	outs := make([]uintptr, len(s.outputs))
	defer func() {
		for _, v := range outs {
			if v != 0 {
				r.call(fnReleaseValue, v)
			}
		}
	}()
	var inNames, inVals, outNames, outVals uintptr
	if len(in) > 0 {
		inNames, inVals = uintptr(unsafe.Pointer(&s.inPtr[0])), uintptr(unsafe.Pointer(&vals[0]))
	}
	if len(outs) > 0 {
		outNames, outVals = uintptr(unsafe.Pointer(&s.outPtr[0])), uintptr(unsafe.Pointer(&outs[0]))
	}
	err := r.status(r.call(fnRun, s.h, 0, inNames, inVals, uintptr(len(in)), outNames, uintptr(len(outs)), outVals))
	runtime.KeepAlive(vals)
	runtime.KeepAlive(outs)
	if err != nil {
		return nil, fmt.Errorf("ort: run: %w", err)
	}
	res := make([]Tensor, len(outs))
	for i, v := range outs {
		t, err := r.readValue(v)
		if err != nil {
			return nil, fmt.Errorf("ort: output %q: %w", s.outputs[i], err)
		}
		res[i] = t
	}
	return res, nil
}

func (r *Runtime) newValue(t Tensor) (uintptr, error) {
	size := t.Type.Size()
	if size == 0 {
		return 0, fmt.Errorf("element type %s is not supported", t.Type)
	}
	n, err := elements(t.Shape)
	if err != nil {
		return 0, err
	}
	if len(t.Data) != n*size {
		return 0, fmt.Errorf("%d bytes of data for shape %v of %s (want %d)", len(t.Data), t.Shape, t.Type, n*size)
	}
	var shape uintptr
	if len(t.Shape) > 0 {
		shape = uintptr(unsafe.Pointer(&t.Shape[0]))
	}
	var v uintptr
	if err := r.status(r.call(fnCreateTensorAsOrtValue, r.alloc, shape, uintptr(len(t.Shape)), uintptr(t.Type), uintptr(unsafe.Pointer(&v)))); err != nil {
		return 0, err
	}
	runtime.KeepAlive(t.Shape)
	if n == 0 {
		return v, nil
	}
	var data uintptr
	if err := r.status(r.call(fnGetTensorMutableData, v, uintptr(unsafe.Pointer(&data)))); err != nil {
		r.call(fnReleaseValue, v)
		return 0, err
	}
	copy(unsafe.Slice((*byte)(cptr(data)), len(t.Data)), t.Data)
	return v, nil
}

func (r *Runtime) readValue(v uintptr) (Tensor, error) {
	var kind int32
	if err := r.status(r.call(fnGetValueType, v, uintptr(unsafe.Pointer(&kind)))); err != nil {
		return Tensor{}, err
	}
	if kind != onnxTypeTensor {
		return Tensor{}, fmt.Errorf("is not a tensor (ONNX value type %d: a sequence or a map), which Gauntlet does not read", kind)
	}
	var info uintptr
	if err := r.status(r.call(fnGetTensorTypeAndShape, v, uintptr(unsafe.Pointer(&info)))); err != nil {
		return Tensor{}, err
	}
	defer r.call(fnReleaseTensorTypeAndShapeInfo, info)
	var et int32
	var rank uintptr
	if err := r.status(r.call(fnGetTensorElementType, info, uintptr(unsafe.Pointer(&et)))); err != nil {
		return Tensor{}, err
	}
	if err := r.status(r.call(fnGetDimensionsCount, info, uintptr(unsafe.Pointer(&rank)))); err != nil {
		return Tensor{}, err
	}
	t := Tensor{Type: ElemType(et), Shape: make([]int64, rank)}
	if rank > 0 {
		if err := r.status(r.call(fnGetDimensions, info, uintptr(unsafe.Pointer(&t.Shape[0])), rank)); err != nil {
			return Tensor{}, err
		}
	}
	size := t.Type.Size()
	if size == 0 {
		return Tensor{}, fmt.Errorf("element type %s is not supported", t.Type)
	}
	n, err := elements(t.Shape)
	if err != nil {
		return Tensor{}, err
	}
	t.Data = make([]byte, n*size)
	if n == 0 {
		return t, nil
	}
	var data uintptr
	if err := r.status(r.call(fnGetTensorMutableData, v, uintptr(unsafe.Pointer(&data)))); err != nil {
		return Tensor{}, err
	}
	copy(t.Data, unsafe.Slice((*byte)(cptr(data)), len(t.Data)))
	return t, nil
}

func elements(shape []int64) (int, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if d > 0 && n > (1<<40)/int(d) {
			return 0, fmt.Errorf("shape %v is too large", shape)
		}
		n *= int(d)
	}
	return n, nil
}

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

	mu sync.RWMutex // Run holds it shared, Close exclusively
	c  handles
	// cleanup frees the handles of a session dropped without Close.
	cleanup runtime.Cleanup
}

// handles are what a session holds in ONNX Runtime: the session and its
// input and output names as C strings from the runtime's allocator, which
// Run takes as arrays of C pointers (arrays of Go memory holding no Go
// pointers, so nothing needs pinning across calls).
type handles struct {
	rt       *Runtime
	h        uintptr
	inNames  []uintptr
	outNames []uintptr
}

func (c handles) release() {
	if c.h != 0 {
		c.rt.call(fnReleaseSession, c.h)
	}
	for _, p := range append(c.inNames, c.outNames...) {
		c.rt.call(fnAllocatorFree, c.rt.alloc, p)
	}
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
	s.c = handles{rt: r, h: h}
	var err error
	if s.inputs, s.c.inNames, err = s.listNames(fnSessionGetInputCount, fnSessionGetInputName); err == nil {
		s.outputs, s.c.outNames, err = s.listNames(fnSessionGetOutputCount, fnSessionGetOutputName)
	}
	if err != nil {
		s.c.release()
		return nil, err
	}
	s.cleanup = runtime.AddCleanup(s, handles.release, s.c)
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

// listNames lists the session's inputs or outputs, as Go strings and as the
// C strings the runtime allocated, which the session keeps for Run.
func (s *Session) listNames(count, name int) ([]string, []uintptr, error) {
	r := s.rt
	var n uintptr
	if err := r.status(r.call(count, s.c.h, uintptr(unsafe.Pointer(&n)))); err != nil {
		return nil, nil, fmt.Errorf("ort: count graph inputs or outputs: %w", err)
	}
	out := make([]string, n)
	cs := make([]uintptr, 0, n)
	for i := range out {
		var p uintptr
		if err := r.status(r.call(name, s.c.h, uintptr(i), r.alloc, uintptr(unsafe.Pointer(&p)))); err != nil {
			for _, c := range cs {
				r.call(fnAllocatorFree, r.alloc, c)
			}
			return nil, nil, fmt.Errorf("ort: graph input or output %d: %w", i, err)
		}
		out[i] = goString(p)
		cs = append(cs, p)
	}
	return out, cs, nil
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
	if s.c.h == 0 {
		return nil
	}
	s.cleanup.Stop()
	s.c.release()
	s.c = handles{}
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
	if s.c.h == 0 {
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
		inNames, inVals = uintptr(unsafe.Pointer(&s.c.inNames[0])), uintptr(unsafe.Pointer(&vals[0]))
	}
	if len(outs) > 0 {
		outNames, outVals = uintptr(unsafe.Pointer(&s.c.outNames[0])), uintptr(unsafe.Pointer(&outs[0]))
	}
	err := r.status(r.call(fnRun, s.c.h, 0, inNames, inVals, uintptr(len(in)), outNames, uintptr(len(outs)), outVals))
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

// RunInto feeds one tensor per graph input, in Inputs order, and has the
// runtime write output number output (in Outputs order) straight into out,
// whose type and shape must be what the graph gives for these inputs; the
// other outputs are not computed unless that one needs them. The tensors'
// Data are used in place, pinned for the call, not copied: this is the
// path for scoring, where copies and allocations per call cost more than
// a small graph's arithmetic.
func (s *Session) RunInto(in []Tensor, output int, out Tensor) error {
	if len(in) != len(s.inputs) {
		return fmt.Errorf("ort: %d input tensors for a graph with %d inputs %q", len(in), len(s.inputs), s.inputs)
	}
	if output < 0 || output >= len(s.outputs) {
		return fmt.Errorf("ort: output %d of a graph with %d outputs %q", output, len(s.outputs), s.outputs)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.c.h == 0 {
		return ErrClosed
	}
	r := s.rt
	var pin runtime.Pinner
	defer pin.Unpin()
	var small [4]uintptr
	vals := small[:0]
	if len(in) > len(small) {
		vals = make([]uintptr, 0, len(in))
	}
	var res uintptr
	defer func() {
		for _, v := range append(vals, res) {
			if v != 0 {
				r.call(fnReleaseValue, v)
			}
		}
	}()
	for i, t := range in {
		v, err := r.wrapValue(t, &pin)
		if err != nil {
			return fmt.Errorf("ort: input %q: %w", s.inputs[i], err)
		}
		vals = append(vals, v)
	}
	res, err := r.wrapValue(out, &pin)
	if err != nil {
		return fmt.Errorf("ort: output %q: %w", s.outputs[output], err)
	}
	var inNames, inVals uintptr
	if len(vals) > 0 {
		inNames, inVals = uintptr(unsafe.Pointer(&s.c.inNames[0])), uintptr(unsafe.Pointer(&vals[0]))
	}
	err = r.status(r.call(fnRun, s.c.h, 0, inNames, inVals, uintptr(len(vals)),
		uintptr(unsafe.Pointer(&s.c.outNames[output])), 1, uintptr(unsafe.Pointer(&res))))
	runtime.KeepAlive(vals)
	if err != nil {
		return fmt.Errorf("ort: run: %w", err)
	}
	return nil
}

// wrapValue makes an OrtValue over t's own memory, which pin keeps in place
// until the caller has released the value.
func (r *Runtime) wrapValue(t Tensor, pin *runtime.Pinner) (uintptr, error) {
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
	if n == 0 {
		// No memory to lend: the runtime allocates the empty tensor.
		return r.newValue(t)
	}
	pin.Pin(&t.Data[0])
	var shape uintptr
	if len(t.Shape) > 0 {
		shape = uintptr(unsafe.Pointer(&t.Shape[0]))
	}
	var v uintptr
	err = r.status(r.call(fnCreateTensorWithDataAsOrtValue, r.mem, uintptr(unsafe.Pointer(&t.Data[0])), uintptr(len(t.Data)),
		shape, uintptr(len(t.Shape)), uintptr(t.Type), uintptr(unsafe.Pointer(&v))))
	runtime.KeepAlive(t.Shape)
	return v, err
}

// Slot is an input and an output tensor of fixed shapes in memory the
// runtime owns, made once and run any number of times: a Run through a
// slot is one call into ONNX Runtime, with nothing to allocate, copy or
// pin, which is what small requests want. A slot is for one goroutine at a
// time; a pool of them serves many.
type Slot struct {
	s *Session
	v slotValues
	// In and Out are the tensors' elements, in the runtime's memory: the
	// caller writes In and reads Out.
	In, Out []byte
	output  int
	cleanup runtime.Cleanup
}

type slotValues struct {
	rt      *Runtime
	in, out uintptr
}

func (v slotValues) release() {
	for _, h := range []uintptr{v.in, v.out} {
		if h != 0 {
			v.rt.call(fnReleaseValue, h)
		}
	}
}

// NewSlot makes a slot for a graph of one input: in gives the input's type
// and shape, out the type and shape of output number output (in Outputs
// order); their Data are ignored.
func (s *Session) NewSlot(in Tensor, output int, out Tensor) (*Slot, error) {
	if len(s.inputs) != 1 {
		return nil, fmt.Errorf("ort: a slot feeds one input; the graph takes %d %q", len(s.inputs), s.inputs)
	}
	if output < 0 || output >= len(s.outputs) {
		return nil, fmt.Errorf("ort: output %d of a graph with %d outputs %q", output, len(s.outputs), s.outputs)
	}
	r := s.rt
	sl := &Slot{s: s, output: output, v: slotValues{rt: r}}
	var err error
	if sl.v.in, sl.In, err = r.emptyValue(in); err == nil {
		sl.v.out, sl.Out, err = r.emptyValue(out)
	}
	if err != nil {
		sl.v.release()
		return nil, fmt.Errorf("ort: slot: %w", err)
	}
	sl.cleanup = runtime.AddCleanup(sl, slotValues.release, sl.v)
	return sl, nil
}

// emptyValue makes a tensor of t's type and shape in the runtime's memory
// and returns it with its elements.
func (r *Runtime) emptyValue(t Tensor) (uintptr, []byte, error) {
	n, err := elements(t.Shape)
	if err != nil {
		return 0, nil, err
	}
	if n == 0 || t.Type.Size() == 0 {
		return 0, nil, fmt.Errorf("a slot needs a non-empty tensor of a numeric type, not %v of %s", t.Shape, t.Type)
	}
	v, err := r.newValue(Tensor{Type: t.Type, Shape: t.Shape, Data: make([]byte, n*t.Type.Size())})
	if err != nil {
		return 0, nil, err
	}
	var data uintptr
	if err := r.status(r.call(fnGetTensorMutableData, v, uintptr(unsafe.Pointer(&data)))); err != nil {
		r.call(fnReleaseValue, v)
		return 0, nil, err
	}
	return v, unsafe.Slice((*byte)(cptr(data)), n*t.Type.Size()), nil
}

// Run runs the graph on In, leaving the output in Out.
func (sl *Slot) Run() error {
	s := sl.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.c.h == 0 {
		return ErrClosed
	}
	err := s.rt.status(s.rt.call(fnRun, s.c.h, 0, uintptr(unsafe.Pointer(&s.c.inNames[0])), uintptr(unsafe.Pointer(&sl.v.in)), 1,
		uintptr(unsafe.Pointer(&s.c.outNames[sl.output])), 1, uintptr(unsafe.Pointer(&sl.v.out))))
	if err != nil {
		return fmt.Errorf("ort: run: %w", err)
	}
	return nil
}

// Close frees the slot's tensors; a slot dropped without Close is freed
// when the garbage collector finds it.
func (sl *Slot) Close() {
	sl.cleanup.Stop()
	sl.v.release()
	sl.v = slotValues{}
	sl.In, sl.Out = nil, nil
}

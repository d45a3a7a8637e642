// Package router is the reverse proxy in front of model servers during a
// canary: it splits traffic between named variants by integer weights,
// keeps a request key on one variant while the weights stand, lets a header
// pin a variant for testing, counts requests, errors and latency per variant
// for the canary analysis, and takes weight and variant changes through a
// token-protected admin API, each applied atomically.
//
// # Fault injection
//
// For chaos drills and game days, in the spirit of Istio's
// HTTPFaultInjection.abort, a variant can be given a fault (PUT
// /admin/faults): the router answers a share of the requests routed to it
// with an error status itself, without reaching the upstream. Those answers
// are counted in the metrics like any other, so a canary analysis sees the
// errors and a drill shows whether it rolls the candidate back. The share
// is exact rather than random (abort_percent 20 fails the 5th, 10th, ...
// request), so a drill is repeatable and a test can rely on it. Faults stay
// with the variant's name through weight and variant changes, end with the
// variant, and live only in the router's memory: a restarted router has
// none, which is what a drill that was forgotten should come to.
package router

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Headers the router reads and writes.
const (
	// HeaderVariant pins a request to a variant, and names on the response
	// the variant that served it.
	HeaderVariant = "X-Gauntlet-Variant"
	// HeaderKey is the default request key: requests with the same key go to
	// the same variant while the weights are unchanged.
	HeaderKey = "X-Request-Key"
)

// Metric names, for the canary analysis.
const (
	MetricRequests = "gauntlet_router_requests_total"
	MetricErrors   = "gauntlet_router_errors_total"
	MetricLatency  = "gauntlet_router_request_duration_seconds"
	MetricWeight   = "gauntlet_router_weight"
	MetricFault    = "gauntlet_router_fault_abort_percent"
)

// Variant is one upstream model server and its share of the traffic.
type Variant struct {
	Name   string `json:"name"`
	URL    string `json:"url"`
	Weight int    `json:"weight"`
}

// Fault makes the router answer AbortPercent of a variant's requests with
// Status instead of proxying them.
type Fault struct {
	// AbortPercent is 0 to 100; 0 removes the fault.
	AbortPercent int `json:"abort_percent"`
	// Status is the 4xx or 5xx code of the aborted requests; 0 means 503.
	Status int `json:"status,omitempty"`
}

// DefaultFaultStatus answers an aborted request when a Fault names none.
const DefaultFaultStatus = http.StatusServiceUnavailable

func (f Fault) validate(name string) (Fault, error) {
	if f.AbortPercent < 0 || f.AbortPercent > 100 {
		return f, fmt.Errorf("variant %q: abort_percent %d is not a percentage", name, f.AbortPercent)
	}
	if f.Status == 0 {
		f.Status = DefaultFaultStatus
	}
	// A 2xx or 3xx "fault" would pass every analysis and test nothing.
	if f.Status < 400 || f.Status > 599 {
		return f, fmt.Errorf("variant %q: fault status %d: want 400 to 599", name, f.Status)
	}
	return f, nil
}

// fault is a Fault in force with its request count, which survives state
// changes so that the share stays exact across them.
type fault struct {
	Fault
	n atomic.Uint64
}

// abort tells whether the next request is aborted: the n-th is when
// n*P/100 passes a whole number, which spreads exactly P aborts evenly
// over every 100 requests.
func (f *fault) abort() bool {
	n := f.n.Add(1)
	p := uint64(f.AbortPercent)
	return n*p/100 != (n-1)*p/100
}

// Options configure a Router.
type Options struct {
	Variants []Variant
	// AdminToken protects /admin/*; empty disables the admin API.
	AdminToken string
	// KeyHeader names the request key header; default X-Request-Key.
	KeyHeader string
	// KeyField, when set, is a top-level field of the JSON request body
	// used as the key when the header is absent.
	KeyField string
	// MaxBodyBytes bounds a body read for KeyField. Default 1 MiB.
	MaxBodyBytes int64
	// Transport reaches the upstreams; nil means a keep-alive transport
	// sized for a proxy.
	Transport http.RoundTripper
	// Registry receives the metrics; nil means a private registry.
	Registry *prometheus.Registry
	Logger   *slog.Logger
}

// Router is an http.Handler.
type Router struct {
	opts      Options
	state     atomic.Pointer[state]
	adminMu   sync.Mutex // serialises admin changes: read, validate, swap
	mux       *http.ServeMux
	transport http.RoundTripper

	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	weight   *prometheus.GaugeVec
	fault    *prometheus.GaugeVec
}

// state is immutable; a change builds a new one and swaps the pointer, so a
// request sees either the old set of variants and weights or the new one.
type state struct {
	Version  uint64
	Variants []*variant // sorted by name
	total    int
}

type variant struct {
	Variant
	proxy *httputil.ReverseProxy
	fault *fault // nil without one
}

// faults are the faults of st by variant name.
func (st *state) faults() map[string]*fault {
	out := map[string]*fault{}
	for _, v := range st.Variants {
		if v.fault != nil {
			out[v.Name] = v.fault
		}
	}
	return out
}

// New builds a router for opts.Variants.
func New(opts Options) (*Router, error) {
	if opts.KeyHeader == "" {
		opts.KeyHeader = HeaderKey
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Router{opts: opts, transport: opts.Transport}
	if r.transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 256
		t.MaxIdleConns = 1024
		r.transport = t
	}
	r.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricRequests, Help: "Requests routed, by variant and status code.",
	}, []string{"variant", "code"})
	r.errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricErrors, Help: "Requests answered 5xx (502: the upstream failed), by variant and status code.",
	}, []string{"variant", "code"})
	r.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: MetricLatency, Help: "Latency through the router, by variant.",
		Buckets: []float64{.0002, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"variant"})
	r.weight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: MetricWeight, Help: "Current weight of each variant.",
	}, []string{"variant"})
	r.fault = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: MetricFault, Help: "Percentage of each variant's requests the router aborts by injected fault (0: none).",
	}, []string{"variant"})
	opts.Registry.MustRegister(r.requests, r.errors, r.latency, r.weight, r.fault)
	st, err := r.build(0, opts.Variants, nil)
	if err != nil {
		return nil, err
	}
	r.publish(st)
	r.mux = http.NewServeMux()
	r.mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{Registry: opts.Registry}))
	r.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	r.mux.HandleFunc("GET /admin/state", r.admin(r.getState))
	r.mux.HandleFunc("PUT /admin/weights", r.admin(r.putWeights))
	r.mux.HandleFunc("PUT /admin/variants", r.admin(r.putVariants))
	r.mux.HandleFunc("PUT /admin/faults", r.admin(r.putFaults))
	r.mux.HandleFunc("/admin/", r.admin(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, 404, "admin API: GET /admin/state, PUT /admin/weights, PUT /admin/variants, PUT /admin/faults")
	}))
	r.mux.HandleFunc("/", r.route)
	return r, nil
}

// ServeHTTP serves the router's own endpoints and proxies the rest.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) { r.mux.ServeHTTP(w, req) }

// State returns the current variants and weights.
func (r *Router) State() State {
	st := r.state.Load()
	out := State{Version: st.Version}
	for _, v := range st.Variants {
		out.Variants = append(out.Variants, v.Variant)
		if v.fault != nil {
			if out.Faults == nil {
				out.Faults = map[string]Fault{}
			}
			out.Faults[v.Name] = v.fault.Fault
		}
	}
	return out
}

// State is what GET /admin/state answers.
type State struct {
	Version  uint64    `json:"version"`
	Variants []Variant `json:"variants"`
	// Faults are the injected faults by variant name.
	Faults map[string]Fault `json:"faults,omitempty"`
}

// build validates vs and makes a state from them with faults (by variant
// name; those of variants not in vs are dropped), reusing the proxies of
// unchanged variants so their idle connections survive a weight change.
func (r *Router) build(version uint64, vs []Variant, faults map[string]*fault) (*state, error) {
	st := &state{Version: version}
	old := map[string]*variant{}
	if cur := r.state.Load(); cur != nil {
		for _, v := range cur.Variants {
			old[v.Name] = v
		}
	}
	seen := map[string]bool{}
	for _, v := range vs {
		if err := validName(v.Name); err != nil {
			return nil, err
		}
		if seen[v.Name] {
			return nil, fmt.Errorf("variant %q given twice", v.Name)
		}
		seen[v.Name] = true
		if v.Weight < 0 {
			return nil, fmt.Errorf("variant %q: weight %d is negative", v.Name, v.Weight)
		}
		if v.Weight > 1_000_000 {
			return nil, fmt.Errorf("variant %q: weight %d is over 1000000", v.Name, v.Weight)
		}
		u, err := url.Parse(v.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("variant %q: URL %q is not an http(s) URL", v.Name, v.URL)
		}
		nv := &variant{Variant: v, fault: faults[v.Name]}
		if o := old[v.Name]; o != nil && o.URL == v.URL {
			nv.proxy = o.proxy
		} else {
			nv.proxy = r.proxy(v.Name, u)
		}
		st.Variants = append(st.Variants, nv)
		st.total += v.Weight
	}
	if len(st.Variants) == 0 {
		return nil, errors.New("no variants")
	}
	slices.SortFunc(st.Variants, func(a, b *variant) int { return strings.Compare(a.Name, b.Name) })
	return st, nil
}

func validName(n string) error {
	if n == "" || len(n) > 64 {
		return fmt.Errorf("variant name %q: want 1 to 64 characters", n)
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("variant name %q: only letters, digits, '-', '_' and '.'", n)
		}
	}
	return nil
}

func (r *Router) publish(st *state) {
	prev := r.state.Swap(st)
	if prev != nil {
		for _, v := range prev.Variants {
			r.weight.DeleteLabelValues(v.Name)
			r.fault.DeleteLabelValues(v.Name)
		}
	}
	for _, v := range st.Variants {
		r.weight.WithLabelValues(v.Name).Set(float64(v.Weight))
		pct := 0
		if v.fault != nil {
			pct = v.fault.AbortPercent
		}
		r.fault.WithLabelValues(v.Name).Set(float64(pct))
	}
}

func (r *Router) proxy(name string, target *url.URL) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: r.transport,
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Set(HeaderVariant, name)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			r.opts.Logger.Warn("upstream failed", "variant", name, "err", err)
			w.Header().Set(HeaderVariant, name)
			writeError(w, http.StatusBadGateway, fmt.Sprintf("variant %s: upstream failed", name))
		},
		ErrorLog: slog.NewLogLogger(r.opts.Logger.Handler(), slog.LevelWarn),
	}
}

// pick chooses the variant for a request: the pinned one, else by the hash
// of its key, else at random, in proportion to the weights.
func (st *state) pick(pin string, key []byte, hasKey bool) (*variant, error) {
	if pin != "" {
		for _, v := range st.Variants {
			if v.Name == pin {
				return v, nil
			}
		}
		return nil, fmt.Errorf("%s: no variant %q", HeaderVariant, pin)
	}
	if st.total == 0 {
		return nil, errors.New("every variant has weight 0")
	}
	var n int
	if hasKey {
		h := fnv.New64a()
		h.Write(key)
		n = int(h.Sum64() % uint64(st.total))
	} else {
		n = rand.IntN(st.total)
	}
	for _, v := range st.Variants {
		if n < v.Weight {
			return v, nil
		}
		n -= v.Weight
	}
	return st.Variants[len(st.Variants)-1], nil
}

func (r *Router) route(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	st := r.state.Load()
	key, hasKey, kerr := r.key(req)
	if kerr != nil {
		writeError(w, kerr.status, kerr.msg)
		return
	}
	v, err := st.pick(req.Header.Get(HeaderVariant), key, hasKey)
	if err != nil {
		code := 503
		if req.Header.Get(HeaderVariant) != "" {
			code = 400
		}
		writeError(w, code, err.Error())
		return
	}
	rec := &statusWriter{ResponseWriter: w, code: 200}
	if v.fault != nil && v.fault.abort() {
		rec.Header().Set(HeaderVariant, v.Name)
		writeError(rec, v.fault.Status, fmt.Sprintf("variant %s: fault injected (abort_percent %d)", v.Name, v.fault.AbortPercent))
	} else {
		v.proxy.ServeHTTP(rec, req)
	}
	code := strconv.Itoa(rec.code)
	r.requests.WithLabelValues(v.Name, code).Inc()
	if rec.code >= 500 {
		r.errors.WithLabelValues(v.Name, code).Inc()
	}
	r.latency.WithLabelValues(v.Name).Observe(time.Since(start).Seconds())
}

type keyError struct {
	status int
	msg    string
}

// key finds the request key: the header, else the configured JSON field of
// the body (which is then put back for the upstream).
func (r *Router) key(req *http.Request) ([]byte, bool, *keyError) {
	if k := req.Header.Get(r.opts.KeyHeader); k != "" {
		return []byte(k), true, nil
	}
	if r.opts.KeyField == "" || req.Body == nil || req.Body == http.NoBody {
		return nil, false, nil
	}
	if req.ContentLength > r.opts.MaxBodyBytes {
		return nil, false, &keyError{413, fmt.Sprintf("request body larger than %d bytes", r.opts.MaxBodyBytes)}
	}
	b, err := io.ReadAll(io.LimitReader(req.Body, r.opts.MaxBodyBytes+1))
	req.Body.Close()
	if err != nil {
		return nil, false, &keyError{400, "read request body: " + err.Error()}
	}
	if int64(len(b)) > r.opts.MaxBodyBytes {
		return nil, false, &keyError{413, fmt.Sprintf("request body larger than %d bytes", r.opts.MaxBodyBytes)}
	}
	req.Body = io.NopCloser(bytes.NewReader(b))
	req.ContentLength = int64(len(b))
	var fields map[string]json.RawMessage
	if json.Unmarshal(b, &fields) != nil {
		// Not a JSON object: no key, and the upstream will say what is wrong.
		return nil, false, nil
	}
	raw, ok := fields[r.opts.KeyField]
	if !ok {
		return nil, false, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []byte(s), true, nil
	}
	return raw, true, nil
}

// statusWriter remembers the status code written through it.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.code, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flushing).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (r *Router) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		if r.opts.AdminToken == "" {
			writeError(w, 404, "the admin API is disabled (no admin token configured)")
			return
		}
		got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(r.opts.AdminToken)) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeError(w, 401, "missing or wrong bearer token")
			return
		}
		h(w, req)
	}
}

func (r *Router) getState(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, r.State())
}

// SetWeights changes the weights of the named variants at once; the others
// keep theirs. Nothing changes if any name is unknown or a weight invalid.
func (r *Router) SetWeights(weights map[string]int) (State, error) {
	r.adminMu.Lock()
	defer r.adminMu.Unlock()
	cur := r.state.Load()
	vs := make([]Variant, len(cur.Variants))
	known := map[string]int{}
	for i, v := range cur.Variants {
		vs[i] = v.Variant
		known[v.Name] = i
	}
	for name, w := range weights {
		i, ok := known[name]
		if !ok {
			return State{}, fmt.Errorf("no variant %q", name)
		}
		vs[i].Weight = w
	}
	return r.commit(cur, vs, cur.faults())
}

// SetFaults injects, changes or removes (AbortPercent 0) the faults of the
// named variants at once; the others keep theirs. Nothing changes if any
// name is unknown or a fault invalid. A changed fault counts its requests
// afresh; an unchanged one keeps counting.
func (r *Router) SetFaults(faults map[string]Fault) (State, error) {
	r.adminMu.Lock()
	defer r.adminMu.Unlock()
	cur := r.state.Load()
	known := map[string]bool{}
	vs := make([]Variant, len(cur.Variants))
	for i, v := range cur.Variants {
		vs[i] = v.Variant
		known[v.Name] = true
	}
	next := cur.faults()
	for name, f := range faults {
		if !known[name] {
			return State{}, fmt.Errorf("no variant %q", name)
		}
		f, err := f.validate(name)
		if err != nil {
			return State{}, err
		}
		switch {
		case f.AbortPercent == 0:
			delete(next, name)
		case next[name] == nil || next[name].Fault != f:
			next[name] = &fault{Fault: f}
		}
	}
	st, err := r.commit(cur, vs, next)
	if err == nil {
		r.opts.Logger.Warn("faults injected", "faults", st.Faults)
	}
	return st, err
}

// VariantsUpdate adds or replaces Set variants (by name) and removes Remove,
// together.
type VariantsUpdate struct {
	Set    []Variant `json:"set,omitempty"`
	Remove []string  `json:"remove,omitempty"`
}

// UpdateVariants applies u atomically.
func (r *Router) UpdateVariants(u VariantsUpdate) (State, error) {
	r.adminMu.Lock()
	defer r.adminMu.Unlock()
	cur := r.state.Load()
	byName := map[string]Variant{}
	for _, v := range cur.Variants {
		byName[v.Name] = v.Variant
	}
	for _, n := range u.Remove {
		if _, ok := byName[n]; !ok {
			return State{}, fmt.Errorf("no variant %q to remove", n)
		}
		delete(byName, n)
	}
	set := map[string]bool{}
	for _, v := range u.Set {
		if set[v.Name] {
			return State{}, fmt.Errorf("variant %q given twice", v.Name)
		}
		set[v.Name] = true
		byName[v.Name] = v
	}
	vs := make([]Variant, 0, len(byName))
	for _, v := range byName {
		vs = append(vs, v)
	}
	return r.commit(cur, vs, cur.faults())
}

func (r *Router) commit(cur *state, vs []Variant, faults map[string]*fault) (State, error) {
	st, err := r.build(cur.Version+1, vs, faults)
	if err != nil {
		return State{}, err
	}
	r.publish(st)
	r.opts.Logger.Info("router state changed", "version", st.Version)
	return r.State(), nil
}

func (r *Router) putWeights(w http.ResponseWriter, req *http.Request) {
	var weights map[string]int
	if err := decodeAdmin(req, &weights); err != nil {
		writeError(w, 400, err.Error())
		return
	}
	st, err := r.SetWeights(weights)
	if err != nil {
		writeError(w, 400, err.Error())
		return
	}
	writeJSON(w, 200, st)
}

func (r *Router) putVariants(w http.ResponseWriter, req *http.Request) {
	var u VariantsUpdate
	if err := decodeAdmin(req, &u); err != nil {
		writeError(w, 400, err.Error())
		return
	}
	st, err := r.UpdateVariants(u)
	if err != nil {
		writeError(w, 400, err.Error())
		return
	}
	writeJSON(w, 200, st)
}

func (r *Router) putFaults(w http.ResponseWriter, req *http.Request) {
	var faults map[string]Fault
	if err := decodeAdmin(req, &faults); err != nil {
		writeError(w, 400, err.Error())
		return
	}
	st, err := r.SetFaults(faults)
	if err != nil {
		writeError(w, 400, err.Error())
		return
	}
	writeJSON(w, 200, st)
}

func decodeAdmin(req *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(req.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode body: %w", err)
	}
	if dec.More() {
		return errors.New("decode body: trailing data")
	}
	return nil
}

// Serve serves on ln until ctx is done, then drains for up to drain.
func (r *Router) Serve(ctx context.Context, ln net.Listener, drain time.Duration) error {
	srv := &http.Server{
		Handler:           r,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(r.opts.Logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("router: drain: %w", err)
	}
	return nil
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = 500, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

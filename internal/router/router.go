// Package router is the reverse proxy in front of model servers during a
// canary: it splits traffic between named variants by integer weights,
// keeps a request key on one variant while the weights stand, lets a header
// pin a variant for testing, counts requests, errors and latency per variant
// for the canary analysis, and takes weight and variant changes through a
// token-protected admin API, each applied atomically.
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
)

// Variant is one upstream model server and its share of the traffic.
type Variant struct {
	Name   string `json:"name"`
	URL    string `json:"url"`
	Weight int    `json:"weight"`
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
	opts.Registry.MustRegister(r.requests, r.errors, r.latency, r.weight)
	st, err := r.build(0, opts.Variants)
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
	r.mux.HandleFunc("/admin/", r.admin(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, 404, "admin API: GET /admin/state, PUT /admin/weights, PUT /admin/variants")
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
	}
	return out
}

// State is what GET /admin/state answers.
type State struct {
	Version  uint64    `json:"version"`
	Variants []Variant `json:"variants"`
}

// build validates vs and makes a state from them, reusing the proxies of
// unchanged variants so their idle connections survive a weight change.
func (r *Router) build(version uint64, vs []Variant) (*state, error) {
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
		nv := &variant{Variant: v}
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
		}
	}
	for _, v := range st.Variants {
		r.weight.WithLabelValues(v.Name).Set(float64(v.Weight))
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
	v.proxy.ServeHTTP(rec, req)
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
	return r.commit(cur, vs)
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
	return r.commit(cur, vs)
}

func (r *Router) commit(cur *state, vs []Variant) (State, error) {
	st, err := r.build(cur.Version+1, vs)
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

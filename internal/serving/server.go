// Package serving is the model server behind `gauntlet serve`: a JSON HTTP
// API that scores records with a model of any format package scoring opens
// (Gauntlet's own, ONNX), checks every record against the model's signature
// (a record that does not fit is answered 400 naming the field), sheds load
// it cannot take, swaps models atomically without failing a request,
// samples what it scores for drift monitoring and exports Prometheus
// metrics.
package serving

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

// Options configure a Server. Zero values take the defaults below.
type Options struct {
	// MaxBodyBytes bounds a request body (413 beyond). Default 1 MiB.
	MaxBodyBytes int64
	// MaxRecords bounds the records of one request (413 beyond). Default 1000.
	MaxRecords int
	// MaxExplainRecords bounds the records of one /v1/explain request (413
	// beyond). Default 16: a record's attributions cost hundreds of model
	// evaluations.
	MaxExplainRecords int
	// RequestTimeout bounds reading a request and writing its response.
	// Default 5s.
	RequestTimeout time.Duration
	// MaxInFlight is how many predict and explain requests may be served at
	// once; more are answered 429 at once rather than queued. Default 512.
	MaxInFlight int
	// RetryAfter is what a 429 tells the client to wait. Default 1s.
	RetryAfter time.Duration
	// ShutdownTimeout bounds draining on shutdown. Default 30s.
	ShutdownTimeout time.Duration
	// PollInterval is how often the source is asked whether the model moved
	// (an alias change). Default 10s; negative disables polling.
	PollInterval time.Duration
	// AdminToken protects POST /admin/reload; empty disables it.
	AdminToken string
	// NegativeLabel overrides the label of negative predictions.
	NegativeLabel string
	// Scoring says where ONNX Runtime is and how it runs ONNX models.
	// Threads defaults to 1 here: the server runs many requests at once,
	// and one thread per request serves more of them than a pool each.
	Scoring scoring.Options
	Sample  SampleOptions
	// Registry receives the metrics; nil means a private registry.
	Registry *prometheus.Registry
	Logger   *slog.Logger
}

func (o Options) withDefaults() Options {
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.MaxBodyBytes, 1<<20)
	if o.MaxRecords <= 0 {
		o.MaxRecords = 1000
	}
	if o.MaxExplainRecords <= 0 {
		o.MaxExplainRecords = 16
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 512
	}
	for _, d := range []struct {
		v *time.Duration
		d time.Duration
	}{{&o.RequestTimeout, 5 * time.Second}, {&o.RetryAfter, time.Second}, {&o.ShutdownTimeout, 30 * time.Second}} {
		if *d.v <= 0 {
			*d.v = d.d
		}
	}
	if o.Scoring.Threads <= 0 {
		o.Scoring.Threads = 1
	}
	if o.PollInterval == 0 {
		o.PollInterval = 10 * time.Second
	}
	if o.Sample.MaxBytes <= 0 {
		o.Sample.MaxBytes = 64 << 20
	}
	if o.Sample.Keep <= 0 {
		o.Sample.Keep = 5
	}
	if o.Sample.Buffer <= 0 {
		o.Sample.Buffer = 4096
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Server serves one model at a time.
type Server struct {
	opts    Options
	src     Source
	metrics *Metrics
	samples *sampleLog
	mux     *http.ServeMux

	model    atomic.Pointer[Model]
	inFlight atomic.Int64
	draining atomic.Bool
	reloadMu sync.Mutex
	bodies   sync.Pool
	closed   sync.Once

	// scoreHook, when set by a test, runs before each batch is scored.
	scoreHook func()
}

// New loads the model src names and builds a server for it.
func New(ctx context.Context, src Source, opts Options) (*Server, error) {
	opts = opts.withDefaults()
	if r := opts.Sample.Rate; math.IsNaN(r) || r < 0 || r > 1 {
		return nil, fmt.Errorf("serving: sample rate %v not in [0, 1]", r)
	}
	s := &Server{opts: opts, src: src, metrics: NewMetrics(opts.Registry)}
	s.bodies.New = func() any { b := make([]byte, 0, 4096); return &b }
	m, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	if (opts.Sample.Dir != "" || opts.Sample.Store != nil) && opts.Sample.Rate > 0 {
		if s.samples, err = openSampleLog(opts.Sample, s.metrics, opts.Logger); err != nil {
			m.retire()
			return nil, err
		}
	}
	s.Swap(m)
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/v1/predict", s.predict)
	s.mux.HandleFunc("/v1/explain", s.serveExplain)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{Registry: opts.Registry}))
	s.mux.HandleFunc("POST /admin/reload", s.adminReload)
	return s, nil
}

// Handler is the server's HTTP API.
func (s *Server) Handler() http.Handler { return s.mux }

// Model is the model being served.
func (s *Server) Model() *Model { return s.model.Load() }

// acquire takes the model being served for one request, which releases it;
// nil means the server is closed.
func (s *Server) acquire() *Model {
	for {
		m := s.model.Load()
		if m == nil {
			return nil
		}
		if m.acquire() {
			return m
		}
		if s.model.Load() == m {
			return nil // retired by Close, not by a swap
		}
	}
}

// Metrics are the server's collectors.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Swap serves m from the next request on; requests in flight finish with
// the model they started with, which is closed after the last of them.
func (s *Server) Swap(m *Model) {
	old := s.model.Swap(m)
	s.metrics.serving(m)
	if old != nil && old != m {
		old.retire()
	}
}

func (s *Server) load(ctx context.Context) (*Model, error) {
	ref, err := s.src.Resolve(ctx)
	if err != nil {
		return nil, fmt.Errorf("serving: resolve model: %w", err)
	}
	return s.loadRef(ctx, ref)
}

func (s *Server) loadRef(ctx context.Context, ref Ref) (*Model, error) {
	ref, err := s.src.Materialize(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("serving: fetch model: %w", err)
	}
	m, err := LoadModel(ref, s.opts.NegativeLabel, s.opts.Scoring)
	if err != nil {
		s.metrics.swaps.WithLabelValues("error").Inc()
		return nil, fmt.Errorf("serving: load model %s %s: %w", ref.Name, ref.Version, err)
	}
	s.metrics.swaps.WithLabelValues("ok").Inc()
	if m.explainErr != nil {
		// Predictions are served regardless; only /v1/explain answers 501.
		s.opts.Logger.Info("model cannot be explained", "name", ref.Name, "version", ref.Version, "err", m.explainErr)
	}
	return m, nil
}

// Reload asks the source which model to serve and, when it is another one,
// fetches, loads and verifies it, then swaps it in. A model that fails to
// load is not swapped in: the old one keeps serving.
func (s *Server) Reload(ctx context.Context) (swapped bool, err error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	ref, err := s.src.Resolve(ctx)
	if err != nil {
		return false, fmt.Errorf("serving: resolve model: %w", err)
	}
	if cur := s.Model(); cur != nil && cur.Ref.Digest == ref.Digest && cur.Ref.Version == ref.Version {
		return false, nil
	}
	m, err := s.loadRef(ctx, ref)
	if err != nil {
		return false, err
	}
	s.Swap(m)
	s.opts.Logger.Info("model swapped", "name", m.Ref.Name, "version", m.Ref.Version, "digest", m.Digest)
	return true, nil
}

// Serve serves on ln, polling the source for model moves, until ctx is
// done; then it stops accepting, drains the requests in flight (up to
// ShutdownTimeout) and flushes the sample log.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: s.opts.RequestTimeout,
		ReadTimeout:       s.opts.RequestTimeout,
		WriteTimeout:      s.opts.RequestTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	pollCtx, stopPoll := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if s.opts.PollInterval > 0 {
		wg.Go(func() { s.poll(pollCtx) })
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	stopPoll()
	wg.Wait()
	if err == nil {
		s.draining.Store(true)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
		err = srv.Shutdown(sctx)
		cancel()
		if err != nil {
			err = fmt.Errorf("serving: drain: %w", err)
		}
	}
	s.Close()
	return err
}

// Close flushes and closes the sample log and closes the model. Serve calls
// it; a caller using Handler directly calls it once no request is in
// flight (a later one is answered 503).
func (s *Server) Close() {
	s.closed.Do(func() {
		if s.samples != nil {
			s.samples.close()
		}
		if m := s.model.Load(); m != nil {
			m.retire()
		}
	})
}

func (s *Server) poll(ctx context.Context) {
	t := time.NewTicker(s.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.Reload(ctx); err != nil && ctx.Err() == nil {
			s.opts.Logger.Warn("model poll", "err", err)
		}
	}
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	m := s.Model()
	switch {
	case s.draining.Load():
		writeJSON(w, 503, map[string]string{"status": "shutting down"})
	case m == nil:
		writeJSON(w, 503, map[string]string{"status": "no model"})
	default:
		writeJSON(w, 200, map[string]any{"status": "ready", "model": m.Ref, "digest": m.Digest})
	}
}

func (s *Server) adminReload(w http.ResponseWriter, r *http.Request) {
	if s.opts.AdminToken == "" {
		writeError(w, 404, "the admin API is disabled (no admin token configured)")
		return
	}
	if !BearerOK(r, s.opts.AdminToken) {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeError(w, 401, "missing or wrong bearer token")
		return
	}
	swapped, err := s.Reload(r.Context())
	if err != nil {
		writeError(w, 502, err.Error())
		return
	}
	m := s.Model()
	writeJSON(w, 200, map[string]any{"swapped": swapped, "model": m.Ref, "digest": m.Digest})
}

// BearerOK reports whether r carries "Authorization: Bearer token", compared
// in constant time.
func BearerOK(r *http.Request, token string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

func (s *Server) predict(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	m := s.acquire()
	if m == nil {
		s.fail(w, nil, start, 503, "shutting down")
		return
	}
	defer m.release()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		s.fail(w, m, start, 405, "use POST")
		return
	}
	if n := s.inFlight.Add(1); n > int64(s.opts.MaxInFlight) {
		s.inFlight.Add(-1)
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(s.opts.RetryAfter.Seconds()))))
		s.fail(w, m, start, 429, fmt.Sprintf("overloaded: %d requests in flight", s.opts.MaxInFlight))
		return
	}
	s.metrics.inFlight.Inc()
	defer func() {
		s.metrics.inFlight.Dec()
		s.inFlight.Add(-1)
	}()

	bp := s.bodies.Get().(*[]byte)
	defer func() {
		// A rare huge body should not stay pinned in the pool.
		if cap(*bp) <= 64<<10 {
			s.bodies.Put(bp)
		}
	}()
	body, rerr := s.readBody(r, (*bp)[:0])
	*bp = body[:0]
	if rerr != nil {
		s.fail(w, m, start, rerr.status, rerr.msg)
		return
	}
	b := m.getBatch()
	defer m.putBatch(b)
	if err := decodeRequest(body, m, b, s.opts.MaxRecords); err != nil {
		var re *requestError
		if errors.As(err, &re) {
			s.fail(w, m, start, re.status, re.msg)
		} else {
			s.fail(w, m, start, 400, err.Error())
		}
		return
	}
	if s.scoreHook != nil {
		s.scoreHook()
	}
	if err := m.score(b); err != nil {
		s.fail(w, m, start, 500, "score: "+err.Error())
		return
	}
	out := append(b.out[:0], m.header...)
	vm := s.metrics.version(m.Ref.Version)
	for i := range b.n {
		if i > 0 {
			out = append(out, ',')
		}
		score := b.scores[i]
		label := m.negLabel
		if m.positive(b, i) {
			label = m.posLabel
		}
		out = append(out, `{"score":`...)
		out = strconv.AppendFloat(out, score, 'g', -1, 64)
		out = append(out, `,"label":`...)
		out = append(out, label...)
		out = append(out, '}')
		vm.scores.Observe(score)
		if s.samples != nil && rand.Float64() < s.opts.Sample.Rate {
			s.samples.offer(Sample{
				Time: start.UTC(), Model: m.Ref.Name, Version: m.Ref.Version,
				Features: m.features(b, i), Score: score, Label: unquote(label),
			})
		}
	}
	out = append(out, "]}\n"...)
	b.out = out
	vm.records.Add(float64(b.n))
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(out))}
	w.WriteHeader(200)
	_, _ = w.Write(out)
	s.metrics.observe(m.Ref.Version, 200, time.Since(start).Seconds())
}

var jsonContentType = []string{"application/json"}

func unquote(q []byte) string {
	s, err := strconv.Unquote(string(q))
	if err != nil {
		return string(q)
	}
	return s
}

// readBody reads the request body into buf, refusing more than MaxBodyBytes.
func (s *Server) readBody(r *http.Request, buf []byte) ([]byte, *requestError) {
	limit := s.opts.MaxBodyBytes
	tooLarge := &requestError{status: 413, msg: fmt.Sprintf("request body larger than %d bytes", limit)}
	if r.ContentLength > limit {
		return buf, tooLarge
	}
	if r.ContentLength > 0 && int64(cap(buf)) < r.ContentLength+1 {
		buf = make([]byte, 0, r.ContentLength+1)
	}
	lr := io.LimitReader(r.Body, limit+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return buf, &requestError{status: 408, msg: "timed out reading the request body"}
			}
			return buf, &requestError{status: 400, msg: "read request body: " + err.Error()}
		}
	}
	if int64(len(buf)) > limit {
		return buf, tooLarge
	}
	return buf, nil
}

func (s *Server) fail(w http.ResponseWriter, m *Model, start time.Time, code int, msg string) {
	writeError(w, code, msg)
	version := ""
	if m != nil {
		version = m.Ref.Version
	}
	s.metrics.observe(version, code, time.Since(start).Seconds())
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

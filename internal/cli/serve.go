package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
	"github.com/gauntlet-ml/gauntlet/internal/serving"
	"github.com/gauntlet-ml/gauntlet/internal/workerhost"
)

type serveFlags struct {
	model          string
	addr           string
	store          string
	registry       string
	cacheDir       string
	adminTokenFile string
	sampleDir      string
	sampleRate     float64
	maxInFlight    int
	requestTimeout time.Duration
	maxBody        int64
	poll           time.Duration
	waitForAlias   bool
	shipSamples    bool
	replica        string
	shipInterval   time.Duration
	models         workerhost.ModelFlags
}

func (a *app) serveCommand() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve --model DIR|POINTER|MODEL[@ALIAS]",
		Short: "Serve a model over HTTP: POST /v1/predict, /readyz, /metrics",
		Long: `serve answers predictions for one model. --model is a model directory, an
artifact pointer a step output (STORE/trees/sha256/HEX, in --store), or
MODEL[@ALIAS] of the registry in --store, ALIAS defaulting to champion. The source is polled every --poll: when the alias moves (a
promotion or a rollback) or the directory is replaced, the new model is loaded
and verified, then swapped in without failing a request; one that does not load
leaves the old one serving. Ctrl-C or SIGTERM stops accepting, drains the
requests in flight and exits 0.

A fleet's model servers (the fleet deployment target's) follow the champion
and challenger aliases with --wait-for-alias, which waits for an alias that
does not exist yet (a model's first version, no canary yet) instead of
failing, and keeps serving the last version when a canary's end removes
it; --ship-samples stores the sample log in --store, where the monitor of
any worker reads it; --admin-token-file lets the fleet ask for a reload.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return a.serve(ctx, cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.model, "model", "", "model directory, artifact pointer, or MODEL[@ALIAS] of the registry (alias default champion)")
	fl.StringVar(&f.addr, "addr", "127.0.0.1:8080", "host:port to listen on")
	storeFlags(fl, &f.store, &f.registry)
	fl.StringVar(&f.cacheDir, "cache-dir", filepath.Join(".gauntlet", "cache", "models"), "where registry versions and pointers are fetched to, one directory per artifact digest")
	fl.StringVar(&f.adminTokenFile, "admin-token-file", "", "file holding the bearer token of POST /admin/reload (default: the admin API is off)")
	fl.StringVar(&f.sampleDir, "sample-dir", "", "directory of the JSONL log of sampled predictions, for drift monitoring")
	fl.Float64Var(&f.sampleRate, "sample-rate", 1, "fraction of records logged to --sample-dir, in [0, 1]")
	fl.IntVar(&f.maxInFlight, "max-in-flight", 512, "predictions served at once; more are answered 429 rather than queued")
	fl.DurationVar(&f.requestTimeout, "request-timeout", 5*time.Second, "bound on reading a request and writing its answer")
	fl.Int64Var(&f.maxBody, "max-body", 1<<20, "largest request body in bytes (413 beyond)")
	fl.DurationVar(&f.poll, "poll", 10*time.Second, "how often to look whether the model moved; 0 only reloads through the admin API")
	fl.BoolVar(&f.waitForAlias, "wait-for-alias", false, "with MODEL@ALIAS: wait until the alias exists instead of failing, and keep serving the last version when it is removed")
	fl.BoolVar(&f.shipSamples, "ship-samples", false, "store the sampled predictions in --store every --ship-interval, under samples/<model>/, where a fleet's monitor reads them")
	fl.StringVar(&f.replica, "replica", "", "this server's name in the shipped samples, unique in the fleet (default: host name and port)")
	fl.DurationVar(&f.shipInterval, "ship-interval", serving.DefaultShipInterval, "how often sampled predictions are shipped to --store")
	f.models.Register(fl)
	return cmd
}

func (a *app) serve(ctx context.Context, cmd *cobra.Command, f serveFlags) error {
	opts, err := a.serveOptions(f)
	if err != nil {
		return err
	}
	src, what, err := a.serveSource(ctx, cmd, f)
	if err != nil {
		return err
	}
	if f.shipSamples {
		if opts.Sample.Store, err = a.serveStore(ctx, f); err != nil {
			return err
		}
	}
	var ln net.Listener
	if w, ok := src.(*waitingSource); ok {
		// A server waiting for its alias is alive but not ready: it
		// listens, answers /healthz and refuses the rest with 503, so that
		// a supervisor neither restarts it nor sends it traffic.
		if ln, err = net.Listen("tcp", f.addr); err != nil {
			return fmt.Errorf("serve %s: %w", what, err)
		}
		if err := waitListening(ctx, ln, w, what, opts.Logger); err != nil {
			ln.Close()
			return err
		}
	} else if f.waitForAlias {
		return usagef("--wait-for-alias applies to MODEL@ALIAS, not to %s", what)
	}
	srv, err := serving.New(ctx, src, opts)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		if errors.Is(err, registry.ErrNotFound) {
			return withCode(ExitNotFound, fmt.Errorf("serve %s: %w (see `gauntlet models list`)", what, err))
		}
		return fmt.Errorf("serve %s: %w", what, err)
	}
	// Otherwise listening only once the model is loaded means a probe is
	// refused rather than left hanging while a version is fetched.
	if ln == nil {
		if ln, err = net.Listen("tcp", f.addr); err != nil {
			srv.Close()
			return fmt.Errorf("serve %s: %w", what, err)
		}
	}
	url := "http://" + ln.Addr().String()
	m := srv.Model()
	if a.jsonOut() {
		err = a.printJSON(map[string]any{"url": url, "source": what, "model": m.Ref, "model_digest": m.Digest})
	} else {
		served := what
		if _, isDir := src.(serving.DirSource); !isDir {
			served = m.Ref.Name + " " + m.Ref.Version + " (" + what + ")"
		}
		_, err = fmt.Fprintf(a.stdout, "Serving %s at %s\n  model digest %s\n", served, url, m.Digest)
	}
	if err != nil {
		ln.Close()
		srv.Close()
		return err
	}
	if err := srv.Serve(ctx, ln); err != nil {
		return fmt.Errorf("serve %s: %w", what, err)
	}
	opts.Logger.Info("stopped", "url", url)
	return nil
}

// serveOptions checks the flags before anything is loaded, so a typo costs
// no fetch.
func (a *app) serveOptions(f serveFlags) (serving.Options, error) {
	var o serving.Options
	if f.model == "" {
		return o, usagef("--model DIR|MODEL[@ALIAS] is required")
	}
	if _, _, err := net.SplitHostPort(f.addr); err != nil {
		return o, usagef("--addr %q: want host:port (%v)", f.addr, err)
	}
	if r := f.sampleRate; math.IsNaN(r) || r < 0 || r > 1 {
		return o, usagef("--sample-rate %v is not in [0, 1]", r)
	}
	if f.maxInFlight <= 0 {
		return o, usagef("--max-in-flight %d: want a positive number", f.maxInFlight)
	}
	if f.requestTimeout <= 0 {
		return o, usagef("--request-timeout %v: want a positive duration", f.requestTimeout)
	}
	if f.maxBody <= 0 {
		return o, usagef("--max-body %d: want a positive number of bytes", f.maxBody)
	}
	if f.poll < 0 {
		return o, usagef("--poll %v: want a positive duration, or 0 for no polling", f.poll)
	}
	o.MaxInFlight = f.maxInFlight
	o.RequestTimeout = f.requestTimeout
	o.MaxBodyBytes = f.maxBody
	o.PollInterval = f.poll
	if f.poll == 0 {
		// serving reads 0 as its default interval.
		o.PollInterval = -1
	}
	o.Sample = serving.SampleOptions{Dir: f.sampleDir, Rate: f.sampleRate}
	if f.shipSamples {
		if f.shipInterval <= 0 {
			return o, usagef("--ship-interval %v: want a positive duration", f.shipInterval)
		}
		o.Sample.ShipInterval = f.shipInterval
		o.Sample.Replica = f.replica
		if o.Sample.Replica == "" {
			host, err := os.Hostname()
			if err != nil {
				host = "serve"
			}
			_, port, _ := net.SplitHostPort(f.addr)
			o.Sample.Replica = serving.ReplicaName(host + "-" + port)
		}
		if err := serving.ValidReplica(o.Sample.Replica); err != nil {
			return o, usagef("--replica: %v", err)
		}
	} else if f.replica != "" {
		return o, usagef("--replica names this server in shipped samples: give --ship-samples too")
	}
	var err error
	if o.Scoring, err = f.models.Options(a.getenv); err != nil {
		return o, withCode(ExitUsage, err)
	}
	if f.adminTokenFile != "" {
		b, err := os.ReadFile(f.adminTokenFile)
		if err != nil {
			return o, withCode(ExitUsage, fmt.Errorf("--admin-token-file: %w", err))
		}
		if o.AdminToken = strings.TrimSpace(string(b)); o.AdminToken == "" {
			return o, usagef("--admin-token-file %s is empty", f.adminTokenFile)
		}
	}
	var h slog.Handler = slog.NewTextHandler(a.stderr, nil)
	if a.jsonOut() {
		h = slog.NewJSONHandler(a.stderr, nil)
	}
	o.Logger = slog.New(h)
	return o, nil
}

// serveSource reads --model: an existing directory is served as such,
// anything path-like that is not one is a missing directory, the rest names
// a registry model.
func (a *app) serveSource(ctx context.Context, cmd *cobra.Command, f serveFlags) (serving.Source, string, error) {
	if p, err := artifact.ParsePointer(f.model); err == nil {
		return a.servePointer(ctx, f, p)
	}
	fi, err := os.Stat(f.model)
	switch {
	case err == nil && fi.IsDir():
		for _, flag := range []string{"store", "registry", "cache-dir"} {
			if cmd.Flags().Changed(flag) {
				return nil, "", usagef("--%s applies to a registry model, not to the directory %s", flag, f.model)
			}
		}
		return serving.DirSource{Dir: f.model}, f.model, nil
	case err == nil:
		return nil, "", usagef("--model %s is a file: want a model directory or MODEL[@ALIAS]", f.model)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, "", fmt.Errorf("--model %s: %w", f.model, err)
	case strings.ContainsAny(f.model, `/\`) || strings.HasPrefix(f.model, "."):
		return nil, "", withCode(ExitNotFound, fmt.Errorf("--model %s: no such model directory", f.model))
	}
	name, ref, hasRef := strings.Cut(f.model, "@")
	if !hasRef {
		ref = registry.Champion
	}
	if err := registry.ValidateName(name); err != nil {
		return nil, "", usagef("--model %q: neither a model directory nor MODEL[@ALIAS]: %v", f.model, err)
	}
	if ref == "" {
		return nil, "", usagef("--model %q: empty alias after @", f.model)
	}
	store, err := a.serveStore(ctx, f)
	if err != nil {
		return nil, "", err
	}
	what := name + "@" + ref
	src := serving.RegistrySource{Registry: registry.New(store), Store: store, Model: name, Ref: ref, CacheDir: f.cacheDir}
	if f.waitForAlias {
		return &waitingSource{RegistrySource: src, every: f.poll}, what, nil
	}
	return src, what, nil
}

// serveStore opens --store.
func (a *app) serveStore(ctx context.Context, f serveFlags) (artifact.Store, error) {
	loc, err := a.storeURL(f.store, f.registry, ".gauntlet")
	if err != nil {
		return nil, err
	}
	store, err := artifact.Open(ctx, loc)
	if err != nil {
		return nil, withCode(ExitUsage, fmt.Errorf("--store %s: %w", workspace.Redact(loc), err))
	}
	return store, nil
}

// waitingSource follows an alias that may not exist yet or any more: a
// fleet's challenger exists only during a canary, a new model's champion
// only after its first promotion. Until the alias first resolves, wait
// holds the server back; once it has, an alias removed keeps the last
// version serving rather than failing every poll.
type waitingSource struct {
	serving.RegistrySource
	every time.Duration

	mu   sync.Mutex
	last *serving.Ref
}

// Resolve answers the alias's version, or the last one while it is gone.
func (s *waitingSource) Resolve(ctx context.Context) (serving.Ref, error) {
	ref, err := s.RegistrySource.Resolve(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(err, registry.ErrNotFound) && s.last != nil {
		return *s.last, nil
	}
	if err == nil {
		s.last = &ref
	}
	return ref, err
}

// waitListening answers on ln while w waits: /healthz 200, anything else
// 503. It hands ln back open, so that no connection is refused between the
// wait and the model being served; a probe that arrives in the instant
// the waiting server shuts down may see its connection closed, as at any
// server's shutdown. No prediction does: nothing routes traffic to a
// server before its /readyz says it serves.
func waitListening(ctx context.Context, ln net.Listener, w *waitingSource, what string, log *slog.Logger) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return w.wait(ctx, what, log)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		writeWaiting(rw, http.StatusOK, map[string]string{"status": "waiting", "model": what})
	})
	mux.HandleFunc("/", func(rw http.ResponseWriter, _ *http.Request) {
		writeWaiting(rw, http.StatusServiceUnavailable, map[string]string{"status": "waiting", "error": what + " does not exist yet"})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	// No connection outlives its answer: none is idle, to be cut under a
	// client's next request, when the model server takes over.
	srv.SetKeepAlivesEnabled(false)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(pausedListener{tl})
	}()
	err := w.wait(ctx, what, log)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		_ = srv.Close()
	}
	<-served
	if derr := tl.SetDeadline(time.Time{}); err == nil && derr != nil {
		err = fmt.Errorf("serve %s: %w", what, derr)
	}
	return err
}

// pausedListener is closed by unblocking Accept, not by closing the socket,
// which the model server serves on next.
type pausedListener struct{ *net.TCPListener }

func (p pausedListener) Close() error { return p.SetDeadline(time.Now()) }

func writeWaiting(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// wait polls until the alias resolves, saying once that it waits.
func (s *waitingSource) wait(ctx context.Context, what string, log *slog.Logger) error {
	every := s.every
	if every <= 0 {
		every = time.Second
	}
	said := false
	for {
		_, err := s.Resolve(ctx)
		if err == nil {
			return nil
		}
		if !errors.Is(err, registry.ErrNotFound) {
			log.Warn("waiting for the model", "model", what, "err", err)
		} else if !said {
			log.Info("waiting for the alias to exist", "model", what)
			said = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("serve %s: stopped while waiting for it: %w", what, ctx.Err())
		case <-time.After(every):
		}
	}
}

// servePointer fetches the model a pointer names from --store into
// --cache-dir, once per digest, and serves that directory.
func (a *app) servePointer(ctx context.Context, f serveFlags, p artifact.Pointer) (serving.Source, string, error) {
	loc, err := a.storeURL(f.store, f.registry, ".gauntlet")
	if err != nil {
		return nil, "", err
	}
	store, err := artifact.Open(ctx, loc)
	if err != nil {
		return nil, "", withCode(ExitUsage, fmt.Errorf("--store %s: %w", workspace.Redact(loc), err))
	}
	if err := p.Check(store); err != nil {
		return nil, "", withCode(ExitUsage, fmt.Errorf("--model: %w", err))
	}
	if p.Kind != artifact.KindTree {
		return nil, "", usagef("--model %s is a file; a model is a directory (STORE/trees/sha256/HEX)", p)
	}
	dir := filepath.Join(f.cacheDir, "pointers", p.Digest.Hex())
	if _, err := os.Stat(dir); err != nil {
		if err := artifact.FetchTree(ctx, store, p.Digest, dir); err != nil {
			if errors.Is(err, artifact.ErrNotFound) {
				return nil, "", withCode(ExitNotFound, fmt.Errorf("--model %s: %w", p, err))
			}
			return nil, "", fmt.Errorf("--model %s: %w", p, err)
		}
	}
	return serving.DirSource{Dir: dir, Name: "model-" + p.Digest.Hex()[:12]}, p.String(), nil
}

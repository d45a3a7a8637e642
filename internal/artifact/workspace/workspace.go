// Package workspace is a worker's side of the fleet's artifact store: the
// one store every host shares (--store), this host's bounded cache of
// verified artifacts (--cache-dir, --cache-size), and data fetched from
// wherever it lives (a path, file://, s3://, http(s)://, or an artifact
// pointer) into that cache.
//
// A step gets a Session for one execution. Whatever it materialises stays
// on disk, unchanged, until the session closes; then the cache may evict
// it again. Steps hand each other artifact pointers, never paths: a path
// means nothing on the host that runs the next step.
//
// Failures are *Error values whose Kind says what went wrong and whether
// trying again can help (see the Kind constants); messages name the
// location, never a credential or a URL's query.
package workspace

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/cache"
)

// Defaults of Config.
const (
	// DefaultCacheBytes bounds a host's artifact cache: models, reports
	// and data sets fetched from the store or a URL.
	DefaultCacheBytes = 20 << 30
	// DefaultMaxDownload bounds one data set fetched over http(s).
	DefaultMaxDownload = 8 << 30
	// DefaultHTTPTimeout bounds one http(s) download, start to end.
	DefaultHTTPTimeout = 30 * time.Minute
)

// Config says where a worker's store and cache are.
type Config struct {
	// Store is the store's URL (file:// or s3://, see artifact.Open);
	// empty means file://<StateDir>/artifacts.
	Store string
	// StateDir is the root of the host's local state.
	StateDir string
	// CacheDir holds the local cache; empty means <StateDir>/cache.
	CacheDir string
	// CacheBytes bounds the cache; 0 means DefaultCacheBytes, negative
	// means no bound.
	CacheBytes int64
	// HTTP fetches http(s) data; nil means a client with
	// DefaultHTTPTimeout.
	HTTP *http.Client
	// MaxDownload bounds one http(s) or s3 data set outside the store;
	// 0 means DefaultMaxDownload.
	MaxDownload int64
}

// StoreURL is the store a worker with this state directory and --store
// value uses.
func StoreURL(store, stateDir string) (string, error) {
	if store != "" {
		return store, nil
	}
	abs, err := filepath.Abs(filepath.Join(stateDir, "artifacts"))
	if err != nil {
		return "", fmt.Errorf("store: state directory %s: %w", stateDir, err)
	}
	return "file://" + abs, nil
}

// Workspace is one host's store and cache, shared by every step it runs.
type Workspace struct {
	url         string
	store       artifact.Store
	cache       *cache.Cache
	http        *http.Client
	maxDownload int64
}

// Open opens the store and the cache. It does not reach the store: Check
// does.
func Open(ctx context.Context, cfg Config) (*Workspace, error) {
	loc, err := StoreURL(cfg.Store, cfg.StateDir)
	if err != nil {
		return nil, err
	}
	store, err := artifact.Open(ctx, loc)
	if err != nil {
		return nil, &Error{Kind: KindBadInput, Err: fmt.Errorf("--store: %w", err)}
	}
	dir := cfg.CacheDir
	if dir == "" {
		dir = filepath.Join(cfg.StateDir, "cache")
	}
	bound := cfg.CacheBytes
	switch {
	case bound == 0:
		bound = DefaultCacheBytes
	case bound < 0:
		bound = 0
	}
	c, err := cache.Open(dir, bound)
	if err != nil {
		return nil, fmt.Errorf("--cache-dir: %w", err)
	}
	w := New(store, c, cfg.HTTP, cfg.MaxDownload)
	w.url = loc
	return w, nil
}

// New assembles a workspace from an open store and cache; nil client and
// zero maxDownload take the defaults.
func New(store artifact.Store, c *cache.Cache, client *http.Client, maxDownload int64) *Workspace {
	if client == nil {
		client = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if maxDownload <= 0 {
		maxDownload = DefaultMaxDownload
	}
	return &Workspace{store: store, cache: c, http: client, maxDownload: maxDownload}
}

// Store is the fleet's store.
func (w *Workspace) Store() artifact.Store { return w.store }

// URL is the store as the worker was given it: its location with the
// settings of its query (an endpoint, a region), never a credential, which
// a worker this one starts (a provisioned node's) needs to reach the same
// store.
func (w *Workspace) URL() string {
	if w.url == "" {
		return w.store.Location()
	}
	return w.url
}

// Cache is this host's cache.
func (w *Workspace) Cache() *cache.Cache { return w.cache }

// Check reaches the store once, listing the registry's refs, so that a
// worker given a store it cannot use (unreachable, wrong credentials, no
// such bucket) says so when it starts rather than at a run's first step.
func (w *Workspace) Check(ctx context.Context) error {
	if _, err := w.store.ListRefs(ctx, "registry/"); err != nil {
		return classify(fmt.Errorf("store %s: %w", w.store.Location(), err))
	}
	return nil
}

// Session starts one step's use of the workspace.
func (w *Workspace) Session() *Session { return &Session{w: w} }

// Session is one step execution's use of the workspace: the artifacts it
// materialised stay in the cache until Close.
type Session struct {
	w      *Workspace
	mu     sync.Mutex
	leases []*cache.Lease
	closed bool
}

// Store is the fleet's store.
func (s *Session) Store() artifact.Store { return s.w.store }

// StoreURL is Workspace.URL.
func (s *Session) StoreURL() string { return s.w.URL() }

func (s *Session) hold(l *cache.Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		l.Release()
		return errors.New("workspace: session closed")
	}
	s.leases = append(s.leases, l)
	return nil
}

// Close releases every artifact the session materialised.
func (s *Session) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.leases {
		l.Release()
	}
	s.leases, s.closed = nil, true
}

// Materialize makes the artifact p names available on this host and
// returns its local path (a read-only file or directory), valid until the
// session closes.
func (s *Session) Materialize(ctx context.Context, p artifact.Pointer) (string, error) {
	l, err := s.w.cache.Get(ctx, s.w.store, p)
	if err != nil {
		return "", classify(err)
	}
	if err := s.hold(l); err != nil {
		return "", err
	}
	return l.Path(), nil
}

// Publish stores the file or directory at path and returns its pointer.
func (s *Session) Publish(ctx context.Context, path string) (artifact.Pointer, error) {
	p, err := artifact.Publish(ctx, s.w.store, path)
	if err != nil {
		return artifact.Pointer{}, classify(fmt.Errorf("publish to %s: %w", s.w.store.Location(), err))
	}
	return p, nil
}

package workerhost

import (
	"fmt"
	"math"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
)

// Environment variables of the store settings.
const (
	EnvStore     = "GAUNTLET_STORE"
	EnvCacheDir  = "GAUNTLET_CACHE_DIR"
	EnvCacheSize = "GAUNTLET_CACHE_SIZE"
	// EnvRegistry is the old name of the registry's store, which is now
	// the one store: it is read as EnvStore when that is unset.
	EnvRegistry = "GAUNTLET_REGISTRY"
)

// DefaultCacheSize is --cache-size's default.
const DefaultCacheSize = "20GiB"

// StoreFlags are the store and cache settings of the worker, `gauntlet
// dev` and the CLI commands that read or write artifacts.
type StoreFlags struct {
	Store, CacheDir, CacheSize string
	fs                         *pflag.FlagSet
}

// Register adds --store, --cache-dir and --cache-size to fs.
func (f *StoreFlags) Register(fs *pflag.FlagSet) {
	f.fs = fs
	fs.StringVar(&f.Store, "store", "", "the artifact store every worker and the CLI share: file:///path or s3://bucket/prefix (env "+EnvStore+", default file://<state-dir>/artifacts); it holds models, reports, the registry and the step cache")
	fs.StringVar(&f.CacheDir, "cache-dir", "", "this host's cache of artifacts fetched from the store (env "+EnvCacheDir+", default <state-dir>/cache)")
	fs.StringVar(&f.CacheSize, "cache-size", DefaultCacheSize, "bound of --cache-dir, e.g. 20GiB or 500MB; 0 for none (env "+EnvCacheSize+")")
}

func (f *StoreFlags) changed(name string) bool {
	if f.fs == nil {
		return false
	}
	fl := f.fs.Lookup(name)
	return fl != nil && fl.Changed
}

// Config resolves the flags (explicit flags, then the environment, then
// the defaults under stateDir). A warning, when not empty, is for the
// user: an old setting was read.
func (f *StoreFlags) Config(stateDir string, getenv func(string) string) (cfg workspace.Config, warning string, err error) {
	explicit := ""
	if f.changed("store") {
		explicit = f.Store
	}
	store, warning, err := ResolveStore(explicit, getenv)
	if err != nil {
		return cfg, "", err
	}
	cfg.Store, cfg.StateDir = store, stateDir
	cfg.CacheDir = f.CacheDir
	if !f.changed("cache-dir") && getenv(EnvCacheDir) != "" {
		cfg.CacheDir = getenv(EnvCacheDir)
	}
	size := f.CacheSize
	if !f.changed("cache-size") && getenv(EnvCacheSize) != "" {
		size = getenv(EnvCacheSize)
	}
	if size == "" {
		size = DefaultCacheSize
	}
	if cfg.CacheBytes, err = ParseCacheSize(size); err != nil {
		return cfg, "", err
	}
	return cfg, warning, nil
}

// ResolveStore is the store given explicitly (a --store flag), else by
// the environment: GAUNTLET_STORE, or the old GAUNTLET_REGISTRY, which is
// read as it with a warning. Empty means the default under the state
// directory (workspace.StoreURL). The two variables naming different
// stores is an error: the registry lives in the one store.
func ResolveStore(explicit string, getenv func(string) string) (store, warning string, err error) {
	store = explicit
	if store == "" {
		store = getenv(EnvStore)
	}
	if old := getenv(EnvRegistry); old != "" {
		switch {
		case store == "":
			store = old
			warning = EnvRegistry + " is read as " + EnvStore + ": the registry lives in the one store every worker shares; rename the variable"
		case store != old:
			return "", "", fmt.Errorf("%s=%s and the store %s differ: the registry lives in the store; unset %s", EnvRegistry, workspace.Redact(old), workspace.Redact(store), EnvRegistry)
		}
	}
	return store, warning, nil
}

// ParseCacheSize reads a size such as 20GiB, 500MB or 1048576; 0 means no
// bound, which workspace.Config spells as a negative number.
func ParseCacheSize(s string) (int64, error) {
	n, err := humanize.ParseBytes(strings.TrimSpace(s))
	if err != nil || n > math.MaxInt64 {
		return 0, fmt.Errorf("--cache-size %q: want a size such as 20GiB or 500MB, or 0 for no bound", s)
	}
	if n == 0 {
		return -1, nil
	}
	return int64(n), nil
}

package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/metrics"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
	"github.com/gauntlet-ml/gauntlet/internal/steps"
)

// Pipelines loads definitions for runs from a directory.
type Pipelines struct {
	Dir string
	// Metrics, when set, gets the run counters of every pipeline resolved;
	// nil records nothing.
	Metrics *metrics.Metrics
}

// invalid marks a definition problem: another attempt reads the same file,
// so Temporal must not retry.
func invalid(err error) error {
	return temporal.NewNonRetryableApplicationError(err.Error(), "InvalidPipeline", err)
}

// Resolve loads, validates and completes a definition and its params.
func (p *Pipelines) Resolve(_ context.Context, in contract.ResolveInput) (contract.Resolved, error) {
	sp, err := p.load(in)
	if err != nil {
		return contract.Resolved{}, err
	}
	params, err := spec.ResolveParams(sp, in.Params)
	if err != nil {
		return contract.Resolved{}, invalid(fmt.Errorf("pipeline %s: %w", sp.Name, err))
	}
	hash, err := sp.Hash()
	if err != nil {
		return contract.Resolved{}, invalid(err)
	}
	// A run's counters must exist at zero before it can end, or the first
	// failure of a pipeline (an inline one, or one added since the worker
	// started) would appear at 1 and escape increase().
	if p.Metrics != nil {
		p.Metrics.Pipelines(sp.Name)
	}
	return contract.Resolved{Spec: *sp, Hash: hash, Params: params}, nil
}

func (p *Pipelines) load(in contract.ResolveInput) (*spec.Spec, error) {
	switch {
	case in.Spec != nil:
		// An inline spec went through JSON, not the parser: validate it
		// the same way so a tool cannot bypass the checks.
		if diags := spec.Validate(in.Spec, steps.Catalog{}); len(diags) > 0 {
			return nil, invalid(diags)
		}
		return in.Spec, nil
	case in.YAML != "":
		sp, diags := spec.ParseAndValidate("inline.yaml", []byte(in.YAML), steps.Catalog{})
		if len(diags) > 0 {
			return nil, invalid(diags)
		}
		return sp, nil
	case in.Pipeline != "":
		path, err := p.Find(in.Pipeline)
		if err != nil {
			return nil, invalid(err)
		}
		sp, diags := spec.Load(path, steps.Catalog{})
		if len(diags) > 0 {
			return nil, invalid(diags)
		}
		return sp, nil
	default:
		return nil, invalid(errors.New(`input names no pipeline: give {"pipeline": "NAME", "params": {...}}`))
	}
}

// Find returns the file that defines the pipeline called name: NAME.yaml or
// NAME.yml in the directory, else any file whose `name:` is NAME.
func (p *Pipelines) Find(name string) (string, error) {
	if strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return "", fmt.Errorf("pipeline name %q may not contain a path", name)
	}
	for _, ext := range []string{".yaml", ".yml"} {
		path := filepath.Join(p.Dir, name+ext)
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
	}
	files, err := p.Files()
	if err != nil {
		return "", err
	}
	var known []string
	for _, f := range files {
		sp, diags := spec.Parse(f, mustRead(f))
		if sp == nil || len(diags) > 0 {
			continue
		}
		if sp.Name == name {
			return f, nil
		}
		known = append(known, sp.Name)
	}
	sort.Strings(known)
	return "", fmt.Errorf("pipeline %q not found in %s (known: %s)", name, p.Dir, strings.Join(known, ", "))
}

// Files lists the definition files of the directory.
func (p *Pipelines) Files() ([]string, error) {
	entries, err := os.ReadDir(p.Dir)
	if err != nil {
		return nil, fmt.Errorf("pipelines directory %s: %w", p.Dir, err)
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if !e.IsDir() && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			out = append(out, filepath.Join(p.Dir, n))
		}
	}
	return out, nil
}

func mustRead(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return b
}

// Cache keeps step results in the store every worker shares, as refs
// stepcache/<key>, so that a result cached on one host is a hit on any.
// From run version 3 the key covers the content of a step's file and URL
// inputs (Lookup), and a hit counts only while every artifact its outputs
// point to is still in the store.
type Cache struct {
	Workspace *workspace.Workspace
}

const cacheRefPrefix = "stepcache/"

// cacheRecord is what a cache ref holds.
type cacheRecord struct {
	Outputs map[string]any `json:"outputs"`
}

// Get returns a cached result by a key workflow code computed alone (runs
// before version 3); a miss is Found false, not an error.
func (c *Cache) Get(ctx context.Context, key string) (contract.CacheEntry, error) {
	if !validKey(key) {
		return contract.CacheEntry{}, invalid(fmt.Errorf("cache key %q is not a hex digest", key))
	}
	return c.get(ctx, key)
}

// Lookup completes the key with the content digests of the step's file and
// URL inputs, in the order of their keys, and looks the result up. It
// returns the final key either way: CachePut stores under it.
func (c *Cache) Lookup(ctx context.Context, in contract.CacheLookupInput) (contract.CacheEntry, error) {
	if !validKey(in.Key) {
		return contract.CacheEntry{}, invalid(fmt.Errorf("cache key %q is not a hex digest", in.Key))
	}
	session := c.Workspace.Session()
	defer session.Close()
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", in.Key)
	err := walkStrings("", in.With, func(path, v string) error {
		d, ok, err := session.Fingerprint(ctx, v)
		if err != nil {
			return fmt.Errorf("cache key: with.%s: %w", path, err)
		}
		if ok {
			fmt.Fprintf(h, "%s=%s\x00", path, d)
		}
		return nil
	})
	if err != nil {
		return contract.CacheEntry{}, toTemporal(err, 0)
	}
	return c.get(ctx, hex.EncodeToString(h.Sum(nil)))
}

// walkStrings calls fn on every string in v, with its path, in a fixed
// order: the keys of maps sorted, lists in order.
func walkStrings(path string, v any, fn func(path, v string) error) error {
	switch x := v.(type) {
	case string:
		return fn(path, x)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if err := walkStrings(p, x[k], fn); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range x {
			if err := walkStrings(fmt.Sprintf("%s[%d]", path, i), e, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// get reads the entry under key and keeps it only while every artifact
// its outputs point to is in the store: a result whose model was deleted
// is a miss, and the step runs again.
func (c *Cache) get(ctx context.Context, key string) (contract.CacheEntry, error) {
	miss := contract.CacheEntry{Key: key}
	store := c.Workspace.Store()
	ref, err := store.GetRef(ctx, cacheRefPrefix+key)
	if errors.Is(err, artifact.ErrNotFound) {
		return miss, nil
	}
	if err != nil {
		return contract.CacheEntry{}, fmt.Errorf("cache get %s: %w", key, err)
	}
	var rec cacheRecord
	if err := json.Unmarshal(ref.Data, &rec); err != nil {
		// A damaged entry is a miss: the step simply runs again.
		return miss, nil
	}
	var gone []string
	err = walkStrings("", map[string]any(rec.Outputs), func(path, v string) error {
		p, err := artifact.ParsePointer(v)
		if err != nil {
			return nil
		}
		switch err := present(ctx, store, p); {
		case errors.Is(err, artifact.ErrNotFound), errors.Is(err, artifact.ErrOtherStore):
			gone = append(gone, path+" "+v)
		case err != nil:
			return err
		}
		return nil
	})
	if err != nil {
		return contract.CacheEntry{}, fmt.Errorf("cache get %s: %w", key, err)
	}
	if len(gone) > 0 && activity.IsActivity(ctx) {
		activity.GetLogger(ctx).Warn("cached result ignored: an artifact it names is gone", "key", key, "outputs", gone)
	}
	if len(gone) > 0 {
		return miss, nil
	}
	return contract.CacheEntry{Key: key, Found: true, Outputs: rec.Outputs}, nil
}

// present checks that the artifact p names is whole in store.
func present(ctx context.Context, store artifact.Store, p artifact.Pointer) error {
	if err := p.Check(store); err != nil {
		return err
	}
	if p.Kind != artifact.KindTree {
		_, err := store.Stat(ctx, p.Digest)
		return err
	}
	t, err := artifact.ReadTree(ctx, store, p.Digest)
	if err != nil {
		return err
	}
	for _, f := range t.Files {
		if _, err := store.Stat(ctx, f.Digest); err != nil {
			return err
		}
	}
	return nil
}

// Put stores a result under the key Get or Lookup returned, replacing an
// entry whose artifacts were gone.
func (c *Cache) Put(ctx context.Context, e contract.CacheEntry) error {
	if !validKey(e.Key) {
		return invalid(fmt.Errorf("cache key %q is not a hex digest", e.Key))
	}
	b, err := json.Marshal(cacheRecord{Outputs: e.Outputs})
	if err != nil {
		return invalid(fmt.Errorf("cache put %s: %w", e.Key, err))
	}
	store := c.Workspace.Store()
	name := cacheRefPrefix + e.Key
	version := ""
	for range 3 {
		_, err = store.PutRef(ctx, name, b, version)
		if !errors.Is(err, artifact.ErrConflict) {
			break
		}
		cur, gerr := store.GetRef(ctx, name)
		if gerr != nil {
			return fmt.Errorf("cache put %s: %w", e.Key, gerr)
		}
		version = cur.Version
	}
	if err != nil {
		return fmt.Errorf("cache put %s: %w", e.Key, err)
	}
	return nil
}

func validKey(k string) bool {
	if len(k) != 64 {
		return false
	}
	for _, c := range k {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/gauntlet-ml/gauntlet/internal/atomicfile"
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

// Cache keeps step results by cache key under the state directory.
type Cache struct {
	Dir string
}

// Get returns a cached result; a miss is Found false, not an error.
func (c *Cache) Get(_ context.Context, key string) (contract.CacheEntry, error) {
	if !validKey(key) {
		return contract.CacheEntry{}, invalid(fmt.Errorf("cache key %q is not a hex digest", key))
	}
	b, err := os.ReadFile(filepath.Join(c.Dir, key+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return contract.CacheEntry{Key: key}, nil
	}
	if err != nil {
		return contract.CacheEntry{}, fmt.Errorf("cache get %s: %w", key, err)
	}
	var e contract.CacheEntry
	if err := json.Unmarshal(b, &e); err != nil {
		// A damaged entry is a miss: the step simply runs again.
		return contract.CacheEntry{Key: key}, nil
	}
	e.Found = true
	return e, nil
}

// Put stores a result atomically, so a reader never sees half an entry.
func (c *Cache) Put(_ context.Context, e contract.CacheEntry) error {
	if !validKey(e.Key) {
		return invalid(fmt.Errorf("cache key %q is not a hex digest", e.Key))
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return fmt.Errorf("cache put %s: %w", e.Key, err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return invalid(fmt.Errorf("cache put %s: %w", e.Key, err))
	}
	path := filepath.Join(c.Dir, e.Key+".json")
	if err := atomicfile.Write(path, b); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
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

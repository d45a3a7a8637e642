package serving

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
)

// Source says which model to serve. Resolve is cheap and is polled;
// Materialize makes the model a local directory, which the server then loads
// and verifies before swapping it in.
type Source interface {
	Resolve(ctx context.Context) (Ref, error)
	Materialize(ctx context.Context, ref Ref) (Ref, error)
}

// DirSource serves a model directory. Its digest is the model digest, so a
// directory replaced in place (a new model renamed over it) is picked up by
// the next poll or reload.
type DirSource struct {
	Dir string
	// Name is reported as the model name; empty means the directory's base
	// name.
	Name string
}

// Resolve reads the directory's digest.
func (s DirSource) Resolve(context.Context) (Ref, error) {
	abs, err := filepath.Abs(s.Dir)
	if err != nil {
		return Ref{}, fmt.Errorf("model %s: %w", s.Dir, err)
	}
	sums, err := os.ReadFile(filepath.Join(abs, modelfile.SumsFile))
	if err != nil {
		return Ref{}, fmt.Errorf("model %s: %w", s.Dir, err)
	}
	sum := sha256.Sum256(sums)
	name := s.Name
	if name == "" {
		name = filepath.Base(abs)
	}
	return Ref{Name: name, Version: "dir", Digest: hex.EncodeToString(sum[:]), Dir: abs}, nil
}

// Materialize has nothing to fetch.
func (s DirSource) Materialize(_ context.Context, ref Ref) (Ref, error) { return ref, nil }

// RegistrySource serves the version a registry alias (or a version number)
// names, fetching each version's tree into CacheDir once.
type RegistrySource struct {
	Registry *registry.Registry
	Store    artifact.Store
	Model    string
	// Ref is an alias ("champion") or a version ("3", "v3").
	Ref      string
	CacheDir string
}

// Resolve looks the alias up.
func (s RegistrySource) Resolve(ctx context.Context) (Ref, error) {
	v, err := s.Registry.Resolve(ctx, s.Model, s.Ref)
	if err != nil {
		return Ref{}, err
	}
	return Ref{Name: s.Model, Version: "v" + strconv.Itoa(v.Version), Digest: v.Artifact.String()}, nil
}

// Materialize fetches the version's tree unless the cache holds it. The
// fetch is atomic, so a cached directory is always complete; the server
// still verifies it on load.
func (s RegistrySource) Materialize(ctx context.Context, ref Ref) (Ref, error) {
	d, err := artifact.ParseDigest(ref.Digest)
	if err != nil {
		return Ref{}, fmt.Errorf("model %s %s: %w", ref.Name, ref.Version, err)
	}
	dir := filepath.Join(s.CacheDir, d.Hex())
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := artifact.FetchTree(ctx, s.Store, d, dir); err != nil {
			// Two servers sharing a cache may race; the loser finds the
			// winner's complete copy.
			if _, serr := os.Stat(filepath.Join(dir, modelfile.ManifestFile)); serr != nil {
				return Ref{}, fmt.Errorf("model %s %s: %w", ref.Name, ref.Version, err)
			}
		}
	} else if err != nil {
		return Ref{}, fmt.Errorf("model %s %s: %w", ref.Name, ref.Version, err)
	}
	ref.Dir = dir
	return ref, nil
}

package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
)

// localData makes a data input readable on this host: an artifact pointer
// to a file (what split writes) is fetched from the store into the step's
// directory, verified against its digest on the way; a path or a builtin:
// URI is returned as given.
func localData(ctx context.Context, env Env, key, src string) (string, error) {
	p, err := artifact.ParsePointer(src)
	if errors.Is(err, artifact.ErrNotPointer) {
		return src, nil
	}
	if err != nil {
		return "", badInput(key, "%v", err)
	}
	if p.Kind != artifact.KindBlob {
		return "", badInput(key, "%s names a directory; data is one CSV file", p)
	}
	s, err := artifact.Open(ctx, env.Store())
	if err != nil {
		return "", fmt.Errorf("with.%s: open the artifact store: %w", key, err)
	}
	if err := p.Check(s); err != nil {
		return "", Permanent(kindBadInput, fmt.Errorf("with.%s: %w", key, err))
	}
	path := filepath.Join(env.Dir(), "data-"+p.Digest.Hex()+".csv")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	rc, err := s.Get(ctx, p.Digest)
	if err != nil {
		if errors.Is(err, artifact.ErrNotFound) {
			return "", Permanent(kindBadInput, fmt.Errorf("with.%s: %s is not in the store: %w", key, p, err))
		}
		return "", fmt.Errorf("with.%s: read %s: %w", key, p, err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(env.Dir(), ".data-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	// The store's reader fails at the end when the content does not match
	// the digest, so a corrupt copy is never renamed into place.
	if _, err := io.Copy(tmp, rc); err != nil {
		tmp.Close()
		return "", fmt.Errorf("with.%s: fetch %s: %w", key, p, err)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}

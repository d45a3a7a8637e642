package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

const checkpointFile = "mlp-checkpoint.json"

type checkpointer struct{ dir string }

func (c *checkpointer) path() string { return filepath.Join(c.dir, checkpointFile) }

func (c *checkpointer) load() (*mlpState, error) {
	b, err := os.ReadFile(c.path())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("model: read checkpoint: %w", err)
	}
	var st mlpState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("model: decode checkpoint %s: %w", c.path(), err)
	}
	return &st, nil
}

// save writes the state atomically: a crash mid-write leaves the previous
// checkpoint in place. JSON keeps float64 values exact (shortest round-trip).
func (c *checkpointer) save(st *mlpState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("model: encode checkpoint: %w", err)
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return fmt.Errorf("model: checkpoint dir: %w", err)
	}
	f, err := os.CreateTemp(c.dir, checkpointFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("model: write checkpoint: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, c.path())
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("model: write checkpoint %s: %w", c.path(), err)
	}
	return nil
}

package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gauntlet-ml/gauntlet/internal/atomicfile"
)

// Checkpoints say where a trainer keeps its state after each epoch and
// whom it tells. Training resumes from the state it finds in Dir, so an
// interrupted run ends as an uninterrupted one would; package dp's
// trainer takes the same settings.
type Checkpoints struct {
	// Dir holds the state; empty means no checkpoints.
	Dir string
	// Saved, when set, is called once each epoch's state is complete in
	// Dir (the step publishes the directory to the artifact store then);
	// an error it returns stops training with that error.
	Saved func(epoch int) error
	// Resumed, when set, is called before training continues from a state
	// found in Dir, with the number of epochs it had completed.
	Resumed func(epoch int)
}

// LoadState decodes the JSON state file name in dir into v and reports
// whether there was one.
func LoadState(dir, name string, v any) (bool, error) {
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read checkpoint: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode checkpoint %s: %w", path, err)
	}
	return true, nil
}

// SaveState writes v as the JSON state file name in dir, atomically: a
// crash mid-write leaves the previous checkpoint in place, and the
// temporary file's name starts with '.', which a directory published as a
// checkpoint leaves out. JSON keeps float64 values exact (shortest
// round-trip).
func SaveState(dir, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, name), b); err != nil {
		return fmt.Errorf("write checkpoint %s: %w", filepath.Join(dir, name), err)
	}
	return nil
}

const checkpointFile = "mlp-checkpoint.json"

type checkpointer struct{ Checkpoints }

func (c *checkpointer) path() string { return filepath.Join(c.Dir, checkpointFile) }

func (c *checkpointer) load() (*mlpState, error) {
	var st mlpState
	ok, err := LoadState(c.Dir, checkpointFile, &st)
	if err != nil || !ok {
		return nil, wrap(err)
	}
	return &st, nil
}

func (c *checkpointer) save(st *mlpState) error {
	if err := SaveState(c.Dir, checkpointFile, st); err != nil {
		return wrap(err)
	}
	if c.Saved != nil {
		return c.Saved(st.Epoch)
	}
	return nil
}

func wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("model: %w", err)
}

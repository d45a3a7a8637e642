package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/atomicfile"
)

// DesiredFile is the name of an environment's desired state, in
// <StateDir>/deploy/<env>.
const DesiredFile = "desired.json"

// desired is what an environment should run. It holds no address: ports
// change with every Local.
type desired struct {
	Model string `json:"model"`
	// Candidate is the artifact pointer of the model in canary (an
	// absolute directory in files written before pointers); empty when
	// none.
	Candidate string `json:"candidate,omitempty"`
	// Weight is the canary's share of the traffic in percent.
	Weight int `json:"canary_weight"`
}

func (d desired) validate(name string) error {
	switch {
	case d.Model != name:
		return fmt.Errorf("names model %q, not %q", d.Model, name)
	case d.Candidate != "" && !filepath.IsAbs(d.Candidate) && !isPointer(d.Candidate):
		return fmt.Errorf("candidate %q is neither an artifact pointer nor an absolute directory", d.Candidate)
	case d.Weight < 0 || d.Weight > 100:
		return fmt.Errorf("canary weight %d is not a percentage", d.Weight)
	case d.Candidate == "" && d.Weight != 0:
		return fmt.Errorf("canary weight %d without a candidate", d.Weight)
	}
	return nil
}

func isPointer(s string) bool {
	_, err := artifact.ParsePointer(s)
	return err == nil
}

// load reads the desired state a previous Local left, if any.
func (e *env) load() error {
	path := filepath.Join(e.dir, DesiredFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		e.desired, e.saved, e.loaded = desired{Model: e.name}, false, true
		return nil
	}
	if err != nil {
		return fmt.Errorf("load desired state: %w", err)
	}
	var d desired
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return fmt.Errorf("load desired state %s: %w", path, err)
	}
	if err := d.validate(e.name); err != nil {
		return fmt.Errorf("load desired state %s: %w", path, err)
	}
	e.desired, e.saved, e.loaded = d, true, true
	return nil
}

// save records d as the desired state, on disk first: what a restarted
// worker restores is never behind what this one did.
func (e *env) save(d desired) error {
	if e.saved && d == e.desired {
		return nil
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("save desired state: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(e.dir, DesiredFile), append(b, '\n')); err != nil {
		return fmt.Errorf("save desired state: %w", err)
	}
	e.desired, e.saved = d, true
	return nil
}

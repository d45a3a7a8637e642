package onnxmodel

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
)

// HoldoutParam is the key of modelfile.Lineage.Params under which the train
// step records the held-out split it leaves in a model directory: {"file",
// "sha256", "rows"}. The split lies outside SHA256SUMS; the manifest, which
// SHA256SUMS covers, records its digest. Explanations draw their background
// from it and later steps default their data to it.
const HoldoutParam = "holdout"

// companions reads the files a model directory carries beside its own that
// its lineage records (the held-out split), to be written into a model
// derived from it (an export, an int8 copy) whose manifest keeps the same
// record. A recorded file that is absent is left out, as the source lacks
// it too; one that does not match its recorded digest is refused.
func companions(srcDir string, l modelfile.Lineage) (map[string][]byte, error) {
	raw, ok := l.Params[HoldoutParam]
	if !ok {
		return nil, nil
	}
	var h struct {
		File   string `json:"file"`
		SHA256 string `json:"sha256"`
	}
	b, err := json.Marshal(raw)
	if err == nil {
		err = json.Unmarshal(b, &h)
	}
	if err != nil || !filepath.IsLocal(h.File) || h.SHA256 == "" {
		return nil, fmt.Errorf("%s: the manifest's %q record is malformed", srcDir, HoldoutParam)
	}
	path := filepath.Join(srcDir, h.File)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != h.SHA256 {
		return nil, fmt.Errorf("%s: sha256 %s, the manifest records %s: %w", path, got, h.SHA256, modelfile.ErrTampered)
	}
	return map[string][]byte{h.File: data}, nil
}

// Package modelfile reads and writes model artifacts: a directory holding
// manifest.json (schema, preprocessing, metrics, lineage), the weights in
// safetensors format, and SHA256SUMS, whose own sha256 is the artifact digest.
// Saving is atomic; loading verifies every file against SHA256SUMS.
package modelfile

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/atomicfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/quantize"
)

// FormatVersion is the manifest format this package writes and reads.
const FormatVersion = 1

// File names inside an artifact directory.
const (
	ManifestFile = "manifest.json"
	WeightsFile  = "weights.safetensors"
	SumsFile     = "SHA256SUMS"
)

// Quantization schemes recorded in a manifest.
const (
	Float = ""
	Int8  = "int8"
)

// ErrTampered is matched (errors.Is) when a file does not match its recorded
// digest: the artifact is corrupt or was edited, and must not be served.
var ErrTampered = errors.New("model artifact does not match its digest")

// Lineage records where a model came from.
type Lineage struct {
	DataDigest  string         `json:"data_digest"`
	DataSource  string         `json:"data_source,omitempty"`
	Params      map[string]any `json:"params,omitempty"`
	CodeVersion string         `json:"code_version,omitempty"`
	ParentModel string         `json:"parent_model,omitempty"`
	CreatedAt   time.Time      `json:"created_at"` // passed in by the caller, so saving is deterministic
}

// Manifest describes a model artifact.
type Manifest struct {
	FormatVersion int                `json:"format_version"`
	Kind          model.Kind         `json:"kind"`
	Quantization  string             `json:"quantization,omitempty"`
	Schema        dataset.Schema     `json:"schema"`
	Features      []string           `json:"features"`
	Preprocessing *dataset.Encoder   `json:"preprocessing"`
	Threshold     float64            `json:"threshold"`
	Metrics       map[string]float64 `json:"metrics,omitempty"`
	Lineage       Lineage            `json:"lineage"`
}

// Artifact is a loaded model directory.
type Artifact struct {
	Dir      string
	Digest   string // sha256 of SHA256SUMS, hex
	Manifest *Manifest
	Tensors  []model.Tensor
}

// DecodeManifest parses and validates manifest JSON.
func DecodeManifest(b []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("modelfile: decode manifest: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("modelfile: decode manifest: trailing data")
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Manifest) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("modelfile: manifest: "+format, args...)
	}
	switch {
	case m.FormatVersion != FormatVersion:
		return bad("format version %d, this code reads %d", m.FormatVersion, FormatVersion)
	case m.Kind != model.LogReg && m.Kind != model.MLP:
		return bad("unknown model kind %q", m.Kind)
	case m.Quantization != Float && m.Quantization != Int8:
		return bad("unknown quantization %q", m.Quantization)
	case m.Schema.Label == "" || len(m.Schema.Positive) == 0:
		return bad("schema lacks the label or its positive values")
	case m.Preprocessing == nil:
		return bad("no preprocessing")
	case !(m.Threshold > 0 && m.Threshold < 1):
		return bad("decision threshold %v not in (0, 1)", m.Threshold)
	case m.Lineage.DataDigest == "":
		return bad("lineage lacks the data digest")
	}
	if !slices.Equal(m.Features, m.Preprocessing.FeatureNames()) {
		return bad("feature names do not match the preprocessing (%d vs %d features)", len(m.Features), m.Preprocessing.Width())
	}
	kinds := map[string]dataset.Kind{}
	for _, c := range m.Schema.Columns {
		kinds[c.Name] = c.Kind
	}
	if kinds[m.Schema.Label] != dataset.Label {
		return bad("label %q is not a label column of the schema", m.Schema.Label)
	}
	for _, f := range m.Preprocessing.Numeric {
		if kinds[f.Name] != dataset.Numeric {
			return bad("numeric feature %q is not a numeric column of the schema", f.Name)
		}
	}
	for _, f := range m.Preprocessing.Categorical {
		want := dataset.Categorical
		if f.Sensitive {
			want = dataset.Sensitive
		}
		if kinds[f.Name] != want {
			return bad("categorical feature %q is not a %s column of the schema", f.Name, want)
		}
	}
	return nil
}

// Save writes an artifact to dir, which must not exist yet, and returns its
// digest. Files are written to a temporary directory beside dir, synced, and
// renamed into place, so readers see a complete artifact or none.
func Save(dir string, m *Manifest, tensors []model.Tensor) (string, error) {
	return SaveWith(dir, m, tensors, nil)
}

// SaveWith is Save with files written beside the artifact's own, in the
// same rename: companions such as the held-out split its lineage records,
// which SHA256SUMS does not cover (the manifest records their digests).
func SaveWith(dir string, m *Manifest, tensors []model.Tensor, extra map[string][]byte) (string, error) {
	if m.FormatVersion == 0 {
		m.FormatVersion = FormatVersion
	}
	if err := m.validate(); err != nil {
		return "", err
	}
	if _, err := os.Stat(dir); err == nil {
		return "", fmt.Errorf("modelfile: save %s: already exists", dir)
	}
	if _, err := scorer(m, tensors); err != nil {
		return "", fmt.Errorf("modelfile: save %s: %w", dir, err)
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", fmt.Errorf("modelfile: encode manifest: %w", err)
	}
	meta := map[string]string{"format": "gauntlet", "kind": string(m.Kind)}
	if m.Quantization != Float {
		meta["quantization"] = m.Quantization
	}
	weights, err := EncodeSafetensors(tensors, meta)
	if err != nil {
		return "", err
	}
	sums := fmt.Sprintf("%x  %s\n%x  %s\n", sha256.Sum256(manifest), ManifestFile, sha256.Sum256(weights), WeightsFile)

	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("modelfile: save %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return "", fmt.Errorf("modelfile: save %s: %w", dir, err)
	}
	files := []struct {
		name string
		data []byte
	}{{ManifestFile, manifest}, {WeightsFile, weights}, {SumsFile, []byte(sums)}}
	for _, name := range slices.Sorted(maps.Keys(extra)) {
		if name == ManifestFile || name == WeightsFile || name == SumsFile || !filepath.IsLocal(name) {
			os.RemoveAll(tmp)
			return "", fmt.Errorf("modelfile: save %s: companion file %q would overwrite the artifact's own or leave its directory", dir, name)
		}
		files = append(files, struct {
			name string
			data []byte
		}{name, extra[name]})
	}
	for _, f := range files {
		if err := atomicfile.Create(filepath.Join(tmp, f.name), f.data); err != nil {
			os.RemoveAll(tmp)
			return "", fmt.Errorf("modelfile: save %s: %w", dir, err)
		}
	}
	if err := syncDir(tmp); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("modelfile: save %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("modelfile: save %s: %w", dir, err)
	}
	if err := syncDir(parent); err != nil {
		return "", fmt.Errorf("modelfile: save %s: %w", dir, err)
	}
	return fmt.Sprintf("%x", sha256.Sum256([]byte(sums))), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Load reads and verifies an artifact. A file that does not match SHA256SUMS
// yields an error naming it and matching ErrTampered.
func Load(dir string) (*Artifact, error) {
	sums, err := os.ReadFile(filepath.Join(dir, SumsFile))
	if err != nil {
		return nil, fmt.Errorf("modelfile: load %s: %w", dir, err)
	}
	want, err := parseSums(sums)
	if err != nil {
		return nil, fmt.Errorf("modelfile: load %s: %s: %w", dir, SumsFile, err)
	}
	contents := map[string][]byte{}
	for _, name := range []string{ManifestFile, WeightsFile} {
		path := filepath.Join(dir, name)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("modelfile: load %s: %w", dir, err)
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != want[name] {
			return nil, fmt.Errorf("modelfile: %s: sha256 %s, %s records %s: %w", path, got, SumsFile, want[name], ErrTampered)
		}
		contents[name] = b
	}
	m, err := DecodeManifest(contents[ManifestFile])
	if err != nil {
		return nil, fmt.Errorf("modelfile: load %s: %w", dir, err)
	}
	ts, _, err := DecodeSafetensors(contents[WeightsFile])
	if err != nil {
		return nil, fmt.Errorf("modelfile: load %s: %w", filepath.Join(dir, WeightsFile), err)
	}
	a := &Artifact{Dir: dir, Digest: fmt.Sprintf("%x", sha256.Sum256(sums)), Manifest: m, Tensors: ts}
	if _, err := a.Scorer(); err != nil {
		return nil, fmt.Errorf("modelfile: load %s: %w", dir, err)
	}
	return a, nil
}

func parseSums(b []byte) (map[string]string, error) {
	want := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 {
			return nil, fmt.Errorf("malformed line %q", sc.Text())
		}
		want[name] = sum
	}
	for _, name := range []string{ManifestFile, WeightsFile} {
		if want[name] == "" {
			return nil, fmt.Errorf("no digest for %s", name)
		}
	}
	return want, nil
}

// Scorer rebuilds the model the artifact holds: a float network or, for an
// int8 artifact, the quantized one.
func (a *Artifact) Scorer() (model.Scorer, error) { return scorer(a.Manifest, a.Tensors) }

func scorer(m *Manifest, ts []model.Tensor) (model.Scorer, error) {
	var s model.Scorer
	width := 0
	if m.Quantization == Int8 {
		q, err := quantize.FromTensors(m.Kind, ts)
		if err != nil {
			return nil, err
		}
		s, width = q, q.Layers[0].In
	} else {
		n, err := model.FromTensors(m.Kind, ts)
		if err != nil {
			return nil, err
		}
		s, width = n, n.NumFeatures()
	}
	if width != len(m.Features) {
		return nil, fmt.Errorf("weights take %d features, manifest lists %d", width, len(m.Features))
	}
	return s, nil
}

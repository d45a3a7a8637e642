// Package filesd keeps the files of Prometheus' file-based service
// discovery (file_sd_configs) for the GPU nodes provisioning starts: one
// file per node, <dir>/gpu-workers-<node>.json, holding one target group
// (the node's metrics endpoint and labels naming the node, its run and
// step). deploy/prometheus/prometheus.yml reads targets/gpu-workers*.json.
//
// A file appears whole or not at all: it is written under a hidden name
// the glob never matches, synced, made readable by Prometheus' own user and
// renamed into place. Prometheus watches the directory and rereads changed
// files, and drops the targets of a file that is removed.
package filesd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// EnvDir names the directory Prometheus reads target files from; the
// worker's --prometheus-targets-dir sets it for the steps.
const EnvDir = "GAUNTLET_PROMETHEUS_TARGETS"

// Prefix and Suffix make a node's file name; Prometheus' glob is
// Prefix + "*" + Suffix.
const (
	Prefix = "gpu-workers-"
	Suffix = ".json"
)

// Group is one target group in Prometheus' file_sd format.
type Group struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// Dir is a directory of target files.
type Dir struct {
	path string
}

// Open returns the target directory at path, which must exist: Prometheus
// is configured to read one place, and a file written anywhere else would
// leave the node unobserved without a word.
func Open(path string) (Dir, error) {
	if path == "" {
		return Dir{}, errors.New("filesd: no target directory given")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Dir{}, fmt.Errorf("filesd: target directory %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return Dir{}, fmt.Errorf("filesd: target directory %s: %w", abs, err)
	}
	if !fi.IsDir() {
		return Dir{}, fmt.Errorf("filesd: target directory %s is not a directory", abs)
	}
	return Dir{path: abs}, nil
}

// Path is the directory's absolute path.
func (d Dir) Path() string { return d.path }

var nodeName = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*$`)

// File returns the path of node's file. A node name is one path element
// of letters, digits, '.', '_' and '-', not starting with '.'.
func (d Dir) File(node string) (string, error) {
	if d.path == "" {
		return "", errors.New("filesd: target directory not opened")
	}
	if len(node) > 200 || !nodeName.MatchString(node) {
		return "", fmt.Errorf("filesd: node name %q: want letters, digits, '.', '_' and '-', not starting with '.'", node)
	}
	return filepath.Join(d.path, Prefix+node+Suffix), nil
}

// Write replaces node's file with g.
func (d Dir) Write(node string, g Group) error {
	path, err := d.File(node)
	if err != nil {
		return err
	}
	if err := g.validate(); err != nil {
		return fmt.Errorf("filesd: node %s: %w", node, err)
	}
	// A list of groups is the format; one group per node file.
	b, err := json.MarshalIndent([]Group{g}, "", "  ")
	if err != nil {
		return fmt.Errorf("filesd: node %s: %w", node, err)
	}
	if err := replace(path, append(b, '\n')); err != nil {
		return fmt.Errorf("filesd: write %s: %w", path, err)
	}
	return nil
}

// Read returns node's group, or an error matching fs.ErrNotExist when the
// node has no file.
func (d Dir) Read(node string) (Group, error) {
	path, err := d.File(node)
	if err != nil {
		return Group{}, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Group{}, fmt.Errorf("filesd: %w", err)
	}
	var gs []Group
	if err := json.Unmarshal(b, &gs); err != nil {
		return Group{}, fmt.Errorf("filesd: %s: %w", path, err)
	}
	if len(gs) != 1 {
		return Group{}, fmt.Errorf("filesd: %s holds %d target groups, want 1", path, len(gs))
	}
	return gs[0], nil
}

// Remove deletes node's file; a node without one is not an error, so
// teardown can run twice.
func (d Dir) Remove(node string) error {
	path, err := d.File(node)
	if err != nil {
		return err
	}
	return RemoveFile(path)
}

// RemoveFile deletes a file Write wrote, by the path File gave, for a
// caller that recorded the path rather than the directory.
func RemoveFile(path string) error {
	if base := filepath.Base(path); len(base) <= len(Prefix)+len(Suffix) || !strings.HasPrefix(base, Prefix) || !strings.HasSuffix(base, Suffix) {
		return fmt.Errorf("filesd: %s is not a node target file (%s*%s)", path, Prefix, Suffix)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("filesd: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("filesd: %w", err)
	}
	return nil
}

// labelName is Prometheus' label name syntax; names starting with "__" are
// its own (relabelling meta labels) and are refused.
var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

func (g Group) validate() error {
	if len(g.Targets) == 0 {
		return errors.New("no target")
	}
	for _, t := range g.Targets {
		host, port, err := net.SplitHostPort(t)
		if err != nil {
			return fmt.Errorf("target %q: want host:port: %w", t, err)
		}
		if host == "" {
			return fmt.Errorf("target %q: no host (Prometheus must be told where to connect, not a listen address such as :9464)", t)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("target %q: port %q is not a number from 1 to 65535", t, port)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(g.Labels)) {
		if !labelName.MatchString(k) || strings.HasPrefix(k, "__") {
			return fmt.Errorf("label name %q: want [a-zA-Z_][a-zA-Z0-9_]* not starting with __", k)
		}
		if !utf8.ValidString(g.Labels[k]) {
			return fmt.Errorf("label %s: value is not UTF-8", k)
		}
	}
	return nil
}

// replace writes data to path through a synced temporary file in the same
// directory and a rename. The file is 0644: Prometheus usually runs as a
// user of its own.
func replace(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o644); err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename or removal in dir survive a crash.
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

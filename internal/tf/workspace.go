package tf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/terraform-exec/tfexec"
)

// Files the workspace keeps beside the module copy.
const (
	LogFile       = "terraform.log"
	cliConfigFile = "terraform.rc"
	varsFile      = "gauntlet-vars.json"
	backendFile   = "gauntlet_backend_override.tf"
	moduleMarker  = ".gauntlet-module"
	emptyMirror   = ".no-providers"
)

// Config says which module to run where.
type Config struct {
	// Terraform is the binary, usually from Find.
	Terraform string
	// Module is the module's source directory. It is copied into Dir the
	// first time only, so a later destroy runs the configuration that was
	// applied even if the source changed since. It may be empty when Dir
	// already holds a copy.
	Module string
	// Dir is the run's own working directory: state, log and module copy.
	Dir string
	// Backend, when set, stores state in S3 instead of Dir: its entries
	// become -backend-config key=value pairs (bucket, key, region, ...).
	Backend map[string]string
	// ProviderMirror is a directory filled by `terraform providers mirror`.
	// Terraform never installs providers from the network here; without a
	// mirror, a module that needs a provider fails at init.
	ProviderMirror string
	// Env is added to the minimal environment Terraform runs with (PATH,
	// HOME, TMPDIR): cloud credentials, AWS_REGION and the like.
	Env map[string]string
}

// Workspace runs one module in one working directory. It is not safe for
// concurrent use; Terraform's own state lock would refuse it anyway.
type Workspace struct {
	cfg Config
	tf  *tfexec.Terraform
}

// ProviderError says a module needs a provider this machine cannot install.
type ProviderError struct {
	Dir    string
	Mirror string
	Err    error
}

func (e *ProviderError) Error() string {
	return fmt.Sprintf("terraform init in %s: the module needs a provider that is not in the provider mirror %s, and network installation is disabled; fill the mirror with `terraform providers mirror` on a connected machine or use a module without providers (local-node): %v", e.Dir, e.Mirror, e.Err)
}

func (e *ProviderError) Unwrap() error { return e.Err }

// New prepares dir: it creates it, copies the module in if not there yet,
// and writes the CLI configuration. It runs no Terraform command.
func New(cfg Config) (*Workspace, error) {
	if cfg.Terraform == "" {
		return nil, fmt.Errorf("%w: no binary given", ErrNotFound)
	}
	if _, err := os.Stat(cfg.Terraform); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	if cfg.Dir == "" {
		return nil, errors.New("terraform workspace: no working directory given")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("terraform workspace %s: %w", cfg.Dir, err)
	}
	cfg.Dir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("terraform workspace: %w", err)
	}
	if err := ensureModule(cfg.Module, dir); err != nil {
		return nil, err
	}
	if cfg.ProviderMirror == "" {
		cfg.ProviderMirror = filepath.Join(dir, emptyMirror)
		if err := os.MkdirAll(cfg.ProviderMirror, 0o755); err != nil {
			return nil, fmt.Errorf("terraform workspace: %w", err)
		}
	} else if cfg.ProviderMirror, err = filepath.Abs(cfg.ProviderMirror); err != nil {
		return nil, fmt.Errorf("provider mirror: %w", err)
	}
	// A filesystem mirror for every provider, and no direct method, is what
	// makes init fail in a second naming the mirror, instead of trying the
	// registry; see the test for the message.
	rc := fmt.Sprintf("provider_installation {\n  filesystem_mirror {\n    path    = %s\n    include = [\"*/*/*\"]\n  }\n}\n", strconv.Quote(cfg.ProviderMirror))
	if err := os.WriteFile(filepath.Join(dir, cliConfigFile), []byte(rc), 0o644); err != nil {
		return nil, fmt.Errorf("terraform workspace: %w", err)
	}
	if err := writeBackend(dir, cfg.Backend != nil); err != nil {
		return nil, err
	}
	t, err := tfexec.NewTerraform(dir, cfg.Terraform)
	if err != nil {
		return nil, fmt.Errorf("terraform workspace %s: %w", dir, err)
	}
	env := map[string]string{
		"PATH":               os.Getenv("PATH"),
		"HOME":               os.Getenv("HOME"),
		"TMPDIR":             os.TempDir(),
		"TF_CLI_CONFIG_FILE": filepath.Join(dir, cliConfigFile),
		// Stops Terraform's version check from calling HashiCorp.
		"CHECKPOINT_DISABLE": "1",
	}
	if env["HOME"] == "" {
		env["HOME"] = dir
	}
	maps.Copy(env, cfg.Env)
	if err := t.SetEnv(env); err != nil {
		return nil, fmt.Errorf("terraform workspace environment: %w", err)
	}
	return &Workspace{cfg: cfg, tf: t}, nil
}

// Dir is the workspace's working directory.
func (w *Workspace) Dir() string { return w.cfg.Dir }

// LogPath is where every command's stdout and stderr are appended.
func (w *Workspace) LogPath() string { return filepath.Join(w.cfg.Dir, LogFile) }

// Apply initialises the workspace and applies the module with vars, then
// returns its outputs. Values that are not strings are passed as JSON,
// which Terraform reads as HCL for list, map, number and bool variables.
// The variables are recorded in the workspace so Destroy needs none.
// Cancelling ctx interrupts Terraform (SIGINT, then SIGKILL after a minute).
func (w *Workspace) Apply(ctx context.Context, vars map[string]any) (map[string]any, error) {
	if _, err := os.Stat(filepath.Join(w.cfg.Dir, moduleMarker)); err != nil {
		return nil, fmt.Errorf("terraform apply in %s: no module was copied there (Config.Module was empty)", w.cfg.Dir)
	}
	encoded, err := encodeVars(vars)
	if err != nil {
		return nil, err
	}
	// Recorded before applying: an apply that dies halfway still leaves
	// resources that a destroy must be able to reach.
	b, err := json.MarshalIndent(encoded, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("recording terraform vars: %w", err)
	}
	if err := os.WriteFile(filepath.Join(w.cfg.Dir, varsFile), b, 0o600); err != nil {
		return nil, fmt.Errorf("recording terraform vars: %w", err)
	}
	if err := w.init(ctx); err != nil {
		return nil, err
	}
	opts := []tfexec.ApplyOption{}
	for _, v := range varFlags(encoded) {
		opts = append(opts, tfexec.Var(v))
	}
	if err := w.run("apply", func() error { return w.tf.Apply(ctx, opts...) }); err != nil {
		return nil, err
	}
	return w.Output(ctx)
}

// Output returns the module's outputs decoded from JSON.
func (w *Workspace) Output(ctx context.Context) (map[string]any, error) {
	var meta map[string]tfexec.OutputMeta
	err := w.run("output", func() error {
		var err error
		meta, err = w.tf.Output(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]any, len(meta))
	for name, m := range meta {
		var v any
		if err := json.Unmarshal(m.Value, &v); err != nil {
			return nil, fmt.Errorf("terraform output %s: %w", name, err)
		}
		out[name] = v
	}
	return out, nil
}

// Destroy destroys what Apply created, with the variables Apply recorded.
// It succeeds when there is nothing to destroy: a workspace never applied,
// or one destroyed already.
func (w *Workspace) Destroy(ctx context.Context) error {
	b, err := os.ReadFile(filepath.Join(w.cfg.Dir, varsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading recorded terraform vars: %w", err)
	}
	var encoded map[string]string
	if err := json.Unmarshal(b, &encoded); err != nil {
		return fmt.Errorf("reading recorded terraform vars %s: %w", filepath.Join(w.cfg.Dir, varsFile), err)
	}
	return w.destroy(ctx, encoded)
}

// DestroyWith destroys what an Apply with vars created, on a host other
// than the one that applied it: the workspace holds a copy of the module
// as applied (Config.Module) and the state is in the backend, but no
// variables were recorded here. The variables are recorded now, so a
// later Destroy needs none.
func (w *Workspace) DestroyWith(ctx context.Context, vars map[string]any) error {
	if _, err := os.Stat(filepath.Join(w.cfg.Dir, moduleMarker)); err != nil {
		return fmt.Errorf("terraform destroy in %s: no module was copied there (Config.Module was empty)", w.cfg.Dir)
	}
	encoded, err := encodeVars(vars)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(encoded, "", "  ")
	if err != nil {
		return fmt.Errorf("recording terraform vars: %w", err)
	}
	if err := os.WriteFile(filepath.Join(w.cfg.Dir, varsFile), b, 0o600); err != nil {
		return fmt.Errorf("recording terraform vars: %w", err)
	}
	return w.destroy(ctx, encoded)
}

func (w *Workspace) destroy(ctx context.Context, encoded map[string]string) error {
	if err := w.init(ctx); err != nil {
		return err
	}
	opts := []tfexec.DestroyOption{}
	for _, v := range varFlags(encoded) {
		opts = append(opts, tfexec.Var(v))
	}
	return w.run("destroy", func() error { return w.tf.Destroy(ctx, opts...) })
}

func (w *Workspace) init(ctx context.Context) error {
	opts := []tfexec.InitOption{tfexec.Upgrade(false)}
	for _, k := range slices.Sorted(maps.Keys(w.cfg.Backend)) {
		opts = append(opts, tfexec.BackendConfig(k+"="+w.cfg.Backend[k]))
	}
	err := w.run("init", func() error { return w.tf.Init(ctx, opts...) })
	if err != nil && ctx.Err() == nil && strings.Contains(err.Error(), "Failed to query available provider packages") {
		return &ProviderError{Dir: w.cfg.Dir, Mirror: w.cfg.ProviderMirror, Err: err}
	}
	return err
}

// run sends one command's output to the log, headed by what ran and when,
// and names the command and the log in any error.
func (w *Workspace) run(name string, f func() error) error {
	log, err := os.OpenFile(w.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("terraform %s: opening log: %w", name, err)
	}
	defer log.Close()
	fmt.Fprintf(log, "\n=== terraform %s at %s\n", name, time.Now().UTC().Format(time.RFC3339))
	w.tf.SetStdout(log)
	w.tf.SetStderr(log)
	defer func() {
		w.tf.SetStdout(io.Discard)
		w.tf.SetStderr(io.Discard)
	}()
	if err := f(); err != nil {
		fmt.Fprintf(log, "=== terraform %s failed: %v\n", name, err)
		return fmt.Errorf("terraform %s in %s (log %s): %w", name, w.cfg.Dir, w.LogPath(), err)
	}
	return nil
}

func encodeVars(vars map[string]any) (map[string]string, error) {
	out := make(map[string]string, len(vars))
	for k, v := range vars {
		if k == "" || strings.ContainsAny(k, "= \n") {
			return nil, fmt.Errorf("terraform variable name %q is not valid", k)
		}
		if s, ok := v.(string); ok {
			out[k] = s
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("terraform variable %s: %w", k, err)
		}
		out[k] = string(b)
	}
	return out, nil
}

// varFlags sorts by name so every run passes the same flags in the same order.
func varFlags(encoded map[string]string) []string {
	flags := make([]string, 0, len(encoded))
	for _, k := range slices.Sorted(maps.Keys(encoded)) {
		flags = append(flags, k+"="+encoded[k])
	}
	return flags
}

// writeBackend adds or removes an override file declaring an empty S3
// backend, so the same module runs with local state or, given -backend-config
// values, with state in S3, without the module itself naming a backend.
func writeBackend(dir string, s3 bool) error {
	p := filepath.Join(dir, backendFile)
	if !s3 {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("terraform backend: %w", err)
		}
		return nil
	}
	if err := os.WriteFile(p, []byte("terraform {\n  backend \"s3\" {}\n}\n"), 0o644); err != nil {
		return fmt.Errorf("terraform backend: %w", err)
	}
	return nil
}

// HasModule says whether dir holds a module copy a workspace made there.
func HasModule(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, moduleMarker))
	return err == nil
}

// Module is the module as this workspace applies it: the files
// ensureModule copied from Config.Module, none of the workspace's own
// (state, logs, recorded variables, CLI configuration) nor what the module
// writes there. Publishing it lets a worker on another host destroy the
// node with the configuration that was applied.
func (w *Workspace) Module() (fs.FS, error) {
	b, err := os.ReadFile(filepath.Join(w.cfg.Dir, moduleMarker))
	if err != nil {
		return nil, fmt.Errorf("terraform module in %s: %w", w.cfg.Dir, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	files := map[string]bool{}
	for _, l := range lines[1:] {
		files[l] = true
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("terraform module in %s: its copy lists no files (made before copies were listed)", w.cfg.Dir)
	}
	return moduleFiles{os.DirFS(w.cfg.Dir), files}, nil
}

// moduleFiles shows only the listed files of a directory (and the
// directories holding them).
type moduleFiles struct {
	fs.FS
	files map[string]bool
}

func (m moduleFiles) shown(name string) bool {
	if name == "." || m.files[name] {
		return true
	}
	for f := range m.files {
		if strings.HasPrefix(f, name+"/") {
			return true
		}
	}
	return false
}

func (m moduleFiles) Open(name string) (fs.File, error) {
	if !m.shown(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return m.FS.Open(name)
}

func (m moduleFiles) ReadDir(name string) ([]fs.DirEntry, error) {
	entries, err := fs.ReadDir(m.FS, name)
	out := entries[:0]
	for _, e := range entries {
		if m.shown(path.Join(name, e.Name())) {
			out = append(out, e)
		}
	}
	return out, err
}

// ensureModule copies src into dir unless dir already holds a copy.
func ensureModule(src, dir string) error {
	marker := filepath.Join(dir, moduleMarker)
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	if src == "" {
		// Nothing to copy and nothing copied: only Destroy can proceed, and
		// it finds nothing applied.
		return nil
	}
	info, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("terraform module: %w", err)
	}
	if !info.IsDir() {
		return fmt.Errorf("terraform module %s is not a directory", src)
	}
	var copied []string
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		name := d.Name()
		// A module dir someone ran terraform in by hand must not leak its
		// state or provider cache into the run.
		if d.IsDir() && name == ".terraform" {
			return filepath.SkipDir
		}
		if strings.HasPrefix(name, "terraform.tfstate") || name == ".terraform.lock.hcl" {
			return nil
		}
		target := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file", path)
		}
		copied = append(copied, filepath.ToSlash(rel))
		return copyFile(path, target)
	})
	if err != nil {
		return fmt.Errorf("copying terraform module %s to %s: %w", src, dir, err)
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		return fmt.Errorf("terraform module: %w", err)
	}
	// The source, then the files copied: what Module shows.
	if err := os.WriteFile(marker, []byte(abs+"\n"+strings.Join(copied, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("terraform module: %w", err)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

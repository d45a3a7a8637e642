// Package tf runs Terraform modules for GPU nodes through terraform-exec.
// Each run gets its own working directory holding a copy of the module, its
// state, its CLI configuration and the Terraform log, so runs never share
// state and the log stays with the run's artifacts. It knows nothing of
// Temporal: the provision and destroy activities call it.
package tf

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// EnvTerraform names the environment variable that points at the binary.
const EnvTerraform = "GAUNTLET_TERRAFORM"

// ErrNotFound is wrapped by every error saying no terraform binary was found.
var ErrNotFound = errors.New("terraform binary not found (run `make tools` to install Terraform 1.5.7 into bin/terraform)")

// Find returns the terraform binary to use, trying in order: flagValue,
// $GAUNTLET_TERRAFORM, then bin/terraform in the working directory or the
// nearest parent holding go.mod (the repository root, where `make tools`
// installs it). PATH is not searched on purpose: a newer system terraform
// (BUSL-licensed, other behaviour) must not be picked up silently.
func Find(flagValue string) (string, error) {
	if flagValue != "" {
		return executable(flagValue, "--terraform")
	}
	if v := os.Getenv(EnvTerraform); v != "" {
		return executable(v, "$"+EnvTerraform)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("looking for bin/terraform: %w", err)
	}
	if p, err := executable(filepath.Join(wd, "bin", "terraform"), "bin/terraform"); err == nil {
		return p, nil
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if p, err := executable(filepath.Join(dir, "bin", "terraform"), "bin/terraform"); err == nil {
				return p, nil
			}
			break
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	return "", fmt.Errorf("%w: not given by --terraform or $%s, and no bin/terraform under %s or its repository root", ErrNotFound, EnvTerraform, wd)
}

func executable(path, from string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s %q: %v", ErrNotFound, from, path, err)
	}
	p, err := exec.LookPath(abs)
	if err != nil {
		return "", fmt.Errorf("%w: %s %q: %v", ErrNotFound, from, path, err)
	}
	return p, nil
}

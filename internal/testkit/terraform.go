package testkit

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// TerraformAtLeast reports whether the terraform (or OpenTofu) binary bin
// is at least major.minor, as `version -json` reports it: `make tools` may
// link a newer one than the 1.5.7 it builds, and some settings changed
// between them.
func TerraformAtLeast(t testing.TB, bin string, major, minor int) bool {
	t.Helper()
	cmd := exec.Command(bin, "version", "-json")
	cmd.Env = append(os.Environ(), "CHECKPOINT_DISABLE=1", "TF_CLI_CONFIG_FILE="+os.DevNull)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s version -json: %v", bin, err)
	}
	var v struct {
		Version string `json:"terraform_version"`
	}
	var ma, mi int
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%s version -json: %v in %s", bin, err, out)
	}
	if _, err := fmt.Sscanf(v.Version, "%d.%d", &ma, &mi); err != nil {
		t.Fatalf("%s version -json: version %q: %v", bin, v.Version, err)
	}
	return ma > major || ma == major && mi >= minor
}

package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
)

// The registry lives in the store: --store and GAUNTLET_STORE name it; the
// old --registry and GAUNTLET_REGISTRY are read as the store, and an old
// setting naming another store than the new one is an error, not a guess.
func TestModelsReadTheStore(t *testing.T) {
	ctx := context.Background()
	loc := "file://" + filepath.Join(t.TempDir(), "store")
	store, err := artifact.Open(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.New(store).Register(ctx, registry.RegisterRequest{Model: "credit", Artifact: artifact.DigestBytes([]byte("m")),
		Lineage: registry.Lineage{RunID: "r", StepID: "s"}, CreatedAt: time.Unix(0, 0).UTC()}); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		env  map[string]string
		args []string
		warn bool
	}{
		"flag":         {nil, []string{"--store", loc}, false},
		"environment":  {map[string]string{"GAUNTLET_STORE": loc}, nil, false},
		"old flag":     {nil, []string{"--registry", loc}, true},
		"old variable": {map[string]string{"GAUNTLET_REGISTRY": loc}, nil, true},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, stderr := runCLI(t, c.env, append([]string{"models", "list"}, c.args...)...)
			if code != ExitOK || !strings.Contains(out, "credit") {
				t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
			}
			if warned := strings.Contains(stderr, "store"); warned != c.warn {
				t.Errorf("warning %v, want %v: %q", warned, c.warn, stderr)
			}
		})
	}
	code, _, stderr := runCLI(t, map[string]string{"GAUNTLET_STORE": loc, "GAUNTLET_REGISTRY": "s3://other/reg?endpoint=http://h"}, "models", "list")
	if code != ExitUsage || !strings.Contains(stderr, "GAUNTLET_REGISTRY=s3://other/reg and the store") || strings.Contains(stderr, "endpoint") {
		t.Errorf("differing stores: exit %d\n%s", code, stderr)
	}
}

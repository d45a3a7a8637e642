package steps

import (
	"path/filepath"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
)

// TestShippedPipelinesValidate checks pipelines/*.yaml against the real
// catalog: every step type, input and referenced output must exist.
func TestShippedPipelinesValidate(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "pipelines", "*.yaml"))
	if err != nil || len(files) < 2 {
		t.Fatalf("shipped pipelines: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			s, diags := spec.Load(f, Catalog{})
			if len(diags) > 0 {
				t.Fatalf("diagnostics:\n%s", diags.Error())
			}
			if _, err := s.Graph(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

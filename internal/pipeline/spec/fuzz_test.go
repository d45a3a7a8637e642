package spec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes through parsing and validation, which must
// never panic, and checks that whatever parses cleanly survives JSON.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{repoRoot + "/pipelines/*.yaml", fixtures + "/good/*.yaml", fixtures + "/bad/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, diags := ParseAndValidate("fuzz.yaml", data, testCatalog)
		for _, d := range diags {
			_ = d.String()
		}
		if s == nil || len(diags) > 0 {
			return
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("valid spec does not marshal: %v", err)
		}
		var back Spec
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("valid spec does not unmarshal: %v\n%s", err, b)
		}
		if _, err := back.Graph(); err != nil {
			t.Fatalf("valid spec has no plan: %v", err)
		}
	})
}

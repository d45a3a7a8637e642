package spec

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of bad fixtures")

const (
	repoRoot = "../../.."
	fixtures = repoRoot + "/testdata/pipeline"
)

// testCatalog mirrors the built-in types the fixtures use, with the outputs
// the real catalog documents.
var testCatalog = MapCatalog{
	"provision": {Name: "provision", Outputs: []string{"node_id", "task_queue"}},
	"train":     {Name: "train", Outputs: []string{"model", "metrics"}},
	"evaluate": {Name: "evaluate", Outputs: []string{"metrics", "verdict", "passed"},
		Inputs: []InputSpec{{Name: "model", Required: true}, {Name: "data"}, {Name: "baseline"}, {Name: "thresholds"}}},
	"fairness-gate": {Name: "fairness-gate", Outputs: []string{"passed", "model", "report"}},
	"notify":        {Name: "notify"},
	"destroy":       {Name: "destroy"},
	"approval":      {Name: "approval", Workflow: true},
}

// TestGoodFixtures loads every good fixture and the smoke pipeline and
// expects no diagnostics. Every shipped pipeline is checked against the real
// step catalog in internal/steps, which this package cannot import.
func TestGoodFixtures(t *testing.T) {
	files := goodFiles(t)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			s, diags := Load(f, testCatalog)
			if len(diags) > 0 {
				t.Fatalf("unexpected diagnostics:\n%s", diags.Error())
			}
			if _, err := s.Graph(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func goodFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{repoRoot + "/pipelines/smoke.yaml", fixtures + "/good/*.yaml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 2 {
		t.Fatalf("found only %d good pipelines", len(files))
	}
	return files
}

// TestBadFixtures compares the diagnostics of each bad pipeline with its
// golden file, one "file:line:col: message" per line.
func TestBadFixtures(t *testing.T) {
	files, err := filepath.Glob(fixtures + "/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad fixtures: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, diags := ParseAndValidate(filepath.Base(f), data, testCatalog)
			got := diags.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("diagnostics differ from %s\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestJSONRoundTrip(t *testing.T) {
	for _, f := range goodFiles(t) {
		s, diags := Load(f, testCatalog)
		if len(diags) > 0 {
			t.Fatalf("%s: %s", f, diags.Error())
		}
		b1, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var back Spec
		if err := json.Unmarshal(b1, &back); err != nil {
			t.Fatalf("%s: unmarshal: %v", f, err)
		}
		b2, err := json.Marshal(&back)
		if err != nil {
			t.Fatal(err)
		}
		if string(b1) != string(b2) {
			t.Errorf("%s: JSON changes on a round trip:\n%s\n%s", f, b1, b2)
		}
		s.Source = nil
		if !reflect.DeepEqual(s, &back) {
			t.Errorf("%s: decoded spec differs from the parsed one", f)
		}
		if d := Validate(&back, testCatalog); len(d) > 0 {
			t.Errorf("%s: spec decoded from JSON fails validation: %s", f, d.Error())
		}
		h1, _ := s.Hash()
		h2, _ := back.Hash()
		if h1 != h2 {
			t.Errorf("%s: hash changes on a round trip", f)
		}
	}
}

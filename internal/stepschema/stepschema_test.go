package stepschema

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/gauntlet-ml/gauntlet/internal/steps"
)

const root = "../.."

func registryNames() []string {
	var names []string
	for _, t := range steps.All() {
		names = append(names, t.Name)
	}
	return names
}

func TestCommittedSchemaIsGenerated(t *testing.T) {
	path := filepath.Join(root, "pipelines", "schema.json")
	committed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Generate(committed, steps.All())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(committed, want) {
		t.Fatalf("pipelines/schema.json differs from what the step registry gives: run `go generate ./internal/stepschema`")
	}
	again, err := Generate(want, steps.All())
	if err != nil || !bytes.Equal(again, want) {
		t.Fatalf("Generate is not stable: %v", err)
	}
}

func compile(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "pipelines", "schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func asJSON(t *testing.T, yamlText []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(yamlText, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// Editors see what the validator sees: every shipped pipeline passes, and
// a type or input the registry does not know is flagged.
func TestSchemaKnowsTheRegistry(t *testing.T) {
	sch := compile(t)
	files, _ := filepath.Glob(filepath.Join(root, "pipelines", "*.yaml"))
	more, _ := filepath.Glob(filepath.Join(root, "testdata", "pipeline", "good", "*.yaml"))
	files = append(files, more...)
	if len(files) < 4 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(asJSON(t, b)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	for name, text := range map[string]string{
		"unknown type":   "name: p\nsteps:\n  - {id: a, uses: rollback}\n",
		"unknown input":  "name: p\nsteps:\n  - {id: a, uses: train, with: {data: d, label: y, positive_label: '1', epoch: 3}}\n",
		"missing input":  "name: p\nsteps:\n  - {id: a, uses: train, with: {data: d, label: y}}\n",
		"uses: run":      "name: p\nsteps:\n  - {id: a, uses: run}\n",
		"approval typo":  "name: p\nsteps:\n  - {id: a, uses: approval, with: {reviewers: [a], timout: 1h}}\n",
		"canary no with": "name: p\nsteps:\n  - {id: a, uses: canary-deploy}\n",
	} {
		if err := sch.Validate(asJSON(t, []byte(text))); err == nil {
			t.Errorf("%s: the schema accepts %q", name, text)
		}
	}
	if err := sch.Validate(asJSON(t, []byte("name: p\nsteps:\n  - {id: a, uses: echo, with: {anything: 1}}\n"))); err != nil {
		t.Errorf("echo takes any input: %v", err)
	}
}

// The README's table of built-in step types names every registered type
// and nothing else.
func TestREADMEStepTableMatchesRegistry(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "### Built-in step types")
	if start < 0 {
		t.Fatal("README.md has no \"### Built-in step types\" section")
	}
	section := text[start:]
	if end := strings.Index(section[4:], "\n#"); end >= 0 {
		section = section[:end+4]
	}
	name := regexp.MustCompile("`([a-z][a-z0-9-]*)`")
	var listed []string
	rows := 0
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.HasPrefix(strings.TrimSpace(line), "|") {
			continue
		}
		first := strings.TrimSpace(cells[1])
		if first == "type" || strings.Trim(first, "-") == "" {
			continue
		}
		rows++
		for _, m := range name.FindAllStringSubmatch(first, -1) {
			listed = append(listed, m[1])
		}
	}
	if rows == 0 {
		t.Fatal("found no rows in the built-in step table")
	}
	slices.Sort(listed)
	if want := registryNames(); !slices.Equal(listed, want) {
		t.Errorf("README's step table lists %q, the registry has %q", listed, want)
	}
}

package spec

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

const schemaPath = repoRoot + "/pipelines/schema.json"

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("schema.json")
	if err != nil {
		t.Fatalf("compile schema: %v", err)
	}
	return sch
}

// yamlAsJSON decodes a YAML file into the values a JSON decoder would give.
func yamlAsJSON(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestSchemaAcceptsGoodPipelines(t *testing.T) {
	sch := compileSchema(t)
	for _, f := range goodFiles(t) {
		if err := sch.Validate(yamlAsJSON(t, f)); err != nil {
			t.Errorf("%s does not match the schema: %v", f, err)
		}
	}
}

// The schema must reject files the parser rejects for their shape, or it
// would be useless to editors.
func TestSchemaRejectsBadShapes(t *testing.T) {
	sch := compileSchema(t)
	for _, name := range []string{"types.yaml", "everything.yaml"} {
		if err := sch.Validate(yamlAsJSON(t, filepath.Join(fixtures, "bad", name))); err == nil {
			t.Errorf("schema accepts bad fixture %s", name)
		}
	}
}

// TestSchemaMatchesParser checks that every level of the schema names
// exactly the keys the parser accepts.
func TestSchemaMatchesParser(t *testing.T) {
	data, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Defs       map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	levels := []struct {
		name   string
		schema map[string]json.RawMessage
		parser []string
	}{
		{"top level", schema.Properties, topKeys},
		{"param", schema.Defs["param"].Properties, paramKeys},
		{"defaults", schema.Defs["defaults"].Properties, defaultsKeys},
		{"retry", schema.Defs["retry"].Properties, retryKeys},
		{"schedule", schema.Defs["schedule"].Properties, scheduleKeys},
		{"step", schema.Defs["step"].Properties, stepKeys},
	}
	for _, l := range levels {
		got := slices.Sorted(mapKeys(l.schema))
		want := slices.Sorted(slices.Values(l.parser))
		if !slices.Equal(got, want) {
			t.Errorf("%s: schema properties %v, parser keys %v", l.name, got, want)
		}
	}
}

package stepio

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

type limits struct {
	Min *float64 `json:"min"`
	Max *float64 `json:"max"`
}

type common struct {
	Data string `json:"data" doc:"CSV path"`
}

type sample struct {
	Name     string             `json:"name" required:"true" doc:"who"`
	Ratio    float64            `json:"ratio" doc:"a share"`
	Seed     int                `json:"seed"`
	Strict   bool               `json:"strict"`
	Cols     []string           `json:"cols"`
	Widths   []int              `json:"widths"`
	Extra    map[string]any     `json:"extra"`
	Bounds   map[string]float64 `json:"bounds"`
	Checks   map[string]limits  `json:"checks"`
	Drop     *float64           `json:"drop"`
	Wait     Duration           `json:"wait"`
	Score    Float              `json:"score"`
	Ref      ref                `json:"ref"`
	Must     []string           `json:"must" required:"true"`
	internal int
	common
}

// ref stands for a field type that decodes itself (issue 17's artifact
// references): "name@digest".
type ref struct{ name, digest string }

func (r *ref) DecodeInput(v any) error {
	s, ok := v.(string)
	if !ok {
		return errors.New("want name@digest")
	}
	name, digest, ok := strings.Cut(s, "@")
	if !ok || digest == "" {
		return &Error{Path: "digest", Msg: "missing"}
	}
	r.name, r.digest = name, digest
	return nil
}

func TestFieldsFollowTags(t *testing.T) {
	fs := Fields[sample]()
	var names []string
	for _, f := range fs {
		names = append(names, f.Name)
	}
	want := "name ratio seed strict cols widths extra bounds checks drop wait score ref must data"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("names %q, want %q", got, want)
	}
	if !fs[0].Required || fs[0].Doc != "who" || fs[1].Required || fs[1].Doc != "a share" {
		t.Errorf("fields %+v", fs[:2])
	}
	if got := strings.Join(Names[*sample](), " "); got != want {
		t.Errorf("Names of a pointer type: %q", got)
	}
}

func TestDecodeAcceptsTextAndTyped(t *testing.T) {
	for _, with := range []map[string]any{
		{"name": " a ", "ratio": "0.1", "seed": "3", "strict": "true", "cols": "x, y,,", "widths": "32,16",
			"extra": `{"k": 1}`, "bounds": `{"dp": "0.5"}`, "drop": "0.25", "wait": "2d", "score": "0.5", "ref": "m@sha", "data": "d.csv", "must": "m"},
		{"name": "a", "ratio": 0.1, "seed": 3, "strict": true, "cols": []any{"x", "y"}, "widths": []any{32.0, 16},
			"extra": map[string]any{"k": 1.0}, "bounds": map[string]any{"dp": 0.5}, "drop": 0.25, "wait": "48h", "score": 0.5, "ref": "m@sha", "data": "d.csv", "must": []any{"m"}},
	} {
		var s sample
		if err := Decode(with, &s); err != nil {
			t.Fatalf("%v: %v", with, err)
		}
		if s.Name != "a" || s.Ratio != 0.1 || s.Seed != 3 || !s.Strict || strings.Join(s.Cols, "|") != "x|y" ||
			!reflect.DeepEqual(s.Widths, []int{32, 16}) || s.Bounds["dp"] != 0.5 || s.Drop == nil || *s.Drop != 0.25 ||
			time.Duration(s.Wait) != 48*time.Hour || s.Score != 0.5 || s.Ref != (ref{"m", "sha"}) || s.Data != "d.csv" {
			t.Errorf("%v: decoded %+v", with, s)
		}
		if f, _ := Number(s.Extra["k"]); f != 1 {
			t.Errorf("extra %v", s.Extra)
		}
	}
}

func TestDecodeKeepsDefaults(t *testing.T) {
	s := sample{Ratio: 0.2, Seed: 1, Cols: []string{"d"}}
	if err := Decode(map[string]any{"name": "n", "must": "m", "ratio": nil, "seed": "  ", "cols": ""}, &s); err != nil {
		t.Fatal(err)
	}
	if s.Ratio != 0.2 || s.Seed != 1 || len(s.Cols) != 1 || s.Drop != nil || s.Wait != 0 {
		t.Errorf("defaults lost: %+v", s)
	}
	// A number stands for text, as YAML's `positive_label: 1` needs.
	if err := Decode(map[string]any{"name": 1.0, "must": "m"}, &s); err != nil || s.Name != "1" {
		t.Errorf("name %q, %v", s.Name, err)
	}
	// null is undefined for a Float, not zero.
	if err := Decode(map[string]any{"name": "n", "must": "m", "score": nil}, &s); err != nil || s.Score.Defined() {
		t.Errorf("score %v, %v", s.Score, err)
	}
}

func TestDecodeErrorsNameTheKey(t *testing.T) {
	for _, c := range []struct {
		with map[string]any
		want string
	}{
		{map[string]any{"seed": "x"}, `with.name: required`},
		{map[string]any{"name": "  "}, `with.name: required`},
		{map[string]any{"name": "n", "must": ", ,"}, `with.must: required`},
		{map[string]any{"name": "n", "seed": "x"}, `with.seed: want an integer, got "x"`},
		{map[string]any{"name": "n", "seed": 2.5}, `with.seed: want an integer, got 2.5`},
		{map[string]any{"name": "n", "ratio": "NaN"}, `with.ratio: want a number, got "NaN"`},
		{map[string]any{"name": "n", "strict": "maybe"}, `with.strict: want true or false, got "maybe"`},
		{map[string]any{"name": "n", "strict": 1.0}, `with.strict: want true or false, got 1`},
		{map[string]any{"name": []any{"a"}}, `with.name: want a string, got a list`},
		{map[string]any{"name": "n", "cols": []any{"a", true}}, `with.cols[1]: want a string, got true`},
		{map[string]any{"name": "n", "cols": map[string]any{}}, `with.cols: want a list or a comma-separated string, got a mapping`},
		{map[string]any{"name": "n", "widths": "32,x"}, `with.widths[1]: want an integer, got "x"`},
		{map[string]any{"name": "n", "bounds": map[string]any{"dp": nil}}, `with.bounds.dp: want a number, got null`},
		{map[string]any{"name": "n", "bounds": "{"}, `with.bounds: want a mapping (or a JSON object)`},
		{map[string]any{"name": "n", "checks": map[string]any{"auc": map[string]any{"mni": 1.0}}}, `with.checks.auc.mni: unknown key (known: min, max)`},
		{map[string]any{"name": "n", "checks": map[string]any{"auc": map[string]any{"min": "low"}}}, `with.checks.auc.min: want a number, got "low"`},
		{map[string]any{"name": "n", "nmae": 1.0}, `with.nmae: unknown input (known: name, ratio, seed`},
		{map[string]any{"name": "n", "wait": 5.0}, `with.wait: want a duration such as 48h, got 5`},
		{map[string]any{"name": "n", "wait": "0s"}, `with.wait: "0s" is not a positive duration`},
		{map[string]any{"name": "n", "ref": 3.0}, `with.ref: want name@digest`},
		{map[string]any{"name": "n", "ref": "m@"}, `with.ref.digest: missing`},
	} {
		var s sample
		err := Decode(c.with, &s)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.with, err, c.want)
			continue
		}
		var r interface{ Retryable() bool }
		if !errors.As(err, &r) || r.Retryable() {
			t.Errorf("%v: %v is retryable", c.with, err)
		}
	}
	if err := Decode(nil, sample{}); err == nil || !strings.Contains(err.Error(), "pointer to a struct") {
		t.Errorf("decoding into a value: %v", err)
	}
}

func TestListIsOneParser(t *testing.T) {
	for _, c := range []struct {
		in   any
		want []string
	}{
		{"a, b,,c ", []string{"a", "b", "c"}},
		{[]any{" a", 1.0, "", 2.5}, []string{"a", "1", "2.5"}},
		{[]string{"x", " "}, []string{"x"}},
		{32.0, []string{"32"}},
		{"", nil},
		{nil, nil},
	} {
		got, err := List(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("List(%#v) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	if _, err := List(true); err == nil {
		t.Error("List(true) succeeded")
	}
}

type outputs struct {
	Passed  bool             `json:"passed" required:"true"`
	Rows    int              `json:"rows"`
	Score   Float            `json:"score"`
	Metrics map[string]Float `json:"metrics"`
	Names   []string         `json:"names"`
	Resumed *int             `json:"resumed,omitempty"`
}

// Outputs are encoded in the shape they have after crossing the history,
// and a later step decodes them through the same type.
func TestEncodeAndDecodeOutputs(t *testing.T) {
	o := outputs{Passed: true, Rows: 3, Score: Float(math.NaN()), Metrics: Floats(map[string]float64{"auc": 0.9, "f1": math.NaN()}), Names: []string{"a"}}
	m, err := Encode(o)
	if err != nil {
		t.Fatal(err)
	}
	if m["rows"] != 3.0 || m["score"] != nil || m["metrics"].(map[string]any)["f1"] != nil || !reflect.DeepEqual(m["names"], []any{"a"}) {
		t.Errorf("encoded %#v", m)
	}
	if _, ok := m["resumed"]; ok {
		t.Error("an omitted output is present")
	}
	if _, err := json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	var back outputs
	if err := Decode(m, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Passed || back.Rows != 3 || back.Score.Defined() || back.Metrics["auc"] != 0.9 || back.Metrics["f1"].Defined() {
		t.Errorf("decoded %+v", back)
	}
	if err := Decode(map[string]any{"rows": 1.0}, &back); err == nil || err.Error() != "with.passed: required" {
		t.Errorf("outputs without passed: %v", err)
	}
	if m, err := Encode((*outputs)(nil)); m != nil || err != nil {
		t.Errorf("nil outputs: %v %v", m, err)
	}
}

func TestDecodeValueRebasesPaths(t *testing.T) {
	var l limits
	err := DecodeValue("fairness.max", map[string]any{"min": "x"}, &l)
	if err == nil || err.Error() != `with.fairness.max.min: want a number, got "x"` {
		t.Errorf("error %v", err)
	}
}

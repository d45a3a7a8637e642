package deploy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"

	"github.com/gauntlet-ml/gauntlet/internal/devstack"
	"github.com/gauntlet-ml/gauntlet/internal/metrics"
	"github.com/gauntlet-ml/gauntlet/internal/router"
	"github.com/gauntlet-ml/gauntlet/internal/searchattr"
	"github.com/gauntlet-ml/gauntlet/internal/serving"
	"github.com/gauntlet-ml/gauntlet/internal/testkit"
)

func run(t *testing.T, dir string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
}

func TestPromtool(t *testing.T) {
	p := testkit.Tool(t, "promtool")
	run(t, "prometheus", p, "check", "config", "prometheus.yml")
	run(t, "prometheus", p, "check", "rules", "alert_rules.yml")
	run(t, "prometheus", p, "test", "rules", "alert_rules_test.yml")
}

func TestComposeConfig(t *testing.T) {
	p := testkit.Tool(t, "docker-compose")
	run(t, "..", p, "-f", "docker-compose.yml", "config", "-q")
}

// TestComposeImagesPinned keeps every image to an exact version: a moving
// tag would change the stack under a deployment that did not change.
func TestComposeImagesPinned(t *testing.T) {
	var c struct {
		Services map[string]struct {
			Image       string         `yaml:"image"`
			Build       any            `yaml:"build"`
			Healthcheck map[string]any `yaml:"healthcheck"`
			DependsOn   map[string]struct {
				Condition string `yaml:"condition"`
			} `yaml:"depends_on"`
		} `yaml:"services"`
	}
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	oneShot := map[string]bool{"temporal-schema": true, "temporal-namespace": true}
	// An image this file builds is the checkout's, not a registry's.
	built := map[string]bool{}
	for _, s := range c.Services {
		if s.Build != nil {
			built[s.Image] = true
		}
	}
	for name, s := range c.Services {
		if s.Image == "" {
			t.Errorf("service %s has no image", name)
		} else if !built[s.Image] && !pinned(s.Image) {
			t.Errorf("service %s: image %s is not pinned to a version", name, s.Image)
		}
		if !oneShot[name] && s.Healthcheck == nil && name != "temporal-ui" {
			t.Errorf("service %s has no healthcheck", name)
		}
		for dep, cond := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("service %s depends on unknown service %s", name, dep)
			}
			want := "service_healthy"
			if oneShot[dep] {
				want = "service_completed_successfully"
			}
			if cond.Condition != want {
				t.Errorf("service %s waits for %s with condition %q, want %s", name, dep, cond.Condition, want)
			}
		}
	}
}

var versionTag = regexp.MustCompile(`^v?\d+(\.\d+)+([.-][0-9A-Za-z.-]+)?$`)

// pinned reports whether image names an exact version, not latest or a
// bare major version.
func pinned(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return false
	}
	return versionTag.MatchString(image[i+1:])
}

func TestDockerfile(t *testing.T) {
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var froms []string
	user := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			froms = append(froms, fields[1])
			user = "" // USER applies per stage: only the last stage's counts
		case "USER":
			user = fields[1]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(froms) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build stage and a runtime stage", len(froms))
	}
	for _, img := range froms {
		if !pinned(img) {
			t.Errorf("base image %s is not pinned to a version", img)
		}
	}
	if user == "" || user == "root" || user == "0" || strings.HasPrefix(user, "0:") || strings.HasPrefix(user, "root:") {
		t.Errorf("final stage runs as %q, want a non-root USER", user)
	}
}

func TestPinned(t *testing.T) {
	for img, want := range map[string]bool{
		"postgres:16.4": true, "prom/prometheus:v2.55.1": true, "debian:12.8-slim": true,
		"golang:1.26.8-bookworm": true, "postgres": false, "postgres:latest": false,
		"postgres:16": false, "localhost:5000/x": false, "x@sha256:abc": true,
	} {
		if got := pinned(img); got != want {
			t.Errorf("pinned(%q) = %v, want %v", img, got, want)
		}
	}
}

// TestNamespaceSearchAttributes keeps the compose namespace job in step with
// the attributes the workflows upsert.
func TestNamespaceSearchAttributes(t *testing.T) {
	b, err := os.ReadFile("temporal/create-namespace.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^for name in (.+); do$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("create-namespace.sh: no `for name in ...; do` line")
	}
	got := strings.Fields(string(m[1]))
	var want []string
	for k := range searchattr.Definitions() {
		want = append(want, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("create-namespace.sh creates %v, the workflows use %v", got, want)
	}
}

// recorder is a Registerer that keeps what is registered, so that metric
// names can be read from descriptors without a sample of every series.
type recorder struct{ cs []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error   { r.cs = append(r.cs, c); return nil }
func (r *recorder) MustRegister(cs ...prometheus.Collector) { r.cs = append(r.cs, cs...) }
func (r *recorder) Unregister(prometheus.Collector) bool    { return false }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// names adds the series names c exports: a histogram's _bucket, _sum and
// _count, a summary's _sum and _count.
func (r *recorder) names(into map[string]bool) {
	for _, c := range r.cs {
		suffixes := []string{""}
		switch c.(type) {
		case *prometheus.HistogramVec, prometheus.Histogram:
			suffixes = []string{"_bucket", "_sum", "_count"}
		case *prometheus.SummaryVec, prometheus.Summary:
			suffixes = []string{"", "_sum", "_count"}
		}
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := fqName.FindStringSubmatch(d.String())
			for _, s := range suffixes {
				into[m[1]+s] = true
			}
		}
	}
}

// sdkMetrics are the Temporal SDK metrics the dashboards read, by kind, as
// the SDK names them (go.temporal.io/sdk/internal/common/metrics, which
// cannot be imported); they go through the real handler to get their
// Prometheus names.
var sdkMetrics = map[string][]string{
	"timer":   {"temporal_activity_execution_latency", "temporal_workflow_task_schedule_to_start_latency", "temporal_activity_schedule_to_start_latency", "temporal_request_latency"},
	"counter": {"temporal_request", "temporal_request_failure", "temporal_workflow_completed", "temporal_workflow_failed"},
	"gauge":   {"temporal_worker_task_slots_available", "temporal_num_pollers"},
}

// exported returns every series name Gauntlet's processes export.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	r := &recorder{}
	metrics.NewMetrics(r)
	serving.NewMetrics(r)
	r.names(out)

	reg := prometheus.NewRegistry()
	h, err := metrics.NewSDKHandler(reg)
	if err != nil {
		t.Fatal(err)
	}
	for kind, names := range sdkMetrics {
		for _, n := range names {
			switch kind {
			case "timer":
				h.Timer(n).Record(time.Millisecond)
			case "counter":
				h.Counter(n).Inc(1)
			case "gauge":
				h.Gauge(n).Update(1)
			}
		}
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range fams {
		if mf.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				out[mf.GetName()+s] = true
			}
			continue
		}
		out[mf.GetName()] = true
	}
	// The router registers on a *prometheus.Registry of its own, so its
	// names come from the constants it publishes for the canary analysis.
	for _, n := range []string{router.MetricRequests, router.MetricErrors, router.MetricWeight} {
		out[n] = true
	}
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		out[router.MetricLatency+s] = true
	}
	return out
}

func TestDashboardsUseExportedMetrics(t *testing.T) {
	have := exported(t)
	files, err := filepath.Glob("grafana/dashboards/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 {
		t.Fatalf("found %d dashboards, want 4 (pipelines, models, canary, GPUs and cost)", len(files))
	}
	uids := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		uid, _ := d["uid"].(string)
		if uid == "" || uids[uid] != "" {
			t.Errorf("%s: uid %q is empty or also used by %s", f, uid, uids[uid])
		}
		uids[uid] = f
		exprs := 0
		walk(d, func(key string, v string) {
			var names []string
			switch key {
			case "expr":
				exprs++
				names = metricNames(v)
			case "query", "definition":
				names = labelValuesMetric(v)
			default:
				return
			}
			if key == "expr" && len(names) == 0 {
				t.Errorf("%s: no metric found in %q", f, v)
			}
			for _, n := range names {
				if !have[n] {
					t.Errorf("%s: %s in %q is not exported by any Gauntlet process", f, n, v)
				}
			}
		})
		if exprs == 0 {
			t.Errorf("%s has no PromQL expressions", f)
		}
	}
}

func TestAlertRulesUseExportedMetrics(t *testing.T) {
	have := exported(t)
	b, err := os.ReadFile("prometheus/alert_rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			if r.For == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s needs for:, a severity label and summary and description annotations", r.Alert)
			}
			names := metricNames(r.Expr)
			if len(names) == 0 {
				t.Errorf("alert %s: no metric found in %q", r.Alert, r.Expr)
			}
			for _, n := range names {
				if !have[n] {
					t.Errorf("alert %s: %s is not exported by any Gauntlet process", r.Alert, n)
				}
			}
		}
	}
	slices.Sort(alerts)
	want := []string{"ApprovalWaitingTooLong", "FeatureDriftDetected", "GPUSaturated", "InferenceErrorRateHigh", "InferenceLatencyP99High", "ModelAccuracyDrop", "PipelineRunsFailing"}
	if !slices.Equal(alerts, want) {
		t.Errorf("alerts %v, want %v", alerts, want)
	}
}

// walk calls fn for every string value in v with the key it sits under.
func walk(v any, fn func(key, s string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok {
				fn(k, s)
				continue
			}
			walk(e, fn)
		}
	case []any:
		for _, e := range x {
			walk(e, fn)
		}
	}
}

var (
	labelValues = regexp.MustCompile(`^\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,`)
	// Parts of an expression that hold no metric names, removed before
	// identifiers are read: string literals, label matchers, range and
	// subquery brackets, grouping label lists, Grafana variables, numbers
	// and durations.
	strip = []*regexp.Regexp{
		regexp.MustCompile(`"(\\.|[^"\\])*"|'(\\.|[^'\\])*'|` + "`[^`]*`"),
		regexp.MustCompile(`\{[^}]*\}`),
		regexp.MustCompile(`\[[^\]]*\]`),
		regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`),
		regexp.MustCompile(`\$\{[^}]*\}|\$[a-zA-Z_][a-zA-Z0-9_]*`),
		regexp.MustCompile(`\b\d+(\.\d+)?([eE][-+]?\d+)?([smhdwy]|ms)?\b`),
	}
	ident    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	keywords = map[string]bool{
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"bool": true, "and": true, "or": true, "unless": true, "offset": true, "atan2": true,
		"Inf": true, "NaN": true, "inf": true, "nan": true,
	}
)

// labelValuesMetric returns the metric of a Grafana label_values(metric,
// label) variable query, or nothing for other strings.
func labelValuesMetric(q string) []string {
	if m := labelValues.FindStringSubmatch(q); m != nil {
		return []string{m[1]}
	}
	return nil
}

// metricNames returns the metric names a PromQL expression selects. An
// identifier followed by '(' is a function or aggregation, not a metric.
func metricNames(expr string) []string {
	for _, re := range strip {
		expr = re.ReplaceAllString(expr, " ")
	}
	var out []string
	for _, m := range ident.FindAllString(expr, -1) {
		if strings.HasSuffix(m, "(") || keywords[m] {
			continue
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`histogram_quantile(0.99, sum by (job, le) (rate(gauntlet_serve_request_duration_seconds_bucket{code=~"5.."}[5m]))) > 0.25`: {"gauntlet_serve_request_duration_seconds_bucket"},
		`gpu_memory_used_bytes / on(node, gpu) gpu_memory_total_bytes > 0.95`:                                                       {"gpu_memory_used_bytes", "gpu_memory_total_bytes"},
		`sum(rate(a_total{x="y (z)"}[$__rate_interval])) / sum without (le) (b offset 1h) or vector(0)`:                             {"a_total", "b"},
		`max_over_time(gauntlet_model_accuracy[1d]) - gauntlet_model_accuracy > 1e-3`:                                               {"gauntlet_model_accuracy"},
		`{__name__="x"}`: nil,
	} {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("metricNames(%q) = %v, want %v", expr, got, want)
		}
	}
}

// TestComposeDynamicConfig loads the compose server's dynamic config with
// the server's own parser (a file it cannot read would stop the server at
// start) and keeps each of its settings equal to the embedded dev server's.
func TestComposeDynamicConfig(t *testing.T) {
	path := filepath.Join("temporal", "dynamicconfig.yaml")
	fc, err := dynamicconfig.NewFileBasedClient(&dynamicconfig.FileBasedClientConfig{Filepath: path, PollInterval: time.Minute}, log.NewNoopLogger(), make(chan any))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := yaml.Unmarshal(raw, &keys); err != nil || len(keys) == 0 {
		t.Fatalf("%s: %v (%d settings)", path, err, len(keys))
	}
	dev := devstack.DynamicConfig()
	for key := range keys {
		values := fc.GetValue(dynamicconfig.MakeKey(key))
		want, ok := dev[dynamicconfig.MakeKey(key)]
		if !ok {
			t.Errorf("%s sets %s, which the dev server does not: add it there or say why here", path, key)
			continue
		}
		if len(values) != 1 || fmt.Sprint(values[0].Value) != fmt.Sprint(want) {
			t.Errorf("%s: %s = %v, the dev server has %v", path, key, values, want)
		}
	}
}

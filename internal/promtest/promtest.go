// Package promtest runs a real Prometheus server (Debian's prometheus
// package, installed by `make tools`) for tests, and reads what it scraped
// through its HTTP API.
package promtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/gauntlet-ml/gauntlet/internal/testkit"
)

// Binary returns the prometheus executable on PATH, or stops the test
// through testkit (it fails under CI=true, where `make tools` installed it).
func Binary(t testing.TB) string {
	t.Helper()
	return testkit.Tool(t, "prometheus")
}

// Server is a running Prometheus.
type Server struct {
	URL string
}

// lockedBuffer collects the server's log while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Start runs Prometheus on configFile, with its storage in a temporary
// directory and its API on a free loopback port, until the test ends; paths
// in the configuration are relative to the file, as Prometheus reads them.
// It returns once the API answers.
func Start(t testing.TB, configFile string) *Server {
	t.Helper()
	bin := Binary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	logs := &lockedBuffer{}
	cmd := exec.Command(bin,
		"--config.file="+configFile,
		"--storage.tsdb.path="+filepath.Join(t.TempDir(), "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("promtest: start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.String())
		}
	})
	s := &Server{URL: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("promtest: prometheus exited: %v\n%s", err, logs.String())
		default:
		}
		if resp, err := http.Get(s.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("promtest: prometheus on %s not ready in 30s\n%s", addr, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Target is one of Prometheus' active scrape targets.
type Target struct {
	ScrapePool string            `json:"scrapePool"`
	ScrapeURL  string            `json:"scrapeUrl"`
	Labels     map[string]string `json:"labels"`
	Health     string            `json:"health"`
	LastError  string            `json:"lastError"`
}

// Targets returns the active targets.
func (s *Server) Targets() ([]Target, error) {
	var data struct {
		ActiveTargets []Target `json:"activeTargets"`
	}
	if err := s.get("/api/v1/targets?state=active", &data); err != nil {
		return nil, err
	}
	return data.ActiveTargets, nil
}

// Sample is one series of an instant query's result.
type Sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// Query runs an instant query now.
func (s *Server) Query(expr string) ([]Sample, error) {
	var data struct {
		ResultType string   `json:"resultType"`
		Result     []Sample `json:"result"`
	}
	if err := s.get("/api/v1/query?query="+url.QueryEscape(expr), &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("promtest: query %s gave a %s, want a vector", expr, data.ResultType)
	}
	return data.Result, nil
}

func (s *Server) get(path string, data any) error {
	resp, err := http.Get(s.URL + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("promtest: GET %s: %w", path, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("promtest: GET %s: %s %s", path, r.Status, r.Error)
	}
	return json.Unmarshal(r.Data, data)
}

// Eventually polls cond until it returns nil, failing the test with its
// last error after timeout: scrapes and discovery happen on Prometheus'
// schedule, so a test waits for an outcome rather than a duration.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// JobConfig writes dir/prometheus.yml scraping only the job named job of
// the configuration file shipped (deploy/prometheus/prometheus.yml, say),
// as shipped except that it scrapes every second, and returns its path. A
// test thus runs the shipped job's discovery and relabelling, not a copy
// of them that could drift.
func JobConfig(t testing.TB, shipped, job, dir string) string {
	t.Helper()
	b, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []map[string]any `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("promtest: %s: %v", shipped, err)
	}
	i := slices.IndexFunc(cfg.ScrapeConfigs, func(sc map[string]any) bool { return sc["job_name"] == job })
	if i < 0 {
		t.Fatalf("promtest: %s has no job %q", shipped, job)
	}
	sc := cfg.ScrapeConfigs[i]
	sc["scrape_interval"], sc["scrape_timeout"] = "1s", "1s"
	out, err := yaml.Marshal(map[string]any{"scrape_configs": []any{sc}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

package workerhost

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestNewRefusesNegativePollers(t *testing.T) {
	if _, err := New(nil, Config{TaskQueue: "q", StateDir: t.TempDir(), Pollers: -1}); err == nil || !strings.Contains(err.Error(), "-1 pollers") {
		t.Fatalf("err %v, want one naming -1 pollers", err)
	}
}

// A worker process refuses log settings as a usage error and serves its
// metrics before anything dials Temporal, until Close.
func TestProcessServesMetricsUntilClose(t *testing.T) {
	_, err := NewProcess(Config{TaskQueue: "q"}, ProcessOptions{Stderr: io.Discard, LogFormat: "xml"})
	var se *SettingsError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "--log-format") {
		t.Fatalf("log format xml: %v", err)
	}
	p, err := NewProcess(Config{TaskQueue: "q", PipelinesDir: t.TempDir()}, ProcessOptions{Stderr: io.Discard, MetricsAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Config.Metrics == nil || p.Config.Logger == nil || p.MetricsAddr == nil {
		t.Fatalf("process %+v", p)
	}
	url := "http://" + p.MetricsAddr.String() + "/metrics"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "go_goroutines") {
		t.Errorf("/metrics lacks the runtime collector")
	}
	if _, err := NewProcess(Config{TaskQueue: "q"}, ProcessOptions{Stderr: io.Discard, MetricsAddr: p.MetricsAddr.String()}); err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Errorf("a taken port: %v", err)
	}
	p.Close()
	if _, err := http.Get(url); err == nil {
		t.Error("metrics still served after Close")
	}
}

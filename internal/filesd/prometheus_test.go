package filesd

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gauntlet-ml/gauntlet/internal/gpu"
	"github.com/gauntlet-ml/gauntlet/internal/metrics"
	"github.com/gauntlet-ml/gauntlet/internal/promtest"
)

// nodeEndpoint serves /metrics as a node's worker does: Gauntlet's metrics
// with the GPU gauges of snap under node.
func nodeEndpoint(t *testing.T, node string, snap gpu.Snapshot) string {
	reg := prometheus.NewRegistry()
	m := metrics.NewMetrics(reg)
	m.Pipelines("credit-risk")
	m.GPUSnapshot(node, snap)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// A real Prometheus running the shipped gauntlet-gpu-workers job scrapes a
// node from the moment its file is written until the file is removed.
func TestPrometheusScrapesNodesWhileTheirFilesExist(t *testing.T) {
	promtest.Binary(t)
	root := t.TempDir()
	targets := filepath.Join(root, "targets")
	if err := os.Mkdir(targets, 0o755); err != nil {
		t.Fatal(err)
	}
	prom := promtest.Start(t, promtest.JobConfig(t, "../../deploy/prometheus/prometheus.yml", "gauntlet-gpu-workers", root))
	d, err := Open(targets)
	if err != nil {
		t.Fatal(err)
	}
	h200 := gpu.Snapshot{State: gpu.Available, Devices: []gpu.Device{{Index: 0, Name: "NVIDIA H200", MemoryUsedBytes: 80 << 30,
		MemoryTotalBytes: 141 << 30, UtilizationPercent: 97, TemperatureC: 64, PowerWatts: 612.5}}}
	nodes := map[string]string{
		"gpu-node": nodeEndpoint(t, "gpu-node", h200),
		"cpu-node": nodeEndpoint(t, "cpu-node", gpu.Snapshot{State: gpu.NoNVIDIAGPU, Reason: "NVML library not found"}),
	}
	for node, addr := range nodes {
		if err := d.Write(node, Group{Targets: []string{addr}, Labels: map[string]string{"node": node, "run": "run-1", "step": "train"}}); err != nil {
			t.Fatal(err)
		}
	}
	scraped := func(node string) func() error {
		return func() error {
			ts, err := prom.Targets()
			if err != nil {
				return err
			}
			for _, tg := range ts {
				if tg.Labels["node"] != node {
					continue
				}
				if tg.ScrapePool != "gauntlet-gpu-workers" || tg.Labels["run"] != "run-1" || tg.Labels["step"] != "train" || tg.Labels["instance"] != nodes[node] {
					return fmt.Errorf("target %+v", tg)
				}
				if tg.Health != "up" {
					return fmt.Errorf("target of %s is %s: %s", node, tg.Health, tg.LastError)
				}
				return nil
			}
			return fmt.Errorf("no target for node %s among %d", node, len(ts))
		}
	}
	series := func(expr string, want int) func() error {
		return func() error {
			s, err := prom.Query(expr)
			if err != nil {
				return err
			}
			if len(s) != want {
				return fmt.Errorf("%s: %d series %v, want %d", expr, len(s), s, want)
			}
			return nil
		}
	}
	for node := range nodes {
		promtest.Eventually(t, 30*time.Second, "node "+node+" scraped", scraped(node))
	}
	promtest.Eventually(t, 10*time.Second, "GPU gauges of gpu-node", series(`gpu_utilization_percent{node="gpu-node",gpu="0",name="NVIDIA H200",job="gauntlet-gpu-workers",run="run-1"} == 97`, 1))
	promtest.Eventually(t, 10*time.Second, "gpu-node's device count", series(`gpu_devices{node="gpu-node",state="available"} == 1`, 1))
	promtest.Eventually(t, 10*time.Second, "cpu-node says it has no GPU", series(`gpu_devices{node="cpu-node",state="no NVIDIA GPU"} == 0`, 1))
	promtest.Eventually(t, 10*time.Second, "cpu-node's worker metrics", series(`gauntlet_runs_total{node="cpu-node",pipeline="credit-risk",status="failed"} == 0`, 1))
	if err := series(`gpu_utilization_percent{node="cpu-node"}`, 0)(); err != nil {
		t.Error(err)
	}
	// The worker labels its GPU series with the node id the target file
	// names: kept as the worker wrote them, not doubled as exported_node.
	if err := series(`{exported_node!=""}`, 0)(); err != nil {
		t.Error(err)
	}

	if err := d.Remove("gpu-node"); err != nil {
		t.Fatal(err)
	}
	promtest.Eventually(t, 30*time.Second, "gpu-node's target gone", func() error {
		if scraped("gpu-node")() == nil {
			return fmt.Errorf("still a target")
		}
		return series(`up{node="gpu-node"}`, 0)()
	})
	// Removing the target writes staleness markers: its gauges vanish at
	// once rather than after the five-minute lookback.
	if err := series(`gpu_utilization_percent{node="gpu-node"}`, 0)(); err != nil {
		t.Error(err)
	}
	if err := scraped("cpu-node")(); err != nil {
		t.Errorf("the other node: %v", err)
	}
}

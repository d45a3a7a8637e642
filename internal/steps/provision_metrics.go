package steps

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/gauntlet-ml/gauntlet/internal/filesd"
)

// A worker given a Prometheus targets directory ($GAUNTLET_PROMETHEUS_TARGETS,
// the worker's --prometheus-targets-dir) tells Prometheus about the nodes
// it provisions: after the apply it writes the metrics endpoint the module
// outputs (metrics_endpoint) into the node's file_sd file, and destroy
// removes the file once the node is gone. A module declaring metrics_addr
// (local-node) is given a free loopback port for its worker to serve on;
// a cloud module publishes its instance's address (aws-spot-gpu).

// metricsTargets opens the targets directory, nil when none is set. A set
// but missing directory fails provision before anything is created: the
// node would otherwise run unobserved.
func metricsTargets() (*filesd.Dir, error) {
	path := os.Getenv(filesd.EnvDir)
	if path == "" {
		return nil, nil
	}
	d, err := filesd.Open(path)
	if err != nil {
		return nil, Permanent(kindMissingTool, fmt.Errorf("provision: $%s (--prometheus-targets-dir): %w", filesd.EnvDir, err))
	}
	return &d, nil
}

// recordMetrics notes in the node record where the node's target file
// goes, for destroy, and the local metrics address, so that a retried
// apply keeps the port instead of restarting the worker on another.
func (p *provisioner) recordMetrics(rec *nodeRecord) error {
	if p.targets == nil {
		return nil
	}
	file, err := p.targets.File(p.nodeID)
	if err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	rec.MetricsTarget = file
	if _, given := p.args.vars["metrics_addr"]; p.declared["metrics_addr"] && !given && rec.MetricsAddr == "" {
		if rec.MetricsAddr, err = freeLoopbackAddr(); err != nil {
			return fmt.Errorf("provision: a port for the node's metrics: %w", err)
		}
	}
	return nil
}

// freeLoopbackAddr is a port nothing listens on now. Another process may
// take it before the node's worker binds it; the worker then exits at once
// and the apply fails naming the address, and a new attempt starts afresh.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// publishMetrics writes the node's target file after a successful apply.
func (p *provisioner) publishMetrics(out map[string]any, accelerator string) error {
	if p.targets == nil {
		return nil
	}
	log := p.env.Logger().With("node_id", p.nodeID, "module", p.module)
	endpoint, _ := out["metrics_endpoint"].(string)
	if endpoint == "" {
		log.Warn("provision: the module outputs no metrics_endpoint, so Prometheus will not scrape this node")
		return nil
	}
	labels := map[string]string{"node": p.nodeID, "run": p.in.RunID, "step": p.in.StepID,
		"module": filepath.Base(p.module), "accelerator": accelerator}
	if p.in.Pipeline != "" {
		labels["pipeline"] = p.in.Pipeline
	}
	if err := p.targets.Write(p.nodeID, filesd.Group{Targets: []string{endpoint}, Labels: labels}); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	file, _ := p.targets.File(p.nodeID)
	log.Info("node's metrics published to Prometheus", "endpoint", endpoint, "file", file)
	return nil
}

// unpublishMetrics removes the target file provision recorded for the
// node, once the node is gone.
func unpublishMetrics(rec *nodeRecord) error {
	if rec.MetricsTarget == "" {
		return nil
	}
	if err := filesd.RemoveFile(rec.MetricsTarget); err != nil {
		return fmt.Errorf("destroy: node %s: %w", rec.NodeID, err)
	}
	return nil
}

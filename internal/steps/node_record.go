package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/tf"
)

// A node's record lives in the fleet's store, under nodes/<node id>, so
// that whichever worker runs destroy (the run's finally step, or the
// interpreter replacing a lost node) finds the node, however many hosts
// away provision ran: the record names the module as applied (a tree in
// the store), the variables it was applied with and where the Terraform
// state is (the S3 backend in the store's bucket for an s3:// store). Only
// a file:// store, which lives on one host, keeps the state in the working
// directory of the worker that applied it.
//
// The working directory keeps a copy of the record as node.json, for
// whoever looks at it; nodes provisioned before records moved into the
// store have that file alone, and destroy still reads it there.

// nodeRef is the ref of a node's record.
func nodeRef(nodeID string) string { return "nodes/" + nodeID }

// nodeRecord is a node's record: what destroy needs to find, destroy and
// price the node, and what a retried provision reuses so it applies the
// same offer as before rather than whatever the spot market says now.
type nodeRecord struct {
	NodeID    string `json:"node_id"`
	TaskQueue string `json:"task_queue"`
	RunID     string `json:"run_id"`
	StepID    string `json:"step_id"`
	Module    string `json:"module"`
	// PricePerHour is that of Offers[0], or 0 for a local node.
	PricePerHour float64 `json:"price_per_hour"`
	// StartedAt is taken before the first apply: billing may start as soon
	// as Terraform creates something, even if the apply then fails.
	StartedAt   time.Time   `json:"started_at"`
	DestroyedAt *time.Time  `json:"destroyed_at,omitempty"`
	Request     nodeRequest `json:"request"`
	// Offers are the instance types still to try in the chosen region,
	// cheapest first; the first is applied, and a capacity failure drops it.
	Offers []offerRecord `json:"offers,omitempty"`
	// Backend is the S3 backend configuration the state lives in, nil for
	// local state: destroy reopens the workspace with it, since a
	// workspace opened without it would look for the state locally.
	Backend map[string]string `json:"backend,omitempty"`
	// Config is the module as applied, an artifact pointer to a tree, and
	// Vars the variables of the last apply: with Backend, what a worker on
	// another host needs to destroy the node.
	Config string         `json:"config,omitempty"`
	Vars   map[string]any `json:"vars,omitempty"`
	// Host and Workdir say where the last apply ran: the hostname of its
	// worker and the working directory there (the state's home when
	// Backend is nil).
	Host    string `json:"host,omitempty"`
	Workdir string `json:"workdir,omitempty"`
	// TerraformLog is the last apply's log, an artifact pointer.
	TerraformLog string `json:"terraform_log,omitempty"`
	// MetricsTarget is the Prometheus target file of the node, which
	// destroy removes; MetricsAddr the port a local node's worker serves
	// metrics on (provision_metrics.go).
	MetricsTarget string `json:"metrics_target,omitempty"`
	MetricsAddr   string `json:"metrics_addr,omitempty"`

	// version is the store ref's version this record was read or written
	// at; legacy is the working directory of a record found only as its
	// node.json (provisioned before records moved into the store).
	version string
	legacy  string
}

// loadNodeRecord reads a node's record from the store; nil when there is
// none.
func loadNodeRecord(ctx context.Context, store artifact.Store, nodeID string) (*nodeRecord, error) {
	ref, err := store.GetRef(ctx, nodeRef(nodeID))
	if errors.Is(err, artifact.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, workspace.Classify(fmt.Errorf("node %s: read its record from %s: %w", nodeID, store.Location(), err))
	}
	var rec nodeRecord
	if err := json.Unmarshal(ref.Data, &rec); err != nil {
		return nil, fmt.Errorf("node %s: record %s in %s: %w", nodeID, nodeRef(nodeID), store.Location(), err)
	}
	rec.version = ref.Version
	return &rec, nil
}

// save writes the record where it lives: the store (compare-and-swap on
// the version last seen, so two workers never overwrite each other's
// news about a node), with a copy as node.json in dir when dir is set; or
// only node.json for a legacy record.
func (rec *nodeRecord) save(ctx context.Context, store artifact.Store, dir string) error {
	if rec.legacy != "" {
		return writeJSON(filepath.Join(rec.legacy, nodeRecordFile), rec)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("node %s: encode its record: %w", rec.NodeID, err)
	}
	v, err := store.PutRef(ctx, nodeRef(rec.NodeID), b, rec.version)
	if err != nil {
		return workspace.Classify(fmt.Errorf("node %s: write its record to %s: %w", rec.NodeID, store.Location(), err))
	}
	rec.version = v
	if dir != "" {
		if err := writeJSON(filepath.Join(dir, nodeRecordFile), rec); err != nil {
			return fmt.Errorf("node %s: %w", rec.NodeID, err)
		}
	}
	return nil
}

// readNodeRecord reads a working directory's node.json.
func readNodeRecord(dir string) (*nodeRecord, error) {
	path := filepath.Join(dir, nodeRecordFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rec nodeRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("node record %s: %w", path, err)
	}
	return &rec, nil
}

// publishModule stores the module as the workspace applies it and returns
// its pointer's text.
func publishModule(ctx context.Context, env Env, ws *tf.Workspace) (string, error) {
	fsys, err := ws.Module()
	if err != nil {
		return "", fmt.Errorf("provision: %w", err)
	}
	store := env.Artifacts().Store()
	d, err := artifact.PutTree(ctx, store, fsys)
	if err != nil {
		return "", workspace.Classify(fmt.Errorf("provision: store the module as applied in %s: %w", store.Location(), err))
	}
	return artifact.PointerTo(store, artifact.KindTree, d).String(), nil
}

// moduleSource is the module to hand tf.New for a workspace in dir: none
// when dir already holds a copy (an earlier attempt on this host applied
// it), else the recorded configuration materialised from the store, else
// fallback (a first apply: the module directory itself).
func moduleSource(ctx context.Context, env Env, dir string, rec *nodeRecord, fallback string) (string, error) {
	if tf.HasModule(dir) {
		return "", nil
	}
	if rec.Config == "" {
		return fallback, nil
	}
	p, err := artifact.ParsePointer(rec.Config)
	if err != nil {
		return "", fmt.Errorf("node %s: its record's config: %w", rec.NodeID, err)
	}
	path, err := env.Artifacts().Materialize(ctx, p)
	if err != nil {
		return "", fmt.Errorf("node %s: the module as applied: %w", rec.NodeID, err)
	}
	return path, nil
}

// thisHost is the hostname records name workers by.
func thisHost() string {
	h, _ := os.Hostname()
	return h
}

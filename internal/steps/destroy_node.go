package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/cloud"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/tf"
)

func init() {
	Register(Define(Type{
		Name: "destroy",
		Doc: "Destroys a node a provision step created, on whichever worker runs it: the node's record in the artifact store " +
			"names the module as applied, its variables and where its Terraform state is, and prices the node's life. " +
			"Idempotent: a node already destroyed, or never created, succeeds with destroyed: false and the reason.",
		Kind: Activity,
	}, destroyInputs{}, runDestroy))
}

type destroyInputs struct {
	Node string `json:"node" required:"true" doc:"which node: the provision step's id (e.g. gpu), which names every node the step had (replacements of lost ones too), or a node_id output. The step id is the robust choice in finally: it finds the node even when provision failed halfway and produced no outputs"`
}

// DestroyedNode is what destroy did to one node.
type DestroyedNode struct {
	NodeID    string  `json:"node_id" doc:"the node's id"`
	Destroyed bool    `json:"destroyed" doc:"this call destroyed it"`
	Reason    string  `json:"reason" doc:"why nothing was destroyed"`
	CostUSD   float64 `json:"cost_usd" doc:"its price over its life"`
	Seconds   float64 `json:"seconds" doc:"its life, from the first apply to its destruction"`
}

// DestroyOutputs are the outputs of a destroy step: the last node's fields,
// the totals over every generation of the node, and each of them.
type DestroyOutputs struct {
	DestroyedNode
	DurationSeconds float64         `json:"duration_seconds" doc:"how long this step took"`
	Nodes           []DestroyedNode `json:"nodes" doc:"each generation of the node"`
}

func runDestroy(ctx context.Context, env Env, in Input, a destroyInputs) (*DestroyOutputs, error) {
	began := time.Now()
	state, err := filepath.Abs(env.StateDir())
	if err != nil {
		return nil, fmt.Errorf("destroy: state directory: %w", err)
	}
	recs, err := findNodes(ctx, env, state, in.RunID, a.Node)
	if err != nil {
		return nil, err
	}
	out := &DestroyOutputs{Nodes: []DestroyedNode{}}
	if len(recs) == 0 {
		out.Reason = fmt.Sprintf("no node %q in the store or on this host: never provisioned", a.Node)
		out.DurationSeconds = time.Since(began).Seconds()
		return out, nil
	}
	// A step id names every node the step had: the interpreter replaces a
	// lost node with another generation, and the run pays for all of them.
	total, seconds, destroyed := 0.0, 0.0, false
	for _, rec := range recs {
		one, err := destroyOne(ctx, env, state, rec)
		if err != nil {
			return nil, err
		}
		out.Nodes = append(out.Nodes, *one)
		total += one.CostUSD
		seconds += one.Seconds
		destroyed = destroyed || one.Destroyed
		out.DestroyedNode = *one
	}
	out.Destroyed, out.CostUSD, out.Seconds = destroyed, total, seconds
	out.DurationSeconds = time.Since(began).Seconds()
	return out, nil
}

// destroyOne destroys one node and prices it.
func destroyOne(ctx context.Context, env Env, state string, rec *nodeRecord) (*DestroyedNode, error) {
	out := &DestroyedNode{NodeID: rec.NodeID}
	dir := rec.legacy
	if dir == "" {
		dir = nodeWorkdir(state, rec.RunID, rec.StepID)
	}
	switch {
	case rec.DestroyedAt != nil:
		out.Reason = "already destroyed at " + rec.DestroyedAt.Format(time.RFC3339)
	case rec.Backend == nil && !tf.HasModule(dir):
		if rec.Config == "" {
			out.Reason = "provision stopped before Terraform ran"
			break
		}
		// The state is a file on the worker that applied the node.
		return nil, Permanent(kindBadInput, fmt.Errorf("destroy: node %s: its Terraform state is local to %s on host %s (the store is not s3://, so the state stays with the worker that applied it): run destroy on that worker, or give the fleet an s3:// store",
			rec.NodeID, rec.Workdir, rec.Host))
	default:
		live, err := managedResources(dir)
		if err != nil {
			return nil, fmt.Errorf("destroy %s: %w", dir, err)
		}
		// State in S3 cannot be counted from here; destroying it is
		// harmless when it holds nothing, and leaving a node running is not.
		if live == 0 && rec.Backend == nil {
			out.Reason = "nothing to destroy: the Terraform state in " + dir + " holds no resources (the apply created none)"
			break
		}
		if err := destroyWorkspace(ctx, env, dir, rec); err != nil {
			return nil, err
		}
		now := time.Now().UTC().Truncate(time.Second)
		rec.DestroyedAt = &now
		if err := rec.save(ctx, env.Artifacts().Store(), dir); err != nil {
			return nil, fmt.Errorf("destroy: %w", err)
		}
		out.Destroyed = true
		env.Logger().Info("node destroyed", "node_id", rec.NodeID, "workdir", dir, "applied_on", rec.Host)
	}
	if err := unpublishMetrics(rec); err != nil {
		return nil, err
	}
	if rec.DestroyedAt != nil {
		// Priced from the record, so destroying again reports the same bill.
		usage := cloud.NodeUsage{NodeID: rec.NodeID, PricePerHour: rec.PricePerHour, Start: rec.StartedAt, End: *rec.DestroyedAt}
		if len(rec.Offers) > 0 {
			usage.InstanceType = rec.Offers[0].InstanceType
		}
		sum, err := cloud.Cost{Nodes: []cloud.NodeUsage{usage}}.Summarize(*rec.DestroyedAt)
		if err != nil {
			return nil, fmt.Errorf("destroy: pricing node %s: %w", rec.NodeID, err)
		}
		out.CostUSD = sum.Total
		out.Seconds = rec.DestroyedAt.Sub(rec.StartedAt).Seconds()
	}
	return out, nil
}

// destroyWorkspace runs terraform destroy in dir: the copy an apply on
// this host left there, or the module as applied from the store.
func destroyWorkspace(ctx context.Context, env Env, dir string, rec *nodeRecord) error {
	bin, err := tf.Find("")
	if err != nil {
		return Permanent(kindMissingTool, fmt.Errorf("destroy: %w", err))
	}
	module, err := moduleSource(ctx, env, dir, rec, "")
	if err != nil {
		return fmt.Errorf("destroy: %w", err)
	}
	// The recorded backend, since a workspace opened without one drops the
	// backend override and would find no state.
	ws, err := tf.New(tf.Config{Terraform: bin, Module: module, Dir: dir, Backend: rec.Backend, ProviderMirror: os.Getenv(EnvProviderMirror), Env: terraformEnv()})
	if err != nil {
		return fmt.Errorf("destroy: terraform workspace %s: %w", dir, err)
	}
	details := map[string]any{"node_id": rec.NodeID, "workdir": dir}
	err = withTerraformProgress(env, ws.LogPath(), details, func() error {
		if rec.Vars == nil {
			// A legacy record: the variables are in the working directory.
			return ws.Destroy(ctx)
		}
		return ws.DestroyWith(ctx, rec.Vars)
	})
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("destroy %s: %w", dir, ctx.Err())
		}
		return terraformError("destroy:", dir, ws.LogPath(), logTail(ws.LogPath(), tailLines), err)
	}
	return nil
}

// findNodes returns the records of the nodes node names, none when there
// is none. A bare name is first the id of a provision step of this run,
// with every generation that replaced a lost node (<step>-g2, -g3, …),
// then a node id. A path (the workdir output of provision steps before
// records moved into the store) names its step's node. Records are read
// from the store; a node provisioned before records moved there is found
// by its node.json on this host.
func findNodes(ctx context.Context, env Env, state, runID, node string) ([]*nodeRecord, error) {
	store := env.Artifacts().Store()
	one := func(id string) (*nodeRecord, error) { return loadNodeRecord(ctx, store, id) }
	if strings.ContainsRune(node, filepath.Separator) {
		dir, err := filepath.Abs(node)
		if err != nil {
			return nil, badInput("node", "%v", err)
		}
		if rec, err := one(nodeID(runID, filepath.Base(dir))); rec != nil || err != nil {
			return list(rec), err
		}
		rec, err := legacyRecord(dir)
		return list(rec), err
	}
	first, err := one(nodeID(runID, node))
	if err != nil {
		return nil, err
	}
	if first != nil {
		recs := []*nodeRecord{first}
		for g := 2; ; g++ {
			next, err := one(nodeID(runID, contract.NodeGeneration(node, g)))
			if err != nil || next == nil {
				return recs, err
			}
			recs = append(recs, next)
		}
	}
	if rec, err := one(node); rec != nil || err != nil {
		return list(rec), err
	}
	return legacyNodes(state, runID, node)
}

func list(rec *nodeRecord) []*nodeRecord {
	if rec == nil {
		return nil
	}
	return []*nodeRecord{rec}
}

// legacyRecord reads the node.json of a working directory whose node has
// no record in the store.
func legacyRecord(dir string) (*nodeRecord, error) {
	rec, err := readNodeRecord(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("destroy: %w", err)
	}
	rec.legacy = dir
	return rec, nil
}

// legacyNodes finds nodes on this host by node.json, as destroy did before
// records moved into the store.
func legacyNodes(state, runID, node string) ([]*nodeRecord, error) {
	var recs []*nodeRecord
	for g := 1; ; g++ {
		step := node
		if g > 1 {
			step = contract.NodeGeneration(node, g)
		}
		rec, err := legacyRecord(nodeWorkdir(state, runID, step))
		if err != nil || rec == nil {
			if len(recs) > 0 || err != nil {
				return recs, err
			}
			break
		}
		recs = append(recs, rec)
	}
	records, err := filepath.Glob(filepath.Join(state, "nodes", "*", "*", nodeRecordFile))
	if err != nil {
		return nil, fmt.Errorf("destroy: %w", err)
	}
	for _, path := range records {
		if rec, err := legacyRecord(filepath.Dir(path)); err == nil && rec != nil && rec.NodeID == node {
			return []*nodeRecord{rec}, nil
		}
	}
	return nil, nil
}

// managedResources counts the resources in the local state: destroyed is
// reported only when there was something to destroy. Data sources are not
// counted; they exist nowhere outside the state.
func managedResources(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "terraform.tfstate"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var st struct {
		Resources []struct {
			Mode      string            `json:"mode"`
			Instances []json.RawMessage `json:"instances"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, fmt.Errorf("reading terraform state: %w", err)
	}
	n := 0
	for _, r := range st.Resources {
		if r.Mode == "managed" {
			n += len(r.Instances)
		}
	}
	return n, nil
}

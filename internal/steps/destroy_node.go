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
		Doc: "Destroys a node a provision step created, running terraform destroy in the node's working directory with the " +
			"module copy and variables kept there, and prices its life from node.json. Idempotent: a node already destroyed, " +
			"or never created, succeeds with destroyed: false and the reason.",
		Kind: Activity,
	}, destroyInputs{}, runDestroy))
}

type destroyInputs struct {
	Node string `json:"node" required:"true" doc:"which node: the provision step's id (e.g. gpu), its workdir output (${{ steps.gpu.outputs.workdir }}) or its node_id output. The step id is the robust choice in finally: it finds the node even when provision failed halfway and produced no outputs"`
}

// DestroyedNode is what destroy did to one node.
type DestroyedNode struct {
	NodeID    string  `json:"node_id" doc:"the node's id"`
	Workdir   string  `json:"workdir" doc:"its Terraform working directory"`
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
	node := a.Node
	state, err := filepath.Abs(env.StateDir())
	if err != nil {
		return nil, fmt.Errorf("destroy: state directory: %w", err)
	}
	dirs, err := findNodes(state, in.RunID, node)
	if err != nil {
		return nil, err
	}
	out := &DestroyOutputs{Nodes: []DestroyedNode{}}
	if len(dirs) == 0 {
		out.Reason = fmt.Sprintf("no node %q on this host: never provisioned", node)
		out.DurationSeconds = time.Since(began).Seconds()
		return out, nil
	}
	// A step id names every node the step had: the interpreter replaces a
	// lost node with another generation, and the run pays for all of them.
	total, seconds, destroyed := 0.0, 0.0, false
	for _, dir := range dirs {
		one, err := destroyOne(ctx, env, dir)
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

// destroyOne destroys the node of one working directory and prices it.
func destroyOne(ctx context.Context, env Env, dir string) (*DestroyedNode, error) {
	out := &DestroyedNode{Workdir: dir}
	rec, err := readNodeRecord(dir)
	if errors.Is(err, fs.ErrNotExist) {
		out.Reason = "no " + nodeRecordFile + " in " + dir + ": provision stopped before Terraform ran"
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("destroy: %w", err)
	}
	out.NodeID = rec.NodeID
	live, err := managedResources(dir)
	if err != nil {
		return nil, fmt.Errorf("destroy %s: %w", dir, err)
	}
	// State in S3 cannot be counted from here; destroying it is harmless
	// when it holds nothing, and leaving a node running is not.
	remote := rec.Backend != nil && rec.DestroyedAt == nil
	switch {
	case live > 0 || remote:
		if err := destroyWorkspace(ctx, env, dir, rec); err != nil {
			return nil, err
		}
		now := time.Now().UTC().Truncate(time.Second)
		rec.DestroyedAt = &now
		if err := writeJSON(filepath.Join(dir, nodeRecordFile), rec); err != nil {
			return nil, fmt.Errorf("destroy: %w", err)
		}
		out.Destroyed = true
		env.Logger().Info("node destroyed", "node_id", rec.NodeID, "workdir", dir)
	case rec.DestroyedAt != nil:
		out.Reason = "already destroyed at " + rec.DestroyedAt.Format(time.RFC3339)
	default:
		out.Reason = "nothing to destroy: the Terraform state in " + dir + " holds no resources (the apply created none)"
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

func destroyWorkspace(ctx context.Context, env Env, dir string, rec *nodeRecord) error {
	bin, err := tf.Find("")
	if err != nil {
		return Permanent(kindMissingTool, fmt.Errorf("destroy: %w", err))
	}
	// No Module: the copy provision left in dir is what gets destroyed. The
	// recorded backend, since a workspace opened without one drops the
	// backend override and would find no state.
	ws, err := tf.New(tf.Config{Terraform: bin, Dir: dir, Backend: rec.Backend, ProviderMirror: os.Getenv(EnvProviderMirror), Env: terraformEnv()})
	if err != nil {
		return fmt.Errorf("destroy: terraform workspace %s: %w", dir, err)
	}
	details := map[string]any{"node_id": rec.NodeID, "workdir": dir}
	err = withTerraformProgress(env, ws.LogPath(), details, func() error { return ws.Destroy(ctx) })
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("destroy %s: %w", dir, ctx.Err())
		}
		return terraformError("destroy:", dir, ws.LogPath(), logTail(ws.LogPath(), tailLines), err)
	}
	return nil
}

// findNodes returns the working directories node names, none when there
// is none on this host. A path is taken as it is; a bare name is first the
// id of a provision step of this run, with every generation that replaced a
// lost node (<step>-g2, -g3, …), then a node id of any run.
func findNodes(state, runID, node string) ([]string, error) {
	if strings.ContainsRune(node, filepath.Separator) {
		dir, err := filepath.Abs(node)
		if err != nil {
			return nil, badInput("node", "%v", err)
		}
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return []string{dir}, nil
	}
	if first := nodeWorkdir(state, runID, node); isDir(first) {
		dirs := []string{first}
		for g := 2; ; g++ {
			next := nodeWorkdir(state, runID, contract.NodeGeneration(node, g))
			if !isDir(next) {
				return dirs, nil
			}
			dirs = append(dirs, next)
		}
	}
	records, err := filepath.Glob(filepath.Join(state, "nodes", "*", "*", nodeRecordFile))
	if err != nil {
		return nil, fmt.Errorf("destroy: %w", err)
	}
	for _, path := range records {
		if rec, err := readNodeRecord(filepath.Dir(path)); err == nil && rec.NodeID == node {
			return []string{filepath.Dir(path)}, nil
		}
	}
	return nil, nil
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
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

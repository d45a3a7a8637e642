package steps

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/filesd"
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
	"github.com/gauntlet-ml/gauntlet/internal/tf"
)

// A node is one Terraform module applied in a working directory of its own,
// <state>/nodes/<run>/<step>, on the worker that runs provision; its record
// (node_record.go) is in the fleet's store, with the module as applied and
// its variables, and its Terraform state is in the store's bucket when the
// store is S3, so any worker can destroy it with the configuration that was
// applied, even if the module's source changed since. The node's identity
// is a function of the run and step ids alone, which is what makes a
// retried provision, on any worker, re-apply the same node instead of
// starting a second one.

// Environment variables read by provision and destroy.
const (
	// EnvInfraModules is the directory module names are looked up in.
	// Unset, it is infra/modules in the working directory or in the nearest
	// parent holding go.mod (the repository root).
	EnvInfraModules = "GAUNTLET_INFRA_MODULES"
	// EnvWorkerBinary is the worker executable a local node starts. Unset,
	// it is "worker" beside the terraform binary: `make tools` installs
	// bin/terraform and `make build` bin/worker.
	EnvWorkerBinary = "GAUNTLET_WORKER_BINARY"
	// EnvProviderMirror is a `terraform providers mirror` directory for
	// modules that need providers (aws-spot-gpu); Terraform never downloads
	// them.
	EnvProviderMirror = "GAUNTLET_PROVIDER_MIRROR"
	// EnvNodeLauncher is a program that runs a local node on a machine of
	// its choosing (local-node's launcher variable): a fleet of
	// worker hosts with node hosts beside them. Unset, a local node is a
	// process on the worker's own host.
	EnvNodeLauncher = "GAUNTLET_NODE_LAUNCHER"
	// The node's worker dials the Temporal this process was told about,
	// under the names the temporal CLI uses.
	envTemporalAddress   = "TEMPORAL_ADDRESS"
	envTemporalNamespace = "TEMPORAL_NAMESPACE"
)

const (
	defaultModule            = "local-node"
	defaultTemporalAddress   = "127.0.0.1:7233"
	defaultTemporalNamespace = "default"
	nodeRecordFile           = "node.json"
	workerLogFile            = "worker.log"
	// The aws-spot-gpu module's rule, the stricter of the two modules':
	// IAM and security group names are derived from the node id.
	maxNodeIDLen = 48
	// kindMissingTool marks a host that lacks Terraform, the worker binary
	// or a provider: another attempt on the same host fails the same way.
	kindMissingTool = "MissingTool"
	// kindNoOffer is retryable: spot prices move, and capacity returns.
	kindNoOffer = "NoOffer"
)

// reservedVars are derived from the run and step; letting `vars` set them
// would break the idempotent re-apply of a retry.
var reservedVars = []string{"node_id", "task_queue"}

func init() {
	Register(Define(Type{
		Name: "provision",
		Doc: "Applies a Terraform module that starts a worker node polling a task queue unique to the run; steps with " +
			"runs_on: <this step> are dispatched there. The node's record (module as applied, variables, cost) is in the " +
			"artifact store under nodes/<node_id>, and with an s3:// store so is its Terraform state (<prefix>/terraform/<node_id>.tfstate), " +
			"so a worker on any host can destroy it; the working directory is <state>/nodes/<run>/<step> on the worker that applies it. " +
			"Node id and task queue derive from the run and step ids, so a retry re-applies the same node. Modules are looked up in $" + EnvInfraModules + " or infra/modules; Terraform is " +
			"$" + tf.EnvTerraform + " or bin/terraform (`make tools`). A local-node worker is $" + EnvWorkerBinary + " or the " +
			"worker beside terraform (`make build`), dialling $TEMPORAL_ADDRESS in $TEMPORAL_NAMESPACE, started through $" + EnvNodeLauncher + " when set. Modules that declare instance_types " +
			"(aws-spot-gpu) get the cheapest spot offer meeting the GPU inputs, falling back to the next instance type " +
			"of the region on InsufficientInstanceCapacity; for other modules (local-node) the GPU inputs are recorded only. " +
			"A worker with a Prometheus targets directory ($" + filesd.EnvDir + ", --prometheus-targets-dir) writes the node's " +
			"metrics endpoint (the module's metrics_endpoint output) to <dir>/gpu-workers-<node_id>.json for file-based discovery; " +
			"destroy removes it.",
		Kind: Activity,
	}, provisionInputs{Module: defaultModule}, runProvision))
}

type provisionInputs struct {
	Module          string          `json:"module" doc:"module name under the modules directory (default local-node, or aws-spot-gpu), or a path to a module directory"`
	GPUMemoryGB     float64         `json:"gpu_memory_gb" doc:"least memory per GPU in GB"`
	GPUCount        int             `json:"gpu_count" doc:"least number of GPUs (default 1)"`
	MaxPricePerHour float64         `json:"max_price_per_hour" doc:"USD per hour cap, also the spot max price; required by cloud modules"`
	Regions         []string        `json:"regions" doc:"regions to compare spot prices in (list or comma-separated); required by cloud modules"`
	AllowOnDemand   bool            `json:"allow_on_demand" doc:"let on-demand prices stand in where spot is missing or dearer (default false)"`
	InstanceTypes   []string        `json:"instance_types" doc:"acceptable instance types (list or comma-separated; default: every catalogue type that fits)"`
	Backend         backendSettings `json:"backend" doc:"keep the node's Terraform state in this S3 bucket rather than the store's (an s3:// store keeps it under <prefix>/terraform/; a file:// store in the working directory): a mapping of Terraform's s3 backend settings (bucket, region, endpoint, dynamodb_table, force_path_style, ...) with key_prefix in place of key; the key is <key_prefix>/<node_id>.tfstate, so runs and steps never share state. Credentials come from the AWS_* environment, never from here: the node's record keeps the mapping for destroy"`
	Vars            map[string]any  `json:"vars" doc:"more module variables, a mapping; they win over derived ones (worker_binary, temporal_address, namespace, state_dir, store, log_file, launcher, gpu_description) but may not set node_id, task_queue or, for cloud modules, region, instance_types, availability_zone, max_price_per_hour"`
}

// ProvisionOutputs are the outputs of a provision step. The interpreter
// adds the last three when it replaces a lost node.
type ProvisionOutputs struct {
	NodeID             string         `json:"node_id" doc:"the node's id, derived from the run and step ids"`
	TaskQueue          string         `json:"task_queue" doc:"the task queue the node's worker polls; runs_on steps go there"`
	GPU                string         `json:"gpu" doc:"the node's GPUs, as the module or the chosen offer describes them"`
	TerraformLog       string         `json:"terraform_log" doc:"Terraform's log of the apply: an artifact pointer"`
	PricePerHour       float64        `json:"price_per_hour" doc:"USD per hour of the chosen offer, 0 for a local node"`
	StartedAt          string         `json:"started_at" doc:"when the first apply began (RFC 3339)"`
	Module             string         `json:"module" doc:"the module directory applied"`
	Offer              *offerRecord   `json:"offer" doc:"the chosen spot or on-demand offer; null for modules without instance types"`
	Request            nodeRequest    `json:"request" doc:"what the step asked for"`
	ModuleOutputs      map[string]any `json:"module_outputs" doc:"the module's Terraform outputs"`
	Generation         int            `json:"generation,omitempty" doc:"which node of the step this is, from 2 once a lost node was replaced"`
	LostNodes          []any          `json:"lost_nodes,omitempty" doc:"the nodes lost before this one, with why and what each wasted"`
	PreemptionWasteUSD float64        `json:"preemption_waste_usd,omitempty" doc:"what the lost nodes cost"`
}

// nodeRequest is what the step asked for, recorded whether or not the
// module chooses an offer.
type nodeRequest struct {
	GPUMemoryGB     float64  `json:"gpu_memory_gb"`
	GPUCount        int      `json:"gpu_count"`
	MaxPricePerHour float64  `json:"max_price_per_hour"`
	Regions         []string `json:"regions,omitempty"`
	AllowOnDemand   bool     `json:"allow_on_demand"`
	InstanceTypes   []string `json:"instance_types,omitempty"`
}

type provisionArgs struct {
	module  string
	req     nodeRequest
	vars    map[string]any
	backend map[string]string
}

// Backend settings provision refuses: the key is derived so that no two
// nodes share state, and credentials would end up in node.json.
var (
	derivedBackendKeys = []string{"key", "workspace_key_prefix"}
	secretBackendKeys  = []string{"access_key", "secret_key", "token"}
)

const backendKeyPrefix = "key_prefix"

// backendSettings are with.backend as -backend-config values; numbers and
// booleans are formatted, as Terraform reads them back from text.
type backendSettings map[string]string

// DecodeInput implements stepio.InputDecoder.
func (b *backendSettings) DecodeInput(v any) error {
	if v == nil || v == "" {
		return nil
	}
	m, err := stepio.Mapping(v)
	if err != nil {
		return err
	}
	out := make(backendSettings, len(m))
	for _, k := range stepio.SortedKeys(m) {
		switch {
		case slices.Contains(derivedBackendKeys, k):
			return &stepio.Error{Path: k, Msg: "is derived from the run and step so runs never share state; give " + backendKeyPrefix + " instead"}
		case slices.Contains(secretBackendKeys, k):
			return &stepio.Error{Path: k, Msg: "would be recorded in " + nodeRecordFile + "; pass credentials in the AWS_* environment of the worker"}
		}
		switch m[k].(type) {
		case string, bool, float64, int, int64:
			out[k], _ = stepio.String(m[k])
		default:
			return &stepio.Error{Path: k, Msg: fmt.Sprintf("want a string, number or boolean, got %T", m[k])}
		}
	}
	if out["bucket"] == "" {
		return &stepio.Error{Path: "bucket", Msg: "required: the S3 bucket the node's state is kept in"}
	}
	*b = out
	return nil
}

// backendConfig is the backend for one node: the step's settings with the
// key_prefix replaced by a key of the node's own.
func backendConfig(settings map[string]string, nodeID string) map[string]string {
	if settings == nil {
		return nil
	}
	cfg := maps.Clone(settings)
	prefix := strings.Trim(cfg[backendKeyPrefix], "/")
	delete(cfg, backendKeyPrefix)
	cfg["key"] = path.Join(prefix, nodeID+".tfstate")
	return cfg
}

func parseProvision(in provisionInputs) (*provisionArgs, error) {
	a := &provisionArgs{module: in.Module, vars: in.Vars, backend: in.Backend, req: nodeRequest{
		GPUMemoryGB: in.GPUMemoryGB, GPUCount: in.GPUCount, MaxPricePerHour: in.MaxPricePerHour,
		Regions: in.Regions, AllowOnDemand: in.AllowOnDemand, InstanceTypes: in.InstanceTypes,
	}}
	if a.req.GPUMemoryGB < 0 {
		return nil, badInput("gpu_memory_gb", "must not be negative, got %v", a.req.GPUMemoryGB)
	}
	if a.req.GPUCount < 0 {
		return nil, badInput("gpu_count", "must not be negative, got %d", a.req.GPUCount)
	}
	if a.req.MaxPricePerHour < 0 {
		return nil, badInput("max_price_per_hour", "must not be negative, got %v", a.req.MaxPricePerHour)
	}
	if err := checkInstanceTypes(a.req.InstanceTypes); err != nil {
		return nil, err
	}
	return a, nil
}

// provisioner holds one provision run's resolved settings.
type provisioner struct {
	env       Env
	in        Input
	args      *provisionArgs
	module    string
	declared  map[string]bool
	cloud     bool
	terraform string
	state     string
	workdir   string
	nodeID    string
	taskQueue string
	worker    string
	targets   *filesd.Dir
}

func runProvision(ctx context.Context, env Env, in Input, args provisionInputs) (*ProvisionOutputs, error) {
	p, err := newProvisioner(env, in, args)
	if err != nil {
		return nil, err
	}
	rec, err := p.record(ctx)
	if err != nil {
		return nil, err
	}
	// A retry on another host applies the configuration the first attempt
	// applied, from the store.
	module, err := moduleSource(ctx, env, p.workdir, rec, p.module)
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	ws, err := tf.New(tf.Config{Terraform: p.terraform, Module: module, Dir: p.workdir, Backend: rec.Backend,
		ProviderMirror: os.Getenv(EnvProviderMirror), Env: terraformEnv()})
	if err != nil {
		return nil, fmt.Errorf("provision: terraform workspace %s: %w", p.workdir, err)
	}
	if rec.Config == "" {
		if rec.Config, err = publishModule(ctx, env, ws); err != nil {
			return nil, err
		}
	}
	out, err := p.apply(ctx, ws, rec)
	if err != nil {
		return nil, err
	}
	if rec.TerraformLog, err = publish(ctx, env, "provision: terraform log", ws.LogPath()); err != nil {
		return nil, err
	}
	if err := rec.save(ctx, env.Artifacts().Store(), p.workdir); err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	outputs := p.outputs(rec, out)
	if err := p.publishMetrics(out, outputs.GPU); err != nil {
		return nil, err
	}
	return outputs, nil
}

func newProvisioner(env Env, in Input, inputs provisionInputs) (*provisioner, error) {
	args, err := parseProvision(inputs)
	if err != nil {
		return nil, err
	}
	p := &provisioner{env: env, in: in, args: args}
	if p.module, err = resolveModule(args.module); err != nil {
		return nil, err
	}
	if p.declared, err = moduleVariables(p.module); err != nil {
		return nil, err
	}
	for _, v := range reservedVars {
		if !p.declared[v] {
			return nil, badInput("module", "module %s declares no variable %s: a node module takes node_id and task_queue", p.module, v)
		}
	}
	p.cloud = p.declared["instance_types"]
	if err := p.checkVars(); err != nil {
		return nil, err
	}
	if p.cloud {
		if args.req.MaxPricePerHour == 0 {
			return nil, badInput("max_price_per_hour", "required by module %s: it caps the price and is the spot max price", args.module)
		}
		if len(args.req.Regions) == 0 {
			return nil, badInput("regions", "required by module %s: name the regions to compare spot prices in", args.module)
		}
	}
	if p.terraform, err = tf.Find(""); err != nil {
		return nil, Permanent(kindMissingTool, fmt.Errorf("provision: %w", err))
	}
	if _, given := args.vars["worker_binary"]; p.declared["worker_binary"] && !given {
		if p.worker, err = workerBinary(p.terraform); err != nil {
			return nil, err
		}
	}
	if p.state, err = filepath.Abs(env.StateDir()); err != nil {
		return nil, fmt.Errorf("provision: state directory: %w", err)
	}
	p.workdir = nodeWorkdir(p.state, in.RunID, in.StepID)
	p.nodeID = nodeID(in.RunID, in.StepID)
	p.taskQueue = "gauntlet-node-" + p.nodeID
	if p.targets, err = metricsTargets(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *provisioner) checkVars() error {
	reserved := slices.Clone(reservedVars)
	if p.cloud {
		reserved = append(reserved, offerVars...)
	}
	for _, k := range slices.Sorted(maps.Keys(p.args.vars)) {
		if slices.Contains(reserved, k) {
			return badInput("vars."+k, "is set by provision itself (from the run and step ids, or the chosen offer)")
		}
		if !p.declared[k] {
			return badInput("vars."+k, "module %s declares no such variable (it declares: %s)", p.module, strings.Join(slices.Sorted(maps.Keys(p.declared)), ", "))
		}
	}
	return nil
}

// record returns the node record to apply: the earlier attempt's (on any
// host) when there is one, so a retry keeps its start time, offer and
// configuration.
func (p *provisioner) record(ctx context.Context) (*nodeRecord, error) {
	rec, err := loadNodeRecord(ctx, p.env.Artifacts().Store(), p.nodeID)
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	if rec == nil || rec.DestroyedAt != nil {
		fresh := &nodeRecord{NodeID: p.nodeID, StartedAt: time.Now().UTC().Truncate(time.Second)}
		if rec != nil {
			fresh.version = rec.version
		}
		rec = fresh
	}
	rec.TaskQueue, rec.RunID, rec.StepID, rec.Module = p.taskQueue, p.in.RunID, p.in.StepID, p.module
	rec.Request = p.args.req
	rec.Host, rec.Workdir = thisHost(), p.workdir
	// The state goes where the step says, else into the store's bucket,
	// else (a file:// store) into the working directory.
	if rec.Backend = backendConfig(p.args.backend, p.nodeID); rec.Backend == nil {
		if rec.Backend, err = tf.StoreBackend(p.terraform, p.env.Artifacts().StoreURL(), p.nodeID); errors.Is(err, tf.ErrBadStore) {
			return nil, Permanent(kindBadInput, fmt.Errorf("provision: %w", err))
		} else if err != nil {
			return nil, fmt.Errorf("provision: %w", err)
		}
	}
	if p.cloud && len(rec.Offers) == 0 {
		if rec.Offers, err = selectOffers(ctx, p.args.req); err != nil {
			return nil, err
		}
	}
	if len(rec.Offers) > 0 {
		rec.PricePerHour = rec.Offers[0].PricePerHour
	}
	if err := p.recordMetrics(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// vars are the module variables: derived values the module declares, then
// the step's own vars over them.
func (p *provisioner) vars(rec *nodeRecord) map[string]any {
	derived := map[string]any{
		"node_id":          p.nodeID,
		"task_queue":       p.taskQueue,
		"temporal_address": envOr(envTemporalAddress, defaultTemporalAddress),
		"namespace":        envOr(envTemporalNamespace, defaultTemporalNamespace),
		// The local worker shares this host's state directory, so models
		// it trains under file:// are where the next steps look.
		"state_dir": p.state,
		// Every worker of a run, a node's too, shares one store.
		"store":    p.env.Artifacts().StoreURL(),
		"log_file": filepath.Join(p.workdir, workerLogFile),
	}
	if p.worker != "" {
		derived["worker_binary"] = p.worker
	}
	if l := os.Getenv(EnvNodeLauncher); l != "" {
		derived["launcher"] = []string{l}
	}
	if h := thisHost(); h != "" {
		derived["host"] = h
	}
	if rec.MetricsAddr != "" {
		derived["metrics_addr"] = rec.MetricsAddr
	}
	if len(rec.Offers) > 0 {
		maps.Copy(derived, offerModuleVars(rec))
	}
	vars := map[string]any{}
	for k, v := range derived {
		if p.declared[k] {
			vars[k] = v
		}
	}
	maps.Copy(vars, p.args.vars)
	return vars
}

func (p *provisioner) apply(ctx context.Context, ws *tf.Workspace, rec *nodeRecord) (map[string]any, error) {
	log := p.env.Logger().With("node_id", p.nodeID, "workdir", p.workdir)
	for {
		// Recorded before applying: if the apply dies halfway, destroy
		// still finds the node, from any host, and prices it.
		rec.Vars = p.vars(rec)
		if err := rec.save(ctx, p.env.Artifacts().Store(), p.workdir); err != nil {
			return nil, fmt.Errorf("provision: %w", err)
		}
		var out map[string]any
		details := map[string]any{"node_id": p.nodeID, "workdir": p.workdir}
		if len(rec.Offers) > 0 {
			details["instance_type"] = rec.Offers[0].InstanceType
		}
		err := withTerraformProgress(p.env, ws.LogPath(), details, func() error {
			var err error
			out, err = ws.Apply(ctx, rec.Vars)
			return err
		})
		if err == nil {
			log.Info("node applied", "task_queue", p.taskQueue)
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("provision: apply %s: %w", p.workdir, ctx.Err())
		}
		tail := logTail(ws.LogPath(), tailLines)
		if len(rec.Offers) > 1 && isCapacityError(err, tail) {
			log.Warn("no capacity for instance type; trying the next", "instance_type", rec.Offers[0].InstanceType, "next", rec.Offers[1].InstanceType)
			rec.Offers = rec.Offers[1:]
			rec.PricePerHour = rec.Offers[0].PricePerHour
			continue
		}
		return nil, terraformError("provision: apply", p.workdir, ws.LogPath(), tail, err)
	}
}

func (p *provisioner) outputs(rec *nodeRecord, out map[string]any) *ProvisionOutputs {
	gpu, _ := out["gpu_description"].(string)
	var offer *offerRecord
	if len(rec.Offers) > 0 {
		offer = &rec.Offers[0]
		if gpu == "" {
			gpu = rec.Offers[0].describe()
		}
	}
	if gpu == "" {
		gpu = "unknown (module " + filepath.Base(p.module) + " reports no gpu_description)"
	}
	return &ProvisionOutputs{
		NodeID:        p.nodeID,
		TaskQueue:     p.taskQueue,
		GPU:           gpu,
		TerraformLog:  rec.TerraformLog,
		PricePerHour:  rec.PricePerHour,
		StartedAt:     rec.StartedAt.Format(time.RFC3339),
		Module:        p.module,
		Offer:         offer,
		Request:       rec.Request,
		ModuleOutputs: out,
	}
}

// nodeID is readable (run and step) and unique: the hash of the raw ids
// keeps two runs apart whose ids sanitise or truncate to the same text.
func nodeID(runID, stepID string) string {
	sum := sha256.Sum256([]byte(runID + "\x00" + stepID))
	suffix := hex.EncodeToString(sum[:4])
	b := []byte(runID + "-" + stepID)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	prefix := string(b)
	if limit := maxNodeIDLen - len(suffix) - 1; len(prefix) > limit {
		prefix = prefix[:limit]
	}
	return prefix + "-" + suffix
}

func nodeWorkdir(state, runID, stepID string) string {
	return filepath.Join(state, "nodes", safeName(runID), safeName(stepID))
}

// resolveModule turns a module name or path into an absolute directory.
func resolveModule(name string) (string, error) {
	if strings.ContainsRune(name, filepath.Separator) || strings.HasPrefix(name, ".") {
		dir, err := filepath.Abs(name)
		if err != nil {
			return "", badInput("module", "%v", err)
		}
		if !isModuleDir(dir) {
			return "", badInput("module", "%s is not a directory of Terraform files", dir)
		}
		return dir, nil
	}
	root, err := modulesDir()
	if err != nil {
		return "", badInput("module", "cannot look up %q: %v", name, err)
	}
	dir := filepath.Join(root, name)
	if !isModuleDir(dir) {
		var known []string
		entries, _ := os.ReadDir(root)
		for _, e := range entries {
			if e.IsDir() && isModuleDir(filepath.Join(root, e.Name())) {
				known = append(known, e.Name())
			}
		}
		return "", badInput("module", "unknown module %q (known in %s: %s; or give a path)", name, root, strings.Join(known, ", "))
	}
	return dir, nil
}

// modulesDir mirrors tf.Find: the variable, then the working directory,
// then the repository root, so tests and `gauntlet dev` run from a
// subdirectory find the repository's modules.
func modulesDir() (string, error) {
	if v := os.Getenv(EnvInfraModules); v != "" {
		abs, err := filepath.Abs(v)
		if err != nil {
			return "", fmt.Errorf("$%s: %w", EnvInfraModules, err)
		}
		if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
			return "", fmt.Errorf("$%s=%s is not a directory", EnvInfraModules, v)
		}
		return abs, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		cand := filepath.Join(dir, "infra", "modules")
		if fi, err := os.Stat(cand); err == nil && fi.IsDir() {
			return cand, nil
		}
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil || filepath.Dir(dir) == dir {
			break
		}
	}
	return "", fmt.Errorf("no infra/modules under %s or its repository root, and $%s is not set", wd, EnvInfraModules)
}

func isModuleDir(dir string) bool {
	files, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	return err == nil && len(files) > 0
}

var variableBlock = regexp.MustCompile(`(?m)^[ \t]*variable[ \t]+"([^"]+)"`)

// moduleVariables lists the variables a module declares, so derived values
// go only where they are wanted and a misspelt `vars` key fails before
// anything is created rather than in Terraform's plan.
func moduleVariables(dir string) (map[string]bool, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil {
		return nil, badInput("module", "%v", err)
	}
	out := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("provision: reading module %s: %w", dir, err)
		}
		for _, m := range variableBlock.FindAllSubmatch(b, -1) {
			out[string(m[1])] = true
		}
	}
	return out, nil
}

func workerBinary(terraform string) (string, error) {
	path, from := os.Getenv(EnvWorkerBinary), "$"+EnvWorkerBinary
	if path == "" {
		path, from = filepath.Join(filepath.Dir(terraform), "worker"), "the worker beside "+terraform
	}
	abs, err := filepath.Abs(path)
	if err == nil {
		_, err = exec.LookPath(abs)
	}
	if err != nil {
		return "", Permanent(kindMissingTool, fmt.Errorf("provision: worker binary %s (%s): %v; run `make build` or set %s", path, from, err, EnvWorkerBinary))
	}
	return abs, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// terraformEnv hands this process's AWS settings to Terraform, whose
// environment is otherwise minimal, so a cloud module's provider uses the
// credentials the worker has.
func terraformEnv() map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "AWS_") {
			env[k] = v
		}
	}
	return env
}

// progressInterval is how often a running Terraform command is reported;
// a cloud apply takes minutes, longer than a heartbeat timeout.
const progressInterval = 5 * time.Second

// withTerraformProgress heartbeats while f runs, with the Terraform
// command under way (init, apply, destroy) read from the headers the
// workspace writes into its log.
func withTerraformProgress(env Env, logPath string, details map[string]any, f func() error) error {
	var offset int64
	if fi, err := os.Stat(logPath); err == nil {
		offset = fi.Size()
	}
	start := time.Now()
	report := func(phase string) {
		d := maps.Clone(details)
		d["phase"] = phase
		d["elapsed_seconds"] = int(time.Since(start).Seconds())
		env.Progress(d)
	}
	report("init")
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		phase := "init"
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if p := lastPhase(logPath, offset); p != "" {
					phase = p
				}
				report(phase)
			}
		}
	}()
	err := f()
	close(done)
	wg.Wait()
	return err
}

var phaseHeader = regexp.MustCompile(`(?m)^=== terraform (\w+) at `)

func lastPhase(logPath string, offset int64) string {
	f, err := os.Open(logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return ""
	}
	m := phaseHeader.FindAllSubmatch(b, -1)
	if len(m) == 0 {
		return ""
	}
	return string(m[len(m)-1][1])
}

// tailLines is how much of the Terraform log an error carries: enough for
// Terraform's own error block, which names the cause.
const tailLines = 25

func logTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const window = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		if _, err := f.Seek(fi.Size()-window, io.SeekStart); err != nil {
			return ""
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// terraformError adds the log's last lines to a Terraform failure and
// stops retries of what another attempt cannot fix.
func terraformError(what, dir, logPath, tail string, err error) error {
	e := fmt.Errorf("%s %s: %w\n--- last lines of %s ---\n%s", what, dir, err, logPath, tail)
	var pe *tf.ProviderError
	text := err.Error() + "\n" + tail
	switch {
	case errors.As(err, &pe):
		return Permanent(kindMissingTool, e)
	case strings.Contains(text, "Invalid value for variable"), strings.Contains(text, "No value for required variable"):
		return Permanent(kindBadInput, e)
	}
	return e
}

func isCapacityError(err error, tail string) bool {
	return strings.Contains(err.Error(), "InsufficientInstanceCapacity") || strings.Contains(tail, "InsufficientInstanceCapacity")
}

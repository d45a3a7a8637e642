package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/gauntlet-ml/gauntlet/internal/checkpoint"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/fleettest"
	"github.com/gauntlet-ml/gauntlet/internal/searchattr"
	"github.com/gauntlet-ml/gauntlet/internal/traffic"
)

// rig is issue 17's fleet: a host for PostgreSQL, the official Temporal
// server and the S3 gateway; worker hosts that share nothing but Temporal
// and the store (one URL, GAUNTLET_STORE); node hosts on which the workers'
// provision steps start local nodes (through fleettest's launcher); and a
// host for the CLI and the test's own client.
type rig struct {
	t        *testing.T
	f        *fleettest.Fleet
	tp       *fleettest.Temporal
	store    *fleettest.S3
	cli      *fleettest.Host
	nodes    []*fleettest.Host
	launcher *fleettest.NodeLauncher
	worker   string
	env      []string
	mu       sync.Mutex                 // guards workers and pids, which clients read
	workers  map[string]*fleettest.Proc // the live worker of each host
	pids     map[int]string             // every worker process started, by pid, to its host
	c        client.Client
}

const storeURL = "s3://artifacts/fleet"

func newRig(t *testing.T, workerHosts, nodeHosts []string) *rig {
	t.Helper()
	worker := buildOne(t, "./worker")
	terraform := fleettest.Tool(t, "terraform")
	f := fleettest.New(t)
	r := &rig{t: t, f: f, worker: worker, workers: map[string]*fleettest.Proc{}, pids: map[int]string{}}
	server := f.AddHost("temporal")
	// Node hosts before worker hosts: see fleettest.NodeLauncher.
	for _, n := range nodeHosts {
		r.nodes = append(r.nodes, f.AddHost(n))
	}
	hosts := make([]*fleettest.Host, len(workerHosts))
	for i, n := range workerHosts {
		hosts[i] = f.AddHost(n)
	}
	r.cli = f.AddHost("cli")
	pg := fleettest.StartPostgres(t, server)
	r.tp = fleettest.StartTemporal(t, server, pg, fleettest.TemporalOptions{
		Namespace:        "default",
		SearchAttributes: searchattr.Definitions(),
		DynamicConfig:    repoPath(t, "deploy/temporal/dynamicconfig.yaml"),
	})
	r.store = fleettest.StartS3(t, server, "artifacts")
	r.launcher = f.NewNodeLauncher(r.nodes...)
	r.env = append(r.store.Env(), "GAUNTLET_STORE="+storeURL,
		"TEMPORAL_ADDRESS="+r.tp.Addr(),
		"GAUNTLET_WORKER_BINARY="+worker,
		"GAUNTLET_NODE_LAUNCHER="+r.launcher.Path,
		"GAUNTLET_INFRA_MODULES="+repoPath(t, "infra/modules"),
		"GAUNTLET_TERRAFORM="+terraform)
	for _, h := range hosts {
		r.startWorker(h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := r.tp.Dial(ctx, r.cli, "default")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	r.c = c
	return r
}

func (r *rig) startWorker(h *fleettest.Host) {
	r.t.Helper()
	p, err := h.Start("worker", fleettest.Spec{
		Args: []string{r.worker, "--address", r.tp.Addr(), "--state-dir", filepath.Join(h.Dir(), "state"),
			"--pipelines", repoPath(r.t, "pipelines")},
		Env: r.env,
	}, syscall.SIGTERM)
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.workers[h.Name] = p
	r.pids[p.Pid()] = h.Name
}

// hostOfWorker maps a worker identity (pid@hostname, the SDK's default;
// every simulated host shares the machine's hostname) to the worker host
// whose process it is, or "" for another worker (a node's).
func (r *rig) hostOfWorker(identity string) string {
	pid, _, _ := strings.Cut(identity, "@")
	n, err := strconv.Atoi(pid)
	if err != nil {
		return ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pids[n]
}

// start starts a credit-risk run with short canary and monitor windows.
func (r *rig) start(ctx context.Context, id string, params map[string]any) client.WorkflowRun {
	r.t.Helper()
	p := map[string]any{"canary_interval": "2s", "monitor_for": "20s"}
	for k, v := range params {
		p[k] = v
	}
	run, err := r.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "gauntlet"}, contract.PipelineName,
		contract.PipelineInput{Pipeline: "credit-risk", Params: p, StartedBy: "fleet-test"})
	if err != nil {
		r.t.Fatalf("start %s: %v", id, err)
	}
	return run
}

// approveWhenAsked approves id's gate as its reviewer once it waits, and
// returns when the run ends.
func (r *rig) approveWhenAsked(ctx context.Context, id string, done <-chan struct{}) {
	for {
		h, err := r.c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: id, UpdateName: contract.ApproveName,
			Args: []any{contract.Decision{Reviewer: "demo-reviewer", Comment: "fleet test"}}, WaitForStage: client.WorkflowUpdateStageCompleted})
		if err == nil {
			if err = h.Get(ctx, nil); err == nil {
				return
			}
		}
		if !strings.Contains(err.Error(), "no approval is waiting") {
			r.t.Errorf("approve %s: %v", id, err)
			return
		}
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// finish waits for run, approving its gate when it waits and sending
// clients' requests to its router while it canaries and monitors, and
// returns its result.
func (r *rig) finish(ctx context.Context, run client.WorkflowRun) (contract.Result, error) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { r.approveWhenAsked(ctx, run.GetID(), done) })
	wg.Go(func() { r.clients(ctx, run.GetID(), done) })
	var res contract.Result
	err := run.Get(ctx, &res)
	close(done)
	wg.Wait()
	return res, err
}

var routerURL = regexp.MustCompile(`behind (http://\S+)`)

// clients send the usual population to the run's router while its canary
// or monitor runs, as the demo's do. The router is a process of the worker
// that started the canary, listening on that host's loopback: the clients
// connect from that host.
func (r *rig) clients(ctx context.Context, id string, done <-chan struct{}) {
	target, host := "", ""
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		default:
		}
		st, err := queryStatus(ctx, r.c, id)
		busy := false
		if err == nil {
			for _, s := range st.Steps {
				if s.Uses == "canary-deploy" {
					if m := routerURL.FindStringSubmatch(s.Reason); m != nil {
						target = m[1]
					} else if u, ok := s.Outputs["router_url"].(string); ok && u != "" {
						target = u
					}
				}
				busy = busy || s.State == contract.StateRunning && (s.Uses == "canary-deploy" || s.Uses == "monitor")
			}
		}
		if host == "" && target != "" {
			host = r.hostOf(ctx, id, contract.CanaryStartName)
		}
		h := r.host(host)
		if !busy || h == nil {
			time.Sleep(300 * time.Millisecond)
			continue
		}
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: h.DialContext}}
		_, _ = traffic.Run(ctx, traffic.Options{Target: target, Data: "builtin:credit-risk?rows=2000&seed=11&bias=0.3",
			Rate: 40, Duration: 2 * time.Second, Batch: 10, Client: hc})
	}
}

func queryStatus(ctx context.Context, c client.Client, id string) (contract.Status, error) {
	var st contract.Status
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := c.QueryWorkflow(qctx, id, "", contract.StatusQuery)
	if err != nil {
		return st, err
	}
	return st, v.Get(&st)
}

// hostOf names the worker host that completed run's activity of type
// activity, "" before one has. It may run beside the test's goroutine, so
// it fails nothing.
func (r *rig) hostOf(ctx context.Context, run, activity string) string {
	scheduled := map[int64]string{}
	it := r.c.GetWorkflowHistory(ctx, run, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return ""
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			scheduled[ev.GetEventId()] = a.GetActivityType().GetName()
		}
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil && scheduled[a.GetScheduledEventId()] == activity {
			return r.hostOfWorker(a.GetIdentity())
		}
	}
	return ""
}

func (r *rig) host(name string) *fleettest.Host {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.workers[name]; p != nil {
		return p.Host
	}
	return nil
}

func (r *rig) logs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for name, p := range r.workers {
		fmt.Fprintf(&b, "--- %s (last lines) ---\n%s\n", name, lastLines(p.Output(), 40))
	}
	return b.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// noNodeLeft fails the test for any process left on a node host: every
// node a run provisioned must be destroyed by its end.
func (r *rig) noNodeLeft() {
	r.t.Helper()
	for _, h := range r.nodes {
		pids, err := h.Pids()
		if err != nil {
			r.t.Fatal(err)
		}
		if len(pids) > 0 {
			r.t.Errorf("processes left running on node host %s: %v", h.Name, pids)
		}
	}
}

func stepOutputs(t *testing.T, res contract.Result, id string) map[string]any {
	t.Helper()
	for _, s := range res.Steps {
		if s.ID == id {
			return s.Outputs
		}
	}
	t.Fatalf("no step %s in the result", id)
	return nil
}

// TestCreditRiskAcrossTheFleet runs the whole credit-risk gauntlet (a node
// provisioned through Terraform on a node host, training there, quantize,
// evaluate, fairness, explain, report, approval, canary under clients'
// traffic, monitor, teardown) three times on two worker hosts. A run stays
// with the worker that takes its first workflow task (sticky task queues,
// eager activities), and runs of one model must follow each other (each
// promotes), so before each run the worker that ran the last one is
// stopped, and started again once the new run is under way on the other:
// every run succeeds, both worker hosts complete steps, and no node is left
// running.
func TestCreditRiskAcrossTheFleet(t *testing.T) {
	r := newRig(t, []string{"worker-a", "worker-b"}, []string{"node-a", "node-b"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	const runs = 3
	byHost := map[string][]string{}
	prev := ""
	for i := range runs {
		id := fmt.Sprintf("credit-risk-fleet-%d", i+1)
		if prev != "" {
			r.mu.Lock()
			last := r.workers[prev]
			r.mu.Unlock()
			if err := last.Stop(time.Minute); err != nil {
				t.Fatalf("stopping the worker on %s: %v", prev, err)
			}
		}
		run := r.start(ctx, id, nil)
		owner := r.waitFirstTask(ctx, id)
		if prev != "" {
			r.startWorker(r.host(prev))
		}
		began := time.Now()
		res, err := r.finish(ctx, run)
		if err != nil {
			t.Fatalf("run %s (workflow on %s): %v\n%s", id, owner, err, r.logs())
		}
		t.Logf("%s: workflow on %s, %s", id, owner, time.Since(began).Round(time.Second))
		for activity, who := range completedBy(ctx, t, r.c, id) {
			if h := r.hostOfWorker(who); h != "" {
				byHost[h] = append(byHost[h], id+":"+activity)
			}
		}
		gpu := stepOutputs(t, res, "gpu")
		if host := r.launcher.HostOf(fmt.Sprint(gpu["node_id"])); host == "" {
			t.Errorf("%s: node %v was not started on a node host", id, gpu["node_id"])
		}
		if train := stepOutputs(t, res, "train"); train["model"] == nil {
			t.Errorf("%s: train outputs %v", id, train)
		}
		if down := stepOutputs(t, res, "teardown"); down["destroyed"] != true {
			t.Errorf("%s: teardown %v", id, down)
		}
		prev = owner
	}
	t.Logf("steps completed by worker host: worker-a %d, worker-b %d", len(byHost["worker-a"]), len(byHost["worker-b"]))
	for _, h := range []string{"worker-a", "worker-b"} {
		if len(byHost[h]) == 0 {
			t.Errorf("no step of the %d runs completed on %s: %v", runs, h, byHost)
		}
	}
	r.noNodeLeft()
}

// waitFirstTask waits until a worker has completed run's first workflow
// task and returns that worker's host.
func (r *rig) waitFirstTask(ctx context.Context, run string) string {
	r.t.Helper()
	for {
		for _, ev := range history(ctx, r.t, r.c, run) {
			if a := ev.GetWorkflowTaskCompletedEventAttributes(); a != nil {
				return r.hostOfWorker(a.GetIdentity())
			}
		}
		select {
		case <-ctx.Done():
			r.t.Fatalf("no worker took %s's first task\n%s", run, r.logs())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestNodeHostLossResumesFromTheStore cuts the power of the node host
// while the node trains an MLP: the run notices the lost node, destroys
// it, provisions the next generation, which the launcher puts on the other
// node host, and training resumes there from the last checkpoint in the
// store. Every epoch is trained once (the checkpoint ref moved once per
// epoch, over both nodes), both nodes are billed, none is left running.
func TestNodeHostLossResumesFromTheStore(t *testing.T) {
	r := newRig(t, []string{"worker-a", "worker-b"}, []string{"node-a", "node-b"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	const id, epochs = "credit-risk-node-loss", 20
	run := r.start(ctx, id, map[string]any{"model": "mlp", "data": "builtin:credit-risk?rows=150000&seed=7&bias=0.3", "monitor": false})

	done := make(chan struct{})
	var res contract.Result
	var runErr error
	go func() {
		res, runErr = r.finish(ctx, run)
		close(done)
	}()
	var before checkpoint.Record
	for {
		if rec, ok := r.checkpoint(ctx, id); ok && rec.Seq >= 2 {
			before = rec
			break
		}
		select {
		case <-done:
			t.Fatalf("the run ended before training had checkpointed twice: %v\n%s", runErr, r.logs())
		case <-time.After(200 * time.Millisecond):
		}
	}
	first := r.launcher.Nodes()
	if len(first) != 1 {
		t.Fatalf("nodes %v, want the one training", first)
	}
	var lostNode, lostHost string
	for n, h := range first {
		lostNode, lostHost = n, h
	}
	var victim *fleettest.Host
	for _, h := range r.nodes {
		if h.Name == lostHost {
			victim = h
		}
	}
	r.launcher.Down(t, victim)
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("cut the power of %s while node %s trained (checkpoint %q, publish %d)", lostHost, lostNode, before.Label, before.Seq)
	<-done
	if runErr != nil {
		t.Fatalf("run after losing the node host: %v\n%s", runErr, r.logs())
	}

	gpu := stepOutputs(t, res, "gpu")
	train := stepOutputs(t, res, "train")
	lost, _ := gpu["lost_nodes"].([]any)
	if gpu["generation"] != 2.0 || len(lost) != 1 || lost[0].(map[string]any)["node_id"] != lostNode {
		t.Fatalf("gpu outputs: generation %v, lost %v; want node %s lost and a second generation", gpu["generation"], gpu["lost_nodes"], lostNode)
	}
	replacement := fmt.Sprint(gpu["node_id"])
	if h := r.launcher.HostOf(replacement); h == "" || h == lostHost {
		t.Errorf("replacement %s started on %q, want the other node host", replacement, h)
	}
	resumed, _ := train["resumed_from_epoch"].(float64)
	if int(resumed) < before.Seq || resumed >= epochs {
		t.Errorf("train resumed_from_epoch %v, want the last checkpoint before the loss (%d) or later", train["resumed_from_epoch"], before.Seq)
	}
	after, ok := r.checkpoint(ctx, id)
	if !ok || after.Seq != epochs || after.Label != fmt.Sprintf("epoch %d", epochs) {
		t.Errorf("checkpoint after the run: %+v, want %d publishes ending with epoch %d: each epoch trained once over both nodes", after, epochs, epochs)
	}
	if q := scheduledOn(ctx, t, r.c, id, "train"); len(q) == 0 || q[len(q)-1] != gpu["task_queue"] {
		t.Errorf("train was scheduled on %v, want it last on the replacement's queue %v", q, gpu["task_queue"])
	}
	down := stepOutputs(t, res, "teardown")
	nodes, _ := down["nodes"].([]any)
	if len(nodes) != 2 {
		t.Fatalf("teardown priced %d nodes, want both: %v", len(nodes), down)
	}
	for _, n := range nodes {
		if s, _ := n.(map[string]any)["seconds"].(float64); s <= 0 {
			t.Errorf("node %v not billed", n)
		}
	}
	t.Logf("resumed from epoch %v on %s; %d checkpoint publishes; nodes billed %v", resumed, r.launcher.HostOf(replacement), after.Seq, nodes)
	r.noNodeLeft()
}

// checkpoint reads the run's train checkpoint record from the S3 gateway,
// as the test's client on the CLI host sees the store.
func (r *rig) checkpoint(ctx context.Context, run string) (checkpoint.Record, bool) {
	r.t.Helper()
	s3c := r.store.Client(r.cli)
	prefix := "fleet/refs/" + checkpoint.RefPrefix + run + "/train/"
	list, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("artifacts"), Prefix: aws.String(prefix)})
	if err != nil || len(list.Contents) == 0 {
		return checkpoint.Record{}, false
	}
	obj, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("artifacts"), Key: list.Contents[0].Key})
	if err != nil {
		return checkpoint.Record{}, false
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(obj.Body)
	if err != nil {
		return checkpoint.Record{}, false
	}
	// The store's ref envelope: a generation, a checksum and the data.
	var env struct {
		Data []byte `json:"data"`
	}
	var rec checkpoint.Record
	if err := json.Unmarshal(b, &env); err != nil || json.Unmarshal(env.Data, &rec) != nil {
		r.t.Fatalf("checkpoint ref %s: %s", aws.ToString(list.Contents[0].Key), b)
	}
	return rec, true
}

// scheduledOn lists the task queues step's activities were scheduled on,
// in order.
func scheduledOn(ctx context.Context, t *testing.T, c client.Client, run, step string) []string {
	t.Helper()
	var out []string
	for _, ev := range history(ctx, t, c, run) {
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == contract.StepActivityName(step) {
			out = append(out, a.GetTaskQueue().GetName())
		}
	}
	return out
}

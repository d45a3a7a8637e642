// Package workerhost assembles a Temporal worker with every Gauntlet workflow
// and activity, for the worker binary and for `gauntlet dev` alike, and the
// Prometheus side of such a process.
package workerhost

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"

	"github.com/gauntlet-ml/gauntlet/activities"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/deploy"
	"github.com/gauntlet-ml/gauntlet/internal/metrics"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
	"github.com/gauntlet-ml/gauntlet/internal/searchattr"
	"github.com/gauntlet-ml/gauntlet/workflows"
)

// Config describes one worker.
type Config struct {
	TaskQueue    string
	PipelinesDir string
	StateDir     string
	// NodeID is set on workers started on a provisioned GPU node.
	NodeID string
	// ReviewerKeys is the reviewers' public key file for signed approvals.
	ReviewerKeys string
	// Workspace is the fleet's artifact store and this host's cache (see
	// OpenWorkspace); nil means file://<StateDir>/artifacts and
	// <StateDir>/cache.
	Workspace *workspace.Workspace
	// Deploy, when set, are the deployment targets canary and monitor
	// steps drive; see activities.Config. Otherwise New builds them from
	// DeployTarget.
	Deploy *deploy.Set
	// DeployTarget chooses the targets: the default kind and the fleet's
	// settings (deploy.Flags).
	DeployTarget deploy.Config
	Logger       *slog.Logger
	// Metrics receives what the activities observe; nil (as in tests)
	// records nothing.
	Metrics *metrics.Metrics
	// Scoring is how the steps run models (ModelFlags.Options).
	Scoring scoring.Options
	// Pollers is how many long polls the worker keeps open for each of
	// workflow and activity tasks; 0 is the SDK's default (2). A fan-out
	// wider than the pollers on a task queue with several partitions
	// waits on the server forwarding tasks between partitions.
	Pollers int
}

// New builds (but does not start) a worker.
func New(c client.Client, cfg Config) (worker.Worker, error) {
	if cfg.TaskQueue == "" {
		return nil, fmt.Errorf("worker: no task queue")
	}
	state, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("worker: state directory %s: %w", cfg.StateDir, err)
	}
	if cfg.Pollers < 0 {
		return nil, fmt.Errorf("worker: %d pollers", cfg.Pollers)
	}
	w := worker.New(c, cfg.TaskQueue, worker.Options{
		MaxConcurrentWorkflowTaskPollers: cfg.Pollers,
		MaxConcurrentActivityTaskPollers: cfg.Pollers,
		Interceptors:                     []interceptor.WorkerInterceptor{workflows.RecorderInterceptor(&activities.Recorder{Metrics: cfg.Metrics})},
	})
	workflows.Register(w)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.NodeID != "" {
		logger = logger.With("node_id", cfg.NodeID)
	}
	ws := cfg.Workspace
	if ws == nil {
		if ws, err = workspace.Open(context.Background(), workspace.Config{StateDir: state}); err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
	}
	targets := cfg.Deploy
	if targets == nil {
		if targets, err = cfg.DeployTarget.Targets(deploy.Options{StateDir: state, Workspace: ws, Logger: logger}); err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
	}
	if err := activities.Register(w, activities.Config{PipelinesDir: cfg.PipelinesDir, StateDir: state, Workspace: ws, ReviewerKeys: cfg.ReviewerKeys, Deploy: targets, Logger: logger, Metrics: cfg.Metrics, Scoring: cfg.Scoring}); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return w, nil
}

// StoreCheckTimeout bounds OpenWorkspace's first call to the store.
const StoreCheckTimeout = 30 * time.Second

// OpenWorkspace opens the store and cache cfg names and reaches the store
// once, so that a worker that cannot use it (unreachable, wrong
// credentials, no such bucket) fails at start, naming the store, rather
// than at a run's first step.
func OpenWorkspace(ctx context.Context, cfg workspace.Config) (*workspace.Workspace, error) {
	ws, err := workspace.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, StoreCheckTimeout)
	defer cancel()
	if err := ws.Check(cctx); err != nil {
		return nil, err
	}
	return ws, nil
}

// Telemetry is the Prometheus side of a worker process: one registry with
// the Go runtime and process collectors, Gauntlet's domain metrics and the
// Temporal SDK's own, so that one scrape of --metrics-addr sees all three.
type Telemetry struct {
	Registry *prometheus.Registry
	Metrics  *metrics.Metrics
	SDK      client.MetricsHandler
}

// NewTelemetry builds the registry. The run counters of the pipelines
// defined in pipelinesDir start at zero, so that the failed-runs alert sees
// a pipeline's first failure as an increase.
func NewTelemetry(pipelinesDir string) (*Telemetry, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.NewMetrics(reg)
	sdk, err := metrics.NewSDKHandler(reg)
	if err != nil {
		return nil, err
	}
	m.Pipelines(pipelineNames(pipelinesDir)...)
	return &Telemetry{Registry: reg, Metrics: m, SDK: sdk}, nil
}

// DialOption makes a client export the SDK's metrics here; it is meant for
// tclient.Dial's adjust arguments.
func (t *Telemetry) DialOption(co *client.Options) { co.MetricsHandler = t.SDK }

// Serve serves /metrics on addr until stop. It listens before returning, so
// a taken port fails the start, and callers serve before they dial
// Temporal: a worker that cannot reach its cluster is then still visible
// (process metrics, the SDK's failed requests) rather than silent.
func (t *Telemetry) Serve(addr string) (bound net.Addr, stop func(), err error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics listener on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{Registry: t.Registry}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return l.Addr(), func() { _ = srv.Close() }, nil
}

// pipelineNames lists the pipelines defined in dir. Files that do not parse
// are left out: a run of one fails in ResolvePipeline, which says why.
func pipelineNames(dir string) []string {
	files, err := (&activities.Pipelines{Dir: dir}).Files()
	if err != nil {
		return nil
	}
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if sp, diags := spec.Parse(f, b); sp != nil && len(diags) == 0 && sp.Name != "" {
			names = append(names, sp.Name)
		}
	}
	return names
}

// ApprovalsInterval is how often the approvals-waiting gauges are counted
// again: the alert on them waits a day, and each count queries every
// waiting run.
const ApprovalsInterval = 30 * time.Second

// WatchApprovals keeps m's approvals-waiting gauges to what Temporal holds,
// counting every interval until ctx ends or stop is called; stop waits for
// a count in progress. Counting from Temporal rather than from events seen
// by this process makes every worker replica report the same, correct
// numbers across restarts.
func WatchApprovals(ctx context.Context, c client.Client, m *metrics.Metrics, every time.Duration, logger *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			waiting, err := CountApprovals(ctx, c, time.Now(), logger)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				// The last picture stays: a visibility store that is briefly
				// away must not make waiting approvals disappear.
				logger.Warn("counting waiting approvals", "error", err)
			default:
				m.SetApprovalsWaiting(waiting)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// CountApprovals counts the approval steps waiting in running pipeline
// runs. Visibility finds the runs (the approval step marks its run
// waiting); each run's status query gives its waiting steps and when each
// began, which visibility does not keep. A run whose query fails is left
// out and logged, so that one broken run does not hide the others.
func CountApprovals(ctx context.Context, c client.Client, now time.Time, logger *slog.Logger) ([]metrics.WaitingApproval, error) {
	query := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running' AND %s = '%s'",
		contract.PipelineName, searchattr.RunStatus.GetName(), contract.RunWaiting)
	type key struct{ pipeline, step string }
	counts := map[key]*metrics.WaitingApproval{}
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list waiting runs: %w", err)
		}
		for _, e := range resp.GetExecutions() {
			id, runID := e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId()
			st, err := runStatus(ctx, c, id, runID)
			if err != nil {
				if ctx.Err() != nil {
					return nil, fmt.Errorf("count waiting approvals: %w", ctx.Err())
				}
				logger.Warn("approvals waiting: run left out of the count", "run_id", id, "error", err)
				continue
			}
			for _, s := range st.Steps {
				if s.State != contract.StateWaiting || s.StartedAt == nil {
					continue
				}
				k := key{st.Pipeline, s.ID}
				a := counts[k]
				if a == nil {
					a = &metrics.WaitingApproval{Pipeline: st.Pipeline, Step: s.ID}
					counts[k] = a
				}
				a.Count++
				a.Oldest = max(a.Oldest, now.Sub(*s.StartedAt))
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	out := make([]metrics.WaitingApproval, 0, len(counts))
	for _, a := range counts {
		out = append(out, *a)
	}
	slices.SortFunc(out, func(a, b metrics.WaitingApproval) int {
		return cmp.Or(strings.Compare(a.Pipeline, b.Pipeline), strings.Compare(a.Step, b.Step))
	})
	return out, nil
}

// statusQueryTimeout bounds one run's status query: a run whose workflow
// task cannot be processed would otherwise hold up the whole count.
const statusQueryTimeout = 10 * time.Second

func runStatus(ctx context.Context, c client.Client, id, runID string) (contract.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, statusQueryTimeout)
	defer cancel()
	v, err := c.QueryWorkflow(ctx, id, runID, contract.StatusQuery)
	if err != nil {
		return contract.Status{}, fmt.Errorf("status query of %s: %w", id, err)
	}
	var st contract.Status
	if err := v.Get(&st); err != nil {
		return contract.Status{}, fmt.Errorf("status query of %s: decode: %w", id, err)
	}
	return st, nil
}

// Command worker joins an existing Temporal cluster and runs Gauntlet's
// workflows and activities. Start as many as the load needs: they share the
// task queue and Temporal spreads the work.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gauntlet-ml/gauntlet/internal/deploy"
	"github.com/gauntlet-ml/gauntlet/internal/filesd"
	"github.com/gauntlet-ml/gauntlet/internal/gpu"
	"github.com/gauntlet-ml/gauntlet/internal/metrics"
	"github.com/gauntlet-ml/gauntlet/internal/spot"
	"github.com/gauntlet-ml/gauntlet/internal/tclient"
	"github.com/gauntlet-ml/gauntlet/internal/workerhost"
)

type flags struct {
	conn        tclient.Options
	taskQueue   string
	metricsAddr string
	pipelines   string
	stateDir    string
	nodeID      string
	reviewerKey string
	logFormat   string
	logLevel    string
	codecKeys   string
	gpuInterval time.Duration
	spotWatch   bool
	spotIMDS    string
	pollers     int
	promTargets string
	store       workerhost.StoreFlags
	deploy      deploy.Flags
	models      workerhost.ModelFlags
}

// exitSpotInterrupted tells a supervisor that the worker ended because
// the instance is about to be reclaimed, not because it failed.
const exitSpotInterrupted = 7

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	var f flags
	cmd := &cobra.Command{
		Use:           "worker",
		Short:         "Run Gauntlet workflows and activities against a Temporal cluster",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resolved := resolve(cmd.Flags(), f, getenv)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, resolved, stdout, stderr, getenv)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.conn.Address, "address", tclient.DefaultAddress, "Temporal frontend host:port (env "+tclient.EnvAddress+")")
	fl.StringVarP(&f.conn.Namespace, "namespace", "n", tclient.DefaultNamespace, "Temporal namespace (env "+tclient.EnvNamespace+")")
	fl.StringVar(&f.conn.TLSCert, "tls-cert", "", "client certificate for mTLS (env "+tclient.EnvTLSCert+")")
	fl.StringVar(&f.conn.TLSKey, "tls-key", "", "client private key for mTLS (env "+tclient.EnvTLSKey+")")
	fl.StringVar(&f.conn.TLSCA, "tls-ca", "", "CA certificate that signed the server's (env "+tclient.EnvTLSCA+")")
	fl.StringVar(&f.conn.ServerName, "tls-server-name", "", "server name to verify (env "+tclient.EnvServerName+")")
	fl.StringVar(&f.taskQueue, "task-queue", "gauntlet", "task queue to poll (env GAUNTLET_TASK_QUEUE)")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics on this host:port (off when empty)")
	fl.StringVar(&f.pipelines, "pipelines", "pipelines", "directory of pipeline definitions (env GAUNTLET_PIPELINES)")
	fl.StringVar(&f.stateDir, "state-dir", ".gauntlet", "directory for local artifacts and state")
	fl.StringVar(&f.nodeID, "node-id", "", "identity of the GPU node this worker runs on (set by provisioning)")
	fl.StringVar(&f.logFormat, "log-format", "", "log lines as text or json, each with run_id and step_id (env GAUNTLET_LOG_FORMAT, default text)")
	fl.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (env GAUNTLET_LOG_LEVEL, default info)")
	fl.StringVar(&f.reviewerKey, "reviewer-keys", "", "reviewers' Ed25519 public keys for signed approvals, one \"NAME KEY\" a line (env GAUNTLET_REVIEWER_KEYS)")
	fl.StringVar(&f.codecKeys, "codec-keys", "", "encrypt payloads with this key ring file, one \"ID:BASE64KEY\" a line, the last encrypting (env "+workerhost.EnvCodecKeysFile+", or the ring itself in "+workerhost.EnvCodecKeys+"); plain payloads when unset")
	fl.DurationVar(&f.gpuInterval, "gpu-interval", workerhost.GPUInterval, "sample the node's NVIDIA GPUs into the --metrics-addr gauges this often (0 = off)")
	fl.BoolVar(&f.spotWatch, "spot-watch", false, "poll EC2 instance metadata for a spot interruption notice, and on one stop the worker and exit with status 7")
	fl.StringVar(&f.spotIMDS, "spot-metadata-endpoint", spot.DefaultEndpoint, "instance metadata service --spot-watch polls")
	fl.StringVar(&f.promTargets, "prometheus-targets-dir", "", "directory Prometheus reads file_sd target files from (deploy/prometheus's targets/): provision writes each node's metrics endpoint there as gpu-workers-<node>.json, destroy removes it (env "+filesd.EnvDir+")")
	f.store.Register(fl)
	f.deploy.Register(fl)
	f.models.Register(fl)
	fl.IntVar(&f.pollers, "pollers", 0, "long polls kept open for each of workflow and activity tasks (0 = the SDK's 2); raise it for wide fan-outs on a partitioned task queue")
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return exitCode(err)
	}
	return 0
}

func exitCode(err error) int {
	var ue *tclient.UnreachableError
	if errors.As(err, &ue) {
		return 6
	}
	var si *workerhost.SpotInterrupted
	if errors.As(err, &si) {
		return exitSpotInterrupted
	}
	return 1
}

// resolve applies, in order of precedence: explicit flags, environment,
// defaults.
func resolve(fs *pflag.FlagSet, f flags, getenv func(string) string) flags {
	out := f
	out.conn = tclient.FromEnv(getenv)
	explicit := func(name string) bool { return fs.Lookup(name).Changed }
	if explicit("address") {
		out.conn.Address = f.conn.Address
	}
	if explicit("namespace") {
		out.conn.Namespace = f.conn.Namespace
	}
	if explicit("tls-cert") {
		out.conn.TLSCert = f.conn.TLSCert
	}
	if explicit("tls-key") {
		out.conn.TLSKey = f.conn.TLSKey
	}
	if explicit("tls-ca") {
		out.conn.TLSCA = f.conn.TLSCA
	}
	if explicit("tls-server-name") {
		out.conn.ServerName = f.conn.ServerName
	}
	if !explicit("task-queue") && getenv("GAUNTLET_TASK_QUEUE") != "" {
		out.taskQueue = getenv("GAUNTLET_TASK_QUEUE")
	}
	if !explicit("reviewer-keys") && getenv("GAUNTLET_REVIEWER_KEYS") != "" {
		out.reviewerKey = getenv("GAUNTLET_REVIEWER_KEYS")
	}
	if !explicit("prometheus-targets-dir") {
		out.promTargets = getenv(filesd.EnvDir)
	}
	if !explicit("pipelines") && getenv("GAUNTLET_PIPELINES") != "" {
		out.pipelines = getenv("GAUNTLET_PIPELINES")
	}
	return out
}

func serve(ctx context.Context, f flags, stdout, stderr io.Writer, getenv func(string) string) error {
	if f.pollers < 0 {
		return fmt.Errorf("--pollers %d: want 0 (the SDK's default) or more", f.pollers)
	}
	if f.promTargets != "" {
		d, err := filesd.Open(f.promTargets)
		if err != nil {
			return fmt.Errorf("--prometheus-targets-dir: %w", err)
		}
		// The steps read it from the environment, like provision's other
		// host settings.
		if err := os.Setenv(filesd.EnvDir, d.Path()); err != nil {
			return fmt.Errorf("--prometheus-targets-dir: %w", err)
		}
		f.promTargets = d.Path()
	}
	// Keys are read before anything starts: a worker that cannot encrypt
	// must not join the cluster and write plain payloads.
	payloadCodec, err := workerhost.LoadCodec(f.codecKeys, getenv)
	if err != nil {
		return err
	}
	storeCfg, warning, err := f.store.Config(f.stateDir, getenv)
	if err != nil {
		return err
	}
	if warning != "" {
		fmt.Fprintln(stderr, "worker: "+warning)
	}
	// The fleet's token file is read before anything starts: a worker
	// that cannot drive its fleet must not take canary steps.
	deployCfg, err := f.deploy.Config(getenv)
	if err != nil {
		return err
	}
	// A library given is loaded before the worker joins: one that is not
	// ONNX Runtime fails the start, not a run's first ONNX model.
	scoringOpts, err := f.models.Options(getenv)
	if err != nil {
		return err
	}
	// The store is reached before the worker joins: one that cannot be
	// used fails the start, not a run's first step.
	ws, err := workerhost.OpenWorkspace(ctx, storeCfg)
	if err != nil {
		return err
	}
	proc, err := workerhost.NewProcess(workerhost.Config{
		Workspace:    ws,
		Pollers:      f.pollers,
		TaskQueue:    f.taskQueue,
		PipelinesDir: f.pipelines,
		StateDir:     f.stateDir,
		NodeID:       f.nodeID,
		ReviewerKeys: f.reviewerKey,
		DeployTarget: deployCfg,
		Scoring:      scoringOpts,
	}, workerhost.ProcessOptions{
		Secrets:     deployCfg.Secrets(),
		Codec:       payloadCodec,
		Stderr:      stderr,
		LogFormat:   cmp.Or(f.logFormat, getenv("GAUNTLET_LOG_FORMAT")),
		LogLevel:    cmp.Or(f.logLevel, getenv("GAUNTLET_LOG_LEVEL")),
		MetricsAddr: f.metricsAddr,
	})
	if err != nil {
		return err
	}
	defer proc.Close()
	logger := proc.Logger
	if proc.MetricsAddr != nil {
		fmt.Fprintf(stdout, "metrics on http://%s/metrics\n", proc.MetricsAddr)
		if f.gpuInterval > 0 {
			stopGPU := watchGPU(ctx, proc.Config.Metrics, f.nodeID, f.gpuInterval, logger)
			defer stopGPU()
		}
	}
	c, err := proc.Dial(ctx, f.conn, 15*time.Second)
	if err != nil {
		return err
	}
	w, err := proc.Start(ctx, c)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "worker polling task queue %s on %s (namespace %s)\n", f.taskQueue, f.conn.Address, f.conn.Namespace)
	fmt.Fprintf(stdout, "artifact store %s, cache %s\n", ws.Store().Location(), ws.Cache().Dir())
	if payloadCodec != nil {
		fmt.Fprintf(stdout, "payloads encrypted: %s\n", payloadCodec)
	}
	if f.promTargets != "" {
		fmt.Fprintf(stdout, "nodes it provisions are published to Prometheus in %s\n", f.promTargets)
	}
	fmt.Fprintf(stdout, "canary and monitor steps deploy to %s\n", deployCfg.Describe())
	var notices <-chan spot.Notice
	if f.spotWatch {
		var stopSpot func()
		notices, stopSpot = workerhost.WatchSpot(ctx, f.spotIMDS, spot.DefaultInterval, logger)
		defer stopSpot()
		fmt.Fprintf(stdout, "watching %s for a spot interruption notice\n", f.spotIMDS)
	}
	// Stop waits for running activities up to the worker's stop timeout, so
	// a deploy does not cut a training epoch in half without a heartbeat.
	return workerhost.ServeUntil(ctx, w, notices, logger)
}

// watchGPU samples the node's GPUs into m under the node id, or the host
// name of a worker not started by provisioning, so each node's series
// stay apart.
func watchGPU(ctx context.Context, m *metrics.Metrics, nodeID string, every time.Duration, logger *slog.Logger) (stop func()) {
	node := nodeID
	if node == "" {
		host, err := os.Hostname()
		if err != nil {
			host = "unknown"
		}
		node = host
	}
	src := gpu.NewNVML()
	stopWatch := workerhost.WatchGPU(ctx, src, m, node, every, logger)
	return func() {
		stopWatch()
		if err := src.Close(); err != nil {
			logger.Warn("closing NVML", "error", err)
		}
	}
}

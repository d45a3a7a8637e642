package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gauntlet-ml/gauntlet/internal/codec"
	"github.com/gauntlet-ml/gauntlet/internal/deploy"
	"github.com/gauntlet-ml/gauntlet/internal/devstack"
	"github.com/gauntlet-ml/gauntlet/internal/searchattr"
	"github.com/gauntlet-ml/gauntlet/internal/tclient"
	"github.com/gauntlet-ml/gauntlet/internal/workerhost"
)

type devFlags struct {
	db        string
	ephemeral bool
	ip        string
	port      int
	uiPort    int
	headless  bool
	logFile   string
	pipelines string
	state     string
	keys      string
	metrics   string
	logFormat string
	store     workerhost.StoreFlags
	deploy    deploy.Flags
	models    workerhost.ModelFlags
}

func (a *app) devCommand() *cobra.Command {
	var f devFlags
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a Temporal server, its Web UI and a Gauntlet worker in one process",
		Long: `dev starts a real Temporal server persisted to SQLite (or in memory with
--ephemeral), the Temporal Web UI, and a worker on the gauntlet task queue with
every workflow and activity registered. Stop it with Ctrl-C; history survives
a kill when it is kept on a file.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return a.runDev(ctx, f, cmd.Flags().Changed("namespace"))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.db, "db", filepath.Join(".gauntlet", "temporal.db"), "SQLite file that keeps all history")
	fl.BoolVar(&f.ephemeral, "ephemeral", false, "keep history in memory only")
	fl.StringVar(&f.ip, "ip", "127.0.0.1", "IP address the frontend and UI bind to")
	fl.IntVarP(&f.port, "port", "p", 7233, "frontend gRPC port")
	fl.IntVar(&f.uiPort, "ui-port", 8233, "Web UI port")
	fl.BoolVar(&f.headless, "headless", false, "run without the Web UI")
	fl.StringVar(&f.logFile, "log-file", filepath.Join(".gauntlet", "temporal.log"), "where the Temporal server writes its own log")
	fl.StringVar(&f.pipelines, "pipelines", "", "directory of pipeline definitions (env "+EnvPipelines+", default ./pipelines)")
	fl.StringVar(&f.state, "state-dir", ".gauntlet", "directory for artifacts and other local state")
	fl.StringVar(&f.logFormat, "log-format", "", "the worker's log lines as text or json (env GAUNTLET_LOG_FORMAT, default text)")
	fl.StringVar(&f.keys, "reviewer-keys", "", "reviewers' Ed25519 public keys for signed approvals (env GAUNTLET_REVIEWER_KEYS)")
	fl.StringVar(&f.metrics, "metrics-addr", "", "serve Prometheus /metrics on this host:port (off when empty)")
	f.store.Register(fl)
	f.deploy.Register(fl)
	f.models.Register(fl)
	return cmd
}

func (f devFlags) stackOptions(namespace string) (devstack.Options, error) {
	if f.port <= 0 || f.port > 65535 {
		return devstack.Options{}, usagef("--port %d is not a TCP port", f.port)
	}
	if f.uiPort <= 0 || f.uiPort > 65535 {
		return devstack.Options{}, usagef("--ui-port %d is not a TCP port", f.uiPort)
	}
	if net.ParseIP(f.ip) == nil {
		return devstack.Options{}, usagef("--ip %q is not an IP address", f.ip)
	}
	o := devstack.Defaults()
	o.FrontendAddr = net.JoinHostPort(f.ip, strconv.Itoa(f.port))
	o.UIAddr = net.JoinHostPort(f.ip, strconv.Itoa(f.uiPort))
	if f.headless {
		o.UIAddr = ""
	}
	o.DBPath = f.db
	if f.ephemeral {
		o.DBPath = ""
	}
	o.LogPath = f.logFile
	o.Namespace = namespace
	o.SearchAttributes = searchattr.Definitions()
	return o, nil
}

func (a *app) runDev(ctx context.Context, f devFlags, namespaceGiven bool) error {
	ns := tclient.DefaultNamespace
	if namespaceGiven || a.getenv(tclient.EnvNamespace) != "" {
		ns = a.conn.Namespace
	}
	opts, err := f.stackOptions(ns)
	if err != nil {
		return err
	}
	payloadCodec, err := a.loadCodec()
	if err != nil {
		return err
	}
	storeCfg, warning, err := f.store.Config(f.state, a.getenv)
	if err != nil {
		return withCode(ExitUsage, err)
	}
	if warning != "" {
		fmt.Fprintln(a.stderr, "gauntlet: "+warning)
	}
	deployCfg, err := f.deploy.Config(a.getenv)
	if err != nil {
		return withCode(ExitUsage, err)
	}
	scoringOpts, err := f.models.Options(a.getenv)
	if err != nil {
		return withCode(ExitUsage, err)
	}
	began := time.Now()
	ws, err := workerhost.OpenWorkspace(ctx, storeCfg)
	if err != nil {
		return err
	}
	pipelines := a.pipelinesDir(f.pipelines)
	// Metrics are served before the stack starts: a taken port then fails
	// in milliseconds, not after Temporal has come up.
	proc, err := workerhost.NewProcess(workerhost.Config{
		Workspace:    ws,
		TaskQueue:    a.taskQueue,
		PipelinesDir: pipelines,
		StateDir:     f.state,
		ReviewerKeys: cmp.Or(f.keys, a.getenv("GAUNTLET_REVIEWER_KEYS")),
		DeployTarget: deployCfg,
		Scoring:      scoringOpts,
	}, workerhost.ProcessOptions{
		Secrets:     deployCfg.Secrets(),
		Codec:       payloadCodec,
		Stderr:      a.stderr,
		LogFormat:   cmp.Or(f.logFormat, a.getenv("GAUNTLET_LOG_FORMAT")),
		LogLevel:    a.getenv("GAUNTLET_LOG_LEVEL"),
		MetricsAddr: f.metrics,
	})
	var settings *workerhost.SettingsError
	if errors.As(err, &settings) {
		return usagef("%v", err)
	}
	if err != nil {
		return err
	}
	defer proc.Close()
	var codecURL string
	// The UI shows payloads as stored; it decrypts them through a codec
	// endpoint that the browser calls.
	if payloadCodec != nil && opts.UIAddr != "" {
		addr, stopCodec, _, err := serveCodec(net.JoinHostPort(f.ip, "0"), payloadCodec, codec.ServerOptions{Origins: devCodecOrigins(opts.UIAddr)})
		if err != nil {
			return fmt.Errorf("codec endpoint for the UI: %w", err)
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = stopCodec(sctx)
		}()
		codecURL = "http://" + addr.String()
		opts.CodecEndpoint = codecURL
	}
	stack, err := devstack.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer stack.Stop()
	c, err := proc.Dial(ctx, tclient.Options{Address: stack.FrontendAddr(), Namespace: stack.Namespace()}, 30*time.Second)
	if err != nil {
		return err
	}
	w, err := proc.Start(ctx, c)
	if err != nil {
		return err
	}
	defer w.Stop()

	where := "history in memory only (--ephemeral)"
	if opts.DBPath != "" {
		where = "history in " + opts.DBPath
	}
	fmt.Fprintf(a.stdout, "Temporal server  %s (namespace %s, %s)\n", stack.FrontendAddr(), stack.Namespace(), where)
	if u := stack.UIURL(); u != "" {
		fmt.Fprintf(a.stdout, "Temporal UI      %s/namespaces/%s/workflows\n", u, stack.Namespace())
	}
	fmt.Fprintf(a.stdout, "Worker           task queue %s, pipelines from %s\n", a.taskQueue, pipelines)
	fmt.Fprintf(a.stdout, "Artifact store   %s (cache %s)\n", ws.Store().Location(), ws.Cache().Dir())
	fmt.Fprintf(a.stdout, "Deploys to       %s\n", deployCfg.Describe())
	if proc.MetricsAddr != nil {
		fmt.Fprintf(a.stdout, "Metrics          http://%s/metrics\n", proc.MetricsAddr)
	}
	if payloadCodec != nil {
		fmt.Fprintf(a.stdout, "Payloads         encrypted (%s)\n", payloadCodec)
	}
	if codecURL != "" {
		fmt.Fprintf(a.stdout, "Codec endpoint   %s (the UI decrypts through it)\n", codecURL)
	}
	fmt.Fprintf(a.stdout, "Ready in %s. Press Ctrl-C to stop.\n", time.Since(began).Round(time.Millisecond))

	select {
	case <-ctx.Done():
		fmt.Fprintln(a.stdout, "Stopping.")
		return nil
	case err := <-stack.UIErr():
		return err
	}
}

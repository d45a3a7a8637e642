// Package devstack runs a real Temporal server (SQLite-backed, on a file or in
// memory) and the Temporal Web UI inside the current process. It is the
// embedded default that `gauntlet dev`, `make demo` and the integration tests
// stand on; it knows nothing of Gauntlet's workflows.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uiserveroptions "github.com/temporalio/ui-server/v2/server/server_options"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
	"google.golang.org/protobuf/types/known/durationpb"
)

const clusterName = "active"

// Options configures the embedded stack. The zero value is not usable; start
// from Defaults.
type Options struct {
	// DBPath is the SQLite file that keeps all history. Empty keeps it in
	// memory: fast, and gone when the process ends.
	DBPath string
	// FrontendAddr is host:port of the gRPC frontend that workers and the CLI
	// dial.
	FrontendAddr string
	// UIAddr is host:port of the Web UI; empty runs no UI.
	UIAddr string
	// Namespace is created (and kept) with Retention and SearchAttributes.
	Namespace        string
	Retention        time.Duration
	SearchAttributes map[string]enumspb.IndexedValueType
	// LogPath receives the server's own log; empty discards it, because the
	// server is chatty at info level and the person watching wants Gauntlet's
	// output, not Temporal's.
	LogPath  string
	LogLevel string
	// CodecEndpoint is handed to the UI so it can show decrypted payloads.
	CodecEndpoint string
}

// Defaults returns the options of `gauntlet dev`.
func Defaults() Options {
	return Options{
		DBPath:       filepath.Join(".gauntlet", "temporal.db"),
		FrontendAddr: "127.0.0.1:7233",
		UIAddr:       "127.0.0.1:8233",
		Namespace:    "default",
		Retention:    7 * 24 * time.Hour,
		LogLevel:     "warn",
	}
}

// Stack is a running server and UI.
type Stack struct {
	opts   Options
	server temporal.Server
	ui     *uiserver.Server
	uiErr  chan error
}

// Start brings the stack up and returns once the frontend accepts calls and
// the UI (when asked for) accepts connections.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	host, port, err := splitHostPort("frontend", opts.FrontendAddr)
	if err != nil {
		return nil, err
	}
	if err := ensureFree("frontend", opts.FrontendAddr, "--port"); err != nil {
		return nil, err
	}
	if opts.UIAddr != "" {
		if err := ensureFree("UI", opts.UIAddr, "--ui-port"); err != nil {
			return nil, err
		}
	}
	sqlConf, err := prepareDB(opts)
	if err != nil {
		return nil, err
	}
	conf, err := serverConfig(opts, host, port, sqlConf)
	if err != nil {
		return nil, err
	}
	logger, err := serverLogger(opts)
	if err != nil {
		return nil, err
	}
	authorizer, err := authorization.GetAuthorizerFromConfig(&conf.Global.Authorization)
	if err != nil {
		return nil, fmt.Errorf("devstack: authorizer: %w", err)
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&conf.Global.Authorization, logger)
	if err != nil {
		return nil, fmt.Errorf("devstack: claim mapper: %w", err)
	}
	hosts := map[primitives.ServiceName]static.Hosts{}
	for name, svc := range conf.Services {
		hosts[primitives.ServiceName(name)] = static.SingleLocalHost(net.JoinHostPort(host, strconv.Itoa(svc.RPC.GRPCPort)))
	}
	server, err := temporal.NewServer(
		temporal.WithConfig(conf),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(DynamicConfig()),
	)
	if err != nil {
		return nil, dbError(opts, fmt.Errorf("devstack: create server: %w", err))
	}
	if err := server.Start(); err != nil {
		return nil, dbError(opts, fmt.Errorf("devstack: start server: %w", err))
	}
	s := &Stack{opts: opts, server: server, uiErr: make(chan error, 1)}
	if err := s.reconcileNamespace(ctx); err != nil {
		_ = server.Stop()
		return nil, err
	}
	if opts.UIAddr != "" {
		if err := s.startUI(ctx); err != nil {
			_ = server.Stop()
			return nil, err
		}
	}
	return s, nil
}

// FrontendAddr is where clients dial.
func (s *Stack) FrontendAddr() string { return s.opts.FrontendAddr }

// Namespace is the namespace the stack keeps.
func (s *Stack) Namespace() string { return s.opts.Namespace }

// UIURL is the Web UI's address, or "" when no UI runs.
func (s *Stack) UIURL() string {
	if s.opts.UIAddr == "" {
		return ""
	}
	return "http://" + s.opts.UIAddr
}

// UIErr reports a UI server that stopped on its own.
func (s *Stack) UIErr() <-chan error { return s.uiErr }

// Stop shuts the UI and the server down. History already written stays in
// the SQLite file.
func (s *Stack) Stop() error {
	if s.ui != nil {
		s.ui.Stop()
	}
	return s.server.Stop()
}

func (o Options) check() error {
	if o.FrontendAddr == "" {
		return errors.New("devstack: no frontend address")
	}
	if o.Namespace == "" {
		return errors.New("devstack: no namespace")
	}
	if o.Retention <= 0 {
		return errors.New("devstack: namespace retention must be positive")
	}
	return nil
}

func splitHostPort(what, addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s address %q is not host:port: %w", what, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%s address %q has no valid port", what, addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return host, port, nil
}

// ensureFree turns the server's deep "bind: address already in use" into a
// sentence naming the flag that changes the port.
func ensureFree(what, addr, flag string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s address %s is not available (%v): stop whatever holds it or choose another with %s", what, addr, errors.Unwrap(err), flag)
	}
	return l.Close()
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("devstack: find a free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var sqliteMagic = []byte("SQLite format 3\x00")

// prepareDB creates the schema for a new file and registers the namespace.
// Checking the file up front gives a person a sentence about the file rather
// than a persistence stack trace.
func prepareDB(opts Options) (*config.SQL, error) {
	conf := &config.SQL{PluginName: sqliteplugin.PluginName}
	// The SQLite plugin creates the schema of an in-memory database itself.
	fresh := false
	if opts.DBPath == "" {
		conf.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
		// Each in-memory stack in one process needs its own database name.
		conf.DatabaseName = "gauntlet-" + strconv.FormatUint(rand.Uint64(), 36)
	} else {
		path, err := filepath.Abs(opts.DBPath)
		if err != nil {
			return nil, fmt.Errorf("database file %s: %w", opts.DBPath, err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("database file %s: cannot create its directory: %w", path, err)
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("database file %s is not writable: %w (choose another with --db, or --ephemeral)", path, err)
		}
		head := make([]byte, len(sqliteMagic))
		n, _ := f.Read(head)
		f.Close()
		switch {
		case n == 0:
			fresh = true
		case n < len(sqliteMagic) || string(head) != string(sqliteMagic):
			return nil, fmt.Errorf("database file %s is not an SQLite database (corrupt or foreign): move it away or choose another with --db", path)
		}
		conf.ConnectAttributes = map[string]string{"mode": "rwc", "journal_mode": "wal", "synchronous": "normal", "busy_timeout": "10000"}
		conf.DatabaseName = path
	}
	if fresh {
		if err := sqliteschema.SetupSchema(conf); err != nil {
			return nil, dbError(opts, fmt.Errorf("set up schema: %w", err))
		}
	}
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, opts.Namespace, false, opts.SearchAttributes)
	if err != nil {
		return nil, fmt.Errorf("devstack: namespace %s: %w", opts.Namespace, err)
	}
	ns.Detail.Config.Retention = durationpb.New(opts.Retention)
	if err := sqliteschema.CreateNamespaces(conf, ns); err != nil {
		return nil, dbError(opts, fmt.Errorf("register namespace %s: %w", opts.Namespace, err))
	}
	return conf, nil
}

func dbError(opts Options, err error) error {
	if opts.DBPath == "" {
		return err
	}
	return fmt.Errorf("database file %s: %w (if the file is damaged, move it away or choose another with --db)", opts.DBPath, err)
}

func serverConfig(opts Options, host string, port int, sqlConf *config.SQL) (*config.Config, error) {
	var conf config.Config
	conf.Global.Membership.MaxJoinDuration = 30 * time.Second
	conf.Global.Membership.BroadcastAddress = host
	conf.Persistence.DefaultStore = "sqlite"
	conf.Persistence.VisibilityStore = "sqlite"
	conf.Persistence.NumHistoryShards = 1
	conf.Persistence.DataStores = map[string]config.DataStore{"sqlite": {SQL: sqlConf}}
	httpPort, err := freePort(host)
	if err != nil {
		return nil, err
	}
	frontend := net.JoinHostPort(host, strconv.Itoa(port))
	conf.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {
				Enabled:                true,
				InitialFailoverVersion: 1,
				RPCAddress:             frontend,
				HTTPAddress:            net.JoinHostPort(host, strconv.Itoa(httpPort)),
				ClusterID:              "gauntlet-dev",
			},
		},
	}
	conf.DCRedirectionPolicy.Policy = "noop"
	conf.Services = map[string]config.Service{}
	for _, name := range []string{"frontend", "history", "matching", "worker"} {
		var svc config.Service
		svc.RPC.BindOnIP = host
		if name == "frontend" {
			svc.RPC.GRPCPort = port
			svc.RPC.HTTPPort = httpPort
		} else {
			p, err := freePort(host)
			if err != nil {
				return nil, err
			}
			svc.RPC.GRPCPort = p
		}
		conf.Services[name] = svc
	}
	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	conf.PublicClient.HostPort = frontend
	return &conf, nil
}

// DynamicConfig is the embedded server's dynamic config; the compose
// stack's deploy/temporal/dynamicconfig.yaml shares the settings that apply
// to a server on one host. It lifts the per-shard poll rate limits: with one shard their
// defaults put a floor of about 50 ms under every sequential step. The queue
// processors prune finished tasks only at each ack-level update, and until
// then split and merge over all of them for every new task: at the default
// 30 s a busy dev server spent a sixth of its CPU there (bench/interp). A
// long poll for a run's result waits out the expiration interval when it
// misses the run's close (about one in a hundred here: the server keeps one
// unread notification per poller and drops the next, which a loaded machine
// reaches); 3 s rather than 20 s bounds what `--wait` can lose. One worker fleet on one host gains nothing
// from four task queue partitions: a task on a partition without a waiting
// poller sat in the backlog, and a fan-out of twenty steps took 100-500 ms
// instead of about 40.
func DynamicConfig() dynamicconfig.StaticClient {
	return dynamicconfig.StaticClient{
		dynamicconfig.TransferProcessorMaxPollRPS.Key():                  10000,
		dynamicconfig.TimerProcessorMaxPollRPS.Key():                     10000,
		dynamicconfig.VisibilityProcessorMaxPollRPS.Key():                10000,
		dynamicconfig.OutboundProcessorMaxPollRPS.Key():                  10000,
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key():                 8192,
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 1000,
		dynamicconfig.TransferProcessorUpdateAckInterval.Key():           time.Second,
		dynamicconfig.VisibilityProcessorUpdateAckInterval.Key():         time.Second,
		dynamicconfig.OutboundProcessorUpdateAckInterval.Key():           time.Second,
		dynamicconfig.HistoryLongPollExpirationInterval.Key():            3 * time.Second,
		dynamicconfig.MatchingNumTaskqueueReadPartitions.Key():           1,
		dynamicconfig.MatchingNumTaskqueueWritePartitions.Key():          1,
	}
}

func serverLogger(opts Options) (log.Logger, error) {
	if opts.LogPath == "" {
		return log.NewNoopLogger(), nil
	}
	if err := os.MkdirAll(filepath.Dir(opts.LogPath), 0o755); err != nil {
		return nil, fmt.Errorf("server log %s: %w", opts.LogPath, err)
	}
	level := opts.LogLevel
	if level == "" {
		level = "warn"
	}
	return log.NewZapLogger(log.BuildZapLogger(log.Config{Level: level, OutputFile: opts.LogPath, Format: "json"})), nil
}

func (s *Stack) startUI(ctx context.Context) error {
	host, port, err := splitHostPort("UI", s.opts.UIAddr)
	if err != nil {
		return err
	}
	s.ui = uiserver.NewServer(uiserveroptions.WithConfigProvider(&uiconfig.Config{
		Host:                host,
		Port:                port,
		TemporalGRPCAddress: s.opts.FrontendAddr,
		EnableUI:            true,
		DefaultNamespace:    s.opts.Namespace,
		Codec:               uiconfig.Codec{Endpoint: s.opts.CodecEndpoint},
		// Plain http on loopback: without this the CSRF cookie is never
		// sent back and every write action in the UI fails.
		CORS:             uiconfig.CORS{CookieInsecure: true},
		HideLogs:         true,
		DisableNewsFetch: true,
	}))
	go func() {
		if err := s.ui.Start(); err != nil {
			s.uiErr <- fmt.Errorf("UI server on %s: %w", s.opts.UIAddr, err)
		}
	}()
	return waitDial(ctx, s.opts.UIAddr, s.uiErr)
}

func waitDial(ctx context.Context, addr string, failed <-chan error) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			return c.Close()
		}
		select {
		case err := <-failed:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("UI server on %s did not start accepting connections within 20s", addr)
		}
	}
}

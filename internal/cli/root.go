// Package cli is the `gauntlet` command line: starting and following runs
// from CI, approvals, schedules, the embedded dev stack and running single
// steps without Temporal.
package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/tclient"
	"github.com/gauntlet-ml/gauntlet/internal/workerhost"
)

// Version is set at link time (-ldflags "-X ...cli.Version=...").
var Version = "dev"

// Env are the environment variables Gauntlet itself reads.
const (
	EnvUser      = "GAUNTLET_USER"
	EnvPipelines = "GAUNTLET_PIPELINES"
	EnvTaskQueue = "GAUNTLET_TASK_QUEUE"
)

// app holds what every command shares: streams, the environment and the
// global flags.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string

	conn      tclient.Options
	flagConn  tclient.Options
	output    string
	taskQueue string
	dialWait  time.Duration
	// uiBase overrides GAUNTLET_UI_URL when this process runs the UI.
	uiBase string
	// codecKeys is the --codec-keys file; see loadCodec.
	codecKeys string
}

// Main runs the CLI and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdout: stdout, stderr: stderr, getenv: getenv}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err != nil {
		fmt.Fprintf(stderr, "gauntlet: %v\n", err)
	}
	return codeOf(err)
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "gauntlet",
		Short: "Run ML models through the gauntlet: train, evaluate, gate, approve, canary, monitor",
		Long: `Gauntlet takes a model from data to production through durable Temporal workflows
declared as YAML pipelines. Exit codes: 0 ok, 1 failed, 2 usage, 3 rejected,
4 timed out, 5 canceled, 6 Temporal unreachable, 7 invalid pipeline, 8 not found.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.resolveGlobals(cmd.Flags())
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withCode(ExitUsage, err) })
	pf := root.PersistentFlags()
	pf.StringVar(&a.flagConn.Address, "address", tclient.DefaultAddress, "Temporal frontend host:port (env "+tclient.EnvAddress+")")
	pf.StringVarP(&a.flagConn.Namespace, "namespace", "n", tclient.DefaultNamespace, "Temporal namespace (env "+tclient.EnvNamespace+")")
	pf.StringVar(&a.flagConn.TLSCert, "tls-cert", "", "client certificate for mTLS (env "+tclient.EnvTLSCert+")")
	pf.StringVar(&a.flagConn.TLSKey, "tls-key", "", "client private key for mTLS (env "+tclient.EnvTLSKey+")")
	pf.StringVar(&a.flagConn.TLSCA, "tls-ca", "", "CA certificate that signed the server's (env "+tclient.EnvTLSCA+")")
	pf.StringVar(&a.flagConn.ServerName, "tls-server-name", "", "server name to verify (env "+tclient.EnvServerName+")")
	pf.StringVarP(&a.output, "output", "o", "text", "output format: text or json")
	pf.StringVar(&a.taskQueue, "task-queue", "gauntlet", "task queue of the Gauntlet workers (env "+EnvTaskQueue+")")
	pf.DurationVar(&a.dialWait, "connect-timeout", 10*time.Second, "how long to wait for Temporal to answer")
	pf.StringVar(&a.codecKeys, "codec-keys", "", "payload encryption key ring file, the workers' own (env "+workerhost.EnvCodecKeysFile+", or the ring itself in "+workerhost.EnvCodecKeys+")")

	root.AddCommand(
		a.runCommand(),
		a.retryCommand(),
		a.statusCommand(),
		a.watchCommand(),
		a.historyCommand(),
		a.listCommand(),
		a.cancelCommand(),
		a.decisionCommand(contract.ApproveName),
		a.decisionCommand(contract.RejectName),
		a.keysCommand(),
		a.stepCommand(),
		a.scheduleCommand(),
		a.modelsCommand(),
		a.rollbackCommand(),
		a.serveCommand(),
		a.routerCommand(),
		a.trafficCommand(),
		a.validateCommand(),
		a.planCommand(),
		a.devCommand(),
		a.codecServerCommand(),
		a.demoCommand(),
		a.versionCommand(),
	)
	return root
}

// resolveGlobals applies the environment under explicit flags: a flag given
// on the command line wins, then the environment, then the default.
func (a *app) resolveGlobals(fs *pflag.FlagSet) error {
	c := tclient.FromEnv(a.getenv)
	pick := func(dst *string, flag, fromFlag string) {
		if f := fs.Lookup(flag); f != nil && f.Changed {
			*dst = fromFlag
		}
	}
	pick(&c.Address, "address", a.flagConn.Address)
	pick(&c.Namespace, "namespace", a.flagConn.Namespace)
	pick(&c.TLSCert, "tls-cert", a.flagConn.TLSCert)
	pick(&c.TLSKey, "tls-key", a.flagConn.TLSKey)
	pick(&c.TLSCA, "tls-ca", a.flagConn.TLSCA)
	pick(&c.ServerName, "tls-server-name", a.flagConn.ServerName)
	a.conn = c
	if f := fs.Lookup("task-queue"); (f == nil || !f.Changed) && a.getenv(EnvTaskQueue) != "" {
		a.taskQueue = a.getenv(EnvTaskQueue)
	}
	switch a.output {
	case "text", "json":
	default:
		return usagef("--output must be text or json, not %q", a.output)
	}
	return nil
}

func (a *app) dial(ctx context.Context) (client.Client, error) {
	c, err := a.loadCodec()
	if err != nil {
		return nil, err
	}
	if c == nil {
		return tclient.Dial(ctx, a.conn, a.dialWait)
	}
	return tclient.Dial(ctx, a.conn, a.dialWait, c.DialOption)
}

func (a *app) jsonOut() bool { return a.output == "json" }

// printJSON writes v as one indented JSON document: the stable,
// machine-readable form scripts parse.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// user is the caller's identity for approvals and run attribution.
func (a *app) user(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if u := a.getenv(EnvUser); u != "" {
		return u
	}
	if u := a.getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}

func (a *app) pipelinesDir(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if d := a.getenv(EnvPipelines); d != "" {
		return d
	}
	return "pipelines"
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the Gauntlet version",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			if a.jsonOut() {
				return a.printJSON(map[string]string{"version": Version, "temporal_server": TemporalServerVersion, "temporal_sdk": TemporalSDKVersion})
			}
			fmt.Fprintf(a.stdout, "gauntlet %s (Temporal server %s, SDK %s)\n", Version, TemporalServerVersion, TemporalSDKVersion)
			return nil
		},
	}
}

// Versions of the Temporal parts linked in, for bug reports.
const (
	TemporalServerVersion = "v1.32.0"
	TemporalSDKVersion    = "v1.50.0"
)

// Run is the entry point of cmd mains.
func Run() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

func splitKV(s string) (string, string, bool) {
	k, v, ok := strings.Cut(s, "=")
	return strings.TrimSpace(k), v, ok && strings.TrimSpace(k) != ""
}

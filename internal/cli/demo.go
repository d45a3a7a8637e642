package cli

import (
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

	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/deploy"
	"github.com/gauntlet-ml/gauntlet/internal/devstack"
	"github.com/gauntlet-ml/gauntlet/internal/searchattr"
	"github.com/gauntlet-ml/gauntlet/internal/tclient"
	"github.com/gauntlet-ml/gauntlet/internal/workerhost"
)

func (a *app) demoCommand() *cobra.Command {
	var pipeline, state string
	var params []string
	var keep bool
	var export string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a pipeline end to end on a fresh embedded stack and print a summary",
		Long: `demo starts an in-memory Temporal server, its Web UI and a worker in this
process and runs the credit-risk gauntlet through them on a fresh registry:
a first model (no champion to compare with), then a retrained one that is
evaluated against it, fairness-gated and mitigated, approved, quantized,
canaried under generated traffic and promoted, then watched while drifted
traffic comes in until the monitor rolls production back and starts a
retraining run, which the demo follows through the gauntlet too. GPU nodes
are local processes provisioned and destroyed through Terraform (make tools).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return a.runDemo(ctx, pipeline, params, state, keep, export)
		},
	}
	cmd.Flags().StringVar(&pipeline, "pipeline", "credit-risk", "pipeline to run; credit-risk tells the whole story in two runs, any other runs once")
	cmd.Flags().StringArrayVarP(&params, "param", "p", nil, "pipeline parameter as key=value (repeatable)")
	cmd.Flags().StringVar(&state, "state-dir", filepath.Join(".gauntlet", "demo"), "directory for the demo's artifacts, registry and nodes (emptied at the start)")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the stack and UI up after the run until Ctrl-C")
	cmd.Flags().StringVar(&export, "export-histories", "", "write every workflow's history to this directory (JSON, as `gauntlet history` does) before stopping")
	return cmd
}

// loopbackAddr prefers the usual port so the printed UI link is the familiar
// one, and falls back to any free port when another stack holds it.
func loopbackAddr(preferred int) (string, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(preferred))
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		return addr, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (a *app) runDemo(ctx context.Context, pipeline string, kv []string, state string, keep bool, export string) error {
	params, err := parseParams(kv)
	if err != nil {
		return err
	}
	if err := a.precheck(pipeline, a.pipelinesDir(""), params); err != nil {
		return err
	}
	opts := devstack.Defaults()
	opts.DBPath = ""
	opts.LogPath = filepath.Join(state, "temporal.log")
	opts.SearchAttributes = searchattr.Definitions()
	if opts.FrontendAddr, err = loopbackAddr(7233); err != nil {
		return err
	}
	if opts.UIAddr, err = loopbackAddr(8233); err != nil {
		return err
	}
	if err := prepareDemoState(state); err != nil {
		return err
	}
	if state, err = filepath.Abs(state); err != nil {
		return err
	}
	began := time.Now()
	fmt.Fprintln(a.stdout, "Starting the embedded Temporal server, Web UI and worker…")
	stack, err := devstack.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer stack.Stop()
	a.conn = tclient.Options{Address: stack.FrontendAddr(), Namespace: stack.Namespace()}
	// Through a.dial, so that --codec-keys encrypts the demo's payloads
	// as it would any other client's and worker's.
	a.dialWait = 30 * time.Second
	c, err := a.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	// Nodes that provisioning starts are workers of their own: they find
	// this stack through the environment, as on a real fleet.
	os.Setenv(tclient.EnvAddress, a.conn.Address)
	os.Setenv(tclient.EnvNamespace, a.conn.Namespace)
	ws, err := workspace.Open(ctx, workspace.Config{StateDir: state})
	if err != nil {
		return err
	}
	local := deploy.NewLocal(deploy.Options{StateDir: state, Workspace: ws})
	defer local.Close(context.Background())
	targets, err := deploy.NewSet(deploy.Embedded, local)
	if err != nil {
		return err
	}
	w, err := workerhost.New(c, workerhost.Config{TaskQueue: a.taskQueue, PipelinesDir: a.pipelinesDir(""), StateDir: state, Workspace: ws, Deploy: targets})
	if err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	defer w.Stop()
	a.uiBase = stack.UIURL()
	fmt.Fprintf(a.stdout, "Stack ready in %s. Temporal UI: %s/namespaces/%s/workflows\n", time.Since(began).Round(time.Millisecond), stack.UIURL(), stack.Namespace())

	var runErr error
	if pipeline == "credit-risk" {
		runErr = a.demoStory(ctx, pipeline, kv, local, ws.Store().Location())
	} else {
		runErr = a.run(ctx, pipeline, runFlags{params: kv, wait: true, as: a.user("")})
	}
	fmt.Fprintf(a.stdout, "Artifacts, registry and node logs: %s\n", state)
	if export != "" {
		n, err := exportHistories(ctx, c, export)
		if err != nil {
			return errors.Join(runErr, fmt.Errorf("export histories: %w", err))
		}
		fmt.Fprintf(a.stdout, "Exported %d workflow histories to %s\n", n, export)
	}
	fmt.Fprintf(a.stdout, "Demo finished in %s.\n", time.Since(began).Round(time.Millisecond))
	if keep && ctx.Err() == nil {
		fmt.Fprintln(a.stdout, "Stack kept up (--keep). Press Ctrl-C to stop.")
		<-ctx.Done()
	}
	return runErr
}

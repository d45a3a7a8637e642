package cli

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/stepcli"
	"github.com/gauntlet-ml/gauntlet/internal/steps"
	"github.com/gauntlet-ml/gauntlet/internal/workerhost"
)

func (a *app) stepCommand() *cobra.Command {
	var with []string
	var out, state string
	var store workerhost.StoreFlags
	var models workerhost.ModelFlags
	cmd := &cobra.Command{
		Use:   "step TYPE --with key=value ... --out DIR",
		Short: "Run one step type without Temporal, writing DIR/outputs.json",
		Long: `step runs the same code a pipeline's activity runs, here and now: useful to
try a step on your data, or to use Gauntlet's training and gates from a script.
Progress is printed; outputs go to DIR/outputs.json. Values that look like JSON
({...} or [...]) are decoded as JSON. ` + "`gauntlet step TYPE --help`" + ` lists what
TYPE takes and gives.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("--out DIR is required")
			}
			kv := map[string]string{}
			for _, w := range with {
				k, v, ok := splitKV(w)
				if !ok {
					return usagef("--with %q is not key=value", w)
				}
				kv[k] = v
			}
			if _, ok := steps.Lookup(args[0]); !ok {
				return withCode(ExitNotFound, fmt.Errorf("no step type %q (known: %v)", args[0], steps.Catalog{}.Names()))
			}
			stateDir := state
			if stateDir == "" {
				stateDir = filepath.Join(out, ".state")
			}
			cfg, warning, err := store.Config(stateDir, a.getenv)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			if warning != "" {
				fmt.Fprintln(a.stderr, "gauntlet: "+warning)
			}
			scoringOpts, err := models.Options(a.getenv)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			ws, err := workspace.Open(cmd.Context(), cfg)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			err = stepcli.RunWith(cmd.Context(), args[0], kv, out, a.stdout, stepcli.Options{StateDir: stateDir, Workspace: ws, Scoring: scoringOpts, ProgressInterval: 250 * time.Millisecond})
			if err != nil {
				if _, retryable := steps.Classify(err); !retryable {
					return withCode(ExitInvalid, err)
				}
				return err
			}
			return nil
		},
	}
	// With a type named, help is the type's: its inputs and outputs as it
	// declares them to the validator.
	defaultHelp := cmd.HelpFunc()
	cmd.SetHelpFunc(func(c *cobra.Command, args []string) {
		for _, a := range args {
			if t, ok := steps.Lookup(a); ok && c == cmd {
				if err := steps.Describe(c.OutOrStdout(), t); err != nil {
					fmt.Fprintln(c.ErrOrStderr(), err)
				}
				return
			}
		}
		defaultHelp(c, args)
	})
	cmd.Flags().StringArrayVar(&with, "with", nil, "step input as key=value (repeatable)")
	cmd.Flags().StringVar(&out, "out", "", "directory for outputs.json and artifacts")
	cmd.Flags().StringVar(&state, "state-dir", "", "local state (node state, the default store and cache); default DIR/.state")
	store.Register(cmd.Flags())
	models.Register(cmd.Flags())
	return cmd
}

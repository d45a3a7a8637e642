package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
	"github.com/gauntlet-ml/gauntlet/internal/workerhost"
)

// EnvRegistry is the old name of the store that holds the registry; see
// workerhost.ResolveStore.
const EnvRegistry = workerhost.EnvRegistry

// storeURL is the store a command reads or writes: --store, the old
// --registry, GAUNTLET_STORE or the old GAUNTLET_REGISTRY, else the
// worker's default under stateDir.
func (a *app) storeURL(store, registryFlag, stateDir string) (string, error) {
	if registryFlag != "" {
		if store != "" && store != registryFlag {
			return "", usagef("--registry %s and --store %s differ: the registry lives in the store; give --store only", workspace.Redact(registryFlag), workspace.Redact(store))
		}
		fmt.Fprintln(a.stderr, "gauntlet: --registry is read as --store: the registry lives in the one store every worker shares")
		store = registryFlag
	}
	store, warning, err := workerhost.ResolveStore(store, a.getenv)
	if err != nil {
		return "", withCode(ExitUsage, err)
	}
	if warning != "" {
		fmt.Fprintln(a.stderr, "gauntlet: "+warning)
	}
	return workspace.StoreURL(store, stateDir)
}

func (a *app) openRegistry(ctx context.Context, store, registryFlag string) (*registry.Registry, error) {
	loc, err := a.storeURL(store, registryFlag, ".gauntlet")
	if err != nil {
		return nil, err
	}
	s, err := artifact.Open(ctx, loc)
	if err != nil {
		return nil, withCode(ExitUsage, fmt.Errorf("store %s: %w", workspace.Redact(loc), err))
	}
	return registry.New(s), nil
}

// storeFlags adds --store, and the old --registry read as it, to fs.
func storeFlags(fs *pflag.FlagSet, store, registryFlag *string) {
	fs.StringVar(store, "store", "", "the artifact store every worker shares, which holds the registry: file:///path or s3://bucket/prefix (env "+workerhost.EnvStore+", default .gauntlet/artifacts)")
	fs.StringVar(registryFlag, "registry", "", "old name of --store")
	_ = fs.MarkHidden("registry")
}

func registryErr(err error) error {
	if errors.Is(err, registry.ErrNotFound) {
		return withCode(ExitNotFound, err)
	}
	var ce *registry.ConflictError
	if errors.As(err, &ce) {
		return withCode(ExitFailed, fmt.Errorf("%w (someone moved it meanwhile; look again with `gauntlet models show %s`)", err, ce.Model))
	}
	return err
}

func (a *app) modelsCommand() *cobra.Command {
	var store, loc string
	cmd := &cobra.Command{Use: "models", Short: "Inspect the model registry and move aliases"}
	storeFlags(cmd.PersistentFlags(), &store, &loc)
	list := &cobra.Command{
		Use: "list", Short: "List models with their champion", Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, err := a.openRegistry(cmd.Context(), store, loc)
			if err != nil {
				return err
			}
			names, err := reg.Models(cmd.Context())
			if err != nil {
				return registryErr(err)
			}
			type row struct {
				Name     string         `json:"name"`
				Versions int            `json:"versions"`
				Aliases  map[string]int `json:"aliases"`
			}
			var rows []row
			for _, n := range names {
				m, err := reg.Get(cmd.Context(), n)
				if err != nil {
					return registryErr(err)
				}
				rows = append(rows, row{n, len(m.Versions), m.Aliases})
			}
			if a.jsonOut() {
				return a.printJSON(rows)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MODEL\tVERSIONS\tCHAMPION\tPREVIOUS")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", r.Name, r.Versions, versionOrDash(r.Aliases["champion"]), versionOrDash(r.Aliases["previous"]))
			}
			return tw.Flush()
		},
	}
	show := &cobra.Command{
		Use: "show MODEL", Short: "Versions, lineage, metrics, aliases and the audit history of a model", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, err := a.openRegistry(cmd.Context(), store, loc)
			if err != nil {
				return err
			}
			m, err := reg.Get(cmd.Context(), args[0])
			if err != nil {
				return registryErr(err)
			}
			if a.jsonOut() {
				return a.printJSON(m)
			}
			byVersion := map[int][]string{}
			for alias, v := range m.Aliases {
				byVersion[v] = append(byVersion[v], alias)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tALIASES\tRUN\tCREATED\tMETRICS")
			for _, v := range m.Versions {
				sort.Strings(byVersion[v.Version])
				fmt.Fprintf(tw, "v%d\t%v\t%s\t%s\t%s\n", v.Version, byVersion[v.Version], v.Lineage.RunID, v.CreatedAt.Format(time.RFC3339), metricsLine(v.Metrics))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, h := range m.History {
				fmt.Fprintf(a.stdout, "  #%d %s by %s at %s %v %s\n", h.Seq, h.Op, h.Audit.Actor, h.Audit.At.Format(time.RFC3339), h.Changes, h.Audit.Reason)
			}
			return nil
		},
	}
	var expect int
	var reason string
	alias := &cobra.Command{
		Use:   "alias MODEL ALIAS VERSION",
		Short: "Point an alias (e.g. challenger) at a version; champion and previous move only by promotion and rollback",
		Args:  exactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := strconv.Atoi(args[2])
			if err != nil || v < 0 {
				return usagef("VERSION must be a version number (0 removes the alias), not %q", args[2])
			}
			reg, err := a.openRegistry(cmd.Context(), store, loc)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("expect") {
				m, err := reg.Get(cmd.Context(), args[0])
				if err != nil {
					return registryErr(err)
				}
				expect = m.Aliases[args[1]]
			}
			audit := registry.Audit{At: time.Now().UTC(), Actor: a.user(""), Reason: reason}
			if err := reg.SetAlias(cmd.Context(), args[0], args[1], v, expect, audit); err != nil {
				return registryErr(err)
			}
			fmt.Fprintf(a.stdout, "%s: %s → %s\n", args[0], args[1], versionOrDash(v))
			return nil
		},
	}
	alias.Flags().IntVar(&expect, "expect", 0, "the version the alias must point at now (compare-and-swap); default: whatever it points at")
	alias.Flags().StringVar(&reason, "reason", "", "why, for the audit history")
	cmd.AddCommand(list, show, alias)
	return cmd
}

func versionOrDash(v int) string {
	if v == 0 {
		return "-"
	}
	return "v" + strconv.Itoa(v)
}

func metricsLine(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for _, k := range keys {
		s += fmt.Sprintf("%s=%.4f ", k, m[k])
	}
	return s
}

func (a *app) rollbackCommand() *cobra.Command {
	var store, loc, reason string
	cmd := &cobra.Command{
		Use:   "rollback MODEL",
		Short: "Make the previous champion the champion again, at once, with no analysis",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, err := a.openRegistry(cmd.Context(), store, loc)
			if err != nil {
				return err
			}
			m, err := reg.Get(cmd.Context(), args[0])
			if err != nil {
				return registryErr(err)
			}
			champ, prev := m.Aliases["champion"], m.Aliases["previous"]
			if prev == 0 {
				return withCode(ExitFailed, fmt.Errorf("%s has no previous champion to roll back to", args[0]))
			}
			audit := registry.Audit{At: time.Now().UTC(), Actor: a.user(""), Reason: reason}
			if err := reg.Rollback(cmd.Context(), args[0], champ, audit); err != nil {
				return registryErr(err)
			}
			if a.jsonOut() {
				return a.printJSON(map[string]any{"model": args[0], "champion": prev, "was": champ})
			}
			fmt.Fprintf(a.stdout, "%s: champion %s → %s\n", args[0], versionOrDash(champ), versionOrDash(prev))
			return nil
		},
	}
	storeFlags(cmd.Flags(), &store, &loc)
	cmd.Flags().StringVar(&reason, "reason", "manual rollback", "why, for the audit history")
	return cmd
}

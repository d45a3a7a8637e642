package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gauntlet-ml/gauntlet/internal/dag"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
	"github.com/gauntlet-ml/gauntlet/internal/steps"
)

func (a *app) validateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE|DIR...",
		Short: "Check pipeline definitions and report every problem as file:line:col",
		Args:  minArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			files, err := pipelineFiles(args)
			if err != nil {
				return err
			}
			type result struct {
				File     string   `json:"file"`
				Pipeline string   `json:"pipeline,omitempty"`
				Problems []string `json:"problems"`
				// Warnings do not make the file invalid.
				Warnings []string `json:"warnings,omitempty"`
			}
			var results []result
			bad := 0
			for _, f := range files {
				sp, diags := spec.Load(f, steps.Catalog{})
				r := result{File: f, Problems: []string{}}
				if sp != nil {
					r.Pipeline = sp.Name
				}
				for _, d := range diags {
					r.Problems = append(r.Problems, d.String())
				}
				if sp != nil && len(diags) == 0 {
					for _, w := range spec.Warnings(sp) {
						r.Warnings = append(r.Warnings, w.String())
					}
				}
				bad += len(diags)
				results = append(results, r)
			}
			if a.jsonOut() {
				if err := a.printJSON(results); err != nil {
					return err
				}
			} else {
				for _, r := range results {
					if len(r.Problems) == 0 {
						fmt.Fprintf(a.stdout, "ok   %s (%s)\n", r.File, r.Pipeline)
					}
					for _, p := range r.Problems {
						fmt.Fprintln(a.stdout, p)
					}
					for _, w := range r.Warnings {
						fmt.Fprintln(a.stdout, w)
					}
				}
			}
			if bad > 0 {
				return withCode(ExitInvalid, fmt.Errorf("%d problem(s) in %d file(s)", bad, len(files)))
			}
			return nil
		},
	}
}

// pipelineFiles expands directories into their YAML files.
func pipelineFiles(args []string) ([]string, error) {
	var out []string
	for _, arg := range args {
		info, err := os.Stat(arg)
		if err != nil {
			return nil, withCode(ExitNotFound, fmt.Errorf("%s: %w", arg, err))
		}
		if !info.IsDir() {
			out = append(out, arg)
			continue
		}
		entries, err := os.ReadDir(arg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", arg, err)
		}
		n := len(out)
		for _, e := range entries {
			if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
				out = append(out, filepath.Join(arg, e.Name()))
			}
		}
		if len(out) == n {
			return nil, withCode(ExitNotFound, fmt.Errorf("%s holds no .yaml pipeline", arg))
		}
	}
	return out, nil
}

func (a *app) planCommand() *cobra.Command {
	var dot bool
	var dir string
	cmd := &cobra.Command{
		Use:   "plan PIPELINE|FILE",
		Short: "Print a pipeline's execution levels (or Graphviz dot with --dot)",
		Args:  exactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			path := args[0]
			if _, err := os.Stat(path); err != nil {
				path = filepath.Join(a.pipelinesDir(dir), args[0]+".yaml")
			}
			sp, diags := spec.Load(path, steps.Catalog{})
			if len(diags) > 0 {
				return withCode(ExitInvalid, fmt.Errorf("pipeline %s is invalid:\n%s", args[0], diags.Error()))
			}
			nodes := make([]dag.Node, 0, len(sp.Steps))
			uses := map[string]string{}
			for _, s := range sp.Steps {
				nodes = append(nodes, dag.Node{ID: s.ID, Needs: s.Needs})
				uses[s.ID] = usesLabel(s)
			}
			g, err := dag.New(nodes)
			if err != nil {
				return withCode(ExitInvalid, err)
			}
			if dot {
				fmt.Fprint(a.stdout, g.Dot(sp.Name, func(id string) string { return uses[id] }))
				return nil
			}
			levels := g.Levels()
			var fin []string
			for _, s := range sp.Finally {
				fin = append(fin, s.ID)
			}
			if a.jsonOut() {
				return a.printJSON(map[string]any{"pipeline": sp.Name, "levels": levels, "finally": fin})
			}
			fmt.Fprintf(a.stdout, "Pipeline %s: %d steps in %d levels\n", sp.Name, len(sp.Steps), len(levels))
			for i, lvl := range levels {
				parts := make([]string, len(lvl))
				for j, id := range lvl {
					parts[j] = id + " (" + uses[id] + ")"
				}
				fmt.Fprintf(a.stdout, "  %d: %s\n", i+1, strings.Join(parts, ", "))
			}
			if len(fin) > 0 {
				fmt.Fprintf(a.stdout, "  finally: %s\n", strings.Join(fin, ", "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dot, "dot", false, "emit Graphviz dot")
	cmd.Flags().StringVar(&dir, "pipelines", "", "pipelines directory (env "+EnvPipelines+")")
	return cmd
}

func usesLabel(s spec.Step) string {
	if s.Run != nil {
		return "run"
	}
	return s.Uses
}

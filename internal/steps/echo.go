package steps

import "context"

func init() {
	Register(Type{
		Name: "echo",
		Doc:  "Returns its inputs as its outputs. For wiring checks and benchmarks of the interpreter itself.",
		Kind: Activity,
		Run: func(_ context.Context, _ Env, in Input) (map[string]any, error) {
			out := make(map[string]any, len(in.With))
			for k, v := range in.With {
				out[k] = v
			}
			return out, nil
		},
	})
}

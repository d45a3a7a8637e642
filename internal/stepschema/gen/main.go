// Command gen rewrites pipelines/schema.json's step-type parts from the step
// registry: `go generate ./internal/stepschema`.
package main

import (
	"fmt"
	"os"

	"github.com/gauntlet-ml/gauntlet/internal/steps"
	"github.com/gauntlet-ml/gauntlet/internal/stepschema"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gen PATH/TO/schema.json")
		os.Exit(2)
	}
	path := os.Args[1]
	cur, err := os.ReadFile(path)
	if err == nil {
		var out []byte
		if out, err = stepschema.Generate(cur, steps.All()); err == nil {
			err = os.WriteFile(path, out, 0o644)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gen: %v\n", err)
		os.Exit(1)
	}
}

// Command gauntlet is the Gauntlet CLI: start and follow pipeline runs,
// approve models, manage schedules, and run the embedded dev stack.
package main

import "github.com/gauntlet-ml/gauntlet/internal/cli"

func main() { cli.Run() }

// Command gpu prints what gpu.NewNVML sees, once a second, and how long
// each Snapshot took, to check the NVML Source against nvidia-smi on a GPU
// machine and to size the worker's polling interval.
//
// Usage: go run ./bench/gpu [-n 10] [-interval 1s]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/gpu"
)

// line is one output record. The first one's took_ms includes loading and
// initializing NVML.
type line struct {
	Time     time.Time     `json:"time"`
	TookMS   float64       `json:"took_ms"`
	Snapshot *gpu.Snapshot `json:"snapshot,omitempty"`
	Error    string        `json:"error,omitempty"`
}

func main() {
	n := flag.Int("n", 10, "number of snapshots")
	interval := flag.Duration("interval", time.Second, "time between snapshots")
	flag.Parse()
	if err := run(*n, *interval); err != nil {
		fmt.Fprintln(os.Stderr, "gpu bench:", err)
		os.Exit(1)
	}
}

func run(n int, interval time.Duration) error {
	src := gpu.NewNVML()
	enc := json.NewEncoder(os.Stdout)
	failed := 0
	for i := range n {
		if i > 0 {
			time.Sleep(interval)
		}
		start := time.Now()
		s, err := src.Snapshot()
		l := line{Time: start, TookMS: float64(time.Since(start).Microseconds()) / 1000}
		if err != nil {
			l.Error = err.Error()
			failed++
		} else {
			l.Snapshot = &s
		}
		if err := enc.Encode(l); err != nil {
			return fmt.Errorf("writing snapshot %d: %w", i, err)
		}
	}
	if err := src.Close(); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d snapshots failed", failed, n)
	}
	return nil
}

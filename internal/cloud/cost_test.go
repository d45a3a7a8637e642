package cloud

import (
	"math"
	"testing"
	"time"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestSummarize(t *testing.T) {
	start := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	c := Cost{Nodes: []NodeUsage{
		// Preempted after 30 minutes at $1.20/h: $0.60 lost.
		{NodeID: "n1", InstanceType: "g5.xlarge", PricePerHour: 1.2, Start: start, End: start.Add(30 * time.Minute), Preempted: true},
		// The replacement ran 90 minutes at $0.50/h: $0.75.
		{NodeID: "n2", InstanceType: "g4dn.xlarge", PricePerHour: 0.5, Start: start.Add(32 * time.Minute), End: start.Add(122 * time.Minute)},
		// Still running: billed up to asOf, 15 minutes at $0.40/h: $0.10.
		{NodeID: "n3", InstanceType: "g6.xlarge", PricePerHour: 0.4, Start: start.Add(125 * time.Minute)},
	}}
	s, err := c.Summarize(start.Add(140 * time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !near(s.Total, 0.60+0.75+0.10) || !near(s.PreemptionWaste, 0.60) || !near(s.NodeHours, 0.5+1.5+0.25) {
		t.Errorf("Summarize = %+v, want total 1.45, waste 0.60, 2.25 node-hours", s)
	}
}

func TestSummarizeEmptyIsZero(t *testing.T) {
	s, err := Cost{}.Summarize(time.Now())
	if err != nil || s != (Summary{}) {
		t.Errorf("empty cost = %+v, %v", s, err)
	}
}

func TestSummarizeRejectsImpossibleUsage(t *testing.T) {
	start := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	for name, n := range map[string]NodeUsage{
		"end before start":        {NodeID: "a", PricePerHour: 1, Start: start, End: start.Add(-time.Minute)},
		"running, asOf too early": {NodeID: "b", PricePerHour: 1, Start: start.Add(time.Hour)},
		"negative price":          {NodeID: "c", PricePerHour: -1, Start: start, End: start.Add(time.Minute)},
	} {
		if _, err := (Cost{Nodes: []NodeUsage{n}}).Summarize(start); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

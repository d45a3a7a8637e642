package cloud

import (
	"fmt"
	"time"
)

// NodeUsage is one node's life: what it cost per hour and when it ran.
type NodeUsage struct {
	NodeID       string    `json:"node_id"`
	InstanceType string    `json:"instance_type"`
	PricePerHour float64   `json:"price_per_hour"`
	Start        time.Time `json:"start"`
	// End is zero while the node still runs; it is then billed up to asOf.
	End       time.Time `json:"end"`
	Preempted bool      `json:"preempted"`
}

// Cost is the bill of a run's nodes.
type Cost struct {
	Nodes []NodeUsage `json:"nodes"`
}

// Summary is what a run's nodes cost in USD.
type Summary struct {
	Total float64 `json:"total_usd"`
	// PreemptionWaste is what the preempted nodes cost: the work they did past
	// their last checkpoint was lost and redone on a replacement.
	PreemptionWaste float64 `json:"preemption_waste_usd"`
	NodeHours       float64 `json:"node_hours"`
}

// Summarize prices every node up to its end, or up to asOf for nodes still
// running. Time is passed in so that the same inputs always give the same
// bill (a workflow can call it with its own deterministic clock).
func (c Cost) Summarize(asOf time.Time) (Summary, error) {
	var s Summary
	for _, n := range c.Nodes {
		end := n.End
		if end.IsZero() {
			end = asOf
		}
		if end.Before(n.Start) {
			return Summary{}, fmt.Errorf("node %s: end %s is before start %s", n.NodeID, end.Format(time.RFC3339), n.Start.Format(time.RFC3339))
		}
		if n.PricePerHour < 0 {
			return Summary{}, fmt.Errorf("node %s: negative price %g per hour", n.NodeID, n.PricePerHour)
		}
		hours := end.Sub(n.Start).Hours()
		cost := hours * n.PricePerHour
		s.NodeHours += hours
		s.Total += cost
		if n.Preempted {
			s.PreemptionWaste += cost
		}
	}
	return s, nil
}

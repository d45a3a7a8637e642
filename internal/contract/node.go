package contract

import "fmt"

// NodeGeneration is the step id under which the interpreter provisions
// the g-th node of a provision step, after g-1 were lost: its own node id,
// task queue and working directory, found again by destroying the step.
func NodeGeneration(stepID string, g int) string {
	if g <= 1 {
		return stepID
	}
	return fmt.Sprintf("%s-g%d", stepID, g)
}

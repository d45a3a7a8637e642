package monitor

import (
	"maps"
	"slices"
	"time"
)

// Action is what a breach may call for.
type Action string

// Actions.
const (
	Rollback Action = "rollback"
	Retrain  Action = "retrain"
)

// Policy says what to do about breaches. Decide is pure, so a workflow can
// call it in workflow code and replay it.
type Policy struct {
	// OnBreach are the actions any breach calls for, in the order to take
	// them.
	OnBreach []Action `json:"on_breach"`
	// Cooldown is how long after an action the same action is not taken
	// again: the passes that follow an incident still see its breaches
	// (until a rollback is live, or a retrained model is), and must not
	// roll back or retrain once per pass.
	Cooldown time.Duration `json:"cooldown"`
}

// Ledger remembers when each action was last taken. It is plain JSON, kept
// in workflow state and carried across continue-as-new.
type Ledger struct {
	LastAction map[Action]time.Time `json:"last_action,omitempty"`
}

// Decide returns the actions r calls for at now, each one only if it was
// not taken within the cooldown, and the ledger updated with them. A report
// without breaches calls for nothing, inconclusive or not. l is not
// modified.
func (p Policy) Decide(l Ledger, r Report, now time.Time) ([]Action, Ledger) {
	if len(r.Breaches) == 0 {
		return nil, l
	}
	next := Ledger{LastAction: maps.Clone(l.LastAction)}
	if next.LastAction == nil {
		next.LastAction = map[Action]time.Time{}
	}
	var actions []Action
	for _, a := range p.OnBreach {
		if slices.Contains(actions, a) {
			continue
		}
		if last, ok := next.LastAction[a]; ok && now.Sub(last) < p.Cooldown {
			continue
		}
		actions = append(actions, a)
		next.LastAction[a] = now
	}
	return actions, next
}

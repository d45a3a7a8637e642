package canary

// Decision is what a Tracker says to do after an interval.
type Decision string

// Decisions.
const (
	Continue             Decision = "continue"
	Rollback             Decision = "rollback"
	RollbackInconclusive Decision = "rollback-inconclusive"
)

// Tracker counts a canary's intervals by outcome. It is plain data so that
// a workflow can keep it in its state and continue-as-new with it; the
// package doc explains which counts decide and why.
type Tracker struct {
	Intervals int `json:"intervals"`
	// Failures and Inconclusives are totals over the analysis.
	Failures      int `json:"failures"`
	Inconclusives int `json:"inconclusives"`
	// The consecutive counts restart at zero on any other outcome.
	ConsecutiveFailures      int `json:"consecutive_failures"`
	ConsecutiveInconclusives int `json:"consecutive_inconclusives"`
}

// Record counts one interval's outcome and decides. An outcome that is
// neither pass nor fail counts as inconclusive: what was not judged must
// not pass.
func (t *Tracker) Record(a Analysis, o Outcome) Decision {
	t.Intervals++
	switch o {
	case Pass:
		t.ConsecutiveFailures, t.ConsecutiveInconclusives = 0, 0
	case Fail:
		t.Failures++
		t.ConsecutiveFailures++
		t.ConsecutiveInconclusives = 0
	default:
		t.Inconclusives++
		t.ConsecutiveInconclusives++
		t.ConsecutiveFailures = 0
	}
	return t.Decide(a)
}

// Decide is the decision the counts so far call for; since the deciding
// counts never fall, a rollback, once decided, stays decided.
func (t Tracker) Decide(a Analysis) Decision {
	switch {
	case t.Failures >= atLeastOne(a.FailureLimit):
		return Rollback
	case t.Inconclusives >= atLeastOne(a.InconclusiveLimit):
		return RollbackInconclusive
	default:
		return Continue
	}
}

func atLeastOne(limit int) int { return max(limit, 1) }

package canary

import (
	"encoding/json"
	"testing"
)

func TestTracker(t *testing.T) {
	const (
		P = Pass
		F = Fail
		I = Inconclusive
	)
	tests := []struct {
		name     string
		analysis Analysis
		outcomes []Outcome
		want     []Decision // after each outcome
		final    Tracker
	}{
		{"rolls back when failures reach the limit",
			Analysis{FailureLimit: 2, InconclusiveLimit: 2},
			[]Outcome{P, F, F},
			[]Decision{Continue, Continue, Rollback},
			Tracker{Intervals: 3, Failures: 2, ConsecutiveFailures: 2}},
		// Totals, as Flagger's failedChecks: the pass between does not
		// forgive the first failure, though it restarts the streak.
		{"a pass does not reset the failure count",
			Analysis{FailureLimit: 2, InconclusiveLimit: 5},
			[]Outcome{F, P, F},
			[]Decision{Continue, Continue, Rollback},
			Tracker{Intervals: 3, Failures: 2, ConsecutiveFailures: 1}},
		{"below the limit continues",
			Analysis{FailureLimit: 3, InconclusiveLimit: 3},
			[]Outcome{F, P, F, P, P},
			[]Decision{Continue, Continue, Continue, Continue, Continue},
			Tracker{Intervals: 5, Failures: 2}},
		{"inconclusives reach their limit",
			Analysis{FailureLimit: 2, InconclusiveLimit: 3},
			[]Outcome{I, P, I, F, I},
			[]Decision{Continue, Continue, Continue, Continue, RollbackInconclusive},
			Tracker{Intervals: 5, Failures: 1, Inconclusives: 3, ConsecutiveInconclusives: 1}},
		{"failures decide before inconclusives",
			Analysis{FailureLimit: 1, InconclusiveLimit: 1},
			[]Outcome{I, F},
			[]Decision{RollbackInconclusive, Rollback},
			Tracker{Intervals: 2, Failures: 1, Inconclusives: 1, ConsecutiveFailures: 1}},
		// Argo's failureLimit 0 fails on the first failure; so does ours.
		{"a zero limit reads as one",
			Analysis{},
			[]Outcome{P, F},
			[]Decision{Continue, Rollback},
			Tracker{Intervals: 2, Failures: 1, ConsecutiveFailures: 1}},
		{"an unknown outcome is inconclusive",
			Analysis{FailureLimit: 1, InconclusiveLimit: 2},
			[]Outcome{"", I},
			[]Decision{Continue, RollbackInconclusive},
			Tracker{Intervals: 2, Inconclusives: 2, ConsecutiveInconclusives: 2}},
		{"a rollback stays decided",
			Analysis{FailureLimit: 1, InconclusiveLimit: 5},
			[]Outcome{F, P, P},
			[]Decision{Rollback, Rollback, Rollback},
			Tracker{Intervals: 3, Failures: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr Tracker
			for i, o := range tt.outcomes {
				if got := tr.Record(tt.analysis, o); got != tt.want[i] {
					t.Errorf("after %v: %s, want %s", tt.outcomes[:i+1], got, tt.want[i])
				}
			}
			if tr != tt.final {
				t.Errorf("counts %+v, want %+v", tr, tt.final)
			}
		})
	}
}

// A workflow keeps the tracker in its state across continue-as-new.
func TestTrackerResumesFromJSON(t *testing.T) {
	a := Analysis{FailureLimit: 2, InconclusiveLimit: 3}
	var tr Tracker
	tr.Record(a, Inconclusive)
	tr.Record(a, Fail)
	b, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"intervals":2,"failures":1,"inconclusives":1,"consecutive_failures":1,"consecutive_inconclusives":0}`
	if string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
	var back Tracker
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.Decide(a); got != Continue {
		t.Errorf("decision after resuming: %s, want continue", got)
	}
	if got := back.Record(a, Fail); got != Rollback {
		t.Errorf("second failure after resuming: %s, want rollback", got)
	}
}

package monitor

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

func TestPolicyCooldown(t *testing.T) {
	p := Policy{OnBreach: []Action{Rollback, Retrain, Rollback}, Cooldown: time.Hour}
	breach := Report{Breaches: []Breach{{Kind: BreachDrift, Feature: "income", Value: 0.4, Threshold: 0.2}}}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	acts, l := p.Decide(Ledger{}, breach, t0)
	if !slices.Equal(acts, []Action{Rollback, Retrain}) {
		t.Fatalf("first breach: %v; want [rollback retrain]", acts)
	}

	// The ledger is workflow state: it must come back from JSON intact.
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	var restored Ledger
	if err := json.Unmarshal(b, &restored); err != nil {
		t.Fatal(err)
	}
	if !restored.LastAction[Rollback].Equal(t0) || !restored.LastAction[Retrain].Equal(t0) {
		t.Fatalf("ledger %s did not round-trip", b)
	}

	acts, l2 := p.Decide(restored, breach, t0.Add(30*time.Minute))
	if acts != nil {
		t.Fatalf("breach inside the cooldown: %v; want nothing", acts)
	}
	if !l2.LastAction[Rollback].Equal(t0) {
		t.Fatalf("ledger moved without an action: %v", l2)
	}

	if acts, l3 := p.Decide(l2, Report{Inconclusive: "drift: 3 samples in the window, 500 needed"}, t0.Add(2*time.Hour)); acts != nil || !l3.LastAction[Retrain].Equal(t0) {
		t.Fatalf("no breach: %v, ledger %v; want nothing", acts, l3)
	}

	later := t0.Add(time.Hour)
	acts, l4 := p.Decide(l2, breach, later)
	if !slices.Equal(acts, []Action{Rollback, Retrain}) || !l4.LastAction[Rollback].Equal(later) {
		t.Fatalf("after the cooldown: %v, ledger %v; want both again", acts, l4)
	}
	if !l2.LastAction[Rollback].Equal(t0) {
		t.Fatal("Decide modified the ledger it was given")
	}
}

func TestPolicyCooldownPerAction(t *testing.T) {
	p := Policy{OnBreach: []Action{Rollback, Retrain}, Cooldown: time.Hour}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	// A retrain was started recently by hand; a rollback was not.
	l := Ledger{LastAction: map[Action]time.Time{Retrain: t0.Add(-10 * time.Minute)}}
	acts, _ := p.Decide(l, Report{Breaches: []Breach{{Kind: BreachErrorRate}}}, t0)
	if !slices.Equal(acts, []Action{Rollback}) {
		t.Fatalf("%v; want only the rollback", acts)
	}
}

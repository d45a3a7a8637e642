package registry_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/artifacttest"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
)

var t0 = time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)

// backends runs fn against a registry on each store backend.
func backends(t *testing.T, fn func(t *testing.T, r *registry.Registry)) {
	t.Run("file", func(t *testing.T) {
		s, _ := artifacttest.FileStore(t)
		fn(t, registry.New(s))
	})
	t.Run("s3", func(t *testing.T) {
		fn(t, registry.New(artifacttest.NewFakeS3(t).Open(t, "registry-test")))
	})
}

func req(model, run, step string) registry.RegisterRequest {
	return registry.RegisterRequest{
		Model:     model,
		Artifact:  artifact.DigestBytes([]byte(model + run + step)),
		Lineage:   registry.Lineage{RunID: run, StepID: step, DataDigest: "sha256:data", SpecHash: "spec"},
		Metrics:   map[string]float64{"roc_auc": 0.83},
		CreatedAt: t0,
	}
}

func mustRegister(t *testing.T, r *registry.Registry, rq registry.RegisterRequest) registry.ModelVersion {
	t.Helper()
	v, err := r.Register(context.Background(), rq)
	if err != nil {
		t.Fatalf("Register %+v: %v", rq, err)
	}
	return v
}

func audit(actor string) registry.Audit {
	return registry.Audit{At: t0, Actor: actor, Reason: "test"}
}

func TestRegister(t *testing.T) {
	backends(t, func(t *testing.T, r *registry.Registry) {
		ctx := context.Background()
		first := mustRegister(t, r, req("credit-risk", "run-1", "train"))
		if first.Version != 1 || first.Model != "credit-risk" || first.Metrics["roc_auc"] != 0.83 || !first.CreatedAt.Equal(t0) {
			t.Fatalf("first registration = %+v", first)
		}
		retry := req("credit-risk", "run-1", "train")
		retry.Artifact = artifact.DigestBytes([]byte("retrained, different bytes"))
		if again := mustRegister(t, r, retry); again.Version != 1 || again.Artifact != first.Artifact {
			t.Fatalf("re-registration from the same step = %+v, want version 1 with the first artifact", again)
		}
		child := req("credit-risk", "run-2", "train")
		child.Parent = 1
		if second := mustRegister(t, r, child); second.Version != 2 || second.Parent != 1 {
			t.Fatalf("second registration = %+v", second)
		}
		mustRegister(t, r, req("fraud", "run-1", "train"))

		got, err := r.Version(ctx, "credit-risk", 2)
		if err != nil || got.Lineage.RunID != "run-2" {
			t.Fatalf("Version 2 = %+v, %v", got, err)
		}
		m, err := r.Get(ctx, "credit-risk")
		if err != nil || len(m.Versions) != 2 {
			t.Fatalf("Get = %+v, %v; want 2 versions", m, err)
		}
		if names, err := r.Models(ctx); err != nil || fmt.Sprint(names) != "[credit-risk fraud]" {
			t.Fatalf("Models = %v, %v", names, err)
		}
		if _, err := r.Version(ctx, "credit-risk", 3); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("Version 3: %v, want ErrNotFound", err)
		}
		if _, err := r.Get(ctx, "nope"); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("Get unknown model: %v, want ErrNotFound", err)
		}
	})
}

func TestRegisterRejectsBadInput(t *testing.T) {
	s, _ := artifacttest.FileStore(t)
	r := registry.New(s)
	ctx := context.Background()
	mustRegister(t, r, req("m", "run-0", "train"))
	for name, mutate := range map[string]func(*registry.RegisterRequest){
		"bad model name":  func(q *registry.RegisterRequest) { q.Model = "../m" },
		"bad digest":      func(q *registry.RegisterRequest) { q.Artifact = "sha256:nothex" },
		"no run id":       func(q *registry.RegisterRequest) { q.Lineage.RunID = "" },
		"no step id":      func(q *registry.RegisterRequest) { q.Lineage.StepID = "" },
		"no time":         func(q *registry.RegisterRequest) { q.CreatedAt = time.Time{} },
		"NaN metric":      func(q *registry.RegisterRequest) { q.Metrics["loss"] = math.NaN() },
		"infinite metric": func(q *registry.RegisterRequest) { q.Metrics["loss"] = math.Inf(1) },
		"unknown parent":  func(q *registry.RegisterRequest) { q.Parent = 7 },
		"negative parent": func(q *registry.RegisterRequest) { q.Parent = -1 },
	} {
		q := req("m", "run-1", "train")
		mutate(&q)
		if v, err := r.Register(ctx, q); err == nil {
			t.Errorf("%s: registered %+v", name, v)
		}
	}
	if m, err := r.Get(ctx, "m"); err != nil || len(m.Versions) != 1 {
		t.Fatalf("after rejected registrations: %d versions, %v; want 1", len(m.Versions), err)
	}
}

// Retried steps may overlap with their first attempt; each (run, step) must
// still end up as exactly one version, and version numbers must not repeat.
func TestConcurrentRegistration(t *testing.T) {
	backends(t, func(t *testing.T, r *registry.Registry) {
		const steps, copies = 4, 2
		got := make([][]int, steps)
		for i := range got {
			got[i] = make([]int, copies)
		}
		var wg sync.WaitGroup
		for s := range steps {
			for c := range copies {
				wg.Add(1)
				go func() {
					defer wg.Done()
					v, err := r.Register(context.Background(), req("m", "run", fmt.Sprint("step-", s)))
					if err != nil {
						t.Errorf("step %d copy %d: %v", s, c, err)
						return
					}
					got[s][c] = v.Version
				}()
			}
		}
		wg.Wait()
		seen := map[int]int{}
		for s, vs := range got {
			if vs[0] != vs[1] {
				t.Errorf("step %d registered as versions %v", s, vs)
			}
			if other, dup := seen[vs[0]]; dup {
				t.Errorf("steps %d and %d share version %d", other, s, vs[0])
			}
			seen[vs[0]] = s
		}
		m, err := r.Get(context.Background(), "m")
		if err != nil || len(m.Versions) != steps {
			t.Fatalf("%d versions (%v), want %d", len(m.Versions), err, steps)
		}
		for i, v := range m.Versions {
			if v.Version != i+1 {
				t.Errorf("versions out of sequence: position %d holds %d", i, v.Version)
			}
		}
	})
}

func TestConcurrentPromotionOneWins(t *testing.T) {
	backends(t, func(t *testing.T, r *registry.Registry) {
		ctx := context.Background()
		for round := range 5 {
			model := fmt.Sprint("m", round)
			for i := 1; i <= 3; i++ {
				mustRegister(t, r, req(model, fmt.Sprint("run-", i), "train"))
			}
			if err := r.Promote(ctx, model, 1, 0, audit("seed")); err != nil {
				t.Fatal(err)
			}
			var read, wg sync.WaitGroup
			errs := map[int]error{}
			var mu sync.Mutex
			read.Add(2)
			for _, candidate := range []int{2, 3} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					m, err := r.Get(ctx, model)
					read.Done()
					if err != nil {
						t.Error(err)
						return
					}
					read.Wait() // both have read the same champion before either promotes
					err = r.Promote(ctx, model, candidate, m.Aliases[registry.Champion], audit(fmt.Sprint("run-", candidate)))
					mu.Lock()
					errs[candidate] = err
					mu.Unlock()
				}()
			}
			wg.Wait()
			winner, loser := 2, 3
			if errs[2] != nil {
				winner, loser = 3, 2
			}
			if errs[winner] != nil {
				t.Fatalf("round %d: both promotions failed: %v", round, errs)
			}
			var ce *registry.ConflictError
			if !errors.As(errs[loser], &ce) || ce.Expected != 1 || ce.Actual != winner || ce.Alias != registry.Champion {
				t.Fatalf("round %d: losing promotion returned %v, want a ConflictError (expected 1, actual %d)", round, errs[loser], winner)
			}
			m, err := r.Get(ctx, model)
			if err != nil || m.Aliases[registry.Champion] != winner || m.Aliases[registry.Previous] != 1 {
				t.Fatalf("round %d: aliases %v (%v), want champion %d previous 1", round, m.Aliases, err, winner)
			}
			if len(m.History) != 2 {
				t.Fatalf("round %d: history has %d moves, want 2", round, len(m.History))
			}
		}
	})
}

func TestPromoteAndRollback(t *testing.T) {
	backends(t, func(t *testing.T, r *registry.Registry) {
		ctx := context.Background()
		for i := 1; i <= 3; i++ {
			mustRegister(t, r, req("m", fmt.Sprint("run-", i), "train"))
		}
		aliases := func() map[string]int {
			t.Helper()
			m, err := r.Get(ctx, "m")
			if err != nil {
				t.Fatal(err)
			}
			return m.Aliases
		}
		if err := r.Rollback(ctx, "m", 0, audit("ops")); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("rollback with nothing to roll back to: %v, want ErrNotFound", err)
		}
		if err := r.Promote(ctx, "m", 1, 0, audit("run-1")); err != nil {
			t.Fatal(err)
		}
		if err := r.Promote(ctx, "m", 2, 1, audit("run-2")); err != nil {
			t.Fatal(err)
		}
		// A retried activity repeats the same call: it must succeed and change nothing.
		if err := r.Promote(ctx, "m", 2, 1, audit("run-2")); err != nil {
			t.Fatalf("repeated promotion: %v", err)
		}
		if a := aliases(); a[registry.Champion] != 2 || a[registry.Previous] != 1 {
			t.Fatalf("after promotions: %v", a)
		}
		var ce *registry.ConflictError
		if err := r.Promote(ctx, "m", 3, 1, audit("run-3")); !errors.As(err, &ce) || ce.Actual != 2 {
			t.Fatalf("promotion from a stale champion: %v, want ConflictError with actual 2", err)
		}
		if err := r.Promote(ctx, "m", 9, 2, audit("run-9")); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("promotion of an unknown version: %v, want ErrNotFound", err)
		}

		if err := r.Rollback(ctx, "m", 2, audit("ops")); err != nil {
			t.Fatal(err)
		}
		if a := aliases(); a[registry.Champion] != 1 || a[registry.Previous] != 2 {
			t.Fatalf("after rollback: %v, want champion 1 previous 2", a)
		}
		if err := r.Rollback(ctx, "m", 2, audit("ops")); err != nil {
			t.Fatalf("repeated rollback: %v", err)
		}
		if a := aliases(); a[registry.Champion] != 1 {
			t.Fatalf("repeated rollback swapped again: %v", a)
		}
		if err := r.Rollback(ctx, "m", 3, audit("ops")); !errors.As(err, &ce) || ce.Actual != 1 {
			t.Fatalf("rollback from a stale champion: %v, want ConflictError", err)
		}

		m, err := r.Get(ctx, "m")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			"1 promote [{champion 0 1} {previous 0 0}] run-1",
			"2 promote [{champion 1 2} {previous 0 1}] run-2",
			"3 rollback [{champion 2 1} {previous 1 2}] ops",
		}
		if len(m.History) != len(want) {
			t.Fatalf("history = %+v, want %d moves", m.History, len(want))
		}
		for i, h := range m.History {
			if got := fmt.Sprint(h.Seq, " ", h.Op, " ", h.Changes, " ", h.Actor); got != want[i] || !h.At.Equal(t0) {
				t.Errorf("history[%d] = %q at %v, want %q at %v", i, got, h.At, want[i], t0)
			}
		}
	})
}

func TestAliases(t *testing.T) {
	backends(t, func(t *testing.T, r *registry.Registry) {
		ctx := context.Background()
		for i := 1; i <= 2; i++ {
			mustRegister(t, r, req("m", fmt.Sprint("run-", i), "train"))
		}
		if err := r.SetAlias(ctx, "m", registry.Challenger, 2, 0, audit("run-2")); err != nil {
			t.Fatal(err)
		}
		if v, err := r.Resolve(ctx, "m", registry.Challenger); err != nil || v.Version != 2 {
			t.Fatalf("Resolve challenger = %+v, %v", v, err)
		}
		var ce *registry.ConflictError
		if err := r.SetAlias(ctx, "m", registry.Challenger, 1, 0, audit("run-1")); !errors.As(err, &ce) || ce.Actual != 2 {
			t.Fatalf("SetAlias from a stale value: %v, want ConflictError", err)
		}
		if err := r.SetAlias(ctx, "m", "staging", 1, 0, audit("alice")); err != nil {
			t.Fatal(err)
		}
		if err := r.SetAlias(ctx, "m", registry.Challenger, 0, 2, audit("run-2")); err != nil {
			t.Fatalf("removing an alias: %v", err)
		}
		if _, err := r.Resolve(ctx, "m", registry.Challenger); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("removed alias still resolves: %v", err)
		}
		for _, ref := range []string{"1", "v1", "staging"} {
			if v, err := r.Resolve(ctx, "m", ref); err != nil || v.Version != 1 {
				t.Errorf("Resolve %q = %+v, %v; want version 1", ref, v, err)
			}
		}
		for _, bad := range []string{registry.Champion, registry.Previous, "v2", "7", "", "a/b"} {
			if err := r.SetAlias(ctx, "m", bad, 1, 0, audit("alice")); err == nil {
				t.Errorf("SetAlias accepted alias %q", bad)
			}
		}
		if err := r.SetAlias(ctx, "m", "staging", 5, 1, audit("alice")); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("alias to an unknown version: %v, want ErrNotFound", err)
		}
		if err := r.SetAlias(ctx, "m", "staging", 2, 1, registry.Audit{}); err == nil {
			t.Errorf("alias move without audit data accepted")
		}
	})
}

package checkpoint

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/artifacttest"
)

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// stores runs fn against both backends: what one host publishes another
// restores through the store alone.
func stores(t *testing.T, fn func(t *testing.T, s artifact.Store)) {
	t.Run("file", func(t *testing.T) {
		s, _ := artifacttest.FileStore(t)
		fn(t, s)
	})
	t.Run("s3", func(t *testing.T) {
		fn(t, artifacttest.NewFakeS3(t).Open(t, "fleet"))
	})
}

func TestAnotherHostResumesFromTheLastPublish(t *testing.T) {
	stores(t, func(t *testing.T, s artifact.Store) {
		ctx := context.Background()
		name := Name("run/1", "train", "abc")
		hostA, hostB := filepath.Join(t.TempDir(), "ckpt"), filepath.Join(t.TempDir(), "ckpt")

		a, err := Open(ctx, s, name, hostA)
		if err != nil {
			t.Fatal(err)
		}
		if a.Restored() != nil {
			t.Fatalf("fresh ref restored %+v", a.Restored())
		}
		if rec, changed, err := a.Publish(ctx, "nothing yet"); err != nil || changed || rec != nil {
			t.Fatalf("publishing an empty directory: %+v %v %v, want nothing", rec, changed, err)
		}
		write(t, filepath.Join(hostA, "state.json"), `{"epoch":1}`)
		if _, changed, err := a.Publish(ctx, "epoch 1"); err != nil || !changed {
			t.Fatalf("epoch 1: changed %v, %v", changed, err)
		}
		write(t, filepath.Join(hostA, "state.json"), `{"epoch":2}`)
		write(t, filepath.Join(hostA, "sub", "opt.bin"), "moments")
		// A write under way: a temporary name that is not yet renamed.
		write(t, filepath.Join(hostA, ".state.json.tmp-1"), `{"epo`)
		rec, changed, err := a.Publish(ctx, "epoch 2")
		if err != nil || !changed || rec.Seq != 2 || rec.Label != "epoch 2" {
			t.Fatalf("epoch 2: %+v changed %v, %v", rec, changed, err)
		}
		if again, changed, err := a.Publish(ctx, "epoch 2 again"); err != nil || changed || again.Tree != rec.Tree {
			t.Fatalf("unchanged directory published again: %+v changed %v, %v", again, changed, err)
		}

		// Host B has something stale at the same path: the store wins.
		write(t, filepath.Join(hostB, "state.json"), `{"epoch":0}`)
		write(t, filepath.Join(hostB, "stale"), "x")
		b, err := Open(ctx, s, name, hostB)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.Restored(); got == nil || got.Tree != rec.Tree || got.Seq != 2 || got.Label != "epoch 2" {
			t.Fatalf("restored %+v, want %+v", got, rec)
		}
		if got := read(t, filepath.Join(hostB, "state.json")); got != `{"epoch":2}` {
			t.Errorf("state.json on host B: %s", got)
		}
		if got := read(t, filepath.Join(hostB, "sub", "opt.bin")); got != "moments" {
			t.Errorf("sub/opt.bin on host B: %s", got)
		}
		for _, gone := range []string{"stale", ".state.json.tmp-1"} {
			if _, err := os.Stat(filepath.Join(hostB, gone)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s on host B: %v, want it absent", gone, err)
			}
		}

		// B carries on; A, overtaken, cannot roll the checkpoint back.
		write(t, filepath.Join(hostB, "state.json"), `{"epoch":3}`)
		if rec, _, err := b.Publish(ctx, "epoch 3"); err != nil || rec.Seq != 3 {
			t.Fatalf("epoch 3 on host B: %+v, %v", rec, err)
		}
		write(t, filepath.Join(hostA, "state.json"), `{"epoch":3,"host":"a"}`)
		if _, _, err := a.Publish(ctx, "epoch 3 on A"); !errors.Is(err, ErrSuperseded) {
			t.Fatalf("stale attempt's publish: %v, want ErrSuperseded", err)
		}
		c, err := Open(ctx, s, name, filepath.Join(t.TempDir(), "c"))
		if err != nil {
			t.Fatal(err)
		}
		if got := read(t, filepath.Join(c.Path(), "state.json")); got != `{"epoch":3}` {
			t.Errorf("after the stale publish: %s, want host B's epoch 3", got)
		}
	})
}

// Inputs, steps and runs each have their own checkpoint.
func TestNamesKeepStepsApart(t *testing.T) {
	names := map[string]bool{}
	for _, n := range []string{
		Name("run", "train", "k1"), Name("run", "train", "k2"), Name("run", "train[1]", "k1"),
		Name("run2", "train", "k1"), Name("", ".hidden", "k1"),
	} {
		if err := artifact.ValidateRefName(n); err != nil {
			t.Errorf("%s: %v", n, err)
		}
		if names[n] {
			t.Errorf("%s named twice", n)
		}
		names[n] = true
	}
}

func TestOpenRefusesARefThatIsNoCheckpoint(t *testing.T) {
	s, _ := artifacttest.FileStore(t)
	ctx := context.Background()
	name := Name("r", "s", "k")
	if _, err := s.PutRef(ctx, name, []byte(`{"something":"else"}`), ""); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ckpt")
	if _, err := Open(ctx, s, name, dir); err == nil || !strings.Contains(err.Error(), name) {
		t.Fatalf("Open over a foreign ref: %v, want an error naming %s", err, name)
	}
}

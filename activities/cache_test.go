package activities

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
)

const partKey = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func lookup(t *testing.T, c *Cache, with map[string]any) contract.CacheEntry {
	t.Helper()
	e, err := c.Lookup(context.Background(), contract.CacheLookupInput{Key: partKey, With: with})
	if err != nil {
		t.Fatal(err)
	}
	if !validKey(e.Key) {
		t.Fatalf("lookup returned key %q", e.Key)
	}
	return e
}

// The key covers what a file input holds, not its name: a CSV edited in
// place misses; the same bytes elsewhere hit. Entries live in the store,
// so another host's worker hits them.
func TestCacheKeyByContent(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	ws, err := workspace.Open(ctx, workspace.Config{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	c := &Cache{Workspace: ws}
	data := filepath.Join(t.TempDir(), "train.csv")
	write := func(body string) {
		if err := os.WriteFile(data, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a,label\n1,yes\n")
	with := map[string]any{"data": data, "label": "label", "nested": []any{map[string]any{"file": "file://" + data}}}
	first := lookup(t, c, with)
	if first.Found {
		t.Fatal("an empty cache hit")
	}
	if err := c.Put(ctx, contract.CacheEntry{Key: first.Key, Found: true, Outputs: map[string]any{"n": 1.0}}); err != nil {
		t.Fatal(err)
	}
	if again := lookup(t, c, with); !again.Found || again.Key != first.Key || again.Outputs["n"] != 1.0 {
		t.Fatalf("same content: %+v", again)
	}
	write("a,label\n2,no\n")
	if edited := lookup(t, c, with); edited.Found || edited.Key == first.Key {
		t.Fatalf("a CSV edited in place hit: %+v", edited)
	}

	// Another worker with its own state but the same store hits.
	ws2, err := workspace.Open(ctx, workspace.Config{Store: ws.Store().Location(), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	write("a,label\n1,yes\n")
	if other := lookup(t, &Cache{Workspace: ws2}, with); !other.Found || other.Key != first.Key {
		t.Fatalf("another worker on the store: %+v", other)
	}

	// A missing data file is not content; an unreadable URL is an error
	// naming the input.
	if e := lookup(t, c, map[string]any{"data": filepath.Join(t.TempDir(), "none.csv")}); e.Found {
		t.Fatalf("a missing file hit: %+v", e)
	}
	_, err = c.Lookup(ctx, contract.CacheLookupInput{Key: partKey, With: map[string]any{"data": "http://127.0.0.1:1/x.csv?sig=s3cr3t"}})
	if err == nil || !strings.Contains(err.Error(), "with.data") || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("unreachable data: %v", err)
	}
}

// A hit counts only while every artifact its outputs point to is in the
// store: a result whose model was deleted is a miss, and the step's next
// result replaces it.
func TestCacheHitNeedsItsArtifacts(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	ws, err := workspace.Open(ctx, workspace.Config{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	c := &Cache{Workspace: ws}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "weights"), []byte("w1"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := artifact.Publish(ctx, ws.Store(), dir)
	if err != nil {
		t.Fatal(err)
	}
	e := lookup(t, c, nil)
	if err := c.Put(ctx, contract.CacheEntry{Key: e.Key, Found: true, Outputs: map[string]any{"model": p.String()}}); err != nil {
		t.Fatal(err)
	}
	if hit := lookup(t, c, nil); !hit.Found {
		t.Fatal("no hit while the model is there")
	}
	weights := artifact.DigestBytes([]byte("w1"))
	if err := os.Remove(filepath.Join(state, "artifacts", "blobs", "sha256", weights.Hex())); err != nil {
		t.Fatal(err)
	}
	if hit := lookup(t, c, nil); hit.Found {
		t.Fatal("a hit whose model lost a file")
	}
	if err := c.Put(ctx, contract.CacheEntry{Key: e.Key, Found: true, Outputs: map[string]any{"n": 2.0}}); err != nil {
		t.Fatalf("replacing a stale entry: %v", err)
	}
	if hit := lookup(t, c, nil); !hit.Found || hit.Outputs["n"] != 2.0 {
		t.Fatalf("after the replacement: %+v", hit)
	}
}

package activities

import "testing"

// TestSafeKeepsItemDirectoriesApart: a fan-out item's directory never meets
// the directory of a step whose id spells the same characters otherwise.
func TestSafeKeepsItemDirectoriesApart(t *testing.T) {
	seen := map[string]string{}
	for _, id := range []string{"train[3]", "train_3_", "train_3", "train-3", "train[13]", "train_13_"} {
		got := safe(id)
		if other, ok := seen[got]; ok {
			t.Errorf("%q and %q share the directory %q", id, other, got)
		}
		seen[got] = id
	}
	for in, want := range map[string]string{"": "_", "..": "_", "a/b": "a_b", "fold[0]": "fold@0"} {
		if got := safe(in); got != want {
			t.Errorf("safe(%q) = %q, want %q", in, got, want)
		}
	}
}

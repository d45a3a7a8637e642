package report

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dp"
)

func guarantee(t *testing.T, insecure bool) *dp.Guarantee {
	t.Helper()
	g, err := dp.Plan(10000, dp.Options{Epsilon: 3, Epochs: 5, BatchSize: 200, InsecureReproducible: insecure})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// A model whose DP noise came from its seed says, at the top of the page
// and in its privacy section, that its ε does not hold; one with fresh
// noise shows the guarantee without the warning.
func TestRenderPrivacy(t *testing.T) {
	for _, insecure := range []bool{false, true} {
		ev := evidence(t, false, false)
		ev.Privacy = guarantee(t, insecure)
		dir := filepath.Join(t.TempDir(), "report")
		if _, err := Render(dir, ev); err != nil {
			t.Fatal(err)
		}
		page := readPage(t, dir)
		for _, s := range []string{"<h2>Differential privacy</h2>", ev.Privacy.Randomness, "rdp (Mironov et al. 2019)", "poisson, rate 0.0200, 250 steps over 5 epochs"} {
			if !strings.Contains(page, s) {
				t.Errorf("insecure=%v: page lacks %q", insecure, s)
			}
		}
		warnings := strings.Count(page, InsecureDPWarning)
		top := strings.Index(page, `id="privacy-warning"`)
		switch {
		case !insecure && warnings != 0:
			t.Errorf("a model with fresh noise is reported as not private")
		case insecure && (warnings != 2 || top < 0 || top > strings.Index(page, "<h2>Metrics</h2>")):
			t.Errorf("insecure_reproducible model: %d warnings, the first at %d; want one under the verdict and one in the privacy section", warnings, top)
		case insecure && !strings.Contains(page, "does NOT hold"):
			t.Errorf("the warning does not say the guarantee fails")
		}
		back, err := ReadEvidence(dir)
		if err != nil {
			t.Fatal(err)
		}
		if back.Privacy == nil || *back.Privacy != *ev.Privacy {
			t.Errorf("report.json does not round-trip the guarantee: %+v", back.Privacy)
		}
	}
	ev := evidence(t, false, false)
	dir := filepath.Join(t.TempDir(), "report")
	if _, err := Render(dir, ev); err != nil {
		t.Fatal(err)
	}
	if page := readPage(t, dir); strings.Contains(page, "Differential privacy") {
		t.Error("a model trained without DP has a privacy section")
	}
}

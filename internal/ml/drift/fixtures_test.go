package drift

import (
	"compress/gzip"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// The fixtures are produced by testdata/drift/gen_fixtures.py with scipy and
// numpy; the tests never run Python.

func loadGzipJSON(t testing.TB, name string, v any) {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "..", "testdata", "drift", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(zr).Decode(v); err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
}

type ksFixture struct {
	Scipy string `json:"scipy"`
	Cases []struct {
		Name      string    `json:"name"`
		A         []float64 `json:"a"`
		B         []float64 `json:"b"`
		Statistic float64   `json:"statistic"`
		PValue    float64   `json:"pvalue"`
		Method    KSMethod  `json:"method"`
	} `json:"cases"`
}

type statsFixture struct {
	PSI []struct {
		Name      string    `json:"name"`
		Reference []float64 `json:"reference"`
		Current   []float64 `json:"current"`
		PSI       float64   `json:"psi"`
		Edges     []float64 `json:"edges"`
	} `json:"psi"`
	JensenShannon []struct {
		Name     string    `json:"name"`
		P        []float64 `json:"p"`
		Q        []float64 `json:"q"`
		Base     float64   `json:"base"`
		Distance float64   `json:"distance"`
	} `json:"jensenshannon"`
	Wasserstein []struct {
		Name     string    `json:"name"`
		U        []float64 `json:"u"`
		V        []float64 `json:"v"`
		Distance float64   `json:"distance"`
	} `json:"wasserstein"`
	Chi2 []struct {
		Name      string    `json:"name"`
		Reference []float64 `json:"reference"`
		Current   []float64 `json:"current"`
		Statistic float64   `json:"statistic"`
		PValue    float64   `json:"pvalue"`
		DoF       int       `json:"dof"`
		CramersV  float64   `json:"cramers_v"`
	} `json:"chi2"`
	Dataset struct {
		Tables map[string]map[string]json.RawMessage `json:"tables"`
		// Expected holds the union of numeric and categorical fields.
		Expected map[string]struct {
			PSI           float64 `json:"psi"`
			KSStatistic   float64 `json:"ks_statistic"`
			KSPValue      float64 `json:"ks_pvalue"`
			JSDistance    float64 `json:"js_distance"`
			Wasserstein   float64 `json:"wasserstein"`
			Chi2Statistic float64 `json:"chi2_statistic"`
			Chi2PValue    float64 `json:"chi2_pvalue"`
			DoF           int     `json:"dof"`
			CramersV      float64 `json:"cramers_v"`
			Drifted       bool    `json:"drifted"`
		} `json:"expected"`
		Drifted bool `json:"drifted"`
	} `json:"dataset"`
}

func near(got, want, absTol, relTol float64) bool {
	if math.IsNaN(got) || math.IsNaN(want) {
		return math.IsNaN(got) && math.IsNaN(want)
	}
	return math.Abs(got-want) <= absTol+relTol*math.Abs(want)
}

func TestKS2SampMatchesScipy(t *testing.T) {
	var fx ksFixture
	loadGzipJSON(t, "ks_cases.json.gz", &fx)
	if len(fx.Cases) < 10 {
		t.Fatalf("fixture has only %d cases", len(fx.Cases))
	}
	methods := map[KSMethod]int{}
	for _, c := range fx.Cases {
		t.Run(c.Name, func(t *testing.T) {
			got, err := KS2Samp(c.A, c.B)
			if err != nil {
				t.Fatal(err)
			}
			methods[got.Method]++
			if got.Method != c.Method {
				t.Errorf("method %s, want %s", got.Method, c.Method)
			}
			if !near(got.Statistic, c.Statistic, 1e-9, 0) {
				t.Errorf("statistic %.17g, scipy %.17g", got.Statistic, c.Statistic)
			}
			if !near(got.PValue, c.PValue, 1e-6, 0) {
				t.Errorf("p-value %.17g, scipy %.17g", got.PValue, c.PValue)
			}
			// Tiny p-values must also agree relatively, or the absolute
			// tolerance would accept anything below 1e-6.
			if c.PValue > 0 && c.PValue < 1e-3 && !near(got.PValue, c.PValue, 0, 1e-6) {
				t.Errorf("small p-value %.17g, scipy %.17g (relative)", got.PValue, c.PValue)
			}
			// The test is symmetric in its samples.
			swapped, err := KS2Samp(c.B, c.A)
			if err != nil {
				t.Fatal(err)
			}
			if swapped.Statistic != got.Statistic || !near(swapped.PValue, got.PValue, 1e-12, 1e-9) {
				t.Errorf("swapped samples give %+v, want %+v", swapped, got)
			}
		})
	}
	if methods[KSExact] == 0 || methods[KSAsymptotic] == 0 {
		t.Errorf("fixture must exercise both methods, got %v", methods)
	}
}

func TestKS2SampRejectsBadInput(t *testing.T) {
	for name, c := range map[string][2][]float64{
		"empty first":  {nil, {1}},
		"empty second": {{1}, {}},
		"nan":          {{1, math.NaN()}, {1, 2}},
	} {
		if _, err := KS2Samp(c[0], c[1]); err == nil {
			t.Errorf("%s: expected an error", name)
		}
	}
}

func TestKS2SampDoesNotModifyInput(t *testing.T) {
	a := []float64{3, 1, 2}
	if _, err := KS2Samp(a, []float64{0, 5}); err != nil {
		t.Fatal(err)
	}
	if a[0] != 3 || a[1] != 1 || a[2] != 2 {
		t.Errorf("input reordered: %v", a)
	}
}

func TestPSIMatchesNumpy(t *testing.T) {
	var fx statsFixture
	loadGzipJSON(t, "stats_cases.json.gz", &fx)
	for _, c := range fx.PSI {
		t.Run(c.Name, func(t *testing.T) {
			edges, err := QuantileEdges(c.Reference, DefaultPSIBins)
			if err != nil {
				t.Fatal(err)
			}
			if len(edges) != len(c.Edges) {
				t.Fatalf("edges %v, numpy %v", edges, c.Edges)
			}
			for i := range edges {
				if edges[i] != c.Edges[i] {
					t.Errorf("edge %d: %.17g, numpy %.17g", i, edges[i], c.Edges[i])
				}
			}
			got, err := PSI(c.Reference, c.Current)
			if err != nil {
				t.Fatal(err)
			}
			if !near(got, c.PSI, 1e-12, 1e-9) {
				t.Errorf("psi %.17g, numpy %.17g", got, c.PSI)
			}
		})
	}
}

func TestPSIEmptyBinsUseEpsilon(t *testing.T) {
	ref := []float64{1, 2, 3, 4}
	cur := []float64{10, 11}
	edges := []float64{2.5}
	// Reference: 0.5 | 0.5; current: 0 | 1. The empty current bin is
	// floored at epsilon, so its term is (eps-0.5)*ln(eps/0.5).
	const eps = 1e-3
	want := (eps-0.5)*math.Log(eps/0.5) + (1-0.5)*math.Log(1/0.5)
	got, err := PSIWithEdges(ref, cur, edges, eps)
	if err != nil {
		t.Fatal(err)
	}
	if !near(got, want, 1e-15, 1e-12) {
		t.Errorf("psi %v, want %v", got, want)
	}
	if !(got > 0) || math.IsInf(got, 0) {
		t.Errorf("psi with an empty bin must be finite and positive, got %v", got)
	}
	if _, err := PSIWithEdges(ref, cur, edges, 0); err == nil {
		t.Error("zero epsilon must be rejected")
	}
}

func TestPSIRejectsBadInput(t *testing.T) {
	if _, err := PSI(nil, []float64{1}); err == nil {
		t.Error("empty reference accepted")
	}
	if _, err := PSI([]float64{1, 2}, nil); err == nil {
		t.Error("empty current accepted")
	}
	if _, err := PSI([]float64{1, math.Inf(1)}, []float64{1}); err == nil {
		t.Error("infinite reference accepted")
	}
	if _, err := PSI([]float64{1, 2}, []float64{math.NaN()}); err == nil {
		t.Error("NaN current accepted")
	}
	if _, err := QuantileEdges([]float64{1, 2}, 1); err == nil {
		t.Error("one bin accepted")
	}
}

func TestJensenShannonMatchesScipy(t *testing.T) {
	var fx statsFixture
	loadGzipJSON(t, "stats_cases.json.gz", &fx)
	for _, c := range fx.JensenShannon {
		got, err := JensenShannon(c.P, c.Q, c.Base)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if !near(got, c.Distance, 1e-12, 1e-9) {
			t.Errorf("%s: %.17g, scipy %.17g", c.Name, got, c.Distance)
		}
	}
	if _, err := JensenShannon([]float64{1}, []float64{1, 2}, 2); err == nil {
		t.Error("length mismatch accepted")
	}
	if _, err := JensenShannon([]float64{0, 0}, []float64{1, 2}, 2); err == nil {
		t.Error("all-zero distribution accepted")
	}
	if _, err := JensenShannon([]float64{-1, 2}, []float64{1, 2}, 2); err == nil {
		t.Error("negative mass accepted")
	}
}

func TestWassersteinMatchesScipy(t *testing.T) {
	var fx statsFixture
	loadGzipJSON(t, "stats_cases.json.gz", &fx)
	for _, c := range fx.Wasserstein {
		got, err := Wasserstein1(c.U, c.V)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if !near(got, c.Distance, 1e-12, 1e-9) {
			t.Errorf("%s: %.17g, scipy %.17g", c.Name, got, c.Distance)
		}
	}
	if _, err := Wasserstein1(nil, []float64{1}); err == nil {
		t.Error("empty sample accepted")
	}
}

func TestChiSquareMatchesScipy(t *testing.T) {
	var fx statsFixture
	loadGzipJSON(t, "stats_cases.json.gz", &fx)
	for _, c := range fx.Chi2 {
		got, err := ChiSquare(c.Reference, c.Current)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if got.DoF != c.DoF {
			t.Errorf("%s: dof %d, scipy %d", c.Name, got.DoF, c.DoF)
		}
		if !near(got.Statistic, c.Statistic, 1e-12, 1e-9) {
			t.Errorf("%s: statistic %.17g, scipy %.17g", c.Name, got.Statistic, c.Statistic)
		}
		if !near(got.PValue, c.PValue, 1e-12, 1e-8) {
			t.Errorf("%s: p-value %.17g, scipy %.17g", c.Name, got.PValue, c.PValue)
		}
		if !near(got.CramersV, c.CramersV, 1e-12, 1e-9) {
			t.Errorf("%s: Cramér's V %.17g, want %.17g", c.Name, got.CramersV, c.CramersV)
		}
	}
	if _, err := ChiSquare([]float64{1, 0}, []float64{1, 0}); err == nil {
		t.Error("category empty in both samples accepted")
	}
	if _, err := ChiSquare([]float64{1}, []float64{1, 2}); err == nil {
		t.Error("length mismatch accepted")
	}
}

func decodeTable(t *testing.T, raw map[string]json.RawMessage) Table {
	t.Helper()
	tab := Table{}
	for name, msg := range raw {
		var nums []float64
		if err := json.Unmarshal(msg, &nums); err == nil {
			tab[name] = Column{Numeric: nums}
			continue
		}
		var cats []string
		if err := json.Unmarshal(msg, &cats); err != nil {
			t.Fatalf("column %s: %v", name, err)
		}
		tab[name] = Column{Categorical: cats}
	}
	return tab
}

func TestCompareMatchesReference(t *testing.T) {
	var fx statsFixture
	loadGzipJSON(t, "stats_cases.json.gz", &fx)
	ref := decodeTable(t, fx.Dataset.Tables["reference"])
	cur := decodeTable(t, fx.Dataset.Tables["current"])
	rep, err := Compare(ref, cur, DefaultThresholds())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Features) != len(fx.Dataset.Expected) {
		t.Fatalf("%d features, want %d", len(rep.Features), len(fx.Dataset.Expected))
	}
	var sawDrift, sawStable bool
	for _, f := range rep.Features {
		want := fx.Dataset.Expected[f.Name]
		if !near(f.PSI, want.PSI, 1e-12, 1e-9) {
			t.Errorf("%s: psi %.17g, want %.17g", f.Name, f.PSI, want.PSI)
		}
		if !near(f.JSDistance, want.JSDistance, 1e-12, 1e-9) {
			t.Errorf("%s: js %.17g, want %.17g", f.Name, f.JSDistance, want.JSDistance)
		}
		switch f.Kind {
		case "numeric":
			if !near(f.KS.Statistic, want.KSStatistic, 1e-9, 0) || !near(f.KS.PValue, want.KSPValue, 1e-6, 0) {
				t.Errorf("%s: ks %+v, want D=%v p=%v", f.Name, *f.KS, want.KSStatistic, want.KSPValue)
			}
			if !near(f.Wasserstein, want.Wasserstein, 1e-9, 1e-9) {
				t.Errorf("%s: wasserstein %.17g, want %.17g", f.Name, f.Wasserstein, want.Wasserstein)
			}
		case "categorical":
			c := f.ChiSquare
			if c.DoF != want.DoF || !near(c.Statistic, want.Chi2Statistic, 1e-9, 1e-9) || !near(c.PValue, want.Chi2PValue, 1e-12, 1e-8) {
				t.Errorf("%s: chi2 %+v, want stat=%v p=%v dof=%d", f.Name, *c, want.Chi2Statistic, want.Chi2PValue, want.DoF)
			}
		default:
			t.Errorf("%s: unexpected kind %q", f.Name, f.Kind)
		}
		if f.Drifted != want.Drifted {
			t.Errorf("%s: drifted=%v (%s), reference rule says %v", f.Name, f.Drifted, f.Reason, want.Drifted)
		}
		sawDrift = sawDrift || f.Drifted
		sawStable = sawStable || !f.Drifted
	}
	if !sawDrift || !sawStable {
		t.Error("fixture should contain both drifted and stable features")
	}
	if rep.Drifted != fx.Dataset.Drifted {
		t.Errorf("data set drifted=%v, want %v", rep.Drifted, fx.Dataset.Drifted)
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("report must be JSON-serialisable: %v", err)
	}
}

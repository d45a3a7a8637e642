package dp

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"strconv"
	"testing"
)

type reference struct {
	Name           string             `json:"name"`
	Q              float64            `json:"q"`
	Sigma          float64            `json:"sigma"`
	Steps          int                `json:"steps"`
	Delta          float64            `json:"delta"`
	Epsilon        float64            `json:"epsilon"`
	EpsilonClassic float64            `json:"epsilon_classic"`
	Order          float64            `json:"order"`
	RDP            map[string]float64 `json:"rdp"`
}

// The fixture comes from testdata/rdp_reference.py, an independent
// implementation in Python's standard library.
func loadReference(t *testing.T) []reference {
	b, err := os.ReadFile("testdata/rdp_reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var refs []reference
	if err := json.Unmarshal(b, &refs); err != nil {
		t.Fatal(err)
	}
	return refs
}

func relClose(got, want, tol float64) bool {
	return math.Abs(got-want) <= tol*math.Max(1, math.Abs(want))
}

func TestAccountantMatchesReference(t *testing.T) {
	for _, r := range loadReference(t) {
		for a, want := range r.RDP {
			alpha, _ := strconv.ParseFloat(a, 64)
			got, err := RDP(r.Q, r.Sigma, r.Steps, alpha)
			if err != nil {
				t.Fatal(err)
			}
			if !relClose(got, want, 1e-6) {
				t.Errorf("%s: rdp(α=%v) = %.12g, reference %.12g", r.Name, alpha, got, want)
			}
		}
		eps, order, err := Epsilon(r.Q, r.Sigma, r.Steps, r.Delta)
		if err != nil {
			t.Fatal(err)
		}
		if !relClose(eps, r.Epsilon, 1e-6) || order != r.Order {
			t.Errorf("%s: ε = %.12g at α=%v, reference %.12g at α=%v", r.Name, eps, order, r.Epsilon, r.Order)
		}
	}
}

// TF Privacy's MNIST tutorial (60000 rows, batch 256, σ=1.1, 60 epochs,
// δ=1e-5) publishes ε ≈ 3.01 under the classic conversion
// ε = min rdp − log δ/(α−1); the tighter conversion used here gives less.
func TestPublishedMNISTExample(t *testing.T) {
	q, steps := 256.0/60000, 60*60000/256
	var classic = math.Inf(1)
	for _, a := range Orders {
		r, err := RDP(q, 1.1, steps, a)
		if err != nil {
			t.Fatal(err)
		}
		classic = math.Min(classic, r-math.Log(1e-5)/(a-1))
	}
	if math.Abs(classic-3.01) > 0.01 {
		t.Errorf("classic ε = %.4f, TF Privacy publishes 3.01", classic)
	}
	eps, _, err := Epsilon(q, 1.1, steps, 1e-5)
	if err != nil {
		t.Fatal(err)
	}
	if !(eps < classic) {
		t.Errorf("ε = %v should be below the classic %v", eps, classic)
	}
}

func TestNoiseMultiplierInvertsEpsilon(t *testing.T) {
	q, steps, delta := 256.0/32561, 10*32561/256, 1e-5
	for _, target := range []float64{0.5, 1, 3, 8} {
		sigma, err := NoiseMultiplier(target, delta, q, steps)
		if err != nil {
			t.Fatal(err)
		}
		eps, _, _ := Epsilon(q, sigma, steps, delta)
		below, _, _ := Epsilon(q, sigma*(1-2e-4), steps, delta)
		if eps > target || below <= target {
			t.Errorf("target ε=%v: σ=%v spends %v (σ a little lower spends %v)", target, sigma, eps, below)
		}
	}
	if _, err := NoiseMultiplier(1e-6, delta, 1, 1000000); !errors.Is(err, ErrBudget) {
		t.Errorf("an unreachable ε gave %v, want ErrBudget", err)
	}
}

func TestRDPRejectsBadArguments(t *testing.T) {
	for _, c := range [][3]float64{{-0.1, 1, 2}, {1.5, 1, 2}, {0.1, 0, 2}, {0.1, 1, 1}, {0.1, math.NaN(), 2}} {
		if _, err := RDP(c[0], c[1], 10, c[2]); err == nil {
			t.Errorf("RDP(q=%v σ=%v α=%v) accepted", c[0], c[1], c[2])
		}
	}
	if _, _, err := Epsilon(0.01, 1, 10, 0); err == nil {
		t.Error("δ=0 accepted")
	}
}

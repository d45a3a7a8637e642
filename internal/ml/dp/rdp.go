// Package dp trains the built-in models with differentially private SGD and
// accounts for the privacy spent with the Rényi DP accountant of the sampled
// Gaussian mechanism (Mironov, Talwar & Zhang 2019), the accountant of
// TensorFlow Privacy's compute_rdp and Opacus' RDPAccountant.
//
// Mini-batches are Poisson-sampled: every step includes each example
// independently with probability q = batch size / rows. The accountant's
// amplification-by-subsampling bound assumes exactly this; shuffled
// fixed-size batches are what most code does but are not covered by it, and
// reporting the Poisson ε for them would overstate the guarantee.
//
// The accountant also assumes nobody can predict the noise or the batches:
// noise that can be regenerated can be subtracted. Train therefore draws
// both from a generator keyed from crypto/rand for each run; seeded,
// repeatable noise exists only behind Options.InsecureReproducible, and the
// Guarantee a run returns says which it had.
package dp

import (
	"errors"
	"fmt"
	"math"
)

// Orders are the Rényi orders the accountant evaluates: Opacus' default
// alphas (1.1 … 10.9 by tenths, then 12 … 63) and TF Privacy's 128, 256
// and 512. The conversion to (ε, δ) adds about −log δ/(α−1) whatever the
// noise, so without the high orders no ε below about 0.1 at δ=1e-5 could
// ever be certified.
var Orders = func() []float64 {
	var o []float64
	for x := 1; x < 100; x++ {
		o = append(o, 1+float64(x)/10)
	}
	for a := 12; a < 64; a++ {
		o = append(o, float64(a))
	}
	return append(o, 128, 256, 512)
}()

// RDP returns the Rényi DP of `steps` compositions of the sampled Gaussian
// mechanism with sampling rate q and noise multiplier sigma, at order alpha.
func RDP(q, sigma float64, steps int, alpha float64) (float64, error) {
	if !(q >= 0 && q <= 1) || !(sigma > 0) || steps < 0 || !(alpha > 1) || math.IsInf(sigma, 0) {
		return 0, fmt.Errorf("dp: rdp needs 0 ≤ q ≤ 1, σ > 0, steps ≥ 0, α > 1 (got q=%v σ=%v steps=%d α=%v)", q, sigma, steps, alpha)
	}
	switch {
	case q == 0 || steps == 0:
		return 0, nil
	case q == 1:
		return float64(steps) * alpha / (2 * sigma * sigma), nil
	}
	var la float64
	if alpha == math.Trunc(alpha) {
		la = logAInt(q, sigma, int(alpha))
	} else {
		var err error
		if la, err = logAFrac(q, sigma, alpha); err != nil {
			return 0, err
		}
	}
	return float64(steps) * la / (alpha - 1), nil
}

// Epsilon converts the RDP curve of a run into (ε, δ)-DP with the
// conversion of Balle et al. 2020 that Opacus' get_privacy_spent uses, and
// returns ε with the order that attains it.
func Epsilon(q, sigma float64, steps int, delta float64) (eps, order float64, err error) {
	if !(delta > 0 && delta < 1) {
		return 0, 0, fmt.Errorf("dp: δ must be in (0, 1), got %v", delta)
	}
	eps = math.Inf(1)
	for _, a := range Orders {
		r, err := RDP(q, sigma, steps, a)
		if err != nil {
			return 0, 0, err
		}
		e := r - (math.Log(delta)+math.Log(a))/(a-1) + math.Log((a-1)/a)
		if e < eps {
			eps, order = e, a
		}
	}
	return max(eps, 0), order, nil
}

// ErrBudget is matched by errors of a noise search that cannot meet the
// requested ε.
var ErrBudget = errors.New("privacy budget cannot be met")

// NoiseMultiplier finds, by bisection, the smallest σ (to a relative 1e-4)
// whose run of `steps` steps at sampling rate q spends at most eps.
func NoiseMultiplier(eps, delta, q float64, steps int) (float64, error) {
	if !(eps > 0) || math.IsInf(eps, 0) {
		return 0, fmt.Errorf("dp: target ε must be a positive number, got %v", eps)
	}
	spent := func(sigma float64) (float64, error) {
		e, _, err := Epsilon(q, sigma, steps, delta)
		return e, err
	}
	lo, hi := 0.1, 1.0
	for {
		e, err := spent(hi)
		if err != nil {
			return 0, err
		}
		if e <= eps {
			break
		}
		lo = hi
		if hi *= 2; hi > 1e4 {
			return 0, fmt.Errorf("dp: ε=%g at δ=%g over %d steps at sampling rate %.4g needs σ above 1e4, or is below what the RDP orders up to %g can certify: %w",
				eps, delta, steps, q, Orders[len(Orders)-1], ErrBudget)
		}
	}
	if e, err := spent(lo); err != nil {
		return 0, err
	} else if e <= eps {
		return lo, nil
	}
	for hi-lo > 1e-4*hi {
		mid := (lo + hi) / 2
		e, err := spent(mid)
		if err != nil {
			return 0, err
		}
		if e <= eps {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, nil
}

func logAdd(a, b float64) float64 {
	lo, hi := math.Min(a, b), math.Max(a, b)
	if math.IsInf(lo, -1) {
		return hi
	}
	return math.Log1p(math.Exp(lo-hi)) + hi
}

func logSub(a, b float64) (float64, error) {
	switch {
	case a < b:
		return 0, fmt.Errorf("dp: log of a negative difference")
	case math.IsInf(b, -1):
		return a, nil
	case a == b:
		return math.Inf(-1), nil
	}
	return math.Log(math.Expm1(a-b)) + b, nil
}

// logErfc is log(erfc(x)), with the asymptotic series where erfc underflows.
func logErfc(x float64) float64 {
	const smallestNormal = 0x1p-1022
	if r := math.Erfc(x); r >= smallestNormal {
		return math.Log(r)
	} else if r > 0 {
		// math.Log is wrong for subnormal arguments on amd64 (log(1e-309)
		// comes out as -709.05, not -711.50): scale into the normal range.
		return math.Log(r*0x1p54) - 54*math.Ln2
	}
	return -math.Log(math.Pi)/2 - math.Log(x) - x*x - 0.5*math.Pow(x, -2) +
		0.625*math.Pow(x, -4) - 37.0/24.0*math.Pow(x, -6) + 353.0/64.0*math.Pow(x, -8)
}

// logBinom returns log|C(alpha, i)| and its sign for real alpha.
func logBinom(alpha float64, i int) (float64, float64) {
	a, _ := math.Lgamma(alpha + 1)
	b, _ := math.Lgamma(float64(i) + 1)
	c, sign := math.Lgamma(alpha - float64(i) + 1)
	return a - b - c, float64(sign)
}

func logAInt(q, sigma float64, alpha int) float64 {
	la := math.Inf(-1)
	for i := 0; i <= alpha; i++ {
		lc, _ := logBinom(float64(alpha), i)
		fi := float64(i)
		s := lc + fi*math.Log(q) + float64(alpha-i)*math.Log(1-q) + (fi*fi-fi)/(2*sigma*sigma)
		la = logAdd(la, s)
	}
	return la
}

func logAFrac(q, sigma, alpha float64) (float64, error) {
	a0, a1 := math.Inf(-1), math.Inf(-1)
	z0 := sigma*sigma*math.Log(1/q-1) + 0.5
	for i := 0; ; i++ {
		lc, sign := logBinom(alpha, i)
		fi := float64(i)
		j := alpha - fi
		t0 := lc + fi*math.Log(q) + j*math.Log(1-q)
		t1 := lc + j*math.Log(q) + fi*math.Log(1-q)
		e0 := math.Log(0.5) + logErfc((fi-z0)/(math.Sqrt2*sigma))
		e1 := math.Log(0.5) + logErfc((z0-j)/(math.Sqrt2*sigma))
		s0 := t0 + (fi*fi-fi)/(2*sigma*sigma) + e0
		s1 := t1 + (j*j-j)/(2*sigma*sigma) + e1
		if sign > 0 {
			a0, a1 = logAdd(a0, s0), logAdd(a1, s1)
		} else {
			var err error
			if a0, err = logSub(a0, s0); err != nil {
				return 0, err
			}
			if a1, err = logSub(a1, s1); err != nil {
				return 0, err
			}
		}
		if math.Max(s0, s1) < -30 {
			return logAdd(a0, a1), nil
		}
		if i > 100000 {
			return 0, fmt.Errorf("dp: rdp series at α=%v did not converge", alpha)
		}
	}
}

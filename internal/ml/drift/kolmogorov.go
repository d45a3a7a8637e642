package drift

import "math"

// This file ports the survival function of scipy.stats.kstwo (the exact
// distribution of the one-sample two-sided KS statistic D_n), which
// ks_2samp uses for its asymptotic p-value. The algorithm selection follows
// scipy.stats._ksstats._kolmogn (Simard & L'Ecuyer 2011): Ruben–Gambino
// closed forms at the extremes, the Durbin matrix (Marsaglia–Tsang–Wang),
// the Pomeranz recursion, the Pelz–Good expansion, and twice the one-sided
// Smirnov tail where the two tails cannot overlap.

var (
	twoP128  = math.Ldexp(1, 128)
	twoM128  = math.Ldexp(1, -128)
	sqrt2Pi  = math.Sqrt(2 * math.Pi)
	log2Pi   = math.Log(2 * math.Pi)
	piSq     = math.Pi * math.Pi
	piFour   = piSq * piSq
	piSix    = piFour * piSq
	sqrtThre = math.Sqrt(3)
)

// cephesMinLog is cephes' MINLOG, log(2^-1022): smaller exponents underflow.
const cephesMinLog = -7.08396418532264106224e2

// stirlingCoeffs are B_{2j}/(2j)/(2j-1) for j = 8..1, highest power first.
var stirlingCoeffs = []float64{
	-2.955065359477124183e-2, 6.4102564102564102564e-3,
	-1.9175269175269175269e-3, 8.4175084175084175084e-4,
	-5.952380952380952381e-4, 7.9365079365079365079e-4,
	-2.7777777777777777778e-3, 8.3333333333333333333e-2,
}

// logNFactorialDivNPowN is log(n!/n^n) by Stirling's series with the n*log(n)
// term removed up front so that nothing cancels.
func logNFactorialDivNPowN(n int) float64 {
	fn := float64(n)
	rn := 1 / fn
	u := rn / fn
	poly := 0.0
	for _, c := range stirlingCoeffs {
		poly = poly*u + c
	}
	return math.Log(fn)/2 - fn + log2Pi/2 + rn*poly
}

// kstwoSF is P(D_n > x), scipy's kstwo.sf(x, n).
func kstwoSF(n int, x float64) float64 {
	if math.IsNaN(x) || n <= 0 {
		return math.NaN()
	}
	if x >= 1 {
		return 0
	}
	if x <= 0 {
		return 1
	}
	fn := float64(n)
	t := fn * x
	if t <= 1 {
		if t <= 0.5 {
			return 1
		}
		var cdf float64
		if n <= 140 {
			cdf = 1
			for i := 1; i <= n; i++ {
				cdf *= float64(i) * (1 / fn) * (2*t - 1)
			}
		} else {
			cdf = math.Exp(logNFactorialDivNPowN(n) + fn*math.Log(2*t-1))
		}
		return clip01(1 - cdf)
	}
	if t >= fn-1 {
		return clip01(2 * math.Pow(1-x, fn))
	}
	if x >= 0.5 {
		return clip01(2 * smirnovSF(n, x))
	}
	nxSquared := t * x
	if n <= 140 {
		switch {
		case nxSquared <= 0.754693:
			return clip01(1 - kolmogDurbin(n, x))
		case nxSquared <= 4:
			return clip01(1 - kolmogPomeranz(n, x))
		default:
			return clip01(2 * smirnovSF(n, x))
		}
	}
	if nxSquared >= 370 {
		return 0
	}
	if nxSquared >= 2.2 {
		return clip01(2 * smirnovSF(n, x))
	}
	var cdf float64
	switch {
	case nxSquared >= 18:
		cdf = 1
	case n <= 100000 && fn*math.Pow(x, 1.5) <= 1.4:
		cdf = kolmogDurbin(n, x)
	default:
		cdf = kolmogPelzGood(n, x)
	}
	return clip01(1 - cdf)
}

// kolmogDurbin is P(D_n <= d) by Durbin's matrix algorithm as organised by
// Marsaglia, Tsang & Wang: the k-th diagonal entry of (n!/n^n) H^n, with
// power-of-two rescaling tracked in a separate exponent to stay in range.
func kolmogDurbin(n int, d float64) float64 {
	if d >= 1 {
		return 1
	}
	fn := float64(n)
	nd := fn * d
	if nd <= 0.5 {
		return 0
	}
	k := int(math.Ceil(nd))
	h := float64(k) - nd
	m := 2*k - 1
	v := make([]float64, m)
	w := make([]float64, m)
	fac := 1.0
	for j := 1; j <= m; j++ {
		v[j-1] = 1 - math.Pow(h, float64(j))
		w[j-1] = fac
		fac /= float64(j)
		v[j-1] *= fac
	}
	tt := math.Pow(math.Max(2*h-1, 0), float64(m)) - 2*math.Pow(h, float64(m))
	v[m-1] = (1 + tt) * fac

	hm := newSquare(m)
	for i := 1; i < m; i++ {
		for r := i - 1; r < m; r++ {
			hm.set(r, i, w[r-(i-1)])
		}
	}
	for r := range m {
		hm.set(r, 0, v[r])
	}
	for c := range m {
		hm.set(m-1, c, v[m-1-c])
	}

	pw := identity(m)
	expnt, hExpnt := 0, 0
	for nn := n; nn > 0; nn /= 2 {
		if nn%2 == 1 {
			pw = pw.mul(hm)
			expnt += hExpnt
		}
		hm = hm.mul(hm)
		hExpnt *= 2
		if math.Abs(hm.at(k-1, k-1)) > twoP128 {
			hm.scale(twoM128)
			hExpnt += 128
		}
	}
	p := pw.at(k-1, k-1)
	for i := 1; i <= n; i++ {
		p = float64(i) * p / fn
		if math.Abs(p) < twoM128 {
			p *= twoP128
			expnt -= 128
		}
	}
	if expnt != 0 {
		p = math.Ldexp(p, expnt)
	}
	return clip01(p)
}

type square struct {
	n int
	a []float64
}

func newSquare(n int) square { return square{n: n, a: make([]float64, n*n)} }

func identity(n int) square {
	s := newSquare(n)
	for i := range n {
		s.a[i*n+i] = 1
	}
	return s
}

func (s square) at(r, c int) float64     { return s.a[r*s.n+c] }
func (s square) set(r, c int, v float64) { s.a[r*s.n+c] = v }

func (s square) scale(f float64) {
	for i := range s.a {
		s.a[i] *= f
	}
}

func (s square) mul(o square) square {
	n := s.n
	out := newSquare(n)
	for i := range n {
		row := out.a[i*n : (i+1)*n]
		for k := range n {
			f := s.a[i*n+k]
			if f == 0 {
				continue
			}
			orow := o.a[k*n : (k+1)*n]
			for j := range n {
				row[j] += f * orow[j]
			}
		}
	}
	return out
}

// pomeranzBounds is scipy's _pomeranz_compute_j1j2: the non-zero window of
// row i of the Pomeranz recursion.
func pomeranzBounds(i, n, ll, ceilf, roundf int) (int, int) {
	var j1, j2 int
	if i == 0 {
		j1, j2 = -ll-ceilf-1, ll+ceilf-1
	} else {
		ip1div2, ip1mod2 := (i+1)/2, (i+1)%2
		switch {
		case ip1mod2 == 0 && ip1div2 == n+1:
			j1, j2 = n-ll-ceilf-1, n+ll+ceilf-1
		case ip1mod2 == 0:
			j1, j2 = ip1div2-1-ll-roundf-1, ip1div2+ll-1+ceilf-1
		default:
			j1, j2 = ip1div2-1-ll-1, ip1div2+ll+roundf-1
		}
	}
	return max(j1+2, 0), min(j2, n)
}

// kolmogPomeranz is P(D_n <= x) by Pomeranz's recursion: each row is the
// previous one convolved with (unnormalised) Poisson probabilities, keeping
// only the non-zero window of two rows and rescaling against underflow.
func kolmogPomeranz(n int, x float64) float64 {
	fn := float64(n)
	t := fn * x
	ll := int(math.Floor(t))
	f := t - float64(ll)
	g := math.Min(f, 1-f)
	ceilf, roundf := 0, 0
	if f > 0 {
		ceilf = 1
	}
	if f > 0.5 {
		roundf = 1
	}
	npwrs := 2 * (ll + 1)
	gpower := make([]float64, npwrs)
	twogpower := make([]float64, npwrs)
	onem2gpower := make([]float64, npwrs)
	gpower[0], twogpower[0], onem2gpower[0] = 1, 1, 1
	gOverN, twoGOverN, oneMinusTwoGOverN := g/fn, 2*g/fn, (1-2*g)/fn
	for m := 1; m < npwrs; m++ {
		gpower[m] = gpower[m-1] * gOverN / float64(m)
		twogpower[m] = twogpower[m-1] * twoGOverN / float64(m)
		onem2gpower[m] = onem2gpower[m-1] * oneMinusTwoGOverN / float64(m)
	}
	v0 := make([]float64, npwrs)
	v1 := make([]float64, npwrs)
	v1[0] = 1
	v0s, v1s := 0, 0
	expnt := 0
	j1, j2 := pomeranzBounds(0, n, ll, ceilf, roundf)
	conv := make([]float64, 2*npwrs)
	for i := 1; i < 2*n+2; i++ {
		k1 := j1
		v0, v1 = v1, v0
		v0s, v1s = v1s, v0s
		clear(v1)
		j1, j2 = pomeranzBounds(i, n, ll, ceilf, roundf)
		pwrs := onem2gpower
		switch {
		case i == 1 || i == 2*n+1:
			pwrs = gpower
		case i%2 == 1:
			pwrs = twogpower
		}
		ln2 := j2 - k1 + 1
		if ln2 <= 0 {
			continue
		}
		lo := max(k1-v0s, 0)
		src := v0[lo:min(lo+ln2, npwrs)]
		ker := pwrs[:min(ln2, npwrs)]
		nc := len(src) + len(ker) - 1
		for c := range nc {
			var s float64
			for a := max(0, c-len(ker)+1); a <= min(c, len(src)-1); a++ {
				s += src[a] * ker[c-a]
			}
			conv[c] = s
		}
		start, length := j1-k1, j2-j1+1
		peak := 0.0
		for c := 0; c < length && start+c < nc && c < npwrs; c++ {
			if start+c >= 0 {
				v1[c] = conv[start+c]
				peak = math.Max(peak, v1[c])
			}
		}
		if peak > 0 && peak < twoM128 {
			for c := range v1 {
				v1[c] *= twoP128
			}
			expnt -= 128
		}
		v1s = v0s + j1 - k1
	}
	idx := n - v1s
	if idx < 0 || idx >= npwrs {
		return math.NaN()
	}
	ans := v1[idx]
	for m := 1; m <= n; m++ {
		if math.Abs(ans) > twoP128 {
			ans *= twoM128
			expnt += 128
		}
		ans *= float64(m)
	}
	if expnt != 0 {
		ans = math.Ldexp(ans, expnt)
	}
	return clip01(ans)
}

// kolmogPelzGood is the Pelz–Good approximation to P(D_n <= x): the
// Li-Chien/Korolyuk expansion K0 + K1/sqrt(n) + K2/n + K3/n^1.5 rewritten
// with Jacobi theta identities so that it converges for small z.
func kolmogPelzGood(n int, x float64) float64 {
	if x <= 0 {
		return 0
	}
	if x >= 1 {
		return 1
	}
	fn := float64(n)
	z := math.Sqrt(fn) * x
	z2, z3, z4, z6 := z*z, z*z*z, z*z*z*z, math.Pow(z, 6)
	qlog := -piSq / 8 / z2
	if qlog < -708 {
		return 0
	}
	q := math.Exp(qlog)
	k1a := -z2
	k1b := piSq / 4
	k2a := 6*z6 + 2*z4
	k2b := (2*z4 - 5*z2) * piSq / 4
	k2c := piFour * (1 - 2*z2) / 16
	k3d := piSix * (5 - 30*z2) / 64
	k3c := piFour * (-60*z2 + 212*z4) / 16
	k3b := piSq * (135*z4 - 96*z6) / 4
	k3a := -30*z6 - 90*math.Pow(z, 8)

	var k [4]float64
	maxk := int(math.Ceil(16 * z / math.Pi))
	for kk := maxk; kk > 0; kk-- {
		m := float64(2*kk - 1)
		m2, m4, m6 := m*m, m*m*m*m, math.Pow(m, 6)
		qpower := math.Pow(q, float64(8*kk))
		coeffs := [4]float64{
			1,
			k1a + k1b*m2,
			k2a + k2b*m2 + k2c*m4,
			k3a + k3b*m2 + k3c*m4 + k3d*m6,
		}
		for i := range k {
			k[i] = k[i]*qpower + coeffs[i]
		}
	}
	div := [4]float64{z, 6 * z4, 72 * math.Pow(z, 7), 6480 * math.Pow(z, 10)}
	for i := range k {
		k[i] = k[i] * q * sqrt2Pi / div[i]
	}
	q = math.Exp(-piSq / 2 / z2)
	var k2extra, k3extra float64
	sqrt3z := sqrtThre * z
	for kk := maxk; kk > 0; kk-- {
		ks := float64(kk)
		ksq := ks * ks
		qp := math.Pow(q, ksq)
		kspi := math.Pi * ks
		k2extra += ksq * qp
		k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ksq * qp
	}
	k[2] += k2extra * piSq * sqrt2Pi / (-36 * z3)
	k[3] += k3extra * piSq * sqrt2Pi / (216 * z6)
	var sum float64
	for i := range k {
		sum += k[i] / math.Pow(fn, float64(i)/2)
	}
	return sum
}

// smirnovMaxN mirrors cephes' SMIRNOV_MAX_COMPUTE_N: beyond it the one-sided
// tail uses an asymptotic form because the exact sum has too many terms.
const smirnovMaxN = 1000000

// smirnovSF is P(D_n^+ >= x), scipy.special.smirnov(n, x). It follows the
// case split of cephes' _smirnov and evaluates the Smirnov/Birnbaum–Tingey
// lower sum x * sum_v C(n,v) (x+v/n)^(v-1) (1-x-v/n)^(n-v) term by term in
// log space. Cephes accumulates the same sum in double-double arithmetic;
// in float64 the relative difference stays around 1e-12, far inside the
// tolerance a p-value needs.
func smirnovSF(n int, x float64) float64 {
	if math.IsNaN(x) || n <= 0 || x < 0 || x > 1 {
		return math.NaN()
	}
	if n == 1 {
		return 1 - x
	}
	if x == 0 {
		return 1
	}
	if x == 1 {
		return 0
	}
	fn := float64(n)
	nx := fn * x
	nxfl := int(math.Floor(nx))
	alpha := nx - float64(nxfl)
	if alpha >= 1 {
		nxfl++
		alpha = 0
	}
	if nxfl == 0 || (nxfl == 1 && alpha == 0) {
		return clip01(1 - x*math.Pow(1+x, fn-1))
	}
	if -2*fn*x*x < cephesMinLog {
		return 0
	}
	if nxfl >= n-1 {
		return clip01(math.Pow(1-x, fn))
	}
	if n > smirnovMaxN {
		logp := -math.Pow(6*fn*x+1, 2) / 18 / fn
		if logp < -math.Ln2 {
			return math.Exp(logp)
		}
		return clip01(1 + math.Expm1(logp))
	}
	last := n - nxfl - 1
	if alpha == 0 {
		last--
	}
	// v = 0 term: (1-x)^n / x.
	sum := math.Exp(fn*math.Log1p(-x) - math.Log(x))
	logC := 0.0
	for v := 1; v <= last; v++ {
		fv := float64(v)
		logC += math.Log(float64(n-v+1)) - math.Log(fv)
		lower := float64(n-v)/fn - x
		if lower <= 0 {
			break
		}
		term := math.Exp(logC + (fv-1)*math.Log(x+fv/fn) + float64(n-v)*math.Log(lower))
		sum += term
		if term != 0 && 4*float64(last+1-v)*term < 0x1p-52*sum && v != last {
			break
		}
	}
	return clip01(x * sum)
}

#!/usr/bin/python3
"""Reference values for the Go RDP accountant, written independently of it.

This follows the formulas of Mironov, Talwar & Zhang, "Rényi Differential
Privacy of the Sampled Gaussian Mechanism" (2019), as TensorFlow Privacy's
rdp_accountant.compute_rdp and Opacus' analysis/rdp.py implement them, with
the RDP → (ε, δ) conversion of Opacus' get_privacy_spent (Balle et al. 2020).
Only the standard library is used: binomials come from exact fractions of
integers for integer orders and from a running product for fractional ones,
where the Go code uses log-gamma, so the two do not share a shortcut.

Run: /usr/bin/python3 testdata/rdp_reference.py > testdata/rdp_reference.json
"""
import json
import math

ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [128, 256, 512]


def log_add(a, b):
    lo, hi = min(a, b), max(a, b)
    if lo == -math.inf:
        return hi
    return math.log1p(math.exp(lo - hi)) + hi


def log_sub(a, b):
    if a < b:
        raise ValueError("log_sub: negative result")
    if b == -math.inf:
        return a
    if a == b:
        return -math.inf
    return math.log(math.expm1(a - b)) + b


def log_erfc(x):
    r = math.erfc(x)
    if r > 0:
        return math.log(r)
    # Asymptotic series of erfc for large x.
    return (-math.log(math.pi) / 2 - math.log(x) - x ** 2 - 0.5 * x ** -2
            + 0.625 * x ** -4 - 37.0 / 24.0 * x ** -6 + 353.0 / 64.0 * x ** -8)


def log_a_int(q, sigma, alpha):
    log_a = -math.inf
    for i in range(alpha + 1):
        log_coef = (math.log(math.comb(alpha, i)) + i * math.log(q)
                    + (alpha - i) * math.log(1 - q))
        log_a = log_add(log_a, log_coef + (i * i - i) / (2 * sigma ** 2))
    return log_a


def binom_frac(alpha, i):
    c = 1.0
    for k in range(i):
        c *= (alpha - k) / (k + 1)
    return c


def log_a_frac(q, sigma, alpha):
    log_a0, log_a1 = -math.inf, -math.inf
    z0 = sigma ** 2 * math.log(1 / q - 1) + 0.5
    i = 0
    while True:
        coef = binom_frac(alpha, i)
        log_coef = math.log(abs(coef))
        j = alpha - i
        log_t0 = log_coef + i * math.log(q) + j * math.log(1 - q)
        log_t1 = log_coef + j * math.log(q) + i * math.log(1 - q)
        log_e0 = math.log(0.5) + log_erfc((i - z0) / (math.sqrt(2) * sigma))
        log_e1 = math.log(0.5) + log_erfc((z0 - j) / (math.sqrt(2) * sigma))
        log_s0 = log_t0 + (i * i - i) / (2 * sigma ** 2) + log_e0
        log_s1 = log_t1 + (j * j - j) / (2 * sigma ** 2) + log_e1
        if coef > 0:
            log_a0 = log_add(log_a0, log_s0)
            log_a1 = log_add(log_a1, log_s1)
        else:
            log_a0 = log_sub(log_a0, log_s0)
            log_a1 = log_sub(log_a1, log_s1)
        i += 1
        if max(log_s0, log_s1) < -30:
            break
    return log_add(log_a0, log_a1)


def rdp(q, sigma, steps, alpha):
    if q == 0:
        return 0.0
    if q == 1:
        return steps * alpha / (2 * sigma ** 2)
    if float(alpha).is_integer():
        la = log_a_int(q, sigma, int(alpha))
    else:
        la = log_a_frac(q, sigma, alpha)
    return steps * la / (alpha - 1)


def epsilon(q, sigma, steps, delta):
    best, best_order = math.inf, None
    for a in ORDERS:
        r = rdp(q, sigma, steps, a)
        eps = r - (math.log(delta) + math.log(a)) / (a - 1) + math.log((a - 1) / a)
        if eps < best:
            best, best_order = eps, a
    return best, best_order


def epsilon_classic(q, sigma, steps, delta):
    """ε = min over orders of rdp − log δ / (α − 1): the conversion of
    TF Privacy before 2020, under which its tutorial reports ε ≈ 3.01."""
    return min(rdp(q, sigma, steps, a) - math.log(delta) / (a - 1) for a in ORDERS)


CASES = [
    # TF Privacy's MNIST tutorial: N=60000, batch 256, σ=1.1, 60 epochs.
    {"name": "mnist-tutorial", "q": 256 / 60000, "sigma": 1.1, "steps": 60 * 60000 // 256, "delta": 1e-5},
    {"name": "adult-like", "q": 256 / 32561, "sigma": 1.0, "steps": 10 * 32561 // 256, "delta": 1e-5},
    {"name": "low-noise", "q": 0.01, "sigma": 0.7, "steps": 1000, "delta": 1e-6},
    {"name": "high-noise", "q": 0.05, "sigma": 4.0, "steps": 200, "delta": 1e-5},
    {"name": "small-epsilon", "q": 0.005, "sigma": 8.0, "steps": 1000, "delta": 1e-5},
    {"name": "full-batch", "q": 1.0, "sigma": 5.0, "steps": 10, "delta": 1e-5},
]

out = []
for c in CASES:
    eps, order = epsilon(c["q"], c["sigma"], c["steps"], c["delta"])
    rdps = {repr(a): rdp(c["q"], c["sigma"], c["steps"], a) for a in (1.5, 2, 2.5, 8, 32, 63, 256)}
    out.append(dict(c, epsilon=eps, order=order, rdp=rdps,
                    epsilon_classic=epsilon_classic(c["q"], c["sigma"], c["steps"], c["delta"])))
print(json.dumps(out, indent=2))

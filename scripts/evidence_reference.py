#!/usr/bin/env python3
"""Reference values for the evidence guard's statistics (src/act/traffic/evidence/stats.rs).

Computed independently of the Rust closed forms: the mixture likelihood ratio
by numerical integration over the mixing distribution (scipy.integrate.quad),
the always-valid confidence interval by root finding on it (scipy.optimize.brentq),
the normal quantile with scipy.stats.norm.ppf.

    python3 -m venv /tmp/evref && /tmp/evref/bin/pip install numpy scipy
    /tmp/evref/bin/python scripts/evidence_reference.py > tests/data/evidence_reference.json

Re-runnable: the output depends only on the cases below (and scipy's numerics).
"""
import json
import math

import numpy as np
from scipy import integrate, optimize, stats

# (x_a, n_a, x_b, n_b, tau, alpha): bad outcomes / total of the alerting
# variant a and of the destination b, mixing sd, level.
CASES = [
    (95, 2310, 65, 5402, 0.02, 0.05),   # 4.1% vs 1.2%
    (65, 5402, 95, 2310, 0.02, 0.05),   # the other way round
    (3, 150, 1, 350, 0.02, 0.05),
    (10, 1000, 23, 2300, 0.02, 0.05),
    (6, 200, 5, 500, 0.02, 0.05),
    (0, 500, 0, 500, 0.02, 0.05),
    (0, 200, 4, 466, 0.02, 0.05),
    (12, 200, 2, 467, 0.02, 0.05),
    (280, 1000, 640, 2333, 0.02, 0.05),  # accuracy-like: 28% incorrect
    (500, 1000, 650, 2333, 0.02, 0.05),
    (1, 10, 0, 10, 0.02, 0.05),
    (120, 10000, 100, 10000, 0.02, 0.05),
    (13000, 1296000, 30240, 3024000, 0.02, 0.05),  # a day at 50 rps, 70/30
    (95, 2310, 65, 5402, 0.01, 0.05),
    (95, 2310, 65, 5402, 0.05, 0.05),
    (95, 2310, 65, 5402, 0.10, 0.05),
    (95, 2310, 65, 5402, 0.02, 0.01),
    (95, 2310, 65, 5402, 0.02, 0.10),
    (95, 2310, 65, 5402, 0.02, 0.20),
    (33.7, 1017.4, 40.2, 2388.9, 0.02, 0.05),  # increase() gives fractions
    (2, 300, 9, 700, 0.03, 0.05),
    (45, 300, 20, 700, 0.03, 0.05),
    (900, 1000, 100, 1000, 0.02, 0.05),
    (5, 5000, 50, 11000, 0.005, 0.05),
]


def variance(x_a, n_a, x_b, n_b):
    """Unpooled variance of the difference, half a pseudo-count per kind."""
    def v(x, n):
        p = (x + 0.5) / (n + 1.0)
        return p * (1.0 - p) / max(n, 1.0)
    return v(x_a, n_a) + v(x_b, n_b)


def log_mixture_lr(diff, var, tau, theta0):
    """ln of  ∫ φ(diff; θ, V) / φ(diff; θ0, V) · φ(θ; θ0, τ²) dθ, numerically."""
    def log_integrand(theta):
        return (((diff - theta0) ** 2 - (diff - theta) ** 2) / (2.0 * var)
                + stats.norm.logpdf(theta, loc=theta0, scale=tau))
    # The integrand is bell-shaped: find its peak, integrate around it scaled
    # by the peak value (no overflow), far into both tails.
    peak = optimize.minimize_scalar(lambda t: -log_integrand(t),
                                    bracket=(theta0 - tau, diff + tau)).x
    top = log_integrand(peak)
    width = min(math.sqrt(var), tau)
    lo, hi = peak - 60 * width, peak + 60 * width
    val, _ = integrate.quad(lambda t: math.exp(log_integrand(t) - top), lo, hi,
                            points=[peak], epsabs=0, epsrel=1e-13, limit=500)
    return top + math.log(val)


def case(x_a, n_a, x_b, n_b, tau, alpha):
    diff = x_a / n_a - x_b / n_b
    var = variance(x_a, n_a, x_b, n_b)
    l0 = log_mixture_lr(diff, var, tau, 0.0)
    bound = math.log(1.0 / alpha)
    f = lambda t0: log_mixture_lr(diff, var, tau, t0) - bound
    # Λ(θ̂) < 1 < 1/α; Λ grows without bound away from θ̂.
    step = math.sqrt(var)
    def bracket(sign):
        k = 1.0
        while f(diff + sign * k * step) < 0:
            k *= 2.0
        return diff + sign * k * step
    lower = optimize.brentq(f, bracket(-1), diff, xtol=1e-14, rtol=1e-14)
    upper = optimize.brentq(f, diff, bracket(+1), xtol=1e-14, rtol=1e-14)
    return {
        "x_a": x_a, "n_a": n_a, "x_b": x_b, "n_b": n_b, "tau": tau, "alpha": alpha,
        "difference": diff, "variance": var, "log_lr0": l0,
        "p_value": min(1.0, math.exp(-l0)), "lower": lower, "upper": upper,
    }


def main():
    out = {
        "generator": "scripts/evidence_reference.py",
        "numpy": np.__version__,
        "scipy": __import__("scipy").__version__,
        "msprt": [case(*c) for c in CASES],
        "quantiles": [[p, float(stats.norm.ppf(p))]
                      for p in (1e-9, 1e-6, 0.001, 0.01, 0.02, 0.025, 0.05, 0.1, 0.3,
                                0.5, 0.7, 0.9, 0.95, 0.975, 0.98, 0.99, 0.999, 1 - 1e-6)],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

//! Always-valid inference for the difference of two proportions.
//!
//! Pure arithmetic, no I/O: the evidence guard and the simulation study
//! (`examples/evidence_study.rs`) both call it.
//!
//! # The model
//!
//! Variant A (the alerting one, traffic would move *from* it) has `x_a` "bad"
//! outcomes (errors, incorrect predictions, slow requests) out of `n_a`;
//! variant B (the destination, traffic would move *to* it) `x_b` out of
//! `n_b`. The parameter is the difference of the bad rates
//!
//! ```text
//! θ = p_a − p_b          estimated by   θ̂ = x_a/n_a − x_b/n_b
//! ```
//!
//! and `θ > 0` means the alerting variant is worse. By the central limit
//! theorem `θ̂ ~ N(θ, V)` with
//!
//! ```text
//! V = p̃_a (1 − p̃_a) / n_a + p̃_b (1 − p̃_b) / n_b,     p̃ = (x + ½) / (n + 1)
//! ```
//!
//! (unpooled, so that the test and the confidence interval are the same
//! statement; the rates in `V` get half a pseudo-count so that a variant
//! without a single bad outcome yet does not claim zero variance).
//!
//! # The mixture sequential probability ratio test (mSPRT)
//!
//! Johari, Pekelis and Walsh, "Always Valid Inference: Continuous Monitoring
//! of A/B Tests" (Operations Research 70(3), 2022): the likelihood ratio of
//! `θ̂` under `θ` against `θ0`, mixed over `θ ~ N(θ0, τ²)`, has the closed form
//!
//! ```text
//! Λ(θ0) = ∫ φ(θ̂; θ, V) / φ(θ̂; θ0, V) · φ(θ; θ0, τ²) dθ
//!       = sqrt(V / (V + τ²)) · exp( τ² (θ̂ − θ0)² / (2 V (V + τ²)) )
//! ```
//!
//! Under `θ = θ0`, `Λ` is a nonnegative martingale with mean 1 as the data
//! grow, so by Ville's inequality `P(Λ ever reaches 1/α) ≤ α`: a decision
//! taken when `Λ ≥ 1/α` is wrong with probability at most α **however often
//! one looks** (every Prometheus scrape, every Alertmanager repeat). Hence:
//!
//! - the always-valid p-value for `θ = 0` is `p = min(1, 1/Λ(0))` (the running
//!   minimum over looks is also valid; the guard does not need it);
//! - the always-valid (1 − α) confidence sequence is `{θ0 : Λ(θ0) < 1/α}`:
//!
//! ```text
//! θ̂ ± r,   r = sqrt( 2 V (V + τ²) / τ² · ( ln(1/α) + ½ ln((V + τ²) / V) ) )
//! ```
//!
//!   It covers the true θ at every look simultaneously with probability ≥ 1 − α
//!   (each look's interval is valid on its own; intersecting them over looks
//!   would only tighten it).
//!
//! # The mixing variance τ²
//!
//! τ is the spread of the differences the test is tuned for: the boundary is
//! tightest when `V` is a little below τ², i.e. at the sample size where a
//! difference of about τ becomes detectable. The default is τ = 0.02 (two
//! percentage points): the smallest differences worth a rollback in the
//! alert thresholds (a 1% baseline error rate against a 5% threshold, 72%
//! accuracy against 55%) are a few points, and a τ too large for small effects
//! costs more (the `½ ln((V + τ²)/V)` term grows with it) than one too small
//! costs for large ones (those are detected quickly anyway). Configurable as
//! `mixing_sd`. The guarantee holds for any τ fixed in advance.
//!
//! # The one-sided decision
//!
//! With the (1 − α) interval `[lo, hi]`, after `min_samples` per variant:
//! `lo > 0` → the alerting variant is worse: **shift**; `hi < 0` → the
//! destination is worse: **blocked**; otherwise (the interval covers 0) →
//! **deferred**. Under `θ = 0` the probability of ever shifting is at most
//! the probability that the two-sided interval ever excludes 0, which is at
//! most α: the false-shift rate is ≤ α (conservatively; the interval is
//! two-sided). The guarantee is asymptotic in that it relies on the normal
//! approximation of `θ̂`; `min_samples` keeps it out of the smallest samples.

/// Bad outcomes out of a total (floats: Prometheus' `increase()` extrapolates).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counts {
    pub bad: f64,
    pub total: f64,
}

impl Counts {
    pub fn new(bad: f64, total: f64) -> Self {
        Self { bad, total }
    }

    /// The observed bad rate (0 without samples).
    pub fn rate(&self) -> f64 {
        if self.total > 0.0 {
            self.bad / self.total
        } else {
            0.0
        }
    }

    /// The rate used in the variance: half a pseudo-count of each kind.
    fn smoothed_rate(&self) -> f64 {
        (self.bad + 0.5) / (self.total + 1.0)
    }
}

/// The mSPRT of `θ = p_a − p_b` at one look.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Msprt {
    /// θ̂ = rate(a) − rate(b).
    pub difference: f64,
    /// V, the estimated variance of θ̂.
    pub variance: f64,
    /// τ², the mixing variance.
    pub mixing_variance: f64,
}

impl Msprt {
    /// The test for variant `a` against `b` with mixing standard deviation `tau`.
    /// Both need at least one sample and `tau > 0` (the caller checks; with
    /// zero samples the variance is that of a single pseudo-observation).
    pub fn new(a: Counts, b: Counts, tau: f64) -> Self {
        let var = |c: Counts| {
            let p = c.smoothed_rate();
            p * (1.0 - p) / c.total.max(1.0)
        };
        Self {
            difference: a.rate() - b.rate(),
            variance: var(a) + var(b),
            mixing_variance: tau * tau,
        }
    }

    /// ln Λ(θ0), the log mixture likelihood ratio against `θ = theta0`.
    pub fn log_likelihood_ratio(&self, theta0: f64) -> f64 {
        let (v, t2) = (self.variance, self.mixing_variance);
        let d = self.difference - theta0;
        0.5 * (v / (v + t2)).ln() + t2 * d * d / (2.0 * v * (v + t2))
    }

    /// The always-valid p-value for `θ = 0`: min(1, 1/Λ(0)).
    pub fn p_value(&self) -> f64 {
        (-self.log_likelihood_ratio(0.0)).exp().min(1.0)
    }

    /// Half-width of the always-valid (1 − alpha) confidence interval.
    pub fn half_width(&self, alpha: f64) -> f64 {
        let (v, t2) = (self.variance, self.mixing_variance);
        (2.0 * v * (v + t2) / t2 * ((1.0 / alpha).ln() + 0.5 * ((v + t2) / v).ln())).sqrt()
    }

    /// The always-valid (1 − alpha) confidence interval of θ.
    pub fn interval(&self, alpha: f64) -> (f64, f64) {
        let r = self.half_width(alpha);
        (self.difference - r, self.difference + r)
    }

    /// The plain z statistic θ̂ / sqrt(V) (what a fixed-horizon test uses).
    pub fn z(&self) -> f64 {
        self.difference / self.variance.sqrt()
    }
}

/// The standard normal quantile Φ⁻¹(p) for 0 < p < 1 (Acklam's rational
/// approximation, relative error < 1.2e-9; NaN outside (0, 1)). Used for the
/// fixed-horizon baseline of the simulation study.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    let tail = |q: f64| {
        let q = (-2.0 * q.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail(p)
    } else if p > 1.0 - 0.02425 {
        -tail(1.0 - p)
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// What the evidence says at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Fewer than `min_samples` in a variant.
    TooFewSamples,
    /// The interval covers 0: not enough evidence either way.
    Inconclusive,
    /// The interval is above 0: the alerting variant is worse.
    FromWorse,
    /// The interval is below 0: the destination is worse.
    ToWorse,
}

/// Everything a decision records: sample sizes, rates, the estimated
/// difference with its always-valid interval, and the statistic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    pub call: Call,
    pub from: Counts,
    pub to: Counts,
    pub alpha: f64,
    pub test: Msprt,
    /// The always-valid (1 − alpha) interval of `rate(from) − rate(to)`.
    pub interval: (f64, f64),
}

impl Judgement {
    /// Judges `from` (alerting) against `to` (destination).
    pub fn new(from: Counts, to: Counts, alpha: f64, tau: f64, min_samples: f64) -> Self {
        let test = Msprt::new(from, to, tau);
        let interval = test.interval(alpha);
        let call = if from.total < min_samples || to.total < min_samples {
            Call::TooFewSamples
        } else if interval.0 > 0.0 {
            Call::FromWorse
        } else if interval.1 < 0.0 {
            Call::ToWorse
        } else {
            Call::Inconclusive
        };
        Self {
            call,
            from,
            to,
            alpha,
            test,
            interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// Written by `scripts/evidence_reference.py` (numerical integration of
    /// the mixture and root finding, with scipy: independent of the closed
    /// forms above).
    const REFERENCE: &str = include_str!("../../../../tests/data/evidence_reference.json");

    #[derive(Deserialize)]
    struct Reference {
        msprt: Vec<MsprtCase>,
        quantiles: Vec<[f64; 2]>,
    }

    #[derive(Deserialize)]
    struct MsprtCase {
        x_a: f64,
        n_a: f64,
        x_b: f64,
        n_b: f64,
        tau: f64,
        alpha: f64,
        difference: f64,
        variance: f64,
        log_lr0: f64,
        p_value: f64,
        lower: f64,
        upper: f64,
    }

    fn close(got: f64, want: f64, rel: f64, what: &str) {
        let tol = rel * want.abs().max(1e-12);
        assert!(
            (got - want).abs() <= tol,
            "{what}: got {got}, reference {want}"
        );
    }

    #[test]
    fn matches_the_independent_reference() {
        let r: Reference = serde_json::from_str(REFERENCE).unwrap();
        assert!(r.msprt.len() >= 20);
        for c in &r.msprt {
            let case = format!("{}/{} vs {}/{} tau {}", c.x_a, c.n_a, c.x_b, c.n_b, c.tau);
            let t = Msprt::new(Counts::new(c.x_a, c.n_a), Counts::new(c.x_b, c.n_b), c.tau);
            close(t.difference, c.difference, 1e-12, &format!("{case}: θ̂"));
            close(t.variance, c.variance, 1e-12, &format!("{case}: V"));
            // The reference integrates the mixture numerically.
            close(
                t.log_likelihood_ratio(0.0),
                c.log_lr0,
                1e-7,
                &format!("{case}: ln Λ(0)"),
            );
            close(t.p_value(), c.p_value, 1e-7, &format!("{case}: p"));
            // The reference finds Λ(θ0) = 1/α by root finding.
            let (lo, hi) = t.interval(c.alpha);
            assert!(
                (lo - c.lower).abs() < 1e-9,
                "{case}: lower {lo} vs {}",
                c.lower
            );
            assert!(
                (hi - c.upper).abs() < 1e-9,
                "{case}: upper {hi} vs {}",
                c.upper
            );
        }
    }

    #[test]
    fn normal_quantile_matches_scipy() {
        let r: Reference = serde_json::from_str(REFERENCE).unwrap();
        for [p, z] in r.quantiles {
            close(normal_quantile(p), z, 2e-9, &format!("Φ⁻¹({p})"));
        }
        assert!(normal_quantile(0.0).is_nan() && normal_quantile(1.0).is_nan());
    }

    #[test]
    fn the_interval_is_where_the_likelihood_ratio_stays_below_one_over_alpha() {
        let t = Msprt::new(Counts::new(41.0, 1000.0), Counts::new(12.0, 1000.0), 0.02);
        let (lo, hi) = t.interval(0.05);
        let at = |x: f64| t.log_likelihood_ratio(x);
        let bound = (1.0f64 / 0.05).ln();
        assert!((at(lo) - bound).abs() < 1e-9 && (at(hi) - bound).abs() < 1e-9);
        assert!(at(t.difference) < bound);
        assert!(at(lo - 1e-4) > bound && at(hi + 1e-4) > bound);
    }

    #[test]
    fn decisions() {
        let j = |xa, na, xb, nb| {
            Judgement::new(Counts::new(xa, na), Counts::new(xb, nb), 0.05, 0.02, 200.0).call
        };
        // 4.1% vs 1.2% over thousands: the alerting variant is worse.
        assert_eq!(j(95.0, 2310.0, 65.0, 5402.0), Call::FromWorse);
        // The other way round: the destination is worse.
        assert_eq!(j(65.0, 5402.0, 95.0, 2310.0), Call::ToWorse);
        // Noise: 3 vs 1 errors in 150 and 350 requests, and too few anyway.
        assert_eq!(j(3.0, 150.0, 1.0, 350.0), Call::TooFewSamples);
        // Same rates, plenty of samples: inconclusive.
        assert_eq!(j(10.0, 1000.0, 23.0, 2300.0), Call::Inconclusive);
        // A threshold would fire on 6/200 = 3% vs 1%; the evidence does not.
        assert_eq!(j(6.0, 200.0, 5.0, 500.0), Call::Inconclusive);
        // min_samples is per variant.
        assert_eq!(j(150.0, 1000.0, 0.0, 199.0), Call::TooFewSamples);
    }

    #[test]
    fn zero_bad_outcomes_do_not_make_a_zero_variance() {
        let t = Msprt::new(Counts::new(0.0, 500.0), Counts::new(0.0, 500.0), 0.02);
        assert!(t.variance > 0.0);
        let (lo, hi) = t.interval(0.05);
        assert!(lo < 0.0 && hi > 0.0 && lo.is_finite() && hi.is_finite());
        assert_eq!(t.p_value(), 1.0);
    }
}

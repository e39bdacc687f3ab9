//! Simulation study of the evidence guard against the guards it replaces.
//!
//! ```text
//! cargo run --release --example evidence_study [-- --experiments 1000 --seed 1]
//! ```
//!
//! An A/B experiment whose traffic is split 70/30 between the baseline (the
//! destination of a shift) and the candidate (the variant that alerts), with
//! the simulator's base error rate of 1%, is observed every 15 s (a
//! Prometheus scrape) for a simulated day. At every look each guard is asked
//! whether to move traffic off the candidate:
//!
//! - **evidence**: the real decision of the evidence guard
//!   ([`Judgement`], α = 0.05, `min_samples` 200, τ = 0.02), on the counts
//!   since the start (`window: since_start`), and on the counts of the last
//!   hour (`window: 1h`);
//! - **threshold**: what shifts today: the candidate's error rate over the
//!   last 5 minutes above 5% (HighModelErrorRate) at 20 consecutive looks
//!   (its `for: 5m`);
//! - **z-test**: a fixed-horizon two-proportion z-test at level α (shift when
//!   the 95% Wald interval of the difference is above 0, i.e. z > 1.96) on the
//!   counts since the start, consulted at every look ("peeking"), with the
//!   same `min_samples`.
//!
//! A/A (both variants at 1%): the share of experiments in which a guard ever
//! shifts within the day is its false-shift rate. A/B (the candidate worse by
//! 1, 2, 5, 10 points from the start; and by 2, 5 points after 6 healthy
//! hours, where counts since the start dilute the drop): median and 90th
//! percentile of the time to the first shift, from the start of the drop. Requests per look follow the rate exactly (with a
//! fractional carry, as ab-simulator does); which of them fail is binomial.

use mlops_alert_router::act::traffic::evidence::stats::{normal_quantile, Call, Counts, Judgement};
use std::collections::VecDeque;
use std::time::Instant;

const LOOK_SECONDS: f64 = 15.0;
const LOOKS_PER_DAY: usize = 24 * 3600 / 15;
const ALPHA: f64 = 0.05;
const TAU: f64 = 0.02;
const MIN_SAMPLES: f64 = 200.0;
const BASE_ERROR_RATE: f64 = 0.01;
const CANDIDATE_SHARE: f64 = 0.3;
/// HighModelErrorRate: 5% over 5 minutes, for 5 minutes.
const THRESHOLD: f64 = 0.05;
const THRESHOLD_WINDOW_LOOKS: usize = 20;
const THRESHOLD_FOR_LOOKS: usize = 20;
const HOUR_LOOKS: usize = 240;

/// splitmix64: small, fast, good enough for a simulation.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Binomial(n, p) by inversion (p ≤ 0.5 here, so O(np) steps); halves n
    /// while (1 − p)^n would underflow.
    fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if n == 0 || p <= 0.0 {
            return 0;
        }
        if (n as f64) * (-p).ln_1p() < -500.0 {
            let h = n / 2;
            return self.binomial(h, p) + self.binomial(n - h, p);
        }
        let q = 1.0 - p;
        let mut pmf = q.powf(n as f64);
        let mut cdf = pmf;
        let u = self.uniform();
        let mut k = 0u64;
        while u > cdf && k < n {
            pmf *= (n - k) as f64 / (k + 1) as f64 * p / q;
            k += 1;
            cdf += pmf;
        }
        k
    }
}

/// The look at which each guard first shifted (None: not within the day).
#[derive(Default, Clone, Copy)]
struct FirstShift {
    evidence: Option<usize>,
    evidence_hour: Option<usize>,
    threshold: Option<usize>,
    ztest: Option<usize>,
}

/// One simulated day of one experiment.
/// The candidate fails at `candidate_error` from look `drop_after` + 1 on
/// (at the base rate before); times are counted from the drop.
fn experiment(
    rng: &mut Rng,
    rate: f64,
    candidate_error: f64,
    drop_after: usize,
    z_crit: f64,
) -> FirstShift {
    let mut first = FirstShift::default();
    let (mut cand, mut base) = (Counts::new(0.0, 0.0), Counts::new(0.0, 0.0));
    // Per look (candidate bad, candidate total, baseline bad, baseline total),
    // the last hour of them, and running sums over the last hour and 5 minutes.
    let mut history: VecDeque<[f64; 4]> = VecDeque::with_capacity(HOUR_LOOKS + 1);
    let (mut hour, mut five) = ([0.0f64; 4], [0.0f64; 4]);
    let (mut due, mut made) = (0.0f64, 0u64);
    let (mut cand_due, mut cand_made) = (0.0f64, 0u64);
    let mut above = 0usize;
    for look in 1..=LOOKS_PER_DAY {
        due += rate * LOOK_SECONDS;
        let n = (due + 1e-9).floor() as u64 - made;
        made += n;
        cand_due += n as f64 * CANDIDATE_SHARE;
        let nc = ((cand_due + 1e-9).floor() as u64 - cand_made).min(n);
        cand_made += nc;
        let nb = n - nc;
        let p = if look > drop_after {
            candidate_error
        } else {
            BASE_ERROR_RATE
        };
        let xc = rng.binomial(nc, p) as f64;
        let xb = rng.binomial(nb, BASE_ERROR_RATE) as f64;
        cand = Counts::new(cand.bad + xc, cand.total + nc as f64);
        base = Counts::new(base.bad + xb, base.total + nb as f64);
        let now = [xc, nc as f64, xb, nb as f64];
        history.push_back(now);
        for i in 0..4 {
            hour[i] += now[i];
            five[i] += now[i];
        }
        if history.len() > THRESHOLD_WINDOW_LOOKS {
            let old = history[history.len() - 1 - THRESHOLD_WINDOW_LOOKS];
            for i in 0..4 {
                five[i] -= old[i];
            }
        }
        if history.len() > HOUR_LOOKS {
            if let Some(old) = history.pop_front() {
                for i in 0..4 {
                    hour[i] -= old[i];
                }
            }
        }
        let counts = |s: [f64; 4]| (Counts::new(s[0], s[1]), Counts::new(s[2], s[3]));

        if first.evidence.is_none()
            && Judgement::new(cand, base, ALPHA, TAU, MIN_SAMPLES).call == Call::FromWorse
        {
            first.evidence = Some(look.saturating_sub(drop_after));
        }
        if first.evidence_hour.is_none() {
            let (c, b) = counts(hour);
            if Judgement::new(c, b, ALPHA, TAU, MIN_SAMPLES).call == Call::FromWorse {
                first.evidence_hour = Some(look.saturating_sub(drop_after));
            }
        }
        if first.threshold.is_none() {
            let (c, _) = counts(five);
            if c.total > 0.0 && c.rate() > THRESHOLD {
                above += 1;
            } else {
                above = 0;
            }
            if above >= THRESHOLD_FOR_LOOKS {
                first.threshold = Some(look.saturating_sub(drop_after));
            }
        }
        if first.ztest.is_none() && cand.total >= MIN_SAMPLES && base.total >= MIN_SAMPLES {
            let (pa, pb) = (cand.rate(), base.rate());
            let v = pa * (1.0 - pa) / cand.total + pb * (1.0 - pb) / base.total;
            if v > 0.0 && (pa - pb) / v.sqrt() > z_crit {
                first.ztest = Some(look.saturating_sub(drop_after));
            }
        }
        if first.evidence.is_some()
            && first.evidence_hour.is_some()
            && first.threshold.is_some()
            && first.ztest.is_some()
        {
            break;
        }
    }
    first
}

fn share(xs: &[FirstShift], f: impl Fn(&FirstShift) -> Option<usize>) -> f64 {
    xs.iter().filter(|x| f(x).is_some()).count() as f64 / xs.len() as f64
}

/// "median / p90" of the time to shift, in minutes; experiments that never
/// shifted count as infinitely late ("—" when the quantile is among them).
fn times(xs: &[FirstShift], f: impl Fn(&FirstShift) -> Option<usize>) -> String {
    let mut t: Vec<f64> = xs
        .iter()
        .map(|x| f(x).map_or(f64::INFINITY, |l| l as f64 * LOOK_SECONDS / 60.0))
        .collect();
    t.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let v = t[((p * t.len() as f64).ceil() as usize).clamp(1, t.len()) - 1];
        if v.is_finite() {
            if v < 10.0 {
                format!("{v:.2}")
            } else {
                format!("{v:.0}")
            }
        } else {
            "—".to_owned()
        }
    };
    format!("{} / {} ({:.0}%)", q(0.5), q(0.9), 100.0 * share(xs, &f))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name}: {v:?} is not a number"))
            })
    };
    let experiments = arg("--experiments", 1000) as usize;
    let seed = arg("--seed", 1);
    // One-sided at the 95% Wald interval's edge: z > Φ⁻¹(1 − α/2) = 1.96.
    let z_crit = normal_quantile(1.0 - ALPHA / 2.0);
    let started = Instant::now();
    println!(
        "evidence_study: {experiments} experiments per row, looks every {LOOK_SECONDS} s for 24 h \
         ({LOOKS_PER_DAY} looks), split 70/30, baseline error rate 1%, α = {ALPHA}, \
         min_samples {MIN_SAMPLES}, τ = {TAU}, seed {seed}\n"
    );

    println!("A/A: both variants at 1% errors. Share of experiments that shifted within the day (false shifts).\n");
    println!("| traffic (all variants) | evidence, since_start | evidence, window 1h | threshold 5% for 5m | z-test at every look |");
    println!("|---|---|---|---|---|");
    let mut rng = Rng(seed);
    for rate in [50.0, 5.0, 1.0, 0.2] {
        let xs: Vec<FirstShift> = (0..experiments)
            .map(|_| experiment(&mut rng, rate, BASE_ERROR_RATE, 0, z_crit))
            .collect();
        let pct = |f: fn(&FirstShift) -> Option<usize>| format!("{:.1}%", 100.0 * share(&xs, f));
        println!(
            "| {rate} req/s{} | **{}** | {} | {} | {} |",
            if rate == 50.0 {
                " (simulator default)"
            } else {
                ""
            },
            pct(|x| x.evidence),
            pct(|x| x.evidence_hour),
            pct(|x| x.threshold),
            pct(|x| x.ztest),
        );
    }

    println!("\nA/B: the candidate worse from the start (or after 6 healthy hours). Time from the drop to the first shift in minutes, median / p90 (share of experiments shifted within the day; — = not within the day).\n");
    println!("| traffic | candidate error rate | evidence, since_start | evidence, window 1h | threshold 5% for 5m | z-test at every look |");
    println!("|---|---|---|---|---|---|");
    let rows = [50.0, 5.0]
        .into_iter()
        .flat_map(|r| [1.0, 2.0, 5.0, 10.0].map(|p| (r, p, 0)))
        .chain([2.0, 5.0].map(|p| (50.0, p, 6 * 240)));
    for (rate, points, drop_after) in rows {
        let p = BASE_ERROR_RATE + points / 100.0;
        let xs: Vec<FirstShift> = (0..experiments)
            .map(|_| experiment(&mut rng, rate, p, drop_after, z_crit))
            .collect();
        let when = if drop_after == 0 {
            String::new()
        } else {
            format!(
                " after {} h healthy",
                drop_after as f64 * LOOK_SECONDS / 3600.0
            )
        };
        println!(
            "| {rate} req/s | {:.0}% (+{points} points){when} | **{}** | {} | {} | {} |",
            100.0 * p,
            times(&xs, |x| x.evidence),
            times(&xs, |x| x.evidence_hour),
            times(&xs, |x| x.threshold),
            times(&xs, |x| x.ztest),
        );
    }
    println!("\n({:.0} s)", started.elapsed().as_secs_f64());
}

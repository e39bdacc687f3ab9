//! The simulation proper: turns time, weights and the scenario into the
//! `ab_test_*` metrics. Pure and deterministic: time is passed in, randomness
//! comes from seeded xorshift generators, so tests drive it directly.
//!
//! Each tick:
//! 1. the scenario steps due by now are applied;
//! 2. `rate × Δt` requests are made (the fraction left over carries to the next
//!    tick, so the long-run rate is exact);
//! 3. they are split across the variants by the weights with smooth weighted
//!    round-robin: every request adds each variant's share (`weight / Σweights`)
//!    to its credit and goes to the variant with the most credit, which pays 1.
//!    Credits are the fractional carry: at any point each variant's count is
//!    within one request (or, with n variants, n-1) of `total × share`;
//! 4. `error_rate × requests` of each variant fail, with a fractional carry too;
//!    of the others, `accuracy × successes` are correct predictions (again with
//!    a carry), counted in `ab_test_predictions_total{outcome}`. With noise
//!    ([`Simulator::set_noise`]) each request fails and each prediction is
//!    correct at random instead (seeded Bernoulli draws), so counts and rates
//!    fluctuate as real traffic does;
//! 5. every request observes a latency: exponential, scaled so that its 95th
//!    percentile is the configured latency (`-ln(1-u) · latency / ln 20`);
//!    every successful request observes a prediction value in 0-1 near the
//!    variant's accuracy;
//! 6. the gauges are set: accuracy (the scenario's), the traffic share each
//!    variant got over the last `share_window`, and the business impact.
//!
//! Business impact (arbitrary money units per 1,000 requests), from the
//! scenario's current accuracy (percent), p95 latency (ms) and error rate:
//!
//! ```text
//! revenue_impact     = 2 × (accuracy − 60) × (1 − error_rate)
//! latency_cost       = 0.1 × latency_ms + 200 × error_rate
//! net_business_value = revenue_impact − latency_cost
//! ```
//!
//! baseline (72 %, 80 ms, 1 %) → 23.8 − 10 = 13.8; enhanced (78 %, 60 ms,
//! 0.5 %) → 35.8 − 7 = 28.8; enhanced at 50 % accuracy → −19.9 − 7 = −26.9,
//! below NegativeBusinessImpact's −20.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::rng::{fnv1a, XorShift64};
use crate::scenario::{Params, Scenario, ScenarioState, Step};
use crate::weights::Weights;

/// Buckets of `ab_test_response_time_seconds` (seconds).
pub const LATENCY_BUCKETS: [f64; 11] =
    [0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Buckets of `ab_test_prediction_value`.
pub const PREDICTION_BUCKETS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
/// Slack for floating-point error when turning expected counts into whole ones.
const EPSILON: f64 = 1e-6;
/// The `metric_type`s of `ab_test_business_impact`.
pub const IMPACT_TYPES: [&str; 3] = ["revenue_impact", "latency_cost", "net_business_value"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VariantLabels {
    model_name: String,
    experiment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    model_name: String,
    experiment: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PredictionLabels {
    model_name: String,
    experiment: String,
    outcome: String,
}

/// The `outcome`s of `ab_test_predictions_total`.
pub const OUTCOMES: [&str; 2] = ["correct", "incorrect"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ImpactLabels {
    model_name: String,
    experiment: String,
    metric_type: String,
}

type GaugeF = Gauge<f64, AtomicU64>;

struct Metrics {
    requests: Family<RequestLabels, Counter>,
    predictions: Family<PredictionLabels, Counter>,
    response_time: Family<VariantLabels, Histogram>,
    accuracy: Family<VariantLabels, GaugeF>,
    traffic: Family<VariantLabels, GaugeF>,
    prediction: Family<VariantLabels, Histogram>,
    business: Family<ImpactLabels, GaugeF>,
}

impl Metrics {
    fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "ab_test_requests",
            "Requests per variant and status (success/error)",
            requests.clone(),
        );
        let predictions = Family::<PredictionLabels, Counter>::default();
        registry.register(
            "ab_test_predictions",
            "Predictions (successful requests) per variant and outcome (correct/incorrect)",
            predictions.clone(),
        );
        let response_time = Family::<VariantLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(LATENCY_BUCKETS)
        });
        registry.register(
            "ab_test_response_time_seconds",
            "Response time per variant",
            response_time.clone(),
        );
        let accuracy = Family::<VariantLabels, GaugeF>::default();
        registry.register(
            "ab_test_model_accuracy",
            "Model accuracy per variant, percent",
            accuracy.clone(),
        );
        let traffic = Family::<VariantLabels, GaugeF>::default();
        registry.register(
            "ab_test_traffic_percentage",
            "Share of the experiment's requests the variant got recently, percent",
            traffic.clone(),
        );
        let prediction = Family::<VariantLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(PREDICTION_BUCKETS)
        });
        registry.register(
            "ab_test_prediction_value",
            "Prediction values (0-1) per variant",
            prediction.clone(),
        );
        let business = Family::<ImpactLabels, GaugeF>::default();
        registry.register(
            "ab_test_business_impact",
            "Business impact per variant: revenue_impact, latency_cost, net_business_value",
            business.clone(),
        );
        Self {
            requests,
            predictions,
            response_time,
            accuracy,
            traffic,
            prediction,
            business,
        }
    }
}

/// The three business figures of a variant, see the module docs.
pub fn business_impact(p: &Params) -> [f64; 3] {
    let revenue = 2.0 * (p.accuracy - 60.0) * (1.0 - p.error_rate);
    let cost = 0.1 * p.latency.as_secs_f64() * 1000.0 + 200.0 * p.error_rate;
    [revenue, cost, revenue - cost]
}

/// One latency sample: exponential with P(x <= p95) = 0.95.
pub fn latency_sample(p95: Duration, u: f64) -> f64 {
    -(1.0 - u).ln() * p95.as_secs_f64() / 20f64.ln()
}

/// Splits `n` requests by `weights` (relative, sum > 0) with smooth weighted
/// round-robin; `credits` (one per weight) carry the fractions between calls.
pub fn split(n: u64, weights: &[f64], credits: &mut [f64]) -> Vec<u64> {
    let mut out = vec![0u64; weights.len()];
    let total: f64 = weights.iter().sum();
    if total <= 0.0 || weights.is_empty() {
        return out;
    }
    for _ in 0..n {
        for (c, w) in credits.iter_mut().zip(weights) {
            *c += w / total;
        }
        let mut best = 0;
        for i in 1..credits.len() {
            if credits[i] > credits[best] {
                best = i;
            }
        }
        credits[best] -= 1.0;
        out[best] += 1;
    }
    out
}

struct Variant {
    name: String,
    labels: VariantLabels,
    rng: XorShift64,
    /// Draws of the noise mode (a stream of its own: latencies stay the same).
    noise_rng: XorShift64,
    error_carry: f64,
    correct_carry: f64,
}

impl Variant {
    /// How many of `count` requests fail and how many of the others are
    /// correct predictions. With noise, one draw per request in request order
    /// (fails at `error_rate`; if not, correct at `accuracy`), so the k-th
    /// request's outcome depends only on the seed, not on how ticks cut the
    /// stream; without, the expected counts with their fractions carried.
    fn outcomes(&mut self, noise: bool, count: u64, p: &Params) -> (u64, u64) {
        let accuracy = p.accuracy / 100.0;
        if noise {
            let (mut failed, mut correct) = (0, 0);
            for _ in 0..count {
                if self.noise_rng.next_f64() < p.error_rate {
                    failed += 1;
                } else if self.noise_rng.next_f64() < accuracy {
                    correct += 1;
                }
            }
            return (failed, correct);
        }
        let carry = |carry: &mut f64, n: u64, rate: f64| {
            let want = n as f64 * rate + *carry;
            let k = ((want + EPSILON).floor() as u64).min(n);
            *carry = want - k as f64;
            k
        };
        let failed = carry(&mut self.error_carry, count, p.error_rate);
        let correct = carry(&mut self.correct_carry, count - failed, accuracy);
        (failed, correct)
    }
}

/// What one tick did (for logs and tests).
#[derive(Debug, Default)]
pub struct TickOutcome {
    /// Requests per variant, in [`Simulator::variant_names`] order.
    pub requests: Vec<u64>,
    /// Failed requests per variant.
    pub errors: Vec<u64>,
    /// Correct predictions per variant (of the successful requests).
    pub correct: Vec<u64>,
    /// Scenario steps applied in this tick.
    pub steps: Vec<Step>,
}

/// The simulator state for one experiment.
pub struct Simulator {
    registry: Arc<Registry>,
    metrics: Metrics,
    scenario: ScenarioState,
    variants: Vec<Variant>,
    weights: Vec<f64>,
    credits: Vec<f64>,
    /// `rate × time` integrated over the ticks so far (requests due).
    requests_due: f64,
    requests_made: u64,
    last_elapsed: Duration,
    window: VecDeque<(Duration, Vec<u64>)>,
    share_window: Duration,
    noise: bool,
}

impl Simulator {
    /// A simulator for the scenario's variants, starting at elapsed time 0.
    /// Every series exists from the start (counters at 0), so `rate()` sees the
    /// first requests. Fails if the weights name a variant the scenario lacks.
    pub fn new(
        experiment: &str,
        scenario: Scenario,
        weights: &Weights,
        seed: u64,
        share_window: Duration,
    ) -> Result<Self, String> {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let variants: Vec<Variant> = scenario
            .variants
            .keys()
            .map(|name| Variant {
                name: name.clone(),
                labels: VariantLabels {
                    model_name: name.clone(),
                    experiment: experiment.to_owned(),
                },
                rng: XorShift64::new(seed ^ fnv1a(name)),
                noise_rng: XorShift64::new(seed ^ fnv1a(name) ^ fnv1a("noise")),
                error_carry: 0.0,
                correct_carry: 0.0,
            })
            .collect();
        let n = variants.len();
        let mut sim = Self {
            registry: Arc::new(registry),
            metrics,
            scenario: ScenarioState::new(scenario),
            variants,
            weights: vec![0.0; n],
            credits: vec![0.0; n],
            requests_due: 0.0,
            requests_made: 0,
            last_elapsed: Duration::ZERO,
            window: VecDeque::new(),
            share_window,
            noise: false,
        };
        sim.set_weights(weights)?;
        for v in &sim.variants {
            for status in ["success", "error"] {
                sim.metrics.requests.get_or_create_owned(&RequestLabels {
                    model_name: v.name.clone(),
                    experiment: v.labels.experiment.clone(),
                    status: status.into(),
                });
            }
            for outcome in OUTCOMES {
                sim.metrics
                    .predictions
                    .get_or_create_owned(&PredictionLabels {
                        model_name: v.name.clone(),
                        experiment: v.labels.experiment.clone(),
                        outcome: outcome.into(),
                    });
            }
            sim.metrics.response_time.get_or_create_owned(&v.labels);
            sim.metrics.prediction.get_or_create_owned(&v.labels);
            sim.metrics.traffic.get_or_create(&v.labels).set(0.0);
        }
        sim.set_gauges();
        Ok(sim)
    }

    /// The registry to encode for `/metrics`.
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// Variant names (the scenario's, sorted).
    pub fn variant_names(&self) -> Vec<&str> {
        self.variants.iter().map(|v| v.name.as_str()).collect()
    }

    /// With noise, each request fails and each prediction is correct at
    /// random (seeded): the counts fluctuate around the scenario's rates as
    /// real traffic does. Without (the default), they follow the rates exactly.
    pub fn set_noise(&mut self, noise: bool) {
        self.noise = noise;
    }

    /// Switches to new weights. Variants of the scenario that are not
    /// candidates get weight 0; a candidate the scenario does not know is an
    /// error (the weights stay as they were).
    pub fn set_weights(&mut self, w: &Weights) -> Result<(), String> {
        let unknown: Vec<&str> = w
            .candidates
            .iter()
            .filter(|(n, _)| !self.variants.iter().any(|v| v.name == *n))
            .map(|(n, _)| n.as_str())
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "candidates {unknown:?} are not variants of the scenario {:?}",
                self.variant_names()
            ));
        }
        let new: Vec<f64> = self
            .variants
            .iter()
            .map(|v| {
                w.candidates
                    .iter()
                    .find(|(n, _)| *n == v.name)
                    .map_or(0.0, |(_, x)| *x)
            })
            .collect();
        if new != self.weights {
            self.weights = new;
            // Credits earned under the old weights would skew the new split.
            self.credits.iter_mut().for_each(|c| *c = 0.0);
        }
        Ok(())
    }

    /// Advances the simulation to `elapsed` (time since the start) at `rate`
    /// requests per second.
    pub fn tick(&mut self, elapsed: Duration, rate: f64) -> TickOutcome {
        let steps = self.scenario.advance(elapsed).to_vec();
        // Requests made so far = rate × time since the start (whole part), so
        // the fraction carries over from tick to tick; EPSILON absorbs
        // floating-point error (0.7 × 100 s must be 70, not 69.999…).
        if elapsed > self.last_elapsed {
            self.requests_due += rate.max(0.0) * (elapsed - self.last_elapsed).as_secs_f64();
            self.last_elapsed = elapsed;
        }
        // Non-negative and far inside u64 for any sane rate (`as` saturates anyway).
        let due = (self.requests_due + EPSILON).floor() as u64;
        let n = due.saturating_sub(self.requests_made);
        self.requests_made += n;
        let requests = split(n, &self.weights, &mut self.credits);

        let mut errors = Vec::with_capacity(self.variants.len());
        let mut correct = Vec::with_capacity(self.variants.len());
        let noise = self.noise;
        for (v, &count) in self.variants.iter_mut().zip(&requests) {
            let params = self.scenario.current()[&v.name];
            let (failed, right) = v.outcomes(noise, count, &params);
            errors.push(failed);
            correct.push(right);
            for (outcome, n) in [("correct", right), ("incorrect", count - failed - right)] {
                self.metrics
                    .predictions
                    .get_or_create(&PredictionLabels {
                        model_name: v.name.clone(),
                        experiment: v.labels.experiment.clone(),
                        outcome: outcome.into(),
                    })
                    .inc_by(n);
            }

            let counter = |status: &str| RequestLabels {
                model_name: v.name.clone(),
                experiment: v.labels.experiment.clone(),
                status: status.into(),
            };
            self.metrics
                .requests
                .get_or_create(&counter("success"))
                .inc_by(count - failed);
            self.metrics
                .requests
                .get_or_create(&counter("error"))
                .inc_by(failed);

            // Owned handles (Arc inside): no family lock held while observing.
            let latency = self.metrics.response_time.get_or_create_owned(&v.labels);
            let prediction = self.metrics.prediction.get_or_create_owned(&v.labels);
            for i in 0..count {
                latency.observe(latency_sample(params.latency, v.rng.next_f64()));
                if i >= failed {
                    let jitter = 0.25 * (v.rng.next_f64() - v.rng.next_f64());
                    prediction.observe((params.accuracy / 100.0 + jitter).clamp(0.0, 1.0));
                }
            }
        }

        self.window.push_back((elapsed, requests.clone()));
        while let Some((t, _)) = self.window.front() {
            if *t + self.share_window <= elapsed {
                self.window.pop_front();
            } else {
                break;
            }
        }
        self.set_gauges();
        TickOutcome {
            requests,
            errors,
            correct,
            steps,
        }
    }

    /// Percent of the requests of the last `share_window` per variant (0 if none).
    pub fn recent_shares(&self) -> Vec<f64> {
        let mut sums = vec![0u64; self.variants.len()];
        for (_, counts) in &self.window {
            for (s, c) in sums.iter_mut().zip(counts) {
                *s += c;
            }
        }
        let total: u64 = sums.iter().sum();
        sums.iter()
            .map(|&s| {
                if total == 0 {
                    0.0
                } else {
                    100.0 * s as f64 / total as f64
                }
            })
            .collect()
    }

    fn set_gauges(&self) {
        let shares = self.recent_shares();
        for (v, share) in self.variants.iter().zip(shares) {
            let params = self.scenario.current()[&v.name];
            self.metrics.traffic.get_or_create(&v.labels).set(share);
            // Accuracy and business impact are measured on served predictions:
            // a variant that got no traffic in the window has no measurement,
            // so its series go away (and alerts on them resolve) — as they
            // would for a model that was rolled back.
            let serving = share > 0.0;
            if serving {
                self.metrics
                    .accuracy
                    .get_or_create(&v.labels)
                    .set(params.accuracy);
            } else {
                self.metrics.accuracy.remove(&v.labels);
            }
            for (kind, value) in IMPACT_TYPES.iter().zip(business_impact(&params)) {
                let labels = ImpactLabels {
                    model_name: v.name.clone(),
                    experiment: v.labels.experiment.clone(),
                    metric_type: (*kind).to_owned(),
                };
                if serving {
                    self.metrics.business.get_or_create(&labels).set(value);
                } else {
                    self.metrics.business.remove(&labels);
                }
            }
        }
    }
}

/// The OpenMetrics text of a registry.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = "
variants:
  baseline-predictor: {accuracy: 72, latency: 80ms, error_rate: 0.01}
  enhanced-predictor: {accuracy: 78, latency: 60ms, error_rate: 0.005}
steps:
  - after: 20s
    set: {enhanced-predictor: {accuracy: 50}}
";

    fn weights(list: &[(&str, f64)]) -> Weights {
        Weights {
            experiment: None,
            candidates: list.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect(),
        }
    }

    fn sim(scenario: &str, w: &[(&str, f64)]) -> Simulator {
        let s = Scenario::parse(scenario, "s.yaml").expect("scenario");
        Simulator::new("exp", s, &weights(w), 7, Duration::from_secs(5)).expect("simulator")
    }

    /// Runs ticks of `tick` from `from` to `to` (exclusive of `from`).
    fn run(s: &mut Simulator, from: Duration, to: Duration, tick: Duration, rate: f64) -> Vec<u64> {
        let mut totals = vec![0; s.variants.len()];
        let mut t = from;
        while t < to {
            t += tick;
            let out = s.tick(t, rate);
            for (a, b) in totals.iter_mut().zip(out.requests) {
                *a += b;
            }
        }
        totals
    }

    /// Sample values of `metric` for one model, as (label text, value).
    fn samples(text: &str, metric: &str, model: &str) -> Vec<(String, f64)> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{metric}{{")))
            .filter(|l| l.contains(&format!("model_name=\"{model}\"")))
            .map(|l| {
                let (labels, value) = l.rsplit_once(' ').expect("sample line");
                (labels.to_owned(), value.parse().expect("sample value"))
            })
            .collect()
    }

    fn value(text: &str, metric: &str, model: &str, label: &str) -> f64 {
        let s: Vec<_> = samples(text, metric, model)
            .into_iter()
            .filter(|(l, _)| l.contains(label))
            .collect();
        assert_eq!(s.len(), 1, "{metric} {model} {label}: {s:?}");
        s[0].1
    }

    /// histogram_quantile as Prometheus computes it (linear within a bucket).
    fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
        let total = buckets.last().expect("buckets").1;
        let rank = q * total;
        let mut prev = (0.0, 0.0);
        for &(le, count) in buckets {
            if count >= rank {
                if le.is_infinite() {
                    return prev.0;
                }
                return prev.0 + (le - prev.0) * (rank - prev.1) / (count - prev.1);
            }
            prev = (le, count);
        }
        f64::NAN
    }

    #[test]
    fn split_follows_weights_exactly_at_every_prefix() {
        for ws in [
            vec![70.0, 30.0],
            vec![100.0, 0.0],
            vec![0.0, 100.0],
            vec![50.0, 30.0, 20.0],
            vec![1.0, 1.0, 1.0],
            vec![3.0, 0.0, 1.0],
        ] {
            let total: f64 = ws.iter().sum();
            let mut credits = vec![0.0; ws.len()];
            let mut counts = vec![0u64; ws.len()];
            let mut n = 0u64;
            // Uneven tick sizes, as a real clock gives.
            for k in 0..500u64 {
                let step = 1 + (k * 7) % 5;
                let out = split(step, &ws, &mut credits);
                assert_eq!(out.iter().sum::<u64>(), step);
                n += step;
                for ((c, o), w) in counts.iter_mut().zip(out).zip(&ws) {
                    *c += o;
                    let ideal = n as f64 * w / total;
                    assert!(
                        (*c as f64 - ideal).abs() < ws.len() as f64 - 0.5,
                        "{ws:?}: {c} vs {ideal} after {n}"
                    );
                    if *w == 0.0 {
                        assert_eq!(*c, 0, "{ws:?}: a zero weight gets nothing");
                    }
                }
            }
        }
    }

    #[test]
    fn requests_and_errors_follow_rate_weights_and_error_rate() {
        let mut s = sim(
            SCENARIO,
            &[("baseline-predictor", 70.0), ("enhanced-predictor", 30.0)],
        );
        assert_eq!(
            s.variant_names(),
            ["baseline-predictor", "enhanced-predictor"]
        );
        // 10 s at 50 rps in 100 ms ticks: 500 requests, 350/150.
        let mut errors = [0u64; 2];
        let mut totals = [0u64; 2];
        for i in 1..=100 {
            let out = s.tick(Duration::from_millis(100 * i), 50.0);
            for k in 0..2 {
                totals[k] += out.requests[k];
                errors[k] += out.errors[k];
            }
        }
        assert_eq!(totals, [350, 150]);
        // 1 % of 350 = 3.5 -> 3 so far; 0.5 % of 150 = 0.75 -> 0.
        assert_eq!(errors, [3, 0]);

        let text = encode(&s.registry()).expect("encode");
        let b = "baseline-predictor";
        assert_eq!(
            value(&text, "ab_test_requests_total", b, "status=\"success\""),
            347.0
        );
        assert_eq!(
            value(&text, "ab_test_requests_total", b, "status=\"error\""),
            3.0
        );
        assert_eq!(
            value(&text, "ab_test_response_time_seconds_count", b, ""),
            350.0
        );
        assert_eq!(value(&text, "ab_test_prediction_value_count", b, ""), 347.0);
        assert!(text.contains("experiment=\"exp\""));

        // A fractional rate is exact in the long run: 0.7 rps over 100 s.
        let mut s = sim(SCENARIO, &[("baseline-predictor", 1.0)]);
        let t = run(
            &mut s,
            Duration::ZERO,
            Duration::from_secs(100),
            Duration::from_millis(100),
            0.7,
        );
        assert_eq!(t, [70, 0]);
    }

    #[test]
    fn predictions_are_counted_correct_or_incorrect_by_accuracy() {
        let mut s = sim(
            SCENARIO,
            &[("baseline-predictor", 70.0), ("enhanced-predictor", 30.0)],
        );
        // 10 s at 50 rps: 350/150 requests, 347/150 successful (see above).
        run(
            &mut s,
            Duration::ZERO,
            Duration::from_secs(10),
            Duration::from_millis(100),
            50.0,
        );
        let text = encode(&s.registry()).expect("encode");
        let got = |model, outcome| {
            value(
                &text,
                "ab_test_predictions_total",
                model,
                &format!("outcome=\"{outcome}\""),
            )
        };
        // 72% of 347 = 249.84 -> 249 so far; 78% of 150 = 117.
        assert_eq!(got("baseline-predictor", "correct"), 249.0);
        assert_eq!(got("baseline-predictor", "incorrect"), 98.0);
        assert_eq!(got("enhanced-predictor", "correct"), 117.0);
        assert_eq!(got("enhanced-predictor", "incorrect"), 33.0);
        // The gauge stays the scenario's accuracy.
        assert_eq!(
            value(&text, "ab_test_model_accuracy", "enhanced-predictor", ""),
            78.0
        );
    }

    #[test]
    fn noise_outcomes_do_not_depend_on_how_ticks_cut_the_requests() {
        // No scenario step: a step applies at a tick, which differs by tick size.
        let scenario = "variants:\n  baseline-predictor: {accuracy: 72, latency: 80ms, error_rate: 0.1}\n  enhanced-predictor: {accuracy: 60, latency: 60ms, error_rate: 0.2}\n";
        let go = |tick_ms: u64| {
            let mut s = sim(
                scenario,
                &[("baseline-predictor", 70.0), ("enhanced-predictor", 30.0)],
            );
            s.set_noise(true);
            let (mut e, mut c) = (vec![0u64; 2], vec![0u64; 2]);
            let mut t = Duration::ZERO;
            while t < Duration::from_secs(20) {
                t += Duration::from_millis(tick_ms);
                let out = s.tick(t, 50.0);
                for k in 0..2 {
                    e[k] += out.errors[k];
                    c[k] += out.correct[k];
                }
            }
            (e, c)
        };
        assert_eq!(go(100), go(1000));
        assert_eq!(go(100), go(20));
    }

    #[test]
    fn noise_draws_outcomes_at_random_around_the_rates_and_is_seeded() {
        let go = |seed| {
            let s = Scenario::parse(
                "variants: {v: {accuracy: 70, latency: 80ms, error_rate: 0.1}}",
                "s.yaml",
            )
            .expect("scenario");
            let mut s = Simulator::new(
                "exp",
                s,
                &weights(&[("v", 1.0)]),
                seed,
                Duration::from_secs(5),
            )
            .expect("simulator");
            s.set_noise(true);
            let mut per_tick = Vec::new();
            let (mut errors, mut correct) = (0u64, 0u64);
            let mut t = Duration::ZERO;
            // 2,000 ticks of 10 requests.
            for _ in 0..2000 {
                t += Duration::from_millis(100);
                let out = s.tick(t, 100.0);
                per_tick.push(out.errors[0]);
                errors += out.errors[0];
                correct += out.correct[0];
            }
            (per_tick, errors, correct)
        };
        let (ticks, errors, correct) = go(1);
        // 20,000 requests at 10%: 2,000 errors ± 3 sd (42).
        assert!((errors as f64 - 2000.0).abs() < 130.0, "{errors}");
        // 70% of the 18,000 successes: 12,600 ± 3 sd (61).
        assert!(
            (correct as f64 - 0.7 * (20_000 - errors) as f64).abs() < 200.0,
            "{correct}"
        );
        // Random, not the exact 1 per tick of the carry.
        assert!(
            ticks.contains(&0) && ticks.iter().any(|&e| e >= 3),
            "{ticks:?}"
        );
        assert_eq!(go(1), (ticks, errors, correct), "same seed, same draws");
        assert_ne!(go(2).1, errors, "another seed, other draws");
    }

    #[test]
    fn a_variant_without_traffic_has_no_accuracy_or_business_series() {
        let mut s = sim(SCENARIO, &[("baseline-predictor", 1.0)]);
        for i in 1..=10 {
            s.tick(Duration::from_millis(100 * i), 50.0);
        }
        let text = encode(&s.registry()).expect("encode");
        assert_eq!(
            value(&text, "ab_test_model_accuracy", "baseline-predictor", ""),
            72.0
        );
        assert_eq!(
            samples(&text, "ab_test_business_impact", "baseline-predictor").len(),
            3
        );
        assert!(samples(&text, "ab_test_model_accuracy", "enhanced-predictor").is_empty());
        assert!(samples(&text, "ab_test_business_impact", "enhanced-predictor").is_empty());
        assert_eq!(
            value(
                &text,
                "ab_test_traffic_percentage",
                "enhanced-predictor",
                ""
            ),
            0.0
        );
    }

    #[test]
    fn series_exist_before_the_first_request() {
        let s = sim(SCENARIO, &[("baseline-predictor", 1.0)]);
        let text = encode(&s.registry()).expect("encode");
        for model in ["baseline-predictor", "enhanced-predictor"] {
            for outcome in OUTCOMES {
                assert_eq!(
                    value(
                        &text,
                        "ab_test_predictions_total",
                        model,
                        &format!("outcome=\"{outcome}\"")
                    ),
                    0.0
                );
            }
            for status in ["success", "error"] {
                assert_eq!(
                    value(
                        &text,
                        "ab_test_requests_total",
                        model,
                        &format!("status=\"{status}\"")
                    ),
                    0.0
                );
            }
            // Measured on served predictions: nothing served yet, nothing measured.
            assert!(samples(&text, "ab_test_model_accuracy", model).is_empty());
            assert!(samples(&text, "ab_test_business_impact", model).is_empty());
            assert_eq!(
                samples(&text, "ab_test_response_time_seconds_bucket", model).len(),
                12
            );
            assert_eq!(
                samples(&text, "ab_test_prediction_value_bucket", model).len(),
                11
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn weight_changes_take_effect_and_traffic_share_follows() {
        let mut s = sim(
            SCENARIO,
            &[("baseline-predictor", 70.0), ("enhanced-predictor", 30.0)],
        );
        let tick = Duration::from_millis(100);
        run(&mut s, Duration::ZERO, Duration::from_secs(10), tick, 50.0);
        let shares = s.recent_shares();
        assert!(
            (shares[0] - 70.0).abs() < 1.0 && (shares[1] - 30.0).abs() < 1.0,
            "{shares:?}"
        );

        s.set_weights(&weights(&[
            ("baseline-predictor", 100.0),
            ("enhanced-predictor", 0.0),
        ]))
        .expect("weights");
        let t = run(
            &mut s,
            Duration::from_secs(10),
            Duration::from_secs(20),
            tick,
            50.0,
        );
        assert_eq!(t, [500, 0]);
        let text = encode(&s.registry()).expect("encode");
        assert_eq!(
            value(
                &text,
                "ab_test_traffic_percentage",
                "enhanced-predictor",
                ""
            ),
            0.0
        );
        assert_eq!(
            value(
                &text,
                "ab_test_traffic_percentage",
                "baseline-predictor",
                ""
            ),
            100.0
        );

        // A variant missing from the file gets 0; an unknown one is refused.
        s.set_weights(&weights(&[("enhanced-predictor", 5.0)]))
            .expect("weights");
        let t = run(
            &mut s,
            Duration::from_secs(20),
            Duration::from_secs(21),
            tick,
            50.0,
        );
        assert_eq!(t, [0, 50]);
        let err = s
            .set_weights(&weights(&[("enhanced-predictor", 5.0), ("other", 5.0)]))
            .expect_err("unknown variant");
        assert!(err.contains("other"), "{err}");
        let t = run(
            &mut s,
            Duration::from_secs(21),
            Duration::from_secs(22),
            tick,
            50.0,
        );
        assert_eq!(t, [0, 50], "weights unchanged after a refused file");
    }

    #[test]
    fn scenario_steps_reach_the_gauges_at_their_time() {
        let mut s = sim(
            SCENARIO,
            &[("baseline-predictor", 70.0), ("enhanced-predictor", 30.0)],
        );
        let e = "enhanced-predictor";
        let out = s.tick(Duration::from_millis(19_900), 50.0);
        assert!(out.steps.is_empty());
        let text = encode(&s.registry()).expect("encode");
        assert_eq!(value(&text, "ab_test_model_accuracy", e, ""), 78.0);
        let net = value(&text, "ab_test_business_impact", e, "net_business_value");
        assert!(net > 0.0, "healthy net value {net}");

        let out = s.tick(Duration::from_millis(20_000), 50.0);
        assert_eq!(out.steps.len(), 1);
        let text = encode(&s.registry()).expect("encode");
        assert_eq!(value(&text, "ab_test_model_accuracy", e, ""), 50.0);
        let net = value(&text, "ab_test_business_impact", e, "net_business_value");
        assert!(
            net < -20.0,
            "a bad variant is below NegativeBusinessImpact's -20: {net}"
        );
        assert_eq!(
            value(&text, "ab_test_model_accuracy", "baseline-predictor", ""),
            72.0
        );
    }

    #[test]
    fn business_impact_formula() {
        let p = |accuracy, ms, error_rate| Params {
            accuracy,
            latency: Duration::from_millis(ms),
            error_rate,
        };
        let close = |a: [f64; 3], b: [f64; 3]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9);
        assert!(close(
            business_impact(&p(72.0, 80, 0.01)),
            [23.76, 10.0, 13.76]
        ));
        assert!(close(
            business_impact(&p(78.0, 60, 0.005)),
            [35.82, 7.0, 28.82]
        ));
        assert!(business_impact(&p(50.0, 60, 0.005))[2] < -20.0);
        assert!(business_impact(&p(72.0, 80, 0.3))[2] < -20.0, "30 % errors");
        assert!(
            business_impact(&p(72.0, 500, 0.01))[2] < -20.0,
            "500 ms p95"
        );
    }

    #[test]
    fn latency_p95_lands_near_the_configured_latency() {
        for ms in [60u64, 80, 150, 200, 250, 1000] {
            let scenario =
                format!("variants: {{v: {{accuracy: 70, latency: {ms}ms, error_rate: 0}}}}");
            let mut s = sim(&scenario, &[("v", 1.0)]);
            // 40,000 requests.
            run(
                &mut s,
                Duration::ZERO,
                Duration::from_secs(400),
                Duration::from_millis(100),
                100.0,
            );
            let text = encode(&s.registry()).expect("encode");
            let buckets: Vec<(f64, f64)> =
                samples(&text, "ab_test_response_time_seconds_bucket", "v")
                    .into_iter()
                    .map(|(labels, count)| {
                        let le = labels
                            .split("le=\"")
                            .nth(1)
                            .and_then(|r| r.split('"').next())
                            .expect("le");
                        let le = if le == "+Inf" {
                            f64::INFINITY
                        } else {
                            le.parse().expect("le value")
                        };
                        (le, count)
                    })
                    .collect();
            assert_eq!(buckets.len(), LATENCY_BUCKETS.len() + 1);
            let want = ms as f64 / 1000.0;
            let got = histogram_quantile(0.95, &buckets);
            // Exact at bucket bounds; elsewhere off by the linear interpolation
            // within a bucket (at worst ~20 % with these bucket widths).
            assert!(
                (got - want).abs() / want < 0.2,
                "p95 for {ms}ms: histogram_quantile says {got}"
            );
        }

        // The samples themselves have their 95th percentile at the latency.
        let mut r = XorShift64::new(1);
        let mut xs: Vec<f64> = (0..100_000)
            .map(|_| latency_sample(Duration::from_millis(80), r.next_f64()))
            .collect();
        xs.sort_by(f64::total_cmp);
        let p95 = xs[95_000];
        assert!((p95 - 0.08).abs() < 0.08 * 0.03, "sample p95 {p95}");
    }

    #[test]
    fn deterministic_for_a_seed() {
        let go = || {
            let mut s = sim(
                SCENARIO,
                &[("baseline-predictor", 70.0), ("enhanced-predictor", 30.0)],
            );
            run(
                &mut s,
                Duration::ZERO,
                Duration::from_secs(30),
                Duration::from_millis(100),
                50.0,
            );
            // Series order within a family is a hash map's: compare sorted lines.
            let text = encode(&s.registry()).expect("encode");
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        assert_eq!(go(), go());
    }
}

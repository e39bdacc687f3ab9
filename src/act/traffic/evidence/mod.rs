//! The evidence guard of `traffic_shift`: shift only when an always-valid
//! test on per-variant **counts** says the alerting variant is worse than the
//! variant traffic would move to.
//!
//! ```yaml
//! evidence:
//!   metric: error_rate      # error_rate | accuracy | slow_requests
//!   alpha: 0.05             # false-shift rate guaranteed under continuous monitoring
//!   min_samples: 200        # per variant, before anything is decided
//!   window: since_start     # or a duration (counts over the last 1h, …)
//!   # max_age: 1h           # deferred: evaluated again until the run is this old
//!   # mixing_sd: 0.02       # τ of the test (see stats.rs)
//!   # slow_above: 200ms     # slow_requests: a bucket bound of the histogram
//!   # queries: {total: '<selector>', bad: '<selector>'}   # other metric names
//! ```
//!
//! The counts come from Prometheus (the same client as enrichment): for each
//! of `bad` and `total`, `sum by (<variant label>) (<selector>)` with
//! `since_start`, `sum by (…) (increase(<selector>[<window>]))` otherwise.
//! `bad` may instead be given as `total − good` (slow requests: all minus
//! those in the bucket at the threshold). Selectors are query templates like
//! enrichment's (`{{ labels.experiment }}`, escaped, inside quoted strings).
//!
//! The call ([`stats::Call`]) becomes the decision: `FromWorse` lets the shift
//! through, `ToWorse` blocks it, `TooFewSamples`/`Inconclusive` defer it (the
//! run is retried with backoff until the action's `max_age`, then dead with
//! the reason), as does a failed query: the guard never shifts blind.

pub mod stats;

use crate::enrich::prometheus::{PrometheusClient, QueryResult};
use crate::enrich::template::{QueryTemplate, TemplateVars};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};
use stats::{Call, Counts, Judgement};
use std::collections::BTreeMap;
use std::time::Duration;

/// What is counted as a bad outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Failed requests: `ab_test_requests_total{status="error"}` of all.
    ErrorRate,
    /// Incorrect predictions: `ab_test_predictions_total{outcome="incorrect"}` of all.
    Accuracy,
    /// Requests slower than `slow_above`: from `ab_test_response_time_seconds`.
    SlowRequests,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error_rate",
            Metric::Accuracy => "accuracy",
            Metric::SlowRequests => "slow_requests",
        }
    }

    /// How a rate of bad outcomes reads in a message.
    fn what(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error rate",
            Metric::Accuracy => "incorrect predictions",
            Metric::SlowRequests => "slow requests",
        }
    }
}

/// Counts since the series started, or over a trailing window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Window {
    /// The counters as they are: the data only grow, as the test assumes.
    #[default]
    SinceStart,
    /// `increase(…[window])`.
    Last(Duration),
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Window::SinceStart => s.serialize_str("since_start"),
            Window::Last(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "since_start" {
            return Ok(Window::SinceStart);
        }
        humantime::parse_duration(&text)
            .map(Window::Last)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "{text:?} is neither `since_start` nor a duration such as 1h: {e}"
                ))
            })
    }
}

/// `queries:`: selectors for other metric names.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Queries {
    /// Selector of the counter of all outcomes.
    pub total: String,
    /// Selector of the counter of bad outcomes…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad: Option<String>,
    /// …or of good ones (bad = total − good).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good: Option<String>,
}

/// `evidence:` of a `traffic_shift` action.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceConfig {
    pub metric: Metric,
    /// The false-shift rate guaranteed however often the guard looks.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Per variant, before anything is decided.
    #[serde(default = "default_min_samples")]
    pub min_samples: u64,
    #[serde(default)]
    pub window: Window,
    /// τ, the standard deviation of the test's normal mixture (a fraction:
    /// 0.02 = 2 points); the test is most sensitive to differences about
    /// this size.
    #[serde(default = "default_mixing_sd")]
    pub mixing_sd: f64,
    /// `slow_requests`: requests slower than this are bad; must be a bucket
    /// bound of the histogram.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::conf::opt_duration"
    )]
    pub slow_above: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries: Option<Queries>,
    /// How long a deferred decision keeps being evaluated again (with the
    /// worker's backoff, whatever `worker.max_attempts` says) before the run
    /// is dead with the evidence as its reason.
    #[serde(default = "default_max_age", with = "crate::conf::duration")]
    pub max_age: Duration,
}

fn default_max_age() -> Duration {
    Duration::from_secs(3600)
}

fn default_alpha() -> f64 {
    0.05
}
fn default_min_samples() -> u64 {
    200
}
fn default_mixing_sd() -> f64 {
    0.02
}

impl EvidenceConfig {
    /// Offline validation; errors are relative to `evidence.` (`alpha: …`).
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(self.alpha > 0.0 && self.alpha <= 0.5) {
            errors.push(format!(
                "alpha: must be in (0, 0.5], got {} (0.05: at most 5% of shifts on noise)",
                self.alpha
            ));
        }
        if self.min_samples == 0 {
            errors.push("min_samples: must be at least 1 (200 is a sensible floor)".into());
        }
        if !(self.mixing_sd > 0.0 && self.mixing_sd < 1.0) {
            errors.push(format!(
                "mixing_sd: must be in (0, 1), a fraction (0.02 = 2 points), got {}",
                self.mixing_sd
            ));
        }
        if self.max_age < Duration::from_secs(1) {
            errors.push("max_age: must be at least 1s".into());
        }
        if let Window::Last(d) = self.window {
            if d < Duration::from_secs(60) {
                errors.push("window: must be at least 1m (or since_start)".into());
            }
        }
        match (self.metric, self.slow_above) {
            (Metric::SlowRequests, None) if self.queries.is_none() => errors.push(
                "slow_above: required with metric: slow_requests (a bucket bound, e.g. 200ms)"
                    .into(),
            ),
            (Metric::SlowRequests, Some(d)) if d.is_zero() => {
                errors.push("slow_above: must be greater than 0".into());
            }
            (Metric::ErrorRate | Metric::Accuracy, Some(_)) => errors.push(format!(
                "slow_above: only for metric: slow_requests, not {}",
                self.metric.name()
            )),
            _ => {}
        }
        if let Some(q) = &self.queries {
            match (&q.bad, &q.good) {
                (Some(_), Some(_)) => {
                    errors.push("queries: give `bad` or `good`, not both".into());
                }
                (None, None) => errors.push(
                    "queries: needs `bad` (or `good`, bad = total − good) next to `total`".into(),
                ),
                _ => {}
            }
            for (key, source) in [
                ("total", Some(&q.total)),
                ("bad", q.bad.as_ref()),
                ("good", q.good.as_ref()),
            ] {
                if let Some(source) = source {
                    if let Err(e) = QueryTemplate::compile(source) {
                        errors.push(format!("queries.{key}: {e}"));
                    }
                }
            }
        }
        errors
    }

    /// The default selectors (templates) of the metric.
    fn default_queries(&self) -> Queries {
        let exp = r#"experiment="{{ labels.experiment }}""#;
        match self.metric {
            Metric::ErrorRate => Queries {
                total: format!("ab_test_requests_total{{{exp}}}"),
                bad: Some(format!("ab_test_requests_total{{{exp}, status=\"error\"}}")),
                good: None,
            },
            Metric::Accuracy => Queries {
                total: format!("ab_test_predictions_total{{{exp}}}"),
                bad: Some(format!(
                    "ab_test_predictions_total{{{exp}, outcome=\"incorrect\"}}"
                )),
                good: None,
            },
            Metric::SlowRequests => {
                let le = le_matcher(self.slow_above.unwrap_or_default());
                Queries {
                    total: format!("ab_test_response_time_seconds_count{{{exp}}}"),
                    bad: None,
                    good: Some(format!(
                        "ab_test_response_time_seconds_bucket{{{exp}, le=~\"{le}\"}}"
                    )),
                }
            }
        }
    }
}

/// A regular expression matching the `le` label of the bucket bound `d`
/// however the exporter formats it (`0.2`, `0.20`, `1`, `1.0`).
fn le_matcher(d: Duration) -> String {
    let text = format!("{}", d.as_secs_f64());
    let escaped = text.replace('.', "\\\\.");
    if text.contains('.') {
        format!("{escaped}0*")
    } else {
        format!("{escaped}(\\\\.0*)?")
    }
}

/// The compiled guard of one action.
pub struct EvidenceGuard {
    config: EvidenceConfig,
    total: QueryTemplate,
    bad: Option<QueryTemplate>,
    good: Option<QueryTemplate>,
}

/// The three queries of one evaluation (rendered).
#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
    pub bad: String,
    pub total: String,
}

/// What the guard found.
#[derive(Debug, Clone)]
pub enum Evaluation {
    /// Counts were read; the judgement decides.
    Judged(Evidence),
    /// No counts (query failed or could not be rendered): defer.
    Unavailable { reason: String, queries: Value },
}

/// The evidence of one evaluation: what every decision records.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub metric: Metric,
    pub window: Window,
    pub min_samples: u64,
    pub from: String,
    pub to: String,
    pub judgement: Judgement,
    pub queries: Rendered,
}

impl Evidence {
    /// The decision this evidence asks for.
    pub fn call(&self) -> Call {
        self.judgement.call
    }

    /// `enhanced-predictor error rate 4.1% vs 1.2%, n = 2,310 / 5,402, 95%
    /// always-valid CI of the difference [1.6, 4.3] points`.
    pub fn summary(&self) -> String {
        let j = &self.judgement;
        let (lo, hi) = j.interval;
        format!(
            "{} {} {:.1}% vs {:.1}% ({}), n = {} / {}, {}% always-valid CI of the difference [{:.1}, {:.1}] points, p = {}",
            self.from,
            self.metric.what(),
            100.0 * j.from.rate(),
            100.0 * j.to.rate(),
            self.to,
            thousands(j.from.total),
            thousands(j.to.total),
            percent(1.0 - j.alpha),
            100.0 * lo,
            100.0 * hi,
            p_value(j.test.p_value()),
        )
    }

    /// Why the call is what it is, after the numbers.
    pub fn reason(&self) -> String {
        let why = match self.call() {
            Call::TooFewSamples => format!(
                "not enough samples yet (min_samples {} per variant)",
                thousands(self.min_samples as f64)
            ),
            Call::Inconclusive => {
                "the interval covers 0: not enough evidence that it is worse".to_owned()
            }
            Call::FromWorse => format!("{} is worse than {}", self.from, self.to),
            Call::ToWorse => format!("{} is worse than {}: it is not better", self.to, self.from),
        };
        format!("evidence: {}: {why}", self.summary())
    }

    /// The structured record (action run result, plan, API).
    pub fn json(&self) -> Value {
        let j = &self.judgement;
        json!({
            "metric": self.metric.name(),
            "window": serde_json::to_value(self.window).unwrap_or(Value::Null),
            "call": match j.call {
                Call::TooFewSamples => "too_few_samples",
                Call::Inconclusive => "inconclusive",
                Call::FromWorse => "from_worse",
                Call::ToWorse => "to_worse",
            },
            "from": {"variant": self.from, "bad": j.from.bad, "n": j.from.total, "rate": j.from.rate()},
            "to": {"variant": self.to, "bad": j.to.bad, "n": j.to.total, "rate": j.to.rate()},
            "difference": j.test.difference,
            "interval": [j.interval.0, j.interval.1],
            "confidence": 1.0 - j.alpha,
            "alpha": j.alpha,
            "min_samples": self.min_samples,
            "statistic": {
                "log_likelihood_ratio": j.test.log_likelihood_ratio(0.0),
                "p_value": j.test.p_value(),
                "z": j.test.z(),
                "variance": j.test.variance,
                "mixing_sd": j.test.mixing_variance.sqrt(),
            },
            "queries": self.queries,
            "summary": self.summary(),
        })
    }
}

/// The decision the evidence asks for, as `traffic_evidence_decision` names it.
pub fn decision_name(call: Call) -> &'static str {
    match call {
        Call::FromWorse => "shift",
        Call::ToWorse => "blocked",
        Call::TooFewSamples | Call::Inconclusive => "deferred",
    }
}

const DECISIONS: [&str; 3] = ["shift", "deferred", "blocked"];

/// Creates the `traffic_evidence_*` series of a target: NaN (nothing
/// measured yet), every decision 0.
pub fn declare(m: &crate::metrics::EvidenceMetrics, target: &str) {
    use crate::metrics::{BoundLabels, EvidenceDecisionLabels, RoleLabels, TargetLabels};
    for role in ["from", "to"] {
        let l = RoleLabels {
            target: target.to_owned(),
            role: role.to_owned(),
        };
        m.samples.get_or_create(&l).set(f64::NAN);
        m.bad_ratio.get_or_create(&l).set(f64::NAN);
    }
    for bound in ["estimate", "lower", "upper"] {
        m.difference
            .get_or_create(&BoundLabels {
                target: target.to_owned(),
                bound: bound.to_owned(),
            })
            .set(f64::NAN);
    }
    m.p_value
        .get_or_create(&TargetLabels {
            target: target.to_owned(),
        })
        .set(f64::NAN);
    for d in DECISIONS {
        m.decision
            .get_or_create(&EvidenceDecisionLabels {
                target: target.to_owned(),
                decision: d.to_owned(),
            })
            .set(0);
    }
}

/// Publishes one evaluation of `target` (a configured target).
pub fn publish(m: &crate::metrics::EvidenceMetrics, target: &str, e: &Evidence) {
    use crate::metrics::{BoundLabels, EvidenceDecisionLabels, RoleLabels, TargetLabels};
    let j = &e.judgement;
    for (role, c) in [("from", j.from), ("to", j.to)] {
        let l = RoleLabels {
            target: target.to_owned(),
            role: role.to_owned(),
        };
        m.samples.get_or_create(&l).set(c.total);
        m.bad_ratio.get_or_create(&l).set(c.rate());
    }
    for (bound, v) in [
        ("estimate", j.test.difference),
        ("lower", j.interval.0),
        ("upper", j.interval.1),
    ] {
        m.difference
            .get_or_create(&BoundLabels {
                target: target.to_owned(),
                bound: bound.to_owned(),
            })
            .set(v);
    }
    m.p_value
        .get_or_create(&TargetLabels {
            target: target.to_owned(),
        })
        .set(j.test.p_value());
    let chosen = decision_name(j.call);
    for d in DECISIONS {
        m.decision
            .get_or_create(&EvidenceDecisionLabels {
                target: target.to_owned(),
                decision: d.to_owned(),
            })
            .set(i64::from(d == chosen));
    }
}

/// `2,310`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `95` for 0.95, `99.5` for 0.995.
fn percent(x: f64) -> String {
    let s = format!("{:.2}", 100.0 * x);
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn p_value(p: f64) -> String {
    if p >= 0.001 {
        format!("{p:.3}")
    } else {
        format!("{p:.1e}")
    }
}

impl EvidenceGuard {
    /// Compiles the guard (validated config: errors here repeat validation's).
    pub fn new(config: EvidenceConfig) -> Result<Self, String> {
        let errors = config.validate();
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        let q = config
            .queries
            .clone()
            .unwrap_or_else(|| config.default_queries());
        let compile = |s: &Option<String>| s.as_deref().map(QueryTemplate::compile).transpose();
        Ok(Self {
            total: QueryTemplate::compile(&q.total)?,
            bad: compile(&q.bad)?,
            good: compile(&q.good)?,
            config,
        })
    }

    pub fn config(&self) -> &EvidenceConfig {
        &self.config
    }

    /// `sum by (by) (selector)` or with `increase(…[window])`.
    fn counter(&self, selector: &str, by: &str) -> String {
        match self.config.window {
            Window::SinceStart => format!("sum by ({by}) ({selector})"),
            Window::Last(d) => format!(
                "sum by ({by}) (increase({selector}[{}s]))",
                d.as_secs().max(1)
            ),
        }
    }

    /// The `bad` and `total` queries for one alert, by the variant label `by`.
    pub fn render(&self, vars: &TemplateVars<'_>, by: &str) -> Result<Rendered, String> {
        let total = self.counter(&self.total.render(vars)?, by);
        let bad = match (&self.bad, &self.good) {
            (Some(bad), _) => self.counter(&bad.render(vars)?, by),
            (None, Some(good)) => format!("{total} - {}", self.counter(&good.render(vars)?, by)),
            // Validation requires one of them.
            (None, None) => return Err("queries: neither `bad` nor `good`".into()),
        };
        Ok(Rendered { bad, total })
    }

    /// Reads the counts and judges `from` (the alerting variant) against `to`.
    pub async fn evaluate(
        &self,
        client: Option<&PrometheusClient>,
        vars: &TemplateVars<'_>,
        by: &str,
        from: &str,
        to: &str,
    ) -> Evaluation {
        let queries = match self.render(vars, by) {
            Ok(q) => q,
            Err(e) => {
                return Evaluation::Unavailable {
                    reason: format!("evidence: {e}"),
                    queries: Value::Null,
                }
            }
        };
        let Some(client) = client else {
            return Evaluation::Unavailable {
                reason: "evidence: prometheus.url is not configured".into(),
                queries: json!(queries),
            };
        };
        let (bad, total) = tokio::join!(client.query(&queries.bad), client.query(&queries.total));
        let by_variant = |r: Result<QueryResult, _>, what: &str| match r {
            Ok(QueryResult::Vector(series)) => {
                let mut m = BTreeMap::new();
                for (labels, v) in series {
                    if let Some(variant) = labels.get(by) {
                        if v.is_finite() {
                            *m.entry(variant.clone()).or_insert(0.0) += v.max(0.0);
                        }
                    }
                }
                Ok(m)
            }
            Ok(other) => Err(format!(
                "evidence: the {what} query answered {other:?}, not an instant vector by {by}"
            )),
            Err(e) => Err(format!("evidence: the {what} query failed: {e}")),
        };
        let (bad, total) = match (by_variant(bad, "bad"), by_variant(total, "total")) {
            (Ok(b), Ok(t)) => (b, t),
            (Err(e), _) | (_, Err(e)) => {
                return Evaluation::Unavailable {
                    reason: e,
                    queries: json!(queries),
                }
            }
        };
        // A variant without series has no samples; one without bad series, no
        // bad outcomes (a selector on status="error" matches nothing until
        // the first error).
        let counts = |v: &str| {
            let t = total.get(v).copied().unwrap_or(0.0);
            Counts::new(bad.get(v).copied().unwrap_or(0.0).min(t), t)
        };
        let c = &self.config;
        Evaluation::Judged(Evidence {
            metric: c.metric,
            window: c.window,
            min_samples: c.min_samples,
            from: from.to_owned(),
            to: to.to_owned(),
            judgement: Judgement::new(
                counts(from),
                counts(to),
                c.alpha,
                c.mixing_sd,
                c.min_samples as f64,
            ),
            queries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> EvidenceConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn vars_render(g: &EvidenceGuard, experiment: &str) -> Rendered {
        let labels: crate::ingest::Labels = [("experiment".to_owned(), experiment.to_owned())]
            .into_iter()
            .collect();
        let empty = crate::ingest::Labels::default();
        g.render(
            &TemplateVars {
                labels: &labels,
                annotations: &empty,
                common_labels: &empty,
                group_labels: &empty,
            },
            "model_name",
        )
        .unwrap()
    }

    #[test]
    fn default_queries_count_per_variant() {
        let g = EvidenceGuard::new(config("{metric: error_rate}")).unwrap();
        let q = vars_render(&g, "exp");
        assert_eq!(
            q.bad,
            r#"sum by (model_name) (ab_test_requests_total{experiment="exp", status="error"})"#
        );
        assert_eq!(
            q.total,
            r#"sum by (model_name) (ab_test_requests_total{experiment="exp"})"#
        );
        let g = EvidenceGuard::new(config("{metric: accuracy, window: 1h}")).unwrap();
        let q = vars_render(&g, "exp");
        assert_eq!(
            q.bad,
            r#"sum by (model_name) (increase(ab_test_predictions_total{experiment="exp", outcome="incorrect"}[3600s]))"#
        );
        let g = EvidenceGuard::new(config("{metric: slow_requests, slow_above: 200ms}")).unwrap();
        let q = vars_render(&g, "exp");
        assert_eq!(
            q.bad,
            r#"sum by (model_name) (ab_test_response_time_seconds_count{experiment="exp"}) - sum by (model_name) (ab_test_response_time_seconds_bucket{experiment="exp", le=~"0\\.20*"})"#
        );
        let g = EvidenceGuard::new(config("{metric: slow_requests, slow_above: 1s}")).unwrap();
        assert!(vars_render(&g, "exp").bad.contains(r#"le=~"1(\\.0*)?""#));
    }

    #[test]
    fn a_label_value_cannot_break_out_of_the_query() {
        let g = EvidenceGuard::new(config("{metric: error_rate}")).unwrap();
        let q = vars_render(&g, r#"x"} or vector(1) or {a=""#);
        assert!(
            q.total
                .contains(r#"experiment="x\"} or vector(1) or {a=\"""#),
            "{}",
            q.total
        );
    }

    #[test]
    fn custom_queries() {
        let g = EvidenceGuard::new(config(
            r#"{metric: error_rate, queries: {total: 'http_requests_total{job="m", experiment="{{ labels.experiment }}"}', good: 'http_requests_total{job="m", code="200"}'}}"#,
        ))
        .unwrap();
        let q = vars_render(&g, "e");
        assert_eq!(
            q.bad,
            r#"sum by (model_name) (http_requests_total{job="m", experiment="e"}) - sum by (model_name) (http_requests_total{job="m", code="200"})"#
        );
    }

    #[test]
    fn validation_names_each_key() {
        let errors = |y: &str| config(y).validate();
        assert_eq!(
            errors("{metric: error_rate, alpha: 0, min_samples: 0, mixing_sd: 2, window: 10s}"),
            [
                "alpha: must be in (0, 0.5], got 0 (0.05: at most 5% of shifts on noise)",
                "min_samples: must be at least 1 (200 is a sensible floor)",
                "mixing_sd: must be in (0, 1), a fraction (0.02 = 2 points), got 2",
                "window: must be at least 1m (or since_start)",
            ]
        );
        assert_eq!(
            errors("{metric: slow_requests}"),
            ["slow_above: required with metric: slow_requests (a bucket bound, e.g. 200ms)"]
        );
        assert_eq!(
            errors("{metric: accuracy, slow_above: 1s}"),
            ["slow_above: only for metric: slow_requests, not accuracy"]
        );
        assert_eq!(
            errors("{metric: accuracy, queries: {total: 'a', bad: 'b', good: 'c'}}"),
            ["queries: give `bad` or `good`, not both"]
        );
        let e = errors("{metric: accuracy, queries: {total: 'sum({{ labels.x }})', bad: 'b'}}");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("queries.total: "), "{e:?}");
        let e = serde_yaml::from_str::<EvidenceConfig>("{metric: latency}").unwrap_err();
        assert!(e.to_string().contains("unknown variant `latency`"), "{e}");
        let e =
            serde_yaml::from_str::<EvidenceConfig>("{metric: accuracy, window: soon}").unwrap_err();
        assert!(
            e.to_string()
                .contains("neither `since_start` nor a duration"),
            "{e}"
        );
        let e =
            serde_yaml::from_str::<EvidenceConfig>("{metric: accuracy, alhpa: 0.1}").unwrap_err();
        assert!(e.to_string().contains("unknown field `alhpa`"), "{e}");
    }

    #[test]
    fn the_summary_says_it_with_the_numbers() {
        let e = Evidence {
            metric: Metric::ErrorRate,
            window: Window::SinceStart,
            min_samples: 200,
            from: "enhanced-predictor".into(),
            to: "baseline-predictor".into(),
            judgement: Judgement::new(
                Counts::new(95.0, 2310.0),
                Counts::new(65.0, 5402.0),
                0.05,
                0.02,
                200.0,
            ),
            queries: Rendered {
                bad: String::new(),
                total: String::new(),
            },
        };
        assert_eq!(e.call(), Call::FromWorse);
        assert_eq!(
            e.summary(),
            "enhanced-predictor error rate 4.1% vs 1.2% (baseline-predictor), n = 2,310 / 5,402, \
             95% always-valid CI of the difference [1.6, 4.3] points, p = 4.1e-9"
        );
        let j = e.json();
        assert_eq!(j["from"]["n"], 2310.0);
        assert_eq!(j["call"], "from_worse");
        assert_eq!(j["window"], "since_start");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(percent(0.995), "99.5");
    }
}

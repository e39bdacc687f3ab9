//! `type: traffic_shift` — move A/B weight away from a failing variant.
//!
//! It changes production traffic, so it is safe before it is clever:
//! - one shift per *episode* (action, target, alert fingerprint, startsAt):
//!   Alertmanager's repeats, HA duplicates and replays do not shift again
//!   (unless `repeat_every` asks for progressive steps);
//! - the change carries a precondition on the weights it read and records the
//!   episode on the target, so a retry after a crash finds its own change;
//! - weights stay within [min_weight, max_weight] and sum to 100; only the
//!   alerting variant loses, only the destination gains, never onto the
//!   alerting variant, nor onto a variant that is itself firing the same
//!   alert (blocked, whatever the guard says);
//! - a guard over enrichment blocks the shift; a guard that cannot be
//!   evaluated (enrichment failed) defers the run instead of shifting blind;
//! - every decision is in the audit trail (`traffic_decisions`).

pub mod decision;
mod file;
pub mod kube;
pub mod policy;
pub mod target;

use super::{Action, ActionContext, ActionError};
use crate::ingest::AlertStatus;
use crate::metrics::{Metrics, ShiftLabels, WeightLabels};
use crate::store::{DecisionQuery, Store, TrafficDecision};
use async_trait::async_trait;
pub use decision::{Decision, TrafficResult};
use minijinja::{Environment, Expression, UndefinedBehavior};
use policy::{Bounds, NoShift, WeightMap};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use target::{ShiftMark, TargetConfig, TargetError, TrafficTarget};

pub use file::FileWeights;

/// `on_resolve`: what a resolved alert does to the weights it shifted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnResolve {
    /// Leave the weights as they are (a person decides).
    #[default]
    Hold,
    /// Put back the weights from before the shift, if nobody changed them since.
    Restore,
}

/// `actions.<name>` with `type: traffic_shift`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficShiftConfig {
    /// Percentage points moved per episode.
    pub step: u32,
    /// Destination variant; default: the target's default (baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default)]
    pub min_weight: u32,
    #[serde(default = "hundred")]
    pub max_weight: u32,
    /// At most one shift per target within this time.
    #[serde(default = "ten_minutes", with = "crate::conf::duration")]
    pub cooldown: Duration,
    #[serde(default = "three")]
    pub max_shifts_per_hour: u32,
    /// A minijinja expression over `context`, `to`, `from`, `labels`,
    /// `weights`, `experiment`, e.g. `context.accuracy[to] >= 55`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<String>,
    #[serde(default)]
    pub on_resolve: OnResolve,
    /// Decide and record, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Allow another step for the same episode after this long (progressive rollback).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration"
    )]
    pub repeat_every: Option<Duration>,
    /// Alert label naming the experiment (the `traffic_targets` key).
    #[serde(default = "experiment_label")]
    pub experiment_label: String,
    /// Alert label naming the variant.
    #[serde(default = "variant_label")]
    pub variant_label: String,
}

fn hundred() -> u32 {
    100
}
fn three() -> u32 {
    3
}
fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}
fn experiment_label() -> String {
    "experiment".into()
}
fn variant_label() -> String {
    "model_name".into()
}

mod opt_duration {
    use serde::{Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => crate::conf::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        crate::conf::duration::deserialize(d).map(Some)
    }
}

impl TrafficShiftConfig {
    /// Offline validation.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=100).contains(&self.step) {
            return Err("step: must be between 1 and 100".into());
        }
        if self.min_weight > self.max_weight || self.max_weight > 100 {
            return Err("min_weight/max_weight: need 0 <= min_weight <= max_weight <= 100".into());
        }
        // The store keeps shifts and restores for 7 days at least (retention
        // pruning): a longer cooldown could outlive the change it counts from.
        if self.cooldown > Duration::from_secs(7 * 24 * 3600) {
            return Err("cooldown: must be at most 7d".into());
        }
        if let Some(g) = &self.guard {
            compile_guard(g).map_err(|e| format!("guard: {e}"))?;
        }
        Ok(())
    }
}

/// The environment guards are compiled in: no templates, no state, strict
/// about undefined values (a missing enrichment is an error, not false).
static GUARD_ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
});

/// A guard compiled once, when the action is built.
struct Guard {
    source: String,
    expression: Expression<'static, 'static>,
}

fn compile_guard(source: &str) -> Result<Guard, String> {
    let expression = GUARD_ENV
        .compile_expression_owned(source.to_owned())
        .map_err(|e| format!("invalid expression {source:?}: {e}"))?;
    Ok(Guard {
        source: source.to_owned(),
        expression,
    })
}

/// The configured targets by experiment, built once.
#[derive(Default)]
pub struct Targets {
    targets: BTreeMap<String, Arc<dyn TrafficTarget>>,
}

impl Targets {
    /// Builds every target (no I/O: Kubernetes clients connect on first use).
    pub fn build(config: &BTreeMap<String, TargetConfig>, kube: &kube::ClientSource) -> Self {
        let targets = config
            .iter()
            .map(|(experiment, c)| {
                let t: Arc<dyn TrafficTarget> = match c {
                    TargetConfig::File { file } => Arc::new(FileWeights::new(file.path.clone())),
                    TargetConfig::SeldonExperiment { namespace, name } => Arc::new(
                        kube::KubeWeights::new(namespace, name, kube::Layout::Seldon, kube.clone()),
                    ),
                    TargetConfig::IstioVirtualService {
                        namespace,
                        name,
                        route,
                        default,
                        api_version,
                    } => Arc::new(kube::KubeWeights::new(
                        namespace,
                        name,
                        kube::Layout::Istio {
                            route: route.clone(),
                            default: default.clone(),
                            api_version: *api_version,
                        },
                        kube.clone(),
                    )),
                };
                (experiment.clone(), t)
            })
            .collect();
        Self { targets }
    }

    /// The target of an experiment.
    pub fn get(&self, experiment: &str) -> Option<&Arc<dyn TrafficTarget>> {
        self.targets.get(experiment)
    }

    /// Every target with its experiment.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<dyn TrafficTarget>)> {
        self.targets.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// Creates the `traffic_shifts_total` series of every target at 0.
pub fn declare_targets(targets: &Targets, metrics: &Metrics) {
    for (experiment, _) in targets.iter() {
        for outcome in Decision::ALL {
            let _ = metrics.traffic_shifts.get_or_create(&ShiftLabels {
                target: experiment.to_owned(),
                outcome: outcome.as_str().to_owned(),
            });
        }
    }
}

/// Reads every target now and then every `interval` until `shutdown`, and
/// publishes the weights as `traffic_weight` — the configured weights the
/// ABTestTrafficImbalance rule compares the observed split with.
pub async fn poll_weights(
    targets: Arc<Targets>,
    metrics: Arc<Metrics>,
    interval: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut failing: BTreeMap<String, String> = BTreeMap::new();
    loop {
        for (experiment, target) in targets.iter() {
            match target.read().await {
                Ok(snapshot) => {
                    if failing.remove(experiment).is_some() {
                        tracing::info!(target = experiment, "Traffic target readable again");
                    }
                    for (variant, w) in policy::normalise(&snapshot.weights) {
                        metrics
                            .traffic_weight
                            .get_or_create(&WeightLabels {
                                target: experiment.to_owned(),
                                variant,
                            })
                            .set(i64::from(w));
                    }
                }
                Err(e) => {
                    // Logged once per failure streak, not every interval.
                    let msg = e.to_string();
                    if failing.insert(experiment.to_owned(), msg.clone()).is_none() {
                        tracing::warn!(target = experiment, error = %msg, "Cannot read traffic target");
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Wall-clock milliseconds; tests pass their own.
pub use crate::clock::Clock;

/// The runtime action.
pub struct TrafficShift {
    name: String,
    config: TrafficShiftConfig,
    guard: Option<Guard>,
    targets: Arc<Targets>,
    store: Option<Arc<dyn Store>>,
    metrics: Arc<Metrics>,
    clock: Clock,
}

/// How a decision ends the run.
enum Verdict {
    Done(TrafficResult),
    /// Try again later (guard not evaluable, target unreachable).
    Defer(TrafficResult),
    /// Cannot succeed (unknown experiment/variant, forbidden).
    Fail(TrafficResult),
}

const HOUR_MS: i64 = 3_600_000;

impl TrafficShift {
    /// A traffic-shift action; `store` is `None` only for offline plans.
    /// The guard is compiled here, once; an error is `guard: …`.
    pub fn new(
        name: &str,
        config: TrafficShiftConfig,
        targets: Arc<Targets>,
        store: Option<Arc<dyn Store>>,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Result<Self, String> {
        let guard = config
            .guard
            .as_deref()
            .map(compile_guard)
            .transpose()
            .map_err(|e| format!("guard: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            config,
            guard,
            targets,
            store,
            metrics,
            clock,
        })
    }

    fn episode(&self, experiment: &str, ctx: &ActionContext<'_>) -> String {
        let a = ctx.alert();
        format!(
            "{}/{}/{}/{}",
            self.name,
            experiment,
            a.fingerprint,
            a.starts_at.to_rfc3339()
        )
    }

    async fn decisions(&self, q: DecisionQuery) -> Vec<TrafficDecision> {
        match &self.store {
            Some(s) => s.decisions(q).await.unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Decides (and, unless `plan_only`, applies) for one alert.
    async fn decide(&self, ctx: &ActionContext<'_>, plan_only: bool) -> (String, Verdict) {
        let alert = ctx.alert();
        let c = &self.config;
        let Some(experiment) = alert.labels.get(&c.experiment_label) else {
            let reason = format!(
                "the alert has no {:?} label: no experiment to act on",
                c.experiment_label
            );
            return (
                String::new(),
                Verdict::Fail(TrafficResult::new(Decision::Failed, "", reason)),
            );
        };
        let episode = self.episode(experiment, ctx);
        let Some(target) = self.targets.get(experiment) else {
            let reason = format!("unknown experiment {experiment:?}: no traffic_targets entry");
            return (
                episode,
                Verdict::Fail(TrafficResult::new(Decision::Failed, experiment, reason)),
            );
        };
        let Some(variant) = alert.labels.get(&c.variant_label).cloned() else {
            let reason = format!(
                "the alert has no {:?} label: no variant to move traffic from",
                c.variant_label
            );
            return (
                episode,
                Verdict::Fail(TrafficResult::new(Decision::Failed, experiment, reason)),
            );
        };
        let verdict = match alert.status {
            AlertStatus::Firing => {
                self.on_firing(
                    ctx,
                    experiment,
                    target.as_ref(),
                    &variant,
                    &episode,
                    plan_only,
                )
                .await
            }
            AlertStatus::Resolved => {
                self.on_resolved(experiment, target.as_ref(), &episode, plan_only)
                    .await
            }
        };
        (episode, verdict)
    }

    async fn on_firing(
        &self,
        ctx: &ActionContext<'_>,
        experiment: &str,
        target: &dyn TrafficTarget,
        variant: &str,
        episode: &str,
        plan_only: bool,
    ) -> Verdict {
        let c = &self.config;
        let now = (self.clock)();
        // Once per episode (unless a progressive repeat is due).
        let done = self
            .decisions(DecisionQuery {
                episode: Some(episode.to_owned()),
                decisions: vec![Decision::Shifted.as_str().into()],
                limit: 1,
                ..Default::default()
            })
            .await;
        if let Some(last) = done.first() {
            let repeat_due = c
                .repeat_every
                .is_some_and(|r| now - last.at >= r.as_millis() as i64);
            if !repeat_due {
                return Verdict::Done(TrafficResult::new(
                    Decision::Noop,
                    experiment,
                    "already shifted for this episode",
                ));
            }
        }
        for _attempt in 0..3 {
            let snapshot = match target.read().await {
                Ok(s) => s,
                Err(e) => return self.target_error(experiment, e),
            };
            self.publish_weights(experiment, &policy::normalise(&snapshot.weights));
            // A crash between the change and the ledger: the target says it is done.
            if !plan_only && done.is_empty() {
                if let Some(mark) = snapshot
                    .last_shift
                    .as_ref()
                    .filter(|m| m.episode == episode)
                {
                    let mut d = TrafficResult::new(Decision::Shifted, experiment, "found this episode's change already applied on the target (recovered after a restart)");
                    d.before = Some(mark.before.clone());
                    d.after = Some(mark.after.clone());
                    return Verdict::Done(d);
                }
            }
            let Some(to) = c.to.clone().or_else(|| snapshot.default.clone()) else {
                return Verdict::Fail(TrafficResult::new(
                    Decision::Failed,
                    experiment,
                    "no destination: set `to` or give the target a default",
                ));
            };
            let weights = policy::normalise(&snapshot.weights);
            // Never onto a variant that is itself firing the same alert,
            // whatever the guard says: both failing is a person's call.
            if to != variant {
                if let Some(reason) = self.destination_firing(ctx, experiment, &to) {
                    let mut d = TrafficResult::new(Decision::Blocked, experiment, reason);
                    d.before = Some(weights);
                    return Verdict::Done(d);
                }
            }
            let bounds = Bounds {
                step: c.step,
                min_weight: c.min_weight,
                max_weight: c.max_weight,
            };
            let after = match policy::shift(&snapshot.weights, variant, &to, bounds) {
                Ok(after) => after,
                Err(NoShift::Nothing) => {
                    let mut d = TrafficResult::new(Decision::Noop, experiment, format!("nothing to move: {variant} at {} (min_weight {}), {to} at {} (max_weight {})", weights.get(variant).copied().unwrap_or(0), c.min_weight, weights.get(&to).copied().unwrap_or(0), c.max_weight));
                    d.before = Some(weights);
                    return Verdict::Done(d);
                }
                Err(NoShift::DestinationIsAlerting(v)) => {
                    let mut d = TrafficResult::new(
                        Decision::Blocked,
                        experiment,
                        format!("{v} is alerting: traffic never moves onto the alerting variant"),
                    );
                    d.before = Some(weights);
                    return Verdict::Done(d);
                }
                Err(NoShift::UnknownVariant(v)) => {
                    return Verdict::Fail(TrafficResult::new(
                        Decision::Failed,
                        experiment,
                        format!("unknown variant {v:?} in {}", target.describe()),
                    ))
                }
                Err(NoShift::UnknownDestination(v)) => {
                    return Verdict::Fail(TrafficResult::new(
                        Decision::Failed,
                        experiment,
                        format!("unknown destination variant {v:?} in {}", target.describe()),
                    ))
                }
            };
            // Cooldown and rate limit, per target. The look-back covers the
            // longer of the two windows: a cooldown over an hour must still see
            // the change that started it.
            let cooldown_ms = i64::try_from(c.cooldown.as_millis()).unwrap_or(i64::MAX);
            let changes = self
                .decisions(DecisionQuery {
                    target: Some(experiment.to_owned()),
                    decisions: vec![
                        Decision::Shifted.as_str().into(),
                        Decision::Restored.as_str().into(),
                    ],
                    since: Some(now.saturating_sub(cooldown_ms.max(HOUR_MS))),
                    limit: 1000,
                    ..Default::default()
                })
                .await;
            if let Some(last) = changes.first().filter(|d| now - d.at < cooldown_ms) {
                let mut d = TrafficResult::new(
                    Decision::Cooldown,
                    experiment,
                    format!(
                        "last change {}s ago, cooldown {}",
                        (now - last.at) / 1000,
                        humantime::format_duration(c.cooldown)
                    ),
                );
                d.before = Some(weights);
                return Verdict::Done(d);
            }
            let recent: Vec<_> = changes.iter().filter(|d| now - d.at < HOUR_MS).collect();
            if recent.len() as u32 >= c.max_shifts_per_hour {
                let mut d = TrafficResult::new(
                    Decision::RateLimited,
                    experiment,
                    format!(
                        "{} changes in the last hour (max_shifts_per_hour {})",
                        recent.len(),
                        c.max_shifts_per_hour
                    ),
                );
                d.before = Some(weights);
                return Verdict::Done(d);
            }
            // Guard over enrichment.
            if let Some(guard) = &self.guard {
                let source = &guard.source;
                let vars = minijinja::context! {
                    context => minijinja::value::Serde(ctx.context().template_value()),
                    to => to.clone(),
                    from => variant,
                    labels => &ctx.alert().labels,
                    weights => &weights,
                    experiment => experiment,
                };
                let outcome = guard.expression.eval(vars);
                match outcome {
                    Ok(v) if v.is_true() => {}
                    Ok(_) => {
                        let mut d = TrafficResult::new(
                            Decision::Blocked,
                            experiment,
                            format!("guard `{source}` is false"),
                        );
                        d.before = Some(weights);
                        return Verdict::Done(d);
                    }
                    Err(e) => {
                        let failed = ctx.context().failed().join(", ");
                        let mut d = TrafficResult::new(Decision::Deferred, experiment, format!("guard `{source}` cannot be evaluated ({e}); failed enrichments: [{failed}]"));
                        d.before = Some(weights);
                        return Verdict::Defer(d);
                    }
                }
            }
            let mark = ShiftMark {
                episode: episode.to_owned(),
                before: weights.clone(),
                after: after.clone(),
                at: chrono::DateTime::from_timestamp_millis(now)
                    .unwrap_or_default()
                    .to_rfc3339(),
            };
            let mut d = TrafficResult::new(
                Decision::Shifted,
                experiment,
                format!(
                    "{variant} is alerting: moved up to {} points to {to}",
                    c.step
                ),
            );
            d.before = Some(weights.clone());
            d.after = Some(after.clone());
            d.change = Some(target.preview(&snapshot, &after, &mark));
            if plan_only || c.dry_run {
                d.decision = Decision::DryRun;
                d.reason = format!("dry run: would move {variant} → {to}");
                return Verdict::Done(d);
            }
            match target.write(&snapshot, &after, &mark).await {
                Ok(()) => {
                    self.publish_weights(experiment, &after);
                    d.change = None;
                    return Verdict::Done(d);
                }
                // Somebody changed the weights between read and write: decide again.
                Err(TargetError::Conflict(msg)) => {
                    tracing::info!(target = experiment, error = %msg, "Traffic weights changed concurrently; deciding again");
                    continue;
                }
                Err(e) => return self.target_error(experiment, e),
            }
        }
        Verdict::Defer(TrafficResult::new(
            Decision::Deferred,
            experiment,
            "weights kept changing under us (3 conflicts)",
        ))
    }

    async fn on_resolved(
        &self,
        experiment: &str,
        target: &dyn TrafficTarget,
        episode: &str,
        plan_only: bool,
    ) -> Verdict {
        if self.config.on_resolve == OnResolve::Hold {
            return Verdict::Done(TrafficResult::new(
                Decision::Held,
                experiment,
                "resolved; on_resolve: hold keeps the weights",
            ));
        }
        let shifted = self
            .decisions(DecisionQuery {
                episode: Some(episode.to_owned()),
                decisions: vec![
                    Decision::Shifted.as_str().into(),
                    Decision::Restored.as_str().into(),
                ],
                limit: 1,
                ..Default::default()
            })
            .await;
        let Some(last) = shifted.first() else {
            return Verdict::Done(TrafficResult::new(
                Decision::Noop,
                experiment,
                "resolved; this episode shifted nothing",
            ));
        };
        if last.decision == Decision::Restored.as_str() {
            return Verdict::Done(TrafficResult::new(
                Decision::Noop,
                experiment,
                "already restored",
            ));
        }
        let parse = |v: &Option<Value>| {
            v.clone()
                .and_then(|v| serde_json::from_value::<WeightMap>(v).ok())
        };
        let (Some(before), Some(after)) = (parse(&last.before), parse(&last.after)) else {
            return Verdict::Fail(TrafficResult::new(
                Decision::Failed,
                experiment,
                "the recorded shift has no weights to restore",
            ));
        };
        let snapshot = match target.read().await {
            Ok(s) => s,
            Err(e) => return self.target_error(experiment, e),
        };
        let current = policy::normalise(&snapshot.weights);
        if current != after {
            let mut d = TrafficResult::new(
                Decision::Noop,
                experiment,
                "resolved; weights changed since the shift, not restoring",
            );
            d.before = Some(current);
            return Verdict::Done(d);
        }
        let mark = ShiftMark {
            episode: format!("{episode}/restore"),
            before: current.clone(),
            after: before.clone(),
            at: chrono::DateTime::from_timestamp_millis((self.clock)())
                .unwrap_or_default()
                .to_rfc3339(),
        };
        let mut d = TrafficResult::new(
            Decision::Restored,
            experiment,
            "resolved; weights restored to before the shift",
        );
        d.before = Some(current);
        d.after = Some(before.clone());
        if plan_only || self.config.dry_run {
            d.change = Some(target.preview(&snapshot, &before, &mark));
            d.decision = Decision::DryRun;
            return Verdict::Done(d);
        }
        match target.write(&snapshot, &before, &mark).await {
            Ok(()) => {
                self.publish_weights(experiment, &before);
                Verdict::Done(d)
            }
            Err(TargetError::Conflict(_)) => Verdict::Done(TrafficResult::new(
                Decision::Noop,
                experiment,
                "resolved; weights changed while restoring, not restoring",
            )),
            Err(e) => self.target_error(experiment, e),
        }
    }

    /// Whether the destination variant fires the same alert: a firing alert
    /// of this notification (after completion of a truncated one) with the
    /// same `alertname`, the same experiment and `to` as its variant. With
    /// Alertmanager grouping by `alertname` and the experiment label (as
    /// `deploy/` does), every variant's alert is in the same notification.
    fn destination_firing(
        &self,
        ctx: &ActionContext<'_>,
        experiment: &str,
        to: &str,
    ) -> Option<String> {
        let c = &self.config;
        let alertname = ctx.alert().labels.get("alertname");
        let firing = ctx.notification.alerts.iter().find(|a| {
            a.status == AlertStatus::Firing
                && a.labels.get("alertname") == alertname
                && a.labels.get(&c.experiment_label).map(String::as_str) == Some(experiment)
                && a.labels.get(&c.variant_label).map(String::as_str) == Some(to)
        })?;
        Some(format!(
            "{to} is itself firing {} (alert {}): traffic never moves onto a firing variant",
            alertname.map_or("the same alert", String::as_str),
            firing.fingerprint
        ))
    }

    fn target_error(&self, experiment: &str, e: TargetError) -> Verdict {
        match e {
            TargetError::Permanent(m) => {
                Verdict::Fail(TrafficResult::new(Decision::Failed, experiment, m))
            }
            other => Verdict::Defer(TrafficResult::new(
                Decision::Deferred,
                experiment,
                other.to_string(),
            )),
        }
    }

    fn publish_weights(&self, experiment: &str, weights: &WeightMap) {
        for (variant, w) in weights {
            self.metrics
                .traffic_weight
                .get_or_create(&WeightLabels {
                    target: experiment.to_owned(),
                    variant: variant.clone(),
                })
                .set(i64::from(*w));
        }
    }

    async fn record(&self, ctx: &ActionContext<'_>, episode: &str, d: &TrafficResult) {
        // The target comes from an alert label: only configured targets
        // become label values (an alert must not create series at will).
        let target = if self.targets.get(&d.target).is_some() {
            d.target.clone()
        } else {
            "unknown".to_owned()
        };
        self.metrics
            .traffic_shifts
            .get_or_create(&ShiftLabels {
                target,
                outcome: d.decision.as_str().to_owned(),
            })
            .inc();
        tracing::info!(action = %self.name, target = %d.target, decision = d.decision.as_str(), reason = %d.reason, before = ?d.before, after = ?d.after, "Traffic decision");
        if let Some(store) = &self.store {
            let result = store
                .record_decision(TrafficDecision {
                    id: 0,
                    at: (self.clock)(),
                    action: self.name.clone(),
                    target: d.target.clone(),
                    episode: episode.to_owned(),
                    fingerprint: ctx.alert().fingerprint.clone(),
                    notification_id: ctx.notification_id,
                    decision: d.decision.as_str().to_owned(),
                    before: d.before.as_ref().map(|w| json!(w)),
                    after: d.after.as_ref().map(|w| json!(w)),
                    reason: d.reason.clone(),
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "Cannot record traffic decision");
            }
        }
    }
}

#[async_trait]
impl Action for TrafficShift {
    fn kind(&self) -> &'static str {
        "traffic_shift"
    }

    async fn execute(&self, ctx: &ActionContext<'_>) -> Result<Value, ActionError> {
        let (episode, verdict) = self.decide(ctx, false).await;
        match verdict {
            Verdict::Done(mut d) => {
                self.record(ctx, &episode, &d).await;
                d.episode = episode;
                Ok(d.to_value())
            }
            Verdict::Defer(d) => {
                self.record(ctx, &episode, &d).await;
                Err(ActionError::Retryable {
                    message: format!("{}: {}", d.decision, d.reason),
                    retry_after: None,
                })
            }
            Verdict::Fail(d) => {
                self.record(ctx, &episode, &d).await;
                Err(ActionError::Permanent(d.reason))
            }
        }
    }

    async fn plan(&self, ctx: &ActionContext<'_>) -> Value {
        let (episode, verdict) = self.decide(ctx, true).await;
        match verdict {
            Verdict::Done(mut d) | Verdict::Defer(mut d) | Verdict::Fail(mut d) => {
                d.episode = episode;
                d.to_value()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::AlertInput;
    use crate::enrich::Context;
    use crate::store::SqliteStore;
    use std::sync::atomic::{AtomicI64, Ordering};

    const T0: i64 = 1_800_000_000_000;

    struct Fixture {
        action: TrafficShift,
        store: Arc<SqliteStore>,
        now: Arc<AtomicI64>,
        path: std::path::PathBuf,
        _dir: tempfile::TempDir,
    }

    fn fixture(yaml: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.yaml");
        std::fs::write(&path, "default: baseline-predictor\ncandidates: [{name: baseline-predictor, weight: 70}, {name: enhanced-predictor, weight: 30}]\n").unwrap();
        // A one-minute retention: the pruning test prunes at the fixture's clock.
        let mut options =
            crate::store::StoreOptions::new(Duration::from_secs(1), Duration::from_secs(60));
        options.retention = Duration::from_secs(60);
        options.dead_letter_retention = Duration::from_secs(60);
        let store = Arc::new(
            SqliteStore::open_with(&dir.path().join("r.db"), options, Default::default()).unwrap(),
        );
        let targets = Targets::build(
            &serde_yaml::from_str(&format!(
                "financial-ab-test-experiment: {{kind: file, file: {{path: '{}'}}}}",
                path.display()
            ))
            .unwrap(),
            &kube::ClientSource::default(),
        );
        let now = Arc::new(AtomicI64::new(T0));
        let clock_now = now.clone();
        let action = TrafficShift::new(
            "rollback",
            serde_yaml::from_str(yaml).unwrap(),
            Arc::new(targets),
            Some(store.clone() as Arc<dyn Store>),
            Arc::new(Metrics::new()),
            Arc::new(move || clock_now.load(Ordering::SeqCst)),
        )
        .unwrap();
        Fixture {
            action,
            store,
            now,
            path,
            _dir: dir,
        }
    }

    /// Runs the action for a firing alert whose episode starts at `hour`.
    async fn fire(f: &Fixture, hour: u32) -> String {
        let body = include_str!("../../../tests/fixtures/accuracy-firing.json");
        run(f, body, hour).await
    }

    /// Runs the action for the resolved alert of the episode that started at `hour`.
    async fn resolve(f: &Fixture, hour: u32) -> String {
        let body = include_str!("../../../tests/fixtures/accuracy-resolved.json");
        run(f, body, hour).await
    }

    async fn run(f: &Fixture, body: &str, hour: u32) -> String {
        let body = body.replace(
            "2026-11-27T01:02:34.255Z",
            &format!("2026-11-27T{hour:02}:00:00Z"),
        );
        let n = crate::ingest::parse(body.as_bytes(), 10)
            .unwrap()
            .notification;
        let context = Context::default();
        let ctx = ActionContext {
            notification_id: 1,
            notification: &n,
            alerts: vec![AlertInput {
                alert: &n.alerts[0],
                context: &context,
                outcomes: Vec::new(),
            }],
            attempt: 1,
            store: None,
            metrics: None,
        };
        let result = f.action.execute(&ctx).await.unwrap();
        result["decision"].as_str().unwrap().to_owned()
    }

    fn enhanced_weight(f: &Fixture) -> u64 {
        let v: serde_json::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&f.path).unwrap()).unwrap();
        v["candidates"][1]["weight"].as_u64().unwrap()
    }

    /// Runs the action for the enhanced variant's alert of the fixture where
    /// both variants fire, with the baseline's alert in `baseline_status`.
    async fn fire_both(f: &Fixture, baseline_status: &str) -> Value {
        let body = include_str!("../../../tests/fixtures/accuracy-firing-both-variants.json")
            .replacen(
                "\"status\": \"firing\",\n      \"labels\"",
                &format!("\"status\": \"{baseline_status}\",\n      \"labels\""),
                1,
            );
        let n = crate::ingest::parse(body.as_bytes(), 10)
            .unwrap()
            .notification;
        assert_eq!(n.alerts[1].labels["model_name"], "enhanced-predictor");
        let context = Context::default();
        let ctx = ActionContext {
            notification_id: 1,
            notification: &n,
            alerts: vec![AlertInput {
                alert: &n.alerts[1],
                context: &context,
                outcomes: Vec::new(),
            }],
            attempt: 1,
            store: None,
            metrics: None,
        };
        let plan = f.action.plan(&ctx).await;
        let done = f.action.execute(&ctx).await.unwrap();
        // The dry-run plan shows the same decision (a shift as `dry_run`).
        let planned = if done["decision"] == "shifted" {
            json!("dry_run")
        } else {
            done["decision"].clone()
        };
        assert_eq!(plan["decision"], planned);
        assert_eq!(
            plan["reason"] == done["reason"],
            done["decision"] != "shifted"
        );
        done
    }

    #[tokio::test]
    async fn never_onto_a_variant_firing_the_same_alert_whatever_the_guard() {
        let f = fixture("{step: 30, cooldown: 0s, guard: 'true'}");
        let d = fire_both(&f, "firing").await;
        assert_eq!(d["decision"], "blocked");
        assert_eq!(
            d["reason"],
            "baseline-predictor is itself firing ModelAccuracyDegraded (alert 5d376d2a43c31436): \
             traffic never moves onto a firing variant"
        );
        assert_eq!(enhanced_weight(&f), 30, "weights untouched");
        // The baseline's alert resolved in the same notification: shift.
        let f = fixture("{step: 30, cooldown: 0s, guard: 'true'}");
        assert_eq!(fire_both(&f, "resolved").await["decision"], "shifted");
        assert_eq!(enhanced_weight(&f), 0);
    }

    #[tokio::test]
    async fn cooldown_holds_back_until_it_has_elapsed() {
        let f = fixture("{step: 10, cooldown: 10m, max_shifts_per_hour: 10}");
        assert_eq!(fire(&f, 1).await, "shifted");
        f.now.store(T0 + 5 * 60_000, Ordering::SeqCst);
        assert_eq!(fire(&f, 2).await, "cooldown");
        f.now.store(T0 + 10 * 60_000, Ordering::SeqCst);
        assert_eq!(fire(&f, 3).await, "shifted");
        assert_eq!(enhanced_weight(&f), 10);
    }

    #[tokio::test]
    async fn a_cooldown_longer_than_an_hour_still_holds() {
        let f = fixture("{step: 10, cooldown: 6h, max_shifts_per_hour: 10}");
        assert_eq!(fire(&f, 1).await, "shifted");
        f.now.store(T0 + 2 * 3_600_000, Ordering::SeqCst);
        assert_eq!(fire(&f, 2).await, "cooldown");
        f.now.store(T0 + 6 * 3_600_000, Ordering::SeqCst);
        assert_eq!(fire(&f, 3).await, "shifted");
    }

    #[tokio::test]
    async fn at_most_max_shifts_per_hour_in_any_sliding_hour() {
        let f = fixture("{step: 5, cooldown: 0s, max_shifts_per_hour: 2}");
        assert_eq!(fire(&f, 1).await, "shifted");
        f.now.store(T0 + 20 * 60_000, Ordering::SeqCst);
        assert_eq!(fire(&f, 2).await, "shifted");
        f.now.store(T0 + 40 * 60_000, Ordering::SeqCst);
        assert_eq!(fire(&f, 3).await, "rate_limited");
        // The first shift leaves the hour window.
        f.now.store(T0 + 61 * 60_000, Ordering::SeqCst);
        assert_eq!(fire(&f, 4).await, "shifted");
        assert_eq!(enhanced_weight(&f), 15);
    }

    #[tokio::test]
    async fn progressive_steps_only_with_repeat_every() {
        let f = fixture("{step: 10, cooldown: 0s, max_shifts_per_hour: 10, repeat_every: 15m}");
        assert_eq!(fire(&f, 1).await, "shifted");
        f.now.store(T0 + 5 * 60_000, Ordering::SeqCst);
        assert_eq!(fire(&f, 1).await, "noop", "same episode, too early");
        f.now.store(T0 + 15 * 60_000, Ordering::SeqCst);
        assert_eq!(fire(&f, 1).await, "shifted", "same episode, next step due");
        assert_eq!(enhanced_weight(&f), 10);
    }

    /// Pruning (with a one-minute retention) at every step of the clock: the
    /// episode, the cooldown, the hourly limit and `restore` still see the
    /// shifts they depend on.
    #[tokio::test]
    async fn pruning_keeps_what_episodes_cooldowns_limits_and_restore_need() {
        let f = fixture("{step: 10, cooldown: 10m, max_shifts_per_hour: 2, on_resolve: restore}");
        let at = |f: &Fixture, minutes: i64| {
            f.now.store(T0 + minutes * 60_000, Ordering::SeqCst);
        };
        let prune = |f: &Fixture| {
            let now = f.now.load(Ordering::SeqCst);
            let store = f.store.clone();
            async move { store.prune(now).await.unwrap() }
        };
        let start = enhanced_weight(&f);
        assert_eq!(fire(&f, 1).await, "shifted");
        let after_first = enhanced_weight(&f);
        assert!(after_first < start);
        at(&f, 5);
        prune(&f).await;
        assert_eq!(
            fire(&f, 1).await,
            "noop",
            "the episode's shift survived pruning"
        );
        assert_eq!(
            fire(&f, 2).await,
            "cooldown",
            "the cooldown's shift survived pruning"
        );
        at(&f, 20);
        let pruned = prune(&f).await;
        assert!(
            pruned.traffic_decisions >= 2,
            "the noop and cooldown rows went: {pruned:?}"
        );
        assert_eq!(fire(&f, 2).await, "shifted");
        let after_second = enhanced_weight(&f);
        at(&f, 40);
        prune(&f).await;
        assert_eq!(
            fire(&f, 3).await,
            "rate_limited",
            "both shifts of the hour still count"
        );
        at(&f, 50);
        prune(&f).await;
        assert_eq!(
            resolve(&f, 2).await,
            "restored",
            "restore found the saved weights"
        );
        assert_eq!(enhanced_weight(&f), after_first);
        assert!(after_second < after_first);

        // Eight days later, nothing heard of these episodes: all of it goes.
        at(&f, 8 * 24 * 60);
        prune(&f).await;
        let left = f
            .store
            .decisions(DecisionQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(left.is_empty(), "{left:?}");
    }
}

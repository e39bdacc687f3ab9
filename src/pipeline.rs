//! Pipeline: the one place that knows the stage order.
//!
//! route (labels → actions, enrichments) → enrich (Prometheus context) → act →
//! ledger. The worker hands it a claimed notification; it records every action
//! run's outcome. [`Planner`] is the side-effect-free half (route + enrich),
//! shared with the dry-run plan.

use crate::act::{ActionContext, ActionError, ActionSet, AlertInput, Scope};
use crate::enrich::alertmanager::{self, AlertmanagerClient};
use crate::enrich::{Context, Enricher};
use crate::ingest::{self, Alert, Notification};
use crate::metrics::{ActionRunLabels, ActionTypeLabels, Metrics, TypeLabel};
use crate::route::Route;
use crate::settings::Settings;
use crate::store::{ActionRun, Claimed, PlannedRun, RunAttempt, RunOutcome, Store, StoreError};
use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Alerts of one notification acted on at once (each alert's own actions run
/// in order).
const ALERTS_IN_PARALLEL: usize = 16;

/// When to try a failed run again, and when to give up.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
    /// Give up once a run's next attempt would start this long after its first.
    pub max_age: Option<Duration>,
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1`, after `attempt` failures: exponential with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        ExponentialBuilder::default()
            .with_min_delay(self.initial)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(attempt.saturating_sub(1) as usize)
            .unwrap_or(self.max)
    }
}

/// Where one alert goes.
#[derive(Debug, Clone, Default)]
pub struct Routed {
    /// Config paths of the matched routes, in match order.
    pub routes: Vec<String>,
    /// Actions to run, in match order, each once.
    pub actions: Vec<String>,
    /// Enrichments the matched routes ask for, each once.
    pub enrich: Vec<String>,
}

/// Route and enrich: everything before acting, with no side effect. Also
/// knows the actions, to ask each what it would do (the dry-run plan).
pub struct Planner {
    route: Route,
    enricher: Enricher,
    alertmanager: Option<AlertmanagerClient>,
    actions: ActionSet,
}

/// The fingerprint of a notification-scoped run (it covers many alerts).
pub const NOTIFICATION_RUN: &str = "";

impl Planner {
    /// Builds the route tree, enrichment templates, clients and actions from
    /// settings, for offline plans (no ledger: cooldowns are not consulted).
    pub fn from_settings(settings: &Settings, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let deps = crate::act::ActionDeps::new(settings, None, metrics.clone());
        Self::with_actions(
            settings,
            ActionSet::build(&settings.actions, &deps),
            metrics,
        )
    }

    /// Like [`Planner::from_settings`] with an explicit action set.
    pub fn with_actions(
        settings: &Settings,
        actions: ActionSet,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let route = settings.compile_route()?;
        // Matcher forms Alertmanager accepts but logs a warning about.
        for w in route.warnings() {
            tracing::warn!(path = %w.path, "Route configuration: {}", w.message);
        }
        Ok(Self {
            actions,
            route,
            enricher: Enricher::new(
                &settings.enrichments,
                settings.prometheus.as_ref(),
                settings.link_settings(),
                metrics,
                &settings.ca,
            )?,
            alertmanager: settings
                .alertmanager
                .as_ref()
                .map(|am| AlertmanagerClient::new(am, &settings.ca))
                .transpose()?,
        })
    }

    /// Route stage for one alert.
    pub fn route_alert(&self, alert: &Alert) -> Routed {
        let mut routed = Routed::default();
        for m in self.route.evaluate(&alert.labels) {
            routed.routes.push(m.path);
            for a in m.actions {
                if !routed.actions.contains(&a) {
                    routed.actions.push(a);
                }
            }
            for e in m.enrich {
                if !routed.enrich.contains(&e) {
                    routed.enrich.push(e);
                }
            }
        }
        routed
    }

    /// When Alertmanager truncated the notification, adds the rest of the
    /// group from its API (then `truncated_alerts` is 0: nothing is missing).
    /// Returns a note for the log/plan when it could not; the alerts still
    /// missing stay counted in `truncated_alerts`, and messages say so.
    pub async fn complete_truncated(&self, n: &mut Notification) -> Option<String> {
        if n.truncated_alerts == 0 {
            return None;
        }
        let Some(am) = &self.alertmanager else {
            return Some(format!(
                "{} alerts were truncated by Alertmanager; set alertmanager.url to fetch them",
                n.truncated_alerts
            ));
        };
        match am.group_alerts(n).await {
            Ok(fetched) => {
                let added = alertmanager::complete(n, fetched);
                tracing::info!(
                    added,
                    truncated = n.truncated_alerts,
                    "Fetched truncated alerts from Alertmanager"
                );
                // The group is whole now: messages say nothing is missing.
                n.truncated_alerts = 0;
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot fetch truncated alerts; routing the ones received");
                Some(format!(
                    "cannot fetch the {} truncated alerts: {e}",
                    n.truncated_alerts
                ))
            }
        }
    }

    /// Enrich stage for one alert.
    pub async fn context(&self, routed: &Routed, n: &Notification, alert: &Alert) -> Context {
        self.enricher.context(&routed.enrich, n, alert).await
    }

    /// The plan for a notification, storing and changing nothing: per alert
    /// its labels, matched routes, actions, the enrichment context with each
    /// rendered query and its value, and what each alert-scoped action would
    /// do; then what each notification-scoped action (chat) would send.
    pub async fn dry_run(&self, mut n: Notification) -> Value {
        let note = self.complete_truncated(&mut n).await;
        let routed: Vec<Routed> = n.alerts.iter().map(|a| self.route_alert(a)).collect();
        let mut contexts = Vec::with_capacity(n.alerts.len());
        for (alert, r) in n.alerts.iter().zip(&routed) {
            contexts.push(self.context(r, &n, alert).await);
        }
        let mut alerts = Vec::with_capacity(n.alerts.len());
        for ((alert, r), context) in n.alerts.iter().zip(&routed).zip(&contexts) {
            let mut effects = serde_json::Map::new();
            for name in &r.actions {
                if let Some(action) = self.actions.get(name).filter(|a| a.scope() == Scope::Alert) {
                    let ctx = ActionContext {
                        notification_id: 0,
                        notification: &n,
                        alerts: vec![AlertInput {
                            alert,
                            context,
                            outcomes: Vec::new(),
                        }],
                        attempt: 1,
                        store: None,
                        metrics: None,
                    };
                    effects.insert(name.clone(), action.plan(&ctx).await);
                }
            }
            alerts.push(json!({
                "fingerprint": alert.fingerprint,
                "status": alert.status,
                "labels": alert.labels,
                "routes": r.routes,
                "actions": r.actions,
                "context": context.plan_value(),
                "effects": effects,
            }));
        }
        let mut messages = serde_json::Map::new();
        for (name, action) in self.actions.iter() {
            if action.scope() != Scope::Notification {
                continue;
            }
            let inputs = inputs_for(name, &n, &routed, &contexts, &[]);
            if inputs.is_empty() {
                continue;
            }
            let ctx = ActionContext {
                notification_id: 0,
                notification: &n,
                alerts: inputs,
                attempt: 1,
                store: None,
                metrics: None,
            };
            messages.insert(name.to_owned(), action.plan(&ctx).await);
        }
        let mut plan =
            json!({ "dry_run": true, "alerts": alerts, "notification_actions": messages });
        if let Some(note) = note {
            plan["truncated"] = json!(note);
        }
        plan
    }
}

/// The alerts of `n` routed to action `name`, with their contexts and this
/// round's alert-scoped outcomes.
fn inputs_for<'a>(
    name: &str,
    n: &'a Notification,
    routed: &[Routed],
    contexts: &'a [Context],
    runs: &'a [ActionRun],
) -> Vec<AlertInput<'a>> {
    n.alerts
        .iter()
        .zip(routed)
        .zip(contexts)
        .filter(|((_, r), _)| r.actions.iter().any(|a| a == name))
        .map(|((alert, _), context)| AlertInput {
            alert,
            context,
            outcomes: runs
                .iter()
                .filter(|run| run.fingerprint == alert.fingerprint)
                .collect(),
        })
        .collect()
}

/// Route, enrich, act, record.
pub struct Pipeline {
    planner: Arc<Planner>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    retry: RetryPolicy,
}

impl Pipeline {
    /// Assembles the stages.
    pub fn new(
        planner: Arc<Planner>,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        retry: RetryPolicy,
    ) -> Self {
        for (name, action) in planner.actions.iter() {
            metrics.declare_action(name, action.kind());
        }
        Self {
            planner,
            store,
            metrics,
            retry,
        }
    }

    /// The planner (route + enrich), for dry runs.
    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// The action runs a notification needs, in match order: one per
    /// (alert fingerprint, action) for alert-scoped actions, one per action
    /// for notification-scoped ones.
    fn planned_runs(&self, n: &Notification, routed: &[Routed]) -> Vec<PlannedRun> {
        let mut runs: Vec<PlannedRun> = Vec::new();
        for (alert, r) in n.alerts.iter().zip(routed) {
            for action in &r.actions {
                let (kind, scope) = match self.planner.actions.get(action) {
                    Some(a) => (a.kind(), a.scope()),
                    None => ("unknown", Scope::Alert),
                };
                let fingerprint = match scope {
                    Scope::Alert => alert.fingerprint.as_str(),
                    Scope::Notification => NOTIFICATION_RUN,
                };
                if scope == Scope::Notification
                    && runs
                        .iter()
                        .any(|p| p.action == *action && p.fingerprint == fingerprint)
                {
                    continue;
                }
                runs.push(PlannedRun {
                    fingerprint: fingerprint.to_owned(),
                    action: action.clone(),
                    action_type: kind.to_owned(),
                });
            }
        }
        runs
    }

    /// Processes one claimed notification through every stage and settles it.
    pub async fn process(&self, claimed: Claimed) -> Result<(), StoreError> {
        let span = tracing::info_span!(
            "notification",
            id = claimed.id,
            group_key = tracing::field::Empty
        );
        self.process_inner(claimed).instrument(span).await
    }

    async fn process_inner(&self, claimed: Claimed) -> Result<(), StoreError> {
        // The payload was validated before it was stored, so this only fails if
        // the row was altered by hand; such a notification has nothing to run.
        let mut notification = match ingest::parse(claimed.payload.as_bytes(), usize::MAX) {
            Ok(a) => a.notification,
            Err(e) => {
                tracing::error!(error = %e, "Stored payload no longer parses; nothing to run");
                return self.store.settle(claimed.id, claimed.round, now_ms()).await;
            }
        };
        tracing::Span::current().record("group_key", notification.group_key.as_str());

        // Route.
        self.planner.complete_truncated(&mut notification).await;
        let routed: Vec<Routed> = notification
            .alerts
            .iter()
            .map(|a| self.planner.route_alert(a))
            .collect();
        let runs = self
            .store
            .ensure_runs(
                claimed.id,
                claimed.round,
                self.planned_runs(&notification, &routed),
            )
            .await?;

        // Enrich (once per alert, only for alerts with a run due) and act.
        // Phase 1, alert-scoped runs: an alert's runs in match order, several
        // alerts at once, so their ledger writes share commits.
        let now = now_ms();
        let mut due: Vec<(usize, Vec<ActionRun>)> = Vec::new();
        let mut notification_runs: Vec<ActionRun> = Vec::new();
        for run in runs {
            if run.status.is_final() || run.next_attempt_at.is_some_and(|t| t > now) {
                continue;
            }
            if run.fingerprint == NOTIFICATION_RUN {
                notification_runs.push(run);
                continue;
            }
            let Some(i) = notification
                .alerts
                .iter()
                .position(|a| a.fingerprint == run.fingerprint)
            else {
                let error = format!("alert {} is not in the notification", run.fingerprint);
                self.record(
                    &run,
                    now,
                    Instant::now(),
                    None,
                    Err(ActionError::Permanent(error)),
                )
                .await?;
                continue;
            };
            match due.iter_mut().find(|(j, _)| *j == i) {
                Some((_, runs)) => runs.push(run),
                None => due.push((i, vec![run])),
            }
        }
        let notification = &notification;
        let routed = &routed;
        let results: Vec<Result<(usize, Context), StoreError>> = stream::iter(due)
            .map(|(i, runs)| self.act_on_alert(claimed.id, notification, routed, i, runs))
            .buffer_unordered(ALERTS_IN_PARALLEL)
            .collect()
            .await;
        let mut contexts: Vec<Option<Context>> = vec![None; notification.alerts.len()];
        for r in results {
            let (i, context) = r?;
            contexts[i] = Some(context);
        }

        // Phase 2, notification-scoped runs (chat): they see every routed
        // alert's context and what phase 1 did.
        if !notification_runs.is_empty() {
            for (i, alert) in notification.alerts.iter().enumerate() {
                if contexts[i].is_none() {
                    contexts[i] = Some(self.planner.context(&routed[i], notification, alert).await);
                }
            }
            let contexts: Vec<Context> = contexts
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect();
            let round_runs = self
                .store
                .ensure_runs(claimed.id, claimed.round, Vec::new())
                .await?;
            for run in notification_runs {
                let started_at = now_ms();
                let clock = Instant::now();
                let inputs = inputs_for(&run.action, notification, routed, &contexts, &round_runs);
                let result = match self.planner.actions.get(&run.action) {
                    Some(action) => {
                        let ctx = ActionContext {
                            notification_id: claimed.id,
                            notification,
                            alerts: inputs,
                            attempt: run.attempts + 1,
                            store: Some(self.store.as_ref()),
                            metrics: Some(&self.metrics),
                        };
                        action.execute(&ctx).await
                    }
                    None => Err(ActionError::Permanent(format!(
                        "action {:?} is no longer configured",
                        run.action
                    ))),
                };
                self.record(&run, started_at, clock, None, result).await?;
            }
        }

        // Ledger: done, or due again at the earliest retry.
        self.store.settle(claimed.id, claimed.round, now_ms()).await
    }

    /// Enrich one alert, then run its due actions in order, recording each.
    async fn act_on_alert(
        &self,
        notification_id: i64,
        notification: &Notification,
        routed: &[Routed],
        index: usize,
        runs: Vec<ActionRun>,
    ) -> Result<(usize, Context), StoreError> {
        let alert = &notification.alerts[index];
        let context = self
            .planner
            .context(&routed[index], notification, alert)
            .await;
        for run in runs {
            let started_at = now_ms();
            let clock = Instant::now();
            let result = match self.planner.actions.get(&run.action) {
                Some(action) => {
                    let ctx = ActionContext {
                        notification_id,
                        notification,
                        alerts: vec![AlertInput {
                            alert,
                            context: &context,
                            outcomes: Vec::new(),
                        }],
                        attempt: run.attempts + 1,
                        store: Some(self.store.as_ref()),
                        metrics: Some(&self.metrics),
                    };
                    action.execute(&ctx).await
                }
                None => Err(ActionError::Permanent(format!(
                    "action {:?} is no longer configured",
                    run.action
                ))),
            };
            self.record(&run, started_at, clock, Some(&context), result)
                .await?;
        }
        Ok((index, context))
    }

    /// Ledger stage for one attempt: outcome, retry time, metrics.
    async fn record(
        &self,
        run: &ActionRun,
        started_at: i64,
        clock: Instant,
        context: Option<&Context>,
        result: Result<Value, ActionError>,
    ) -> Result<(), StoreError> {
        let attempt = run.attempts + 1;
        let elapsed = clock.elapsed();
        let finished_at = now_ms();
        // The action's own limits win over worker.*.
        let limits = self
            .planner
            .actions
            .get(&run.action)
            .map(|a| a.retry_limits())
            .unwrap_or_default();
        let max_attempts = limits.max_attempts.unwrap_or(self.retry.max_attempts);
        let max_age = limits.max_age.or(self.retry.max_age);
        let first_attempt_at = run.first_attempt_at.unwrap_or(started_at);
        let outcome = match result {
            Ok(result) => RunOutcome::Succeeded { result },
            Err(ActionError::Permanent(error)) => RunOutcome::Dead { error },
            Err(ActionError::Retryable { message, .. }) if attempt >= max_attempts => {
                RunOutcome::Dead {
                    error: format!("gave up after {attempt} attempts: {message}"),
                }
            }
            Err(ActionError::Retryable {
                message,
                retry_after,
            }) => {
                // A Retry-After is honoured up to worker.backoff_max: an
                // absurd one (10^9 s) cannot park a run; a server still
                // refusing then costs an attempt, and max_attempts ends it.
                let asked = retry_after.unwrap_or_default();
                let wait = self.retry.delay(attempt).max(asked.min(self.retry.max));
                let retry_at = finished_at + wait.as_millis() as i64;
                let asked_until = finished_at.saturating_add(asked.as_millis() as i64);
                match max_age {
                    // The destination asked for a wait past the run's max_age.
                    Some(age)
                        if retry_after.is_some()
                            && asked_until - first_attempt_at > age.as_millis() as i64 =>
                    {
                        RunOutcome::Dead {
                            error: format!(
                                "gave up after {attempt} attempts: the destination asked to wait {} (Retry-After), over max_age {}: {message}",
                                humantime::format_duration(Duration::from_secs(asked.as_secs())),
                                humantime::format_duration(age)
                            ),
                        }
                    }
                    // The next attempt would come too late to be worth making.
                    Some(age) if retry_at - first_attempt_at > age.as_millis() as i64 => {
                        RunOutcome::Dead {
                            error: format!(
                                "gave up after {attempt} attempts: the next one would be over max_age {}: {message}",
                                humantime::format_duration(age)
                            ),
                        }
                    }
                    _ => RunOutcome::Retry {
                        error: message,
                        retry_at,
                    },
                }
            }
        };
        let label = match &outcome {
            RunOutcome::Succeeded { .. } => "succeeded",
            RunOutcome::Retry { error, .. } => {
                tracing::warn!(action = %run.action, fingerprint = %run.fingerprint, attempt, error = %error, "Action failed; will retry");
                "failed"
            }
            RunOutcome::Dead { error } => {
                tracing::error!(action = %run.action, fingerprint = %run.fingerprint, attempt, error = %error, "Action dead-lettered");
                "dead"
            }
        };
        self.metrics
            .action_runs
            .get_or_create(&ActionRunLabels {
                action: run.action.clone(),
                kind: TypeLabel(run.action_type.clone()),
                outcome: label.to_owned(),
            })
            .inc();
        self.metrics
            .action_duration
            .get_or_create(&ActionTypeLabels {
                kind: TypeLabel(run.action_type.clone()),
            })
            .observe(elapsed.as_secs_f64());
        self.store
            .record_attempt(RunAttempt {
                run_id: run.id,
                started_at,
                finished_at,
                outcome,
                context: context.map(Context::plan_value),
            })
            .await
    }
}

/// Wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

//! Pipeline: the one place that knows the stage order.
//!
//! route (labels → actions, enrichments) → enrich (Prometheus context) → act →
//! ledger. The worker hands it a claimed notification; it records every action
//! run's outcome. [`Planner`] is the side-effect-free half (route + enrich),
//! shared with the dry-run plan.

use crate::act::{ActionContext, ActionError, ActionSet};
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

/// Route and enrich: everything before acting, with no side effect.
pub struct Planner {
    route: Route,
    enricher: Enricher,
    alertmanager: Option<AlertmanagerClient>,
}

impl Planner {
    /// Builds the route tree, enrichment templates and clients from settings.
    pub fn from_settings(settings: &Settings, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        Ok(Self {
            route: settings.compile_route()?,
            enricher: Enricher::new(
                &settings.enrichments,
                settings.prometheus.as_ref(),
                settings.link_settings(),
                metrics,
            )?,
            alertmanager: settings
                .alertmanager
                .as_ref()
                .map(AlertmanagerClient::new)
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
    /// group from its API. Returns a note for the log/plan when it could not.
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
    /// its labels, matched routes, actions, and the enrichment context with
    /// each rendered query and its value.
    pub async fn dry_run(&self, mut n: Notification) -> Value {
        let note = self.complete_truncated(&mut n).await;
        let mut alerts = Vec::with_capacity(n.alerts.len());
        for alert in &n.alerts {
            let routed = self.route_alert(alert);
            let context = self.context(&routed, &n, alert).await;
            alerts.push(json!({
                "fingerprint": alert.fingerprint,
                "status": alert.status,
                "labels": alert.labels,
                "routes": routed.routes,
                "actions": routed.actions,
                "context": context.plan_value(),
            }));
        }
        let mut plan = json!({ "dry_run": true, "alerts": alerts });
        if let Some(note) = note {
            plan["truncated"] = json!(note);
        }
        plan
    }
}

/// Route, enrich, act, record.
pub struct Pipeline {
    planner: Arc<Planner>,
    actions: ActionSet,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    retry: RetryPolicy,
}

impl Pipeline {
    /// Assembles the stages.
    pub fn new(
        planner: Arc<Planner>,
        actions: ActionSet,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        retry: RetryPolicy,
    ) -> Self {
        for (name, action) in actions.iter() {
            metrics.declare_action(name, action.kind());
        }
        Self {
            planner,
            actions,
            store,
            metrics,
            retry,
        }
    }

    /// The planner (route + enrich), for dry runs.
    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// The action runs a notification needs: one per (alert fingerprint,
    /// action), in match order.
    fn planned_runs(&self, n: &Notification, routed: &[Routed]) -> Vec<PlannedRun> {
        let mut runs = Vec::new();
        for (alert, r) in n.alerts.iter().zip(routed) {
            for action in &r.actions {
                let action_type = self
                    .actions
                    .get(action)
                    .map(|a| a.kind())
                    .unwrap_or("unknown");
                runs.push(PlannedRun {
                    fingerprint: alert.fingerprint.clone(),
                    action: action.clone(),
                    action_type: action_type.to_owned(),
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

        // Enrich (once per alert, only for alerts with a run due) and act:
        // an alert's runs in match order, several alerts at once, so their
        // ledger writes share commits.
        let now = now_ms();
        let mut due: Vec<(usize, Vec<ActionRun>)> = Vec::new();
        for run in runs {
            if run.status.is_final() || run.next_attempt_at.is_some_and(|t| t > now) {
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
        let results: Vec<Result<(), StoreError>> = stream::iter(due)
            .map(|(i, runs)| self.act_on_alert(claimed.id, notification, &routed[i], i, runs))
            .buffer_unordered(ALERTS_IN_PARALLEL)
            .collect()
            .await;
        results.into_iter().collect::<Result<(), StoreError>>()?;

        // Ledger: done, or due again at the earliest retry.
        self.store.settle(claimed.id, claimed.round, now_ms()).await
    }

    /// Enrich one alert, then run its due actions in order, recording each.
    async fn act_on_alert(
        &self,
        notification_id: i64,
        notification: &Notification,
        routed: &Routed,
        index: usize,
        runs: Vec<ActionRun>,
    ) -> Result<(), StoreError> {
        let alert = &notification.alerts[index];
        let context = self.planner.context(routed, notification, alert).await;
        for run in runs {
            let started_at = now_ms();
            let clock = Instant::now();
            let result = match self.actions.get(&run.action) {
                Some(action) => {
                    let ctx = ActionContext {
                        notification_id,
                        notification,
                        alert,
                        context: &context,
                        attempt: run.attempts + 1,
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
        Ok(())
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
        let outcome = match result {
            Ok(result) => RunOutcome::Succeeded { result },
            Err(ActionError::Permanent(error)) => RunOutcome::Dead { error },
            Err(ActionError::Retryable { message, .. }) if attempt >= self.retry.max_attempts => {
                RunOutcome::Dead {
                    error: format!("gave up after {attempt} attempts: {message}"),
                }
            }
            Err(ActionError::Retryable {
                message,
                retry_after,
            }) => {
                let wait = self
                    .retry
                    .delay(attempt)
                    .max(retry_after.unwrap_or_default());
                RunOutcome::Retry {
                    error: message,
                    retry_at: finished_at + wait.as_millis() as i64,
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

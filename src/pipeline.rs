//! Pipeline: the one place that knows the stage order.
//!
//! route (labels → actions) → enrich (later) → act → ledger. The worker hands
//! it a claimed notification; it records every action run's outcome.

use crate::act::{ActionContext, ActionError, ActionSet};
use crate::ingest::{self, Notification};
use crate::metrics::{ActionRunLabels, ActionTypeLabels, Metrics, TypeLabel};
use crate::route::Route;
use crate::store::{Claimed, PlannedRun, RunAttempt, RunOutcome, Store, StoreError};
use backon::{BackoffBuilder, ExponentialBuilder};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

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

/// Route, enrich, act, record.
pub struct Pipeline {
    route: Route,
    actions: ActionSet,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    retry: RetryPolicy,
}

impl Pipeline {
    /// Assembles the stages.
    pub fn new(
        route: Route,
        actions: ActionSet,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            route,
            actions,
            store,
            metrics,
            retry,
        }
    }

    /// Route stage: the action runs a notification needs, one per
    /// (alert fingerprint, action), in match order.
    pub fn plan(&self, n: &Notification) -> Vec<PlannedRun> {
        let mut runs: Vec<PlannedRun> = Vec::new();
        for alert in &n.alerts {
            for m in self.route.evaluate(&alert.labels) {
                for action in m.actions {
                    if runs
                        .iter()
                        .any(|r| r.fingerprint == alert.fingerprint && r.action == action)
                    {
                        continue;
                    }
                    let action_type = self
                        .actions
                        .get(&action)
                        .map(|a| a.kind())
                        .unwrap_or("unknown");
                    runs.push(PlannedRun {
                        fingerprint: alert.fingerprint.clone(),
                        action,
                        action_type: action_type.to_owned(),
                    });
                }
            }
        }
        runs
    }

    /// The plan for a notification without storing or changing anything.
    pub fn dry_run(&self, n: &Notification) -> serde_json::Value {
        plan(&self.route, n)
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
        let notification = match ingest::parse(claimed.payload.as_bytes(), usize::MAX) {
            Ok(a) => a.notification,
            Err(e) => {
                tracing::error!(error = %e, "Stored payload no longer parses; nothing to run");
                return self.store.settle(claimed.id, claimed.round, now_ms()).await;
            }
        };
        tracing::Span::current().record("group_key", notification.group_key.as_str());

        let planned = self.plan(&notification);
        let runs = self
            .store
            .ensure_runs(claimed.id, claimed.round, planned)
            .await?;
        for run in runs {
            if run.status.is_final() || run.next_attempt_at.is_some_and(|t| t > now_ms()) {
                continue;
            }
            let attempt = run.attempts + 1;
            let started_at = now_ms();
            let clock = Instant::now();
            let alert = notification
                .alerts
                .iter()
                .find(|a| a.fingerprint == run.fingerprint);
            let result = match (alert, self.actions.get(&run.action)) {
                (Some(alert), Some(action)) => {
                    let ctx = ActionContext {
                        notification_id: claimed.id,
                        notification: &notification,
                        alert,
                        attempt,
                    };
                    action.execute(&ctx).await
                }
                (None, _) => Err(ActionError::Permanent(format!(
                    "alert {} is not in the notification",
                    run.fingerprint
                ))),
                (_, None) => Err(ActionError::Permanent(format!(
                    "action {:?} is no longer configured",
                    run.action
                ))),
            };
            let elapsed = clock.elapsed();
            let finished_at = now_ms();
            let outcome = match result {
                Ok(result) => RunOutcome::Succeeded { result },
                Err(ActionError::Permanent(error)) => RunOutcome::Dead { error },
                Err(ActionError::Retryable { message, .. })
                    if attempt >= self.retry.max_attempts =>
                {
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
                })
                .await?;
        }
        self.store.settle(claimed.id, claimed.round, now_ms()).await
    }
}

/// The dry-run plan: per alert, the matched routes (by config path) and the
/// actions that would run, in match order. Pure: nothing is stored or sent.
pub fn plan(route: &Route, n: &Notification) -> serde_json::Value {
    let alerts: Vec<serde_json::Value> = n
        .alerts
        .iter()
        .map(|alert| {
            let matches = route.evaluate(&alert.labels);
            let mut actions: Vec<&str> = Vec::new();
            for a in matches.iter().flat_map(|m| &m.actions) {
                if !actions.contains(&a.as_str()) {
                    actions.push(a);
                }
            }
            serde_json::json!({
                "fingerprint": alert.fingerprint,
                "status": alert.status,
                "labels": alert.labels,
                "routes": matches.iter().map(|m| m.path.as_str()).collect::<Vec<_>>(),
                "actions": actions,
            })
        })
        .collect();
    serde_json::json!({ "dry_run": true, "alerts": alerts })
}

/// Wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

//! Run: act on one claimed notification and record every attempt in the
//! ledger. Alert-scoped runs first (alerts in parallel, each alert's actions
//! in order), then notification-scoped runs, which see what those did.

use super::plan::{inputs_for, Planner, Routed, NOTIFICATION_RUN};
use super::retry::{self, Attempt, RetryPolicy};
use crate::act::{ActionContext, ActionError, AlertInput, Scope};
use crate::clock::now_ms;
use crate::enrich::Context;
use crate::ingest::{self, Notification};
use crate::metrics::{ActionRunLabels, ActionTypeLabels, Metrics, TypeLabel};
use crate::store::{ActionRun, Claimed, PlannedRun, RunAttempt, RunOutcome, Store, StoreError};
use futures_util::stream::{self, StreamExt};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// Alerts of one notification acted on at once (each alert's own actions run
/// in order).
const ALERTS_IN_PARALLEL: usize = 16;

/// A worker's hold on the notification it processes. The pipeline lets go
/// of it while the notification's chat runs wait in their destinations'
/// queues (bounded by `digest.after`), so the worker claims the next
/// notification meanwhile and a storm reaches the queues, which digest it.
#[derive(Default)]
pub struct Slot(Option<tokio::sync::oneshot::Sender<()>>);

impl Slot {
    /// A slot whose release the worker awaits (`released` resolves when the
    /// slot is released or dropped).
    pub fn new() -> (Self, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Self(Some(tx)), rx)
    }

    /// Lets the worker go on.
    pub fn release(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
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
        for (name, action) in planner.actions().iter() {
            metrics.declare_action(name, action.kind());
            if crate::act::chat::KINDS.contains(&action.kind()) {
                metrics.declare_template_errors(name);
            }
            if action.queues() {
                metrics.declare_digest(name);
            }
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
                let (kind, scope) = match self.planner.actions().get(action) {
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

    /// Processes one claimed notification through every stage and settles
    /// it; `slot` is released once only queued chat runs are left.
    pub async fn process(&self, claimed: Claimed, slot: Slot) -> Result<(), StoreError> {
        let span = tracing::info_span!(
            "notification",
            id = claimed.id,
            group_key = tracing::field::Empty
        );
        self.process_inner(claimed, slot).instrument(span).await
    }

    async fn process_inner(&self, claimed: Claimed, mut slot: Slot) -> Result<(), StoreError> {
        // The payload was validated before it was stored, so this only fails if
        // the row was altered by hand; such a notification has nothing to run.
        let mut notification = match ingest::parse_stored(&claimed.payload) {
            Ok(n) => n,
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
            // Runs that wait in a destination's queue (never much longer
            // than its digest delay) need not hold the worker; any other
            // could wait on a rate limit for minutes, past the lease.
            if notification_runs.iter().all(|run| {
                self.planner
                    .actions()
                    .get(&run.action)
                    .is_some_and(|a| a.queues())
            }) {
                slot.release();
            }
            for run in notification_runs {
                let started_at = now_ms();
                let clock = Instant::now();
                let inputs = inputs_for(&run.action, notification, routed, &contexts, &round_runs);
                let result = self.execute(&run, claimed.id, notification, inputs).await;
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
            let input = AlertInput {
                alert,
                context: &context,
                outcomes: Vec::new(),
            };
            let result = self
                .execute(&run, notification_id, notification, vec![input])
                .await;
            self.record(&run, started_at, clock, Some(&context), result)
                .await?;
        }
        Ok((index, context))
    }

    /// One attempt of `run` over `alerts`; an action no longer in the config
    /// fails the run for good.
    async fn execute(
        &self,
        run: &ActionRun,
        notification_id: i64,
        notification: &Notification,
        alerts: Vec<AlertInput<'_>>,
    ) -> Result<Value, ActionError> {
        let Some(action) = self.planner.actions().get(&run.action) else {
            return Err(ActionError::Permanent(format!(
                "action {:?} is no longer configured",
                run.action
            )));
        };
        let ctx = ActionContext::run(
            notification_id,
            notification,
            alerts,
            run.attempts + 1,
            self.store.as_ref(),
            &self.metrics,
        );
        action.execute(&ctx).await
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
        let limits = self.retry.limits(
            self.planner
                .actions()
                .get(&run.action)
                .map(|a| a.retry_limits())
                .unwrap_or_default(),
        );
        let outcome = retry::decide(
            result,
            Attempt {
                number: attempt,
                first_attempt_at: run.first_attempt_at.unwrap_or(started_at),
                finished_at,
                backoff: self.retry.delay(attempt),
            },
            limits,
        );
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

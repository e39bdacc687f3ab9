//! Act: the things the router does with a routed alert.
//!
//! Config is a closed, serde-tagged enum ([`ActionConfig`]) validated without
//! I/O; [`ActionConfig::build`] turns it into a runtime [`Action`] once at
//! startup, and a config it cannot build stops startup (and `check-config`)
//! with the action's key path. Every action type lives in its own file with the same shape; the
//! chat platforms and the generic webhook share [`chat`] (templates, size
//! limits, delivery).

pub mod annotate;
pub mod chat;
mod log;
pub mod traffic;

use crate::ingest::{Alert, Notification};
pub use crate::store::ActionRun;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use self::log::{LogAction, LogActionConfig};

/// `actions.<name>`: one configured action, tagged by `type`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionConfig {
    /// Writes one structured log line per alert.
    Log(LogActionConfig),
    /// Moves A/B weight away from the alerting variant.
    TrafficShift(traffic::TrafficShiftConfig),
    /// Slack: incoming webhook, or bot token with `chat.postMessage`/`chat.update`.
    Slack(chat::SlackConfig),
    /// Microsoft Teams: a Workflows webhook with an Adaptive Card.
    Msteams(chat::MsTeamsConfig),
    /// Mattermost: incoming webhook.
    Mattermost(chat::MattermostConfig),
    /// Discord: webhook with embeds.
    Discord(chat::DiscordConfig),
    /// Google Chat: space webhook with a cardsV2 card, one thread per group.
    GoogleChat(chat::GoogleChatConfig),
    /// Any HTTP endpoint: a templated JSON body (e.g. an Argo Events source).
    Webhook(chat::WebhookConfig),
    /// Marks the notification's traffic shifts on a Grafana dashboard.
    GrafanaAnnotation(annotate::GrafanaAnnotationConfig),
}

/// What actions need from the rest of the application: its parts, not the
/// settings (the caller builds them).
#[derive(Clone)]
pub struct ActionDeps {
    /// The ledger; `None` for offline plans (`plan FILE`).
    pub store: Option<Arc<dyn crate::store::Store>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub targets: Arc<traffic::Targets>,
    pub clock: crate::clock::Clock,
    /// What outbound HTTPS clients trust (`tls.*`).
    pub tls: crate::outbound::CaPolicy,
    /// Prometheus, for the evidence guard of traffic shifts (`prometheus.*`).
    pub prometheus: Option<Arc<crate::enrich::prometheus::PrometheusClient>>,
}

impl ActionDeps {
    /// Dependencies from their parts, on the system clock.
    pub fn new(
        store: Option<Arc<dyn crate::store::Store>>,
        metrics: Arc<crate::metrics::Metrics>,
        targets: Arc<traffic::Targets>,
        tls: crate::outbound::CaPolicy,
    ) -> Self {
        Self {
            store,
            metrics,
            targets,
            clock: crate::clock::system(),
            tls,
            prometheus: None,
        }
    }

    /// With the Prometheus client of `settings` (none without `prometheus:`).
    pub fn with_prometheus(
        mut self,
        settings: Option<&crate::enrich::PrometheusSettings>,
    ) -> anyhow::Result<Self> {
        self.prometheus = match settings {
            Some(p) => Some(Arc::new(crate::enrich::prometheus::PrometheusClient::new(
                p,
                self.metrics.clone(),
                &self.tls,
            )?)),
            None => None,
        };
        Ok(self)
    }

    /// No ledger, no traffic targets, the system roots: for renderings and
    /// plans of chat actions (tests, fuzzing).
    pub fn offline(metrics: Arc<crate::metrics::Metrics>) -> Self {
        Self::new(None, metrics, Arc::default(), Default::default())
    }
}

impl ActionConfig {
    /// The chat platform (or webhook) this config is, if it is one: the one
    /// place that lists them.
    pub fn platform(&self) -> Option<&dyn chat::Platform> {
        match self {
            ActionConfig::Slack(c) => Some(c),
            ActionConfig::Msteams(c) => Some(c),
            ActionConfig::Mattermost(c) => Some(c),
            ActionConfig::Discord(c) => Some(c),
            ActionConfig::GoogleChat(c) => Some(c),
            ActionConfig::Webhook(c) => Some(c),
            ActionConfig::Log(_)
            | ActionConfig::TrafficShift(_)
            | ActionConfig::GrafanaAnnotation(_) => None,
        }
    }

    /// [`ActionConfig::platform`], mutable.
    pub fn platform_mut(&mut self) -> Option<&mut dyn chat::Platform> {
        match self {
            ActionConfig::Slack(c) => Some(c),
            ActionConfig::Msteams(c) => Some(c),
            ActionConfig::Mattermost(c) => Some(c),
            ActionConfig::Discord(c) => Some(c),
            ActionConfig::GoogleChat(c) => Some(c),
            ActionConfig::Webhook(c) => Some(c),
            ActionConfig::Log(_)
            | ActionConfig::TrafficShift(_)
            | ActionConfig::GrafanaAnnotation(_) => None,
        }
    }

    /// Reads the `*_file` secrets and templates; errors name the key below
    /// `key` (`actions.<name>`).
    pub fn resolve_files(&mut self, key: &str) -> Result<(), String> {
        if let ActionConfig::GrafanaAnnotation(c) = self {
            return c.resolve_files(key);
        }
        match self.platform_mut() {
            Some(p) => p.resolve_files(key),
            None => Ok(()),
        }
    }

    /// Offline validation; each error is relative to `actions.<name>`
    /// (`url: …`, `template: …`).
    pub fn validate(&self) -> Result<(), Vec<String>> {
        if let Some(p) = self.platform() {
            return p.validate();
        }
        match self {
            ActionConfig::TrafficShift(c) => c.validate_all(),
            ActionConfig::GrafanaAnnotation(c) => c.validate(),
            _ => Ok(()),
        }
    }

    /// Builds the runtime action (no I/O). An error is relative to
    /// `actions.<name>` (`url: …`, `guard: …`): the config cannot work.
    pub fn build(&self, name: &str, deps: &ActionDeps) -> Result<Arc<dyn Action>, String> {
        if let Some(p) = self.platform() {
            return p.build(name, &deps.tls, &deps.metrics);
        }
        Ok(match self {
            ActionConfig::Log(c) => Arc::new(LogAction::new(name, c.clone())),
            ActionConfig::TrafficShift(c) => Arc::new(
                traffic::TrafficShift::new(
                    name,
                    c.clone(),
                    deps.targets.clone(),
                    deps.store.clone(),
                    deps.metrics.clone(),
                    deps.clock.clone(),
                )?
                .with_prometheus(deps.prometheus.clone()),
            ),
            ActionConfig::GrafanaAnnotation(c) => {
                Arc::new(annotate::GrafanaAnnotation::new(c.clone(), &deps.tls)?)
            }
            // The chat platforms were built above.
            _ => return Err("type: not an action type this build knows".into()),
        })
    }
}

/// How long an action's failed runs keep being retried; `None` takes `worker.*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryLimits {
    /// Attempts before the run is dead (`worker.max_attempts`).
    pub max_attempts: Option<u32>,
    /// Time since the first attempt after which it is dead (`worker.max_age`).
    pub max_age: Option<Duration>,
}

/// What one run of an action covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One run per alert (a traffic shift, the log line).
    Alert,
    /// One run per notification, covering every alert routed to the action
    /// (a chat message per Alertmanager group). Runs after the alert-scoped
    /// actions of the same notification, so it can say what they did.
    Notification,
}

/// One alert as an action sees it.
pub struct AlertInput<'a> {
    pub alert: &'a Alert,
    /// What enrichment found out about it (values, errors, links).
    pub context: &'a crate::enrich::Context,
    /// This round's alert-scoped runs for the alert (empty for alert-scoped actions).
    pub outcomes: Vec<&'a crate::store::ActionRun>,
}

/// Everything an action run sees.
pub struct ActionContext<'a> {
    /// The stored notification's id.
    pub notification_id: i64,
    /// The whole notification (group labels, receiver, …).
    pub notification: &'a Notification,
    /// Alert scope: the one alert; notification scope: every alert of the
    /// notification routed to this action, in payload order.
    pub alerts: Vec<AlertInput<'a>>,
    /// Which attempt this is, starting at 1.
    pub attempt: u32,
    /// The ledger, for actions that remember what they sent (Slack threads).
    /// `None` in dry runs: a plan reads and writes nothing.
    pub store: Option<&'a dyn crate::store::Store>,
    /// The router's metrics (`None` in dry runs: a plan counts nothing).
    pub metrics: Option<&'a crate::metrics::Metrics>,
}

impl<'a> ActionContext<'a> {
    /// A run's context: attempt `attempt` of the stored notification `id`.
    pub fn run(
        notification_id: i64,
        notification: &'a Notification,
        alerts: Vec<AlertInput<'a>>,
        attempt: u32,
        store: &'a dyn crate::store::Store,
        metrics: &'a crate::metrics::Metrics,
    ) -> Self {
        Self {
            notification_id,
            notification,
            alerts,
            attempt,
            store: Some(store),
            metrics: Some(metrics),
        }
    }

    /// A dry run's context: no ledger, no metrics, first attempt.
    pub fn plan(notification: &'a Notification, alerts: Vec<AlertInput<'a>>) -> Self {
        Self {
            notification_id: 0,
            notification,
            alerts,
            attempt: 1,
            store: None,
            metrics: None,
        }
    }

    /// The (first) alert: the alert of an alert-scoped run.
    pub fn alert(&self) -> &'a Alert {
        self.alerts[0].alert
    }

    /// The (first) alert's context.
    pub fn context(&self) -> &'a crate::enrich::Context {
        self.alerts[0].context
    }
}

/// Why an action run did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// Worth trying again later (network error, 5xx, 429, …).
    #[error("{message}")]
    Retryable {
        message: String,
        /// Wait at least this long (e.g. from `Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Will never succeed as is (4xx, bad target, …): dead-letter at once.
    #[error("{0}")]
    Permanent(String),
}

impl From<crate::outbound::OutboundError> for ActionError {
    /// Retryable (with `Retry-After`) or permanent, as the answer was.
    fn from(e: crate::outbound::OutboundError) -> Self {
        if e.retryable() {
            ActionError::Retryable {
                message: e.message,
                retry_after: e.retry_after,
            }
        } else {
            ActionError::Permanent(e.message)
        }
    }
}

/// A runtime action.
#[async_trait]
pub trait Action: Send + Sync {
    /// The config `type`, used as a metric label.
    fn kind(&self) -> &'static str;

    /// Per alert (default) or per notification.
    fn scope(&self) -> Scope {
        Scope::Alert
    }

    /// Performs the action; the returned JSON is recorded with the run.
    async fn execute(&self, ctx: &ActionContext<'_>) -> Result<serde_json::Value, ActionError>;

    /// What the action would do, for the dry-run plan; must send and change nothing.
    async fn plan(&self, _ctx: &ActionContext<'_>) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// This action's own retry limits, overriding `worker.max_attempts`/`max_age`.
    fn retry_limits(&self) -> RetryLimits {
        RetryLimits::default()
    }

    /// True when a run waits in its destination's queue, which never holds a
    /// message much longer than `digest.after` (a chat digest): the worker
    /// may claim the next notification meanwhile.
    fn queues(&self) -> bool {
        false
    }
}

/// The configured actions by name, built once at startup.
#[derive(Clone, Default)]
pub struct ActionSet {
    actions: BTreeMap<String, Arc<dyn Action>>,
}

impl ActionSet {
    /// Builds every configured action; the errors name each action's key
    /// (`actions.<name>.<key>: …`).
    pub fn build(
        config: &BTreeMap<String, ActionConfig>,
        deps: &ActionDeps,
    ) -> Result<Self, Vec<String>> {
        let mut actions = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, c) in config {
            match c.build(name, deps) {
                Ok(action) => {
                    actions.insert(name.clone(), action);
                }
                Err(e) => errors.push(format!("actions.{name}.{e}")),
            }
        }
        if errors.is_empty() {
            Ok(Self { actions })
        } else {
            Err(errors)
        }
    }

    /// Adds or replaces every action of `other` (tests inject faulty actions).
    pub fn override_with(&mut self, other: ActionSet) {
        self.actions.extend(other.actions);
    }

    /// Adds or replaces an action (tests use this for fault injection).
    pub fn insert(&mut self, name: impl Into<String>, action: Arc<dyn Action>) {
        self.actions.insert(name.into(), action);
    }

    /// Every action with its name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<dyn Action>)> {
        self.actions.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The action of that name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Action>> {
        self.actions.get(name)
    }
}

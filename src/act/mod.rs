//! Act: the things the router does with a routed alert.
//!
//! Config is a closed, serde-tagged enum ([`ActionConfig`]) validated without
//! I/O; [`ActionConfig::build`] turns it into a runtime [`Action`] once at
//! startup. Every action type lives in its own file with the same shape; the
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

/// What actions need from the rest of the application.
#[derive(Clone)]
pub struct ActionDeps {
    /// The ledger; `None` for offline plans (`plan FILE`).
    pub store: Option<Arc<dyn crate::store::Store>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub targets: Arc<traffic::Targets>,
    pub clock: traffic::Clock,
    /// What outbound HTTPS clients trust (`tls.*`).
    pub tls: crate::outbound::CaPolicy,
}

impl ActionDeps {
    /// Dependencies from settings (targets built, no I/O).
    pub fn new(
        settings: &crate::settings::Settings,
        store: Option<Arc<dyn crate::store::Store>>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            store,
            metrics,
            targets: Arc::new(traffic::Targets::build(
                &settings.traffic_targets,
                &traffic::kube::ClientSource {
                    api_url: settings.kubernetes.api_url.clone(),
                },
            )),
            clock: Arc::new(|| chrono::Utc::now().timestamp_millis()),
            tls: settings.ca.clone(),
        }
    }
}

impl ActionConfig {
    /// Reads the `*_file` secrets and templates; errors name the key below
    /// `key` (`actions.<name>`).
    pub fn resolve_files(&mut self, key: &str) -> Result<(), String> {
        match self {
            ActionConfig::Log(_) | ActionConfig::TrafficShift(_) => Ok(()),
            ActionConfig::Slack(c) => c.resolve_files(key),
            ActionConfig::Msteams(c) => c.resolve_files(key),
            ActionConfig::Mattermost(c) => c.resolve_files(key),
            ActionConfig::Discord(c) => c.resolve_files(key),
            ActionConfig::GoogleChat(c) => c.resolve_files(key),
            ActionConfig::Webhook(c) => c.resolve_files(key),
            ActionConfig::GrafanaAnnotation(c) => c.resolve_files(key),
        }
    }

    /// Offline validation; each error is relative to `actions.<name>`
    /// (`url: …`, `template: …`).
    pub fn validate(&self) -> Result<(), Vec<String>> {
        match self {
            ActionConfig::Log(_) => Ok(()),
            ActionConfig::TrafficShift(c) => c.validate().map_err(|e| vec![e]),
            ActionConfig::Slack(c) => c.validate(),
            ActionConfig::Msteams(c) => c.validate(),
            ActionConfig::Mattermost(c) => c.validate(),
            ActionConfig::Discord(c) => c.validate(),
            ActionConfig::GoogleChat(c) => c.validate(),
            ActionConfig::Webhook(c) => c.validate(),
            ActionConfig::GrafanaAnnotation(c) => c.validate(),
        }
    }

    /// Builds the runtime action.
    pub fn build(&self, name: &str, deps: &ActionDeps) -> Arc<dyn Action> {
        match self {
            ActionConfig::Log(c) => Arc::new(LogAction::new(name, c.clone())),
            ActionConfig::TrafficShift(c) => Arc::new(traffic::TrafficShift::new(
                name,
                c.clone(),
                deps.targets.clone(),
                deps.store.clone(),
                deps.metrics.clone(),
                deps.clock.clone(),
            )),
            ActionConfig::Slack(c) => chat::slack::build(name, c, &deps.tls),
            ActionConfig::Msteams(c) => Arc::new(chat::PostAction::new(name, c, &deps.tls)),
            ActionConfig::Mattermost(c) => Arc::new(chat::PostAction::new(name, c, &deps.tls)),
            ActionConfig::Discord(c) => Arc::new(chat::PostAction::new(name, c, &deps.tls)),
            ActionConfig::GoogleChat(c) => Arc::new(chat::PostAction::new(name, c, &deps.tls)),
            ActionConfig::Webhook(c) => {
                Arc::new(chat::webhook::WebhookAction::new(name, c, &deps.tls))
            }
            ActionConfig::GrafanaAnnotation(c) => {
                Arc::new(annotate::GrafanaAnnotation::new(c.clone(), &deps.tls))
            }
        }
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
}

/// The configured actions by name, built once at startup.
#[derive(Clone, Default)]
pub struct ActionSet {
    actions: BTreeMap<String, Arc<dyn Action>>,
}

impl ActionSet {
    /// Builds every configured action.
    pub fn build(config: &BTreeMap<String, ActionConfig>, deps: &ActionDeps) -> Self {
        let actions = config
            .iter()
            .map(|(name, c)| (name.clone(), c.build(name, deps)))
            .collect();
        Self { actions }
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

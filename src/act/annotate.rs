//! `type: grafana_annotation` — marks every traffic shift of a notification
//! on the A/B dashboard (`POST /api/annotations`), so the graphs show when
//! and why the split changed. Notification-scoped: it runs after the traffic
//! actions of the same notification and reads their outcomes.

use super::traffic::TrafficResult;
use super::{Action, ActionContext, ActionError, Scope};
use crate::outbound::{Options, Scrubber, Transport};
use crate::secret::Secret;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// `actions.<name>` with `type: grafana_annotation`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GrafanaAnnotationConfig {
    /// Grafana's base URL, e.g. `http://grafana.monitoring.svc`.
    pub url: String,
    /// A service-account token (Bearer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The dashboard to annotate (default: the A/B dashboard).
    #[serde(default = "default_uid")]
    pub dashboard_uid: String,
    #[serde(default = "default_tags")]
    pub tags: Vec<String>,
    #[serde(default = "default_timeout", with = "crate::conf::duration")]
    pub timeout: Duration,
}

fn default_uid() -> String {
    "mlops-ab-testing".into()
}
fn default_tags() -> Vec<String> {
    vec!["mlops-alert-router".into(), "traffic-shift".into()]
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl GrafanaAnnotationConfig {
    /// Reads `token_file`.
    pub fn resolve_files(&mut self, key: &str) -> Result<(), String> {
        if let Some(path) = &self.token_file {
            let text = crate::conf::read_file(path, &format!("{key}.token_file"))?;
            self.token = Some(Secret::new(text.trim()));
        }
        Ok(())
    }

    /// Offline validation.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        match url::Url::parse(&self.url) {
            Ok(_) => Ok(()),
            Err(e) => Err(vec![format!("url: {:?} is not a URL ({e})", self.url)]),
        }
    }
}

/// Most bytes of Grafana's answer (`{"id": 1, "message": "Annotation added"}`).
const ANSWER_LIMIT: usize = 64 * 1024;

/// The runtime action.
pub struct GrafanaAnnotation {
    config: GrafanaAnnotationConfig,
    transport: Transport,
}

impl GrafanaAnnotation {
    /// From its config.
    /// From its config; an error is relative to `actions.<name>`.
    pub fn new(
        config: GrafanaAnnotationConfig,
        tls: &crate::outbound::CaPolicy,
    ) -> Result<Self, String> {
        let mut scrubber = Scrubber::new();
        if let Ok(url) = url::Url::parse(&config.url) {
            scrubber.add_url_credentials(&url);
        }
        if let Some(token) = &config.token {
            scrubber.add(token.expose());
        }
        let transport = Transport::new(tls, Options::new(config.timeout, ANSWER_LIMIT), scrubber)
            .map_err(|e| format!("url: {e}"))?;
        Ok(Self { config, transport })
    }

    /// One annotation body per traffic change in this notification.
    fn annotations(&self, ctx: &ActionContext<'_>, now: i64) -> Vec<Value> {
        let mut out = Vec::new();
        for input in &ctx.alerts {
            for run in &input.outcomes {
                let Some(result) = run
                    .result
                    .as_ref()
                    .filter(|_| run.action_type == "traffic_shift")
                    .and_then(TrafficResult::from_value)
                    .filter(|r| r.decision.changed_weights())
                else {
                    continue;
                };
                let decision = result.decision;
                let change: Vec<String> = result
                    .after
                    .iter()
                    .flatten()
                    .map(|(variant, after)| {
                        let before = result.before.as_ref().and_then(|b| b.get(variant));
                        let before = before.map_or_else(|| "null".to_owned(), u32::to_string);
                        format!("{variant} {before} → {after}")
                    })
                    .collect();
                let mut tags = self.config.tags.clone();
                tags.push(format!("experiment:{}", result.target));
                out.push(json!({
                    "dashboardUID": self.config.dashboard_uid,
                    "time": now,
                    "tags": tags,
                    "text": format!(
                        "Traffic {decision} by {} ({} {}): {}",
                        run.action,
                        input.alert.alertname(),
                        input.alert.status,
                        change.join(", ")
                    ),
                }));
            }
        }
        out
    }
}

#[async_trait]
impl Action for GrafanaAnnotation {
    fn kind(&self) -> &'static str {
        "grafana_annotation"
    }

    fn scope(&self) -> Scope {
        Scope::Notification
    }

    async fn execute(&self, ctx: &ActionContext<'_>) -> Result<Value, ActionError> {
        let bodies = self.annotations(ctx, crate::clock::now_ms());
        let url = format!("{}/api/annotations", self.config.url.trim_end_matches('/'));
        let transport = &self.transport;
        let mut ids = Vec::new();
        for body in &bodies {
            let mut request = transport.client().post(&url).json(body);
            if let Some(token) = &self.config.token {
                request = request.bearer_auth(token.expose());
            }
            let answer = transport.send(request).await.map_err(|e| {
                let mut e = ActionError::from(e);
                match &mut e {
                    ActionError::Retryable { message, .. } | ActionError::Permanent(message) => {
                        message.insert_str(0, "grafana: ");
                    }
                }
                e
            })?;
            let answer: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
            ids.push(answer["id"].clone());
        }
        Ok(json!({ "annotations": ids.len(), "ids": ids }))
    }

    async fn plan(&self, ctx: &ActionContext<'_>) -> Value {
        json!({ "would_post": self.annotations(ctx, 0) })
    }
}

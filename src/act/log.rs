//! `type: log` — the embedded default's stand-in for chat: one structured
//! log line per alert.

use super::{Action, ActionContext, ActionError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `actions.<name>` with `type: log`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogActionConfig {}

/// Writes the alert to the log.
pub struct LogAction {
    name: String,
}

impl LogAction {
    /// A log action called `name`.
    pub fn new(name: &str, _config: LogActionConfig) -> Self {
        Self {
            name: name.to_owned(),
        }
    }
}

#[async_trait]
impl Action for LogAction {
    fn kind(&self) -> &'static str {
        "log"
    }

    async fn execute(&self, ctx: &ActionContext<'_>) -> Result<serde_json::Value, ActionError> {
        let alert = ctx.alert();
        let summary = alert
            .annotations
            .get("summary")
            .map(String::as_str)
            .unwrap_or("");
        tracing::info!(
            action = %self.name,
            notification_id = ctx.notification_id,
            fingerprint = %alert.fingerprint,
            alertname = %alert.alertname(),
            status = %alert.status,
            severity = alert.labels.get("severity").map(String::as_str).unwrap_or(""),
            experiment = alert.labels.get("experiment").map(String::as_str).unwrap_or(""),
            model_name = alert.labels.get("model_name").map(String::as_str).unwrap_or(""),
            summary,
            "Alert {}",
            alert.status
        );
        Ok(json!({"logged": true}))
    }
}

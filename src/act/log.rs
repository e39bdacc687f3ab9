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

impl LogAction {
    /// The one log line an alert gets, as its fields (`message` is the text).
    fn line(&self, ctx: &ActionContext<'_>) -> serde_json::Value {
        let alert = ctx.alert();
        let label = |k: &str| alert.labels.get(k).map(String::as_str).unwrap_or("");
        json!({
            "level": "INFO",
            "message": format!("Alert {}", alert.status),
            "action": self.name,
            "fingerprint": alert.fingerprint.to_string(),
            "alertname": alert.alertname(),
            "status": alert.status.to_string(),
            "severity": label("severity"),
            "experiment": label("experiment"),
            "model_name": label("model_name"),
            "summary": alert.annotations.get("summary").map(String::as_str).unwrap_or(""),
        })
    }
}

#[async_trait]
impl Action for LogAction {
    fn kind(&self) -> &'static str {
        "log"
    }

    async fn execute(&self, ctx: &ActionContext<'_>) -> Result<serde_json::Value, ActionError> {
        let line = self.line(ctx);
        let field = |k: &str| line[k].as_str().unwrap_or("").to_owned();
        tracing::info!(
            action = %self.name,
            notification_id = ctx.notification_id,
            fingerprint = %field("fingerprint"),
            alertname = %field("alertname"),
            status = %field("status"),
            severity = %field("severity"),
            experiment = %field("experiment"),
            model_name = %field("model_name"),
            summary = %field("summary"),
            "{}",
            field("message")
        );
        Ok(json!({"logged": true}))
    }

    /// What `execute` would write: the log line's message and fields.
    async fn plan(&self, ctx: &ActionContext<'_>) -> serde_json::Value {
        json!({ "would_log": self.line(ctx) })
    }
}

//! Alertmanager's API, for notifications that Alertmanager truncated
//! (`truncatedAlerts > 0`, a receiver with `max_alerts`): the rest of the
//! group is fetched from `/api/v2/alerts`, filtered by the group's labels and
//! the receiver, so every alert of the group is routed. Ingest work: the
//! pipeline completes a claimed notification before it routes it.

use super::{label_fingerprint, Alert, AlertStatus, Labels, Notification};
use crate::outbound::{Options, Scrubber, Transport};
use crate::secret::Secret;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// `alertmanager.*`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerSettings {
    /// Base URL, e.g. `http://alertmanager-operated.monitoring.svc:9093`.
    pub url: String,
    #[serde(default = "default_timeout", with = "crate::conf::duration")]
    pub timeout: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Most bytes of Alertmanager's answer: a group's active alerts, a few KiB
/// each; a larger answer fails the completion (the notification is routed
/// with the alerts it carries).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A client of Alertmanager's v2 API.
pub struct AlertmanagerClient {
    transport: Transport,
    alerts_url: String,
    token: Option<Secret>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GettableAlert {
    labels: Labels,
    #[serde(default)]
    annotations: Labels,
    starts_at: DateTime<FixedOffset>,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
    #[serde(default)]
    fingerprint: String,
}

impl AlertmanagerClient {
    /// From `alertmanager.*`.
    pub fn new(
        settings: &AlertmanagerSettings,
        tls: &crate::outbound::CaPolicy,
    ) -> anyhow::Result<Self> {
        let mut scrubber = Scrubber::new();
        if let Ok(url) = url::Url::parse(&settings.url) {
            scrubber.add_url_credentials(&url);
        }
        if let Some(token) = &settings.bearer_token {
            scrubber.add(token.expose());
        }
        Ok(Self {
            transport: Transport::new(
                tls,
                Options::new(settings.timeout, MAX_RESPONSE_BYTES),
                scrubber,
            )
            .map_err(|e| anyhow::anyhow!("alertmanager: {e}"))?,
            alerts_url: format!("{}/api/v2/alerts", settings.url.trim_end_matches('/')),
            token: settings.bearer_token.clone(),
        })
    }

    /// The active alerts of the notification's group (firing notifications only:
    /// Alertmanager forgets resolved alerts, so a resolved group cannot be completed).
    pub async fn group_alerts(&self, n: &Notification) -> Result<Vec<Alert>, String> {
        let mut params: Vec<(&str, String)> = n
            .group_labels
            .iter()
            .map(|(k, v)| {
                (
                    "filter",
                    format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")),
                )
            })
            .collect();
        params.push(("receiver", format!("^(?:{})$", regex::escape(&n.receiver))));
        params.push(("active", "true".into()));
        params.push(("silenced", "false".into()));
        params.push(("inhibited", "false".into()));
        let mut request = self.transport.client().get(&self.alerts_url).query(&params);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let answer = self
            .transport
            .send(request)
            .await
            .map_err(|e| format!("alertmanager: {e}"))?;
        let alerts: Vec<GettableAlert> = serde_json::from_slice(&answer.body).map_err(|e| {
            format!(
                "alertmanager answered garbage: {}",
                self.transport.scrubber().scrub(&e.to_string())
            )
        })?;
        Ok(alerts
            .into_iter()
            .map(|a| Alert {
                status: AlertStatus::Firing,
                fingerprint: if a.fingerprint.is_empty() {
                    label_fingerprint(&a.labels)
                } else {
                    a.fingerprint
                },
                labels: a.labels,
                annotations: a.annotations,
                starts_at: a.starts_at,
                ends_at: crate::ingest::zero_time(),
                generator_url: a.generator_url,
            })
            .collect())
    }
}

/// Adds the fetched alerts that the notification does not already carry.
pub fn complete(n: &mut Notification, fetched: Vec<Alert>) -> usize {
    let before = n.alerts.len();
    for alert in fetched {
        if !n.alerts.iter().any(|a| a.fingerprint == alert.fingerprint) {
            n.alerts.push(alert);
        }
    }
    n.alerts.len() - before
}

/// Completes truncated notifications from Alertmanager's API, when
/// `alertmanager.url` is set.
pub struct Completer {
    client: Option<AlertmanagerClient>,
}

impl Completer {
    /// From `alertmanager.*` (`None`: truncated notifications stay as they are).
    pub fn new(
        settings: Option<&AlertmanagerSettings>,
        tls: &crate::outbound::CaPolicy,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            client: settings
                .map(|am| AlertmanagerClient::new(am, tls))
                .transpose()?,
        })
    }

    /// When Alertmanager truncated the notification, adds the rest of the
    /// group from its API (then `truncated_alerts` is 0: nothing is missing).
    /// Returns a note for the log/plan when it could not; the alerts still
    /// missing stay counted in `truncated_alerts`, and messages say so.
    pub async fn complete_truncated(&self, n: &mut Notification) -> Option<String> {
        if n.truncated_alerts == 0 {
            return None;
        }
        let Some(am) = &self.client else {
            return Some(format!(
                "{} alerts were truncated by Alertmanager; set alertmanager.url to fetch them",
                n.truncated_alerts
            ));
        };
        match am.group_alerts(n).await {
            Ok(fetched) => {
                let added = complete(n, fetched);
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
}

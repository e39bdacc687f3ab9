//! Links in an alert's context: the Grafana dashboard for its experiment, the
//! Prometheus graph (`generatorURL`), a pre-filled Alertmanager silence, and
//! the runbook annotation.

use crate::ingest::{Alert, Notification};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use url::form_urlencoded::byte_serialize;

/// Where links point; from `grafana.*` and `alertmanager.url`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct LinkSettings {
    /// Grafana base URL; no dashboard link without it.
    pub grafana_url: Option<String>,
    /// UID of the A/B dashboard.
    pub dashboard_uid: String,
    /// Alertmanager base URL; overrides the notification's `externalURL`.
    pub alertmanager_url: Option<String>,
}

fn enc(s: &str) -> String {
    byte_serialize(s.as_bytes()).collect()
}

impl LinkSettings {
    /// The links for one alert; a link whose base is unknown is left out.
    pub fn for_alert(&self, n: &Notification, alert: &Alert) -> BTreeMap<String, String> {
        let mut links = BTreeMap::new();
        if let Some(grafana) = self.grafana_url.as_deref().filter(|u| !u.is_empty()) {
            let mut url = format!(
                "{}/d/{}",
                grafana.trim_end_matches('/'),
                enc(&self.dashboard_uid)
            );
            let mut sep = '?';
            for (var, label) in [("experiment", "experiment"), ("model_name", "model_name")] {
                if let Some(v) = alert.labels.get(label) {
                    url.push_str(&format!("{sep}var-{var}={}", enc(v)));
                    sep = '&';
                }
            }
            links.insert("dashboard".into(), url);
        }
        if !alert.generator_url.is_empty() {
            links.insert("graph".into(), alert.generator_url.clone());
        }
        let am = self
            .alertmanager_url
            .as_deref()
            .filter(|u| !u.is_empty())
            .unwrap_or(&n.external_url);
        if !am.is_empty() {
            let matchers: Vec<String> = alert
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            let filter = format!("{{{}}}", matchers.join(","));
            links.insert(
                "silence".into(),
                format!(
                    "{}/#/silences/new?filter={}",
                    am.trim_end_matches('/'),
                    enc(&filter)
                ),
            );
        }
        if let Some(runbook) = alert
            .annotations
            .get("runbook_url")
            .filter(|u| !u.is_empty())
        {
            links.insert("runbook".into(), runbook.clone());
        }
        links
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_built_from_settings_labels_and_external_url() {
        let body = include_str!("../../tests/fixtures/accuracy-firing.json");
        let n = crate::ingest::parse(body.as_bytes(), 10)
            .unwrap()
            .notification;
        let settings = LinkSettings {
            grafana_url: Some("https://grafana.example/".into()),
            dashboard_uid: "mlops-ab-testing".into(),
            alertmanager_url: None,
        };
        let links = settings.for_alert(&n, &n.alerts[0]);
        assert_eq!(
            links["dashboard"],
            "https://grafana.example/d/mlops-ab-testing?var-experiment=financial-ab-test-experiment&var-model_name=enhanced-predictor"
        );
        assert_eq!(links["graph"], n.alerts[0].generator_url);
        assert!(links["silence"].starts_with("http://vm:19193/#/silences/new?filter=%7Balertname%3D%22ModelAccuracyDegraded%22%2C"), "{}", links["silence"]);
        assert!(!links.contains_key("runbook"));
        let no_grafana = LinkSettings::default().for_alert(&n, &n.alerts[0]);
        assert!(!no_grafana.contains_key("dashboard"));
    }
}

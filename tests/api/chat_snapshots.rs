//! The default message of every platform for every fixture, with enrichment
//! and a traffic shift, as snapshots (`tests/api/snapshots/`). A change to a
//! message shows up as a diff of these files; review it, then accept with
//! `INSTA_UPDATE=always cargo test --test api chat_snapshots` (or `cargo insta review`).

use crate::helpers::*;
use mlops_alert_router::act::{ActionConfig, ActionContext, ActionRun, AlertInput};
use mlops_alert_router::enrich::{Context, Enriched, LinkSettings};
use mlops_alert_router::ingest::{Alert, AlertStatus, Notification};
use mlops_alert_router::store::RunStatus;
use serde_json::json;

fn map(pairs: &[(&str, f64)]) -> Enriched {
    Enriched::Map {
        query: String::new(),
        values: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

/// What enrichment would say about the demo experiment (the latency alert's
/// accuracy query failed, to show how a missing value reads).
fn context_for(n: &Notification, alert: &Alert) -> Context {
    let mut c = Context::default();
    if alert.labels.contains_key("experiment") {
        let accuracy = if alert.alertname() == "HighResponseTime" {
            Enriched::Error {
                query: String::new(),
                error: "Prometheus did not answer within 5s".into(),
            }
        } else {
            map(&[("baseline-predictor", 72.5), ("enhanced-predictor", 51.2)])
        };
        for (name, value) in [
            ("accuracy", accuracy),
            (
                "traffic_share",
                map(&[("baseline-predictor", 70.0), ("enhanced-predictor", 30.0)]),
            ),
            (
                "p95_latency",
                map(&[("baseline-predictor", 0.085), ("enhanced-predictor", 0.25)]),
            ),
            (
                "error_rate",
                map(&[("baseline-predictor", 0.0), ("enhanced-predictor", 10.0)]),
            ),
            (
                "net_business_value",
                map(&[("baseline-predictor", 12.3), ("enhanced-predictor", -25.3)]),
            ),
        ] {
            c.values.insert(name.into(), value);
        }
    }
    c.links = LinkSettings {
        grafana_url: Some("https://grafana.example".into()),
        dashboard_uid: "ab-testing".into(),
        alertmanager_url: None,
    }
    .for_alert(n, alert);
    c
}

/// The alert-scoped runs a chat message reports: a rollback of the candidate.
fn outcomes_for(alert: &Alert) -> Vec<ActionRun> {
    let run = |action: &str, kind: &str, result: serde_json::Value| ActionRun {
        id: 1,
        round: 0,
        fingerprint: alert.fingerprint.clone(),
        action: action.into(),
        action_type: kind.into(),
        status: RunStatus::Succeeded,
        attempts: 1,
        last_error: None,
        next_attempt_at: None,
        first_attempt_at: None,
        last_attempt_at: None,
        finished_at: None,
        duration_ms: None,
        result: Some(result),
        context: None,
    };
    let firing = alert.status == AlertStatus::Firing;
    match alert.labels.get("model_name").map(String::as_str) {
        Some("enhanced-predictor") if firing && alert.alertname() == "ModelAccuracyDegraded" => {
            vec![run(
                "rollback",
                "traffic_shift",
                json!({
                    "decision": "shifted",
                    "target": "financial-ab-test",
                    "before": {"baseline-predictor": 70, "enhanced-predictor": 30},
                    "after": {"baseline-predictor": 100, "enhanced-predictor": 0},
                    "reason": "accuracy 51.2 below 55",
                }),
            )]
        }
        Some("enhanced-predictor") if firing => vec![run(
            "rollback",
            "traffic_shift",
            json!({"decision": "cooldown", "target": "financial-ab-test", "reason": "last shift 3m ago (cooldown 10m)"}),
        )],
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn default_messages_of_every_platform_for_every_fixture() {
    let url = "https://chat.example/hook/SECRET";
    for kind in [
        "slack",
        "msteams",
        "mattermost",
        "discord",
        "google_chat",
        "webhook",
    ] {
        let config: ActionConfig =
            serde_yaml::from_str(&format!("{{type: {kind}, url: '{url}'}}")).unwrap();
        let settings =
            mlops_alert_router::settings::Settings::load_with_env(None, Vec::new()).unwrap();
        let deps = mlops_alert_router::act::ActionDeps::new(
            &settings,
            None,
            std::sync::Arc::new(mlops_alert_router::metrics::Metrics::new()),
        );
        let action = config.build("notify-ml", &deps);
        for name in FIXTURES {
            let n = mlops_alert_router::ingest::parse(fixture(name).as_bytes(), 10_000)
                .unwrap()
                .notification;
            let contexts: Vec<Context> = n.alerts.iter().map(|a| context_for(&n, a)).collect();
            let outcomes: Vec<Vec<ActionRun>> = n.alerts.iter().map(outcomes_for).collect();
            let ctx = ActionContext {
                notification_id: 42,
                notification: &n,
                alerts: n
                    .alerts
                    .iter()
                    .zip(&contexts)
                    .zip(&outcomes)
                    .map(|((alert, context), runs)| AlertInput {
                        alert,
                        context,
                        outcomes: runs.iter().collect(),
                    })
                    .collect(),
                attempt: 1,
                store: None,
                metrics: None,
            };
            let plan = action.plan(&ctx).await;
            assert_eq!(plan["url"], "<redacted>", "{kind} {name}");
            assert!(!plan.to_string().contains("SECRET"), "{kind} {name}");
            assert_eq!(plan["omitted"], 0, "{kind} {name}: fixtures fit whole");
            let stem = name.trim_end_matches(".json");
            insta::assert_json_snapshot!(format!("{kind}__{stem}"), plan["body"]);
        }
    }
}

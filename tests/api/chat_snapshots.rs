//! The default message of every platform for every fixture, with enrichment
//! and a traffic shift, as snapshots (`tests/api/snapshots/`). A change to a
//! message shows up as a diff of these files; review it, then accept with
//! `INSTA_UPDATE=always cargo test --test api chat_snapshots` (or `cargo insta review`).

use crate::helpers::*;
use mlops_alert_router::act::{ActionConfig, ActionContext, ActionRun, AlertInput};
use mlops_alert_router::enrich::{Context, Enriched, LinkSettings};
use mlops_alert_router::ingest::{Alert, Notification};
use mlops_alert_router::store::RunStatus;
use serde_json::json;

fn map(pairs: &[(&str, f64)]) -> Enriched {
    Enriched::Map {
        query: String::new(),
        values: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

/// Per variant, a value.
type Values = &'static [(&'static str, f64)];

/// What enrichment says about the demo experiment in each fixture's story,
/// consistent with the alerts' own text (accuracy threshold 55%, latency
/// threshold 200 ms) and with what the router did (the default `rollback`:
/// 30 points from a failing candidate to the baseline, `on_resolve: hold`):
/// - `accuracy-firing`: the candidate at 51.2%, 70/30 split before the shift;
/// - `accuracy-firing-both-variants`: baseline at 40%, candidate at 45.5%;
/// - `accuracy-partially-resolved`: the baseline recovered (71.8%), the
///   candidate still at 45.5%;
/// - `accuracy-resolved`: after the shift the candidate gets no traffic, so
///   it has no accuracy sample any more (the alert resolved), 100/0 split;
/// - `latency-firing-unicode`: the candidate's p95 at 250 ms; the accuracy
///   query failed, to show how a missing value reads.
fn context_for(fixture: &str, n: &Notification, alert: &Alert) -> Context {
    const B: &str = "baseline-predictor";
    const E: &str = "enhanced-predictor";
    let mut c = Context::default();
    if alert.labels.contains_key("experiment") {
        let (accuracy, share, p95): (Enriched, Values, Values) = match fixture {
            "accuracy-firing.json" => (
                map(&[(B, 72.5), (E, 51.2)]),
                &[(B, 70.0), (E, 30.0)],
                &[(B, 0.085), (E, 0.12)],
            ),
            "accuracy-firing-both-variants.json" => (
                map(&[(B, 40.0), (E, 45.5)]),
                &[(B, 70.0), (E, 30.0)],
                &[(B, 0.085), (E, 0.12)],
            ),
            "accuracy-partially-resolved.json" => (
                map(&[(B, 71.8), (E, 45.5)]),
                &[(B, 70.0), (E, 30.0)],
                &[(B, 0.085), (E, 0.12)],
            ),
            "accuracy-resolved.json" => (map(&[(B, 72.5)]), &[(B, 100.0), (E, 0.0)], &[(B, 0.09)]),
            "latency-firing-unicode.json" => (
                Enriched::Error {
                    query: String::new(),
                    error: "Prometheus did not answer within 5s".into(),
                },
                &[(B, 70.0), (E, 30.0)],
                &[(B, 0.085), (E, 0.25)],
            ),
            other => panic!("no enrichment story for {other}"),
        };
        let serving: Vec<(&str, f64)> = share.iter().filter(|(_, s)| *s > 0.0).copied().collect();
        let errors: Vec<(&str, f64)> = serving
            .iter()
            .map(|(v, _)| (*v, if *v == B { 0.2 } else { 0.4 }))
            .collect();
        let value: Vec<(&str, f64)> = serving
            .iter()
            .map(|(v, _)| (*v, if *v == B { 12.3 } else { -25.3 }))
            .collect();
        for (name, value) in [
            ("accuracy", accuracy),
            ("traffic_share", map(share)),
            ("p95_latency", map(p95)),
            ("error_rate", map(&errors)),
            ("net_business_value", map(&value)),
        ] {
            c.values.insert(name.into(), value);
        }
    }
    c.links = LinkSettings {
        grafana_url: Some("https://grafana.example".into()),
        dashboard_uid: "mlops-ab-testing".into(),
        alertmanager_url: None,
    }
    .for_alert(n, alert);
    c
}

/// The alert-scoped runs a chat message reports, as the default `rollback`
/// (which does not route the baseline's alerts) would have recorded them,
/// with the traffic action's own reasons; for the latency alert, a rollback
/// whose guard `context.accuracy[to] >= 55` cannot be evaluated (deferred).
fn outcomes_for(fixture: &str, alert: &Alert) -> Vec<ActionRun> {
    let run =
        |status: RunStatus, result: Option<serde_json::Value>, error: Option<&str>| ActionRun {
            id: 1,
            round: 0,
            fingerprint: alert.fingerprint.clone(),
            action: "rollback".into(),
            action_type: "traffic_shift".into(),
            status,
            attempts: 1,
            last_error: error.map(str::to_owned),
            next_attempt_at: None,
            first_attempt_at: None,
            last_attempt_at: None,
            finished_at: None,
            duration_ms: None,
            result,
            context: None,
        };
    let done = |decision: serde_json::Value| vec![run(RunStatus::Succeeded, Some(decision), None)];
    if alert.labels.get("model_name").map(String::as_str) != Some("enhanced-predictor") {
        return Vec::new();
    }
    let experiment = alert.labels["experiment"].as_str();
    let episode = format!(
        "rollback/{experiment}/{}/{}",
        alert.fingerprint,
        alert.starts_at.to_rfc3339()
    );
    let shifted = json!({
        "decision": "shifted",
        "target": experiment,
        "episode": episode,
        "before": {"baseline-predictor": 70, "enhanced-predictor": 30},
        "after": {"baseline-predictor": 100, "enhanced-predictor": 0},
        "reason": "enhanced-predictor is alerting: moved up to 30 points to baseline-predictor",
        "change": null,
    });
    match fixture {
        "accuracy-firing.json" | "accuracy-partially-resolved.json" => done(shifted),
        "accuracy-firing-both-variants.json" => done(json!({
            "decision": "blocked",
            "target": experiment,
            "episode": episode,
            "before": {"baseline-predictor": 70, "enhanced-predictor": 30},
            "after": null,
            "reason": "baseline-predictor is itself firing ModelAccuracyDegraded (alert 5d376d2a43c31436): traffic never moves onto a firing variant",
            "change": null,
        })),
        "accuracy-resolved.json" => done(json!({
            "decision": "held",
            "target": experiment,
            "episode": episode,
            "before": null,
            "after": null,
            "reason": "resolved; on_resolve: hold keeps the weights",
            "change": null,
        })),
        "latency-firing-unicode.json" => vec![run(
            RunStatus::Pending,
            None,
            Some("deferred: guard `context.accuracy[to] >= 55` cannot be evaluated (undefined value (in <expression>:1)); failed enrichments: [accuracy]"),
        )],
        other => panic!("no router story for {other}"),
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
        let deps = mlops_alert_router::act::ActionDeps::offline(std::sync::Arc::new(
            mlops_alert_router::metrics::Metrics::new(),
        ));
        let action = config.build("notify-ml", &deps).unwrap();
        for name in FIXTURES {
            let n = mlops_alert_router::ingest::parse(fixture(name).as_bytes(), 10_000)
                .unwrap()
                .notification;
            let contexts: Vec<Context> =
                n.alerts.iter().map(|a| context_for(name, &n, a)).collect();
            let outcomes: Vec<Vec<ActionRun>> =
                n.alerts.iter().map(|a| outcomes_for(name, a)).collect();
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
            if n.truncated_alerts > 0 {
                let body = plan["body"].to_string();
                assert!(
                    body.contains("shown of 5 — 3 more not sent by Alertmanager"),
                    "{kind} {name}: the message says how many alerts the group has: {body}"
                );
            }
            let stem = name.trim_end_matches(".json");
            insta::assert_json_snapshot!(format!("{kind}__{stem}"), plan["body"]);
        }
    }
}

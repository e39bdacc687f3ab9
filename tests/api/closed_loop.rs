//! The closed loop with real components: ab-simulator → Prometheus (the e2e
//! copy of alerts/) → Alertmanager → the router (real PromQL enrichment, file
//! traffic target) → the simulator follows the new weights → the alert resolves.

use crate::components::*;
use crate::helpers::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const SIM: &str = env!("CARGO_BIN_EXE_ab-simulator");

/// Starts the simulator with `extra` arguments; returns its process (killed
/// on drop) and address.
pub(crate) fn start_simulator(weights: &Path, scenario: &Path, extra: &[&str]) -> (Proc, String) {
    let mut child = Command::new(SIM)
        .args(["--listen", "127.0.0.1:0", "--tick", "100ms"])
        .args(extra)
        .arg("--weights")
        .arg(weights)
        .arg("--scenario")
        .arg(scenario)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ab-simulator starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("listening line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("`listening on ADDR`")
        .to_owned();
    (Proc::new(child), addr)
}

fn weights_of(path: &Path) -> Value {
    let v: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["candidates"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_candidate_is_rolled_back_and_its_alert_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let weights = dir.path().join("weights.yaml");
    std::fs::copy(root.join("simulator/weights.yaml"), &weights).unwrap();
    let scenario = dir.path().join("scenario.yaml");
    std::fs::write(
        &scenario,
        "variants:\n  baseline-predictor: {accuracy: 72, latency: 80ms, error_rate: 0.01}\n  \
         enhanced-predictor: {accuracy: 78, latency: 60ms, error_rate: 0.01}\n\
         steps:\n  - after: 5s\n    set: {enhanced-predictor: {accuracy: 50}}\n",
    )
    .unwrap();
    let (_sim, sim_addr) = start_simulator(&weights, &scenario, &["--rate", "100"]);

    // Alertmanager → router; the router's port is chosen first.
    let router_port = free_port();
    let am = Alertmanager::start(&format!(
        "route:\n  receiver: router\n  group_by: [alertname, experiment]\n  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 1h\n\
         receivers:\n  - name: router\n    webhook_configs:\n      - url: http://127.0.0.1:{router_port}/api/v1/alerts\n        send_resolved: true\n"
    ))
    .await;

    // Prometheus: the simulator, the router, the e2e rules, Alertmanager.
    let rules = root.join("alerts/e2e/*.yaml");
    let am_host = am.url.trim_start_matches("http://");
    let prom = Prometheus::start_with_config(&format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         rule_files: ['{}']\n\
         alerting: {{alertmanagers: [{{static_configs: [{{targets: ['{am_host}']}}]}}]}}\n\
         scrape_configs:\n\
         \x20 - {{job_name: financial_ab_test, honor_labels: true, static_configs: [{{targets: ['{sim_addr}']}}]}}\n\
         \x20 - {{job_name: mlops-alert-router, static_configs: [{{targets: ['127.0.0.1:{router_port}']}}]}}\n",
        rules.display()
    ))
    .await;

    // The router: the MLOps example with the file target and real Prometheus.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/mlops.yaml");
    let example =
        mlops_alert_router::settings::Settings::load_with_env(Some(&example), Vec::new()).unwrap();
    let mut settings = test_settings(dir.path());
    settings.server.listen = format!("127.0.0.1:{router_port}").parse().unwrap();
    settings.worker.weights_poll_interval = Duration::from_millis(500);
    settings.actions = example.actions;
    // The example pages an in-cluster service; here it is a log line. The ML
    // team's chat is a Slack incoming webhook (wiremock: third-party SaaS).
    settings.actions.insert(
        "oncall-webhook".into(),
        serde_yaml::from_str("{type: log}").unwrap(),
    );
    let slack = chat_sink().await;
    settings.actions.insert(
        "notify-ml".into(),
        serde_yaml::from_str(&format!(
            "{{type: slack, url: '{}/services/T0/B0/X'}}",
            slack.uri()
        ))
        .unwrap(),
    );
    settings.route = example.route;
    settings.enrichments = example.enrichments;
    settings.prometheus = example.prometheus;
    settings.prometheus.as_mut().unwrap().url = prom.url.clone();
    settings.prometheus.as_mut().unwrap().cache_ttl = Duration::from_secs(1);
    settings.alertmanager = Some(serde_yaml::from_str(&format!("{{url: '{}'}}", am.url)).unwrap());
    settings.traffic_targets = serde_yaml::from_str(&format!(
        "financial-ab-test-experiment: {{kind: file, file: {{path: '{}'}}}}",
        weights.display()
    ))
    .unwrap();
    let app = spawn_app_with(settings).await;

    // 1. The accuracy drop fires ModelAccuracyDegraded; the router shifts 70/30 → 100/0.
    let shifted = eventually(90, "the rollback", || async {
        let t = app.get_json("/api/v1/traffic").await;
        t["decisions"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["decision"] == "shifted").cloned())
    })
    .await;
    assert_eq!(
        shifted["before"],
        serde_json::json!({"baseline-predictor": 70, "enhanced-predictor": 30})
    );
    assert_eq!(
        shifted["after"],
        serde_json::json!({"baseline-predictor": 100, "enhanced-predictor": 0})
    );
    assert_eq!(
        weights_of(&weights),
        serde_json::json!([{"name": "baseline-predictor", "weight": 100}, {"name": "enhanced-predictor", "weight": 0}])
    );
    // The decision saw real per-variant accuracy from Prometheus. (The same
    // drop also makes NegativeBusinessImpact fire; either may shift first.)
    let id = shifted["notification_id"].as_i64().unwrap();
    let detail = app.wait_for(id, is_done).await;
    let alertname = detail["payload"]["groupLabels"]["alertname"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        ["ModelAccuracyDegraded", "NegativeBusinessImpact"].contains(&alertname.as_str()),
        "{detail:#}"
    );
    let run = detail["action_runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "rollback" && r["result"]["decision"] == "shifted")
        .cloned()
        .unwrap_or_else(|| panic!("no shifting run: {detail:#}"));
    let accuracy = &run["context"]["accuracy"]["value"];
    assert_eq!(accuracy["enhanced-predictor"], 50.0, "{run:#}");
    assert_eq!(accuracy["baseline-predictor"], 72.0, "{run:#}");

    // 2. The simulator follows the weights: the candidate's traffic (and with it
    //    its accuracy series) goes away, the alert resolves, the router hears it.
    eventually(90, "the resolved notification", || async {
        let r = app
            .get_json("/api/v1/notifications?alertname=ModelAccuracyDegraded&status=resolved")
            .await;
        (!r["notifications"].as_array().unwrap().is_empty()).then_some(())
    })
    .await;
    // Chat got the firing message saying what the router did, then the resolved one.
    let texts = eventually(30, "the resolved chat message", || async {
        let bodies: Vec<String> = slack
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .filter(|b| b.contains("ModelAccuracyDegraded") || b.contains("NegativeBusinessImpact"))
            .collect();
        bodies
            .iter()
            .any(|b| b.contains("ModelAccuracyDegraded") && b.to_lowercase().contains("resolved"))
            .then_some(bodies)
    })
    .await;
    assert!(
        texts.iter().any(|b| b.contains("enhanced-predictor 30 → 0")
            && b.contains("baseline-predictor 70 → 100")),
        "no message saying what the router did (70/30 → 100/0): {texts:#?}"
    );
    let share = prom
        .query("sum by (model_name) (rate(ab_test_requests_total{model_name=\"enhanced-predictor\"}[5s]))")
        .await;
    assert_eq!(share["data"]["result"][0]["value"][1], "0", "{share:#}");

    // 3. The shift itself did not look like a traffic imbalance.
    let imbalance = prom
        .query("max_over_time(ALERTS{alertname=\"ABTestTrafficImbalance\", alertstate=\"firing\"}[10m])")
        .await;
    assert_eq!(
        imbalance["data"]["result"],
        serde_json::json!([]),
        "{imbalance:#}"
    );
    let reached = app
        .get_json("/api/v1/notifications?alertname=ABTestTrafficImbalance")
        .await;
    assert_eq!(reached["notifications"], serde_json::json!([]));
    app.stop().await;
}

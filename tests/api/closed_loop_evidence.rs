//! The evidence guard in the closed loop, with real components: ab-simulator
//! → Prometheus (the e2e copy of alerts/) → Alertmanager → the router, whose
//! `traffic_shift` action asks Prometheus for per-variant counts.
//!
//! 1. Noise: a candidate with 5% of the traffic and the same 2% error rate as
//!    the baseline (A/A, random outcomes): one error in its 30-second window
//!    makes HighModelErrorRate fire. The evidence does not show it worse: the
//!    run is deferred (re-evaluated with backoff), then dead at its max_age or
//!    the alert resolves; traffic never moves.
//! 2. A real drop: the candidate's error rate goes from 1% to 30%; the alert
//!    fires and the evidence shows it: shifted, with its numbers.

use crate::closed_loop::start_simulator;
use crate::components::*;
use crate::helpers::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const EXP: &str = "financial-ab-test-experiment";

struct Loop {
    app: TestApp,
    weights: std::path::PathBuf,
    _prom: Prometheus,
    _am: Alertmanager,
    _sim: Proc,
    _dir: tempfile::TempDir,
}

/// Simulator + Alertmanager + Prometheus + the router with `rollback`
/// (traffic_shift with `evidence`) on the candidate's HighModelErrorRate.
async fn closed_loop(weights: &str, scenario: &str, sim_args: &[&str], evidence: &str) -> Loop {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let weights_path = dir.path().join("weights.yaml");
    std::fs::write(&weights_path, weights).unwrap();
    let scenario_path = dir.path().join("scenario.yaml");
    std::fs::write(&scenario_path, scenario).unwrap();
    let (sim, sim_addr) = start_simulator(&weights_path, &scenario_path, sim_args);

    let router_port = free_port();
    let am = Alertmanager::start(&format!(
        "route:\n  receiver: router\n  group_by: [alertname, experiment]\n  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 1h\n\
         receivers:\n  - name: router\n    webhook_configs:\n      - url: http://127.0.0.1:{router_port}/api/v1/alerts\n        send_resolved: true\n"
    ))
    .await;
    let rules = root.join("alerts/e2e/*.yaml");
    let am_host = am.url.trim_start_matches("http://");
    let prom = Prometheus::start_with_config(&format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         rule_files: ['{}']\n\
         alerting: {{alertmanagers: [{{static_configs: [{{targets: ['{am_host}']}}]}}]}}\n\
         scrape_configs:\n\
         \x20 - {{job_name: financial_ab_test, honor_labels: true, static_configs: [{{targets: ['{sim_addr}']}}]}}\n",
        rules.display()
    ))
    .await;

    let mut settings = test_settings(dir.path());
    settings.server.listen = format!("127.0.0.1:{router_port}").parse().unwrap();
    settings.worker.weights_poll_interval = Duration::from_millis(500);
    // A deferred run is evaluated again after 1 s, 2 s, 4 s, 4 s, … until it
    // is the evidence guard's max_age old, whatever worker.max_attempts says.
    settings.worker.backoff_initial = Duration::from_secs(1);
    settings.worker.backoff_max = Duration::from_secs(4);
    settings.worker.max_attempts = 3;
    settings.actions.insert(
        "rollback".into(),
        serde_yaml::from_str(&format!(
            "{{type: traffic_shift, step: 30, cooldown: 0s, evidence: {evidence}}}"
        ))
        .unwrap(),
    );
    settings.route = serde_yaml::from_str(
        "{actions: [log], routes: [{matchers: ['alertname=\"HighModelErrorRate\"', \
         'model_name!=\"baseline-predictor\"'], actions: [rollback]}]}",
    )
    .unwrap();
    settings.prometheus =
        Some(serde_yaml::from_str(&format!("{{url: '{}', cache_ttl: 1s}}", prom.url)).unwrap());
    settings.traffic_targets = serde_yaml::from_str(&format!(
        "{EXP}: {{kind: file, file: {{path: '{}'}}}}",
        weights_path.display()
    ))
    .unwrap();
    settings.actions["rollback"]
        .validate()
        .unwrap_or_else(|e| panic!("valid action: {e:?}"));
    let app = spawn_app_with(settings).await;
    Loop {
        app,
        weights: weights_path,
        _prom: prom,
        _am: am,
        _sim: sim,
        _dir: dir,
    }
}

fn weights_of(path: &Path) -> Value {
    let v: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["candidates"].clone()
}

async fn decisions(app: &TestApp) -> Vec<Value> {
    app.get_json("/api/v1/traffic").await["decisions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_fires_the_threshold_alert_but_the_evidence_guard_does_not_shift() {
    // Seed 4: the candidate's 15th and 22nd requests fail (at 0.5 req/s, ~28 s
    // and ~42 s in): 2 of its 15 requests in 30 s, 13% > 5%. The baseline's
    // worst 30 s holds 8 errors in 285 requests (2.8%): it never fires.
    let l = closed_loop(
        "default: baseline-predictor\ncandidates:\n  - {name: baseline-predictor, weight: 95}\n  - {name: enhanced-predictor, weight: 5}\n",
        "variants:\n  baseline-predictor: {accuracy: 72, latency: 80ms, error_rate: 0.02}\n  \
         enhanced-predictor: {accuracy: 72, latency: 80ms, error_rate: 0.02}\n",
        &["--rate", "10", "--noise", "--seed", "4"],
        "{metric: error_rate, alpha: 0.05, min_samples: 20, max_age: 30s}",
    )
    .await;
    let app = &l.app;

    // 1. The threshold alert fires on noise; the guard defers on the evidence.
    let deferred = eventually(150, "an evidence deferral", || async {
        decisions(app).await.into_iter().find(|d| {
            d["decision"] == "deferred"
                && d["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("evidence: "))
        })
    })
    .await;
    let reason = deferred["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("evidence: enhanced-predictor error rate ")
            && reason.contains("(baseline-predictor), n = ")
            && reason.contains("95% always-valid CI of the difference [")
            && (reason.ends_with("the interval covers 0: not enough evidence that it is worse")
                || reason.contains("not enough samples yet")),
        "{reason}"
    );
    // The latest evidence, structured, on the traffic API.
    let t = app.get_json("/api/v1/traffic").await;
    let ev = &t["targets"][EXP]["evidence"];
    assert_eq!(ev["metric"], "error_rate", "{t:#}");
    assert_eq!(ev["from"]["variant"], "enhanced-predictor", "{t:#}");
    assert_eq!(ev["to"]["variant"], "baseline-predictor", "{t:#}");
    assert!(ev["to"]["n"].as_f64().unwrap() > ev["from"]["n"].as_f64().unwrap());
    let (lo, hi) = (
        ev["interval"][0].as_f64().unwrap(),
        ev["interval"][1].as_f64().unwrap(),
    );
    assert!(
        lo <= 0.0 && hi > lo,
        "the interval does not exclude a better candidate: {ev:#}"
    );
    assert!(
        ["inconclusive", "too_few_samples"].contains(&ev["call"].as_str().unwrap()),
        "{ev:#}"
    );
    assert!(
        ev["statistic"]["p_value"].as_f64().unwrap() > 0.05,
        "{ev:#}"
    );

    // 2. Then the run gives up at its max_age with the evidence as its reason,
    //    or the alert resolves first: either way, nothing moved.
    let end = eventually(
        120,
        "the deferred run dead or the alert resolved",
        || async {
            let list = app
                .get_json("/api/v1/notifications?alertname=HighModelErrorRate")
                .await;
            for n in list["notifications"].as_array()? {
                if n["status"] == "resolved" {
                    return Some(json!("resolved"));
                }
                let detail = app
                    .get_json(&format!("/api/v1/notifications/{}", n["id"]))
                    .await;
                let dead = detail["action_runs"]
                    .as_array()?
                    .iter()
                    .find(|r| r["action"] == "rollback" && r["status"] == "dead");
                if let Some(run) = dead {
                    return Some(run.clone());
                }
            }
            None
        },
    )
    .await;
    if end != "resolved" {
        let error = end["last_error"].as_str().unwrap();
        assert!(
            error.contains("over max_age 30s: deferred: evidence: enhanced-predictor error rate"),
            "{end:#}"
        );
    }
    let all = decisions(app).await;
    assert!(
        all.iter().all(|d| d["decision"] != "shifted"),
        "a shift on noise: {all:#?}"
    );
    assert_eq!(
        weights_of(&l.weights),
        json!([{"name": "baseline-predictor", "weight": 95}, {"name": "enhanced-predictor", "weight": 5}])
    );
    l.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_drop_is_shifted_on_evidence_with_its_numbers() {
    let l = closed_loop(
        "default: baseline-predictor\ncandidates:\n  - {name: baseline-predictor, weight: 70}\n  - {name: enhanced-predictor, weight: 30}\n",
        "variants:\n  baseline-predictor: {accuracy: 72, latency: 80ms, error_rate: 0.01}\n  \
         enhanced-predictor: {accuracy: 78, latency: 60ms, error_rate: 0.01}\n\
         steps:\n  - after: 5s\n    set: {enhanced-predictor: {error_rate: 0.3}}\n",
        &["--rate", "100"],
        "{metric: error_rate, alpha: 0.05, min_samples: 200}",
    )
    .await;
    let app = &l.app;
    let shifted = eventually(120, "the shift", || async {
        decisions(app)
            .await
            .into_iter()
            .find(|d| d["decision"] == "shifted")
    })
    .await;
    assert_eq!(
        shifted["after"],
        json!({"baseline-predictor": 100, "enhanced-predictor": 0})
    );
    let reason = shifted["reason"].as_str().unwrap();
    assert!(
        reason.contains("evidence: enhanced-predictor error rate ")
            && reason.contains("enhanced-predictor is worse than baseline-predictor"),
        "{reason}"
    );
    assert_eq!(
        weights_of(&l.weights),
        json!([{"name": "baseline-predictor", "weight": 100}, {"name": "enhanced-predictor", "weight": 0}])
    );
    // The run's result carries the evidence: counts read from Prometheus, the
    // interval above 0.
    let id = shifted["notification_id"].as_i64().unwrap();
    let detail = app.wait_for(id, is_done).await;
    let run = detail["action_runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "rollback" && r["result"]["decision"] == "shifted")
        .cloned()
        .unwrap_or_else(|| panic!("no shifting run: {detail:#}"));
    let ev = &run["result"]["evidence"];
    assert_eq!(ev["call"], "from_worse", "{ev:#}");
    assert!(ev["from"]["n"].as_f64().unwrap() >= 200.0, "{ev:#}");
    assert!(ev["to"]["n"].as_f64().unwrap() >= 200.0, "{ev:#}");
    assert!(ev["from"]["rate"].as_f64().unwrap() > 0.05, "{ev:#}");
    assert!(ev["to"]["rate"].as_f64().unwrap() < 0.02, "{ev:#}");
    assert!(ev["interval"][0].as_f64().unwrap() > 0.0, "{ev:#}");
    assert!(
        ev["queries"]["bad"].as_str().unwrap().contains(
            "ab_test_requests_total{experiment=\"financial-ab-test-experiment\", status=\"error\"}"
        ),
        "{ev:#}"
    );
    l.app.stop().await;
}

//! The evidence guard of `traffic_shift` against a real Prometheus scraping
//! fixed counts: each metric's default queries (errors, predictions,
//! histogram buckets), each decision (shift, blocked, deferred) with its
//! numbers in the run, the dry-run plan, `GET /api/v1/traffic` and the
//! metrics; and the configuration errors.

use crate::components::*;
use crate::helpers::*;
use serde_json::{json, Value};

const EXP: &str = "financial-ab-test-experiment";

/// Fixed counters (they do not grow): the candidate fails more often (100 of
/// 2,310 against 100 of 5,400), predicts better (310 of 2,210 incorrect
/// against 1,300 of 5,300) and is about as often slow (30 of 2,310 above
/// 200 ms against 100 of 5,400).
fn exposition() -> String {
    let mut out = String::new();
    let rows = [
        // model, success, error, correct, incorrect, fast (≤ 0.2 s)
        ("baseline-predictor", 5300, 100, 4000, 1300, 5300),
        ("enhanced-predictor", 2210, 100, 1900, 310, 2280),
    ];
    out += "# TYPE ab_test_requests_total counter\n";
    for (m, ok, err, ..) in rows {
        out += &format!("ab_test_requests_total{{model_name=\"{m}\",experiment=\"{EXP}\",status=\"success\"}} {ok}\n");
        out += &format!("ab_test_requests_total{{model_name=\"{m}\",experiment=\"{EXP}\",status=\"error\"}} {err}\n");
    }
    out += "# TYPE ab_test_predictions_total counter\n";
    for (m, _, _, correct, incorrect, _) in rows {
        out += &format!("ab_test_predictions_total{{model_name=\"{m}\",experiment=\"{EXP}\",outcome=\"correct\"}} {correct}\n");
        out += &format!("ab_test_predictions_total{{model_name=\"{m}\",experiment=\"{EXP}\",outcome=\"incorrect\"}} {incorrect}\n");
    }
    out += "# TYPE ab_test_response_time_seconds histogram\n";
    for (m, ok, err, _, _, fast) in rows {
        let total = ok + err;
        for (le, count) in [
            ("0.1", fast / 2),
            ("0.2", fast),
            ("0.5", total),
            ("+Inf", total),
        ] {
            out += &format!("ab_test_response_time_seconds_bucket{{model_name=\"{m}\",experiment=\"{EXP}\",le=\"{le}\"}} {count}\n");
        }
        out += &format!(
            "ab_test_response_time_seconds_sum{{model_name=\"{m}\",experiment=\"{EXP}\"}} {}\n",
            total as f64 * 0.1
        );
        out += &format!("ab_test_response_time_seconds_count{{model_name=\"{m}\",experiment=\"{EXP}\"}} {total}\n");
    }
    out
}

async fn exporter() -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route("/metrics", axum::routing::get(|| async { exposition() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (target, server)
}

#[tokio::test]
async fn each_metric_decides_with_its_numbers_from_real_prometheus() {
    let (target, _server) = exporter().await;
    let prom = Prometheus::start(std::slice::from_ref(&target)).await;
    prom.wait_for_series("ab_test_response_time_seconds_bucket", 8)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.yaml");
    std::fs::write(
        &weights,
        "default: baseline-predictor\ncandidates: [{name: baseline-predictor, weight: 70}, {name: enhanced-predictor, weight: 30}]\n",
    )
    .unwrap();
    let mut settings = test_settings(dir.path());
    settings.prometheus =
        Some(serde_yaml::from_str(&format!("{{url: '{}', cache_ttl: 1s}}", prom.url)).unwrap());
    settings.traffic_targets = serde_yaml::from_str(&format!(
        "{EXP}: {{kind: file, file: {{path: '{}'}}}}",
        weights.display()
    ))
    .unwrap();
    // dry_run on the errors guard: no action changes the weights, so the
    // three decide on the same 70/30 in any order.
    for (name, yaml) in [
        ("by-errors", "{type: traffic_shift, step: 30, cooldown: 0s, dry_run: true, evidence: {metric: error_rate}}"),
        ("by-accuracy", "{type: traffic_shift, step: 30, cooldown: 0s, evidence: {metric: accuracy}}"),
        ("by-latency", "{type: traffic_shift, step: 30, cooldown: 0s, evidence: {metric: slow_requests, slow_above: 200ms}}"),
    ] {
        settings
            .actions
            .insert(name.into(), serde_yaml::from_str(yaml).unwrap());
    }
    settings.route =
        serde_yaml::from_str("{actions: [by-errors, by-accuracy, by-latency]}").unwrap();
    let app = spawn_app_with(settings).await;
    let body = fixture("accuracy-firing.json");

    // The dry-run plan: each guard's decision and evidence.
    let plan = app.plan(body.clone()).await;
    let planned = |action: &str| -> Value {
        let effect = &plan["alerts"][0]["effects"][action];
        assert!(effect.is_object(), "no plan for {action}: {plan:#}");
        effect.clone()
    };
    let errors = planned("by-errors");
    assert_eq!(errors["decision"], "dry_run", "{errors:#}");
    let ev = &errors["evidence"];
    assert_eq!(ev["call"], "from_worse", "{ev:#}");
    assert_eq!(ev["from"]["n"], 2310.0);
    assert_eq!(ev["from"]["bad"], 100.0);
    assert_eq!(ev["to"]["n"], 5400.0);
    assert_eq!(ev["to"]["bad"], 100.0);
    assert!(ev["interval"][0].as_f64().unwrap() > 0.0, "{ev:#}");
    assert_eq!(
        ev["summary"],
        "enhanced-predictor error rate 4.3% vs 1.9% (baseline-predictor), n = 2,310 / 5,400, \
         95% always-valid CI of the difference [1.1, 3.9] points, p = 5.4e-6",
        "{ev:#}"
    );
    let accuracy = planned("by-accuracy");
    assert_eq!(accuracy["decision"], "blocked", "{accuracy:#}");
    assert_eq!(accuracy["evidence"]["call"], "to_worse");
    assert_eq!(accuracy["evidence"]["from"]["n"], 2210.0);
    assert_eq!(accuracy["evidence"]["to"]["bad"], 1300.0);
    assert!(
        accuracy["reason"]
            .as_str()
            .unwrap()
            .ends_with("baseline-predictor is worse than enhanced-predictor: it is not better"),
        "{accuracy:#}"
    );
    let latency = planned("by-latency");
    assert_eq!(latency["decision"], "deferred", "{latency:#}");
    assert_eq!(latency["evidence"]["call"], "inconclusive");
    // Slow = all − the bucket at 0.2 s, as Prometheus stored its `le`.
    assert_eq!(latency["evidence"]["from"]["bad"], 30.0, "{latency:#}");
    assert_eq!(latency["evidence"]["to"]["bad"], 100.0, "{latency:#}");

    // Executed: the same decisions, recorded with their numbers.
    let r = app.post_alerts(body).await;
    assert!(r.status().is_success());
    let decided = eventually(30, "three decisions", || async {
        let t = app.get_json("/api/v1/traffic").await;
        let d = t["decisions"].as_array().cloned().unwrap_or_default();
        (d.len() >= 3).then_some(t)
    })
    .await;
    let by = |action: &str| {
        decided["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["action"] == action)
            .cloned()
            .unwrap_or_else(|| panic!("no decision of {action}: {decided:#}"))
    };
    assert_eq!(by("by-errors")["decision"], "dry_run");
    assert_eq!(by("by-accuracy")["decision"], "blocked");
    assert!(by("by-accuracy")["reason"]
        .as_str()
        .unwrap()
        .starts_with("evidence: enhanced-predictor incorrect predictions 14.0% vs 24.5%"));
    assert_eq!(by("by-latency")["decision"], "deferred");
    assert!(by("by-latency")["reason"]
        .as_str()
        .unwrap()
        .contains("the interval covers 0"));
    let ev = &decided["targets"][EXP]["evidence"];
    assert!(
        ["error_rate", "accuracy", "slow_requests"].contains(&ev["metric"].as_str().unwrap()),
        "{decided:#}"
    );
    assert_eq!(
        decided["targets"][EXP]["weights"],
        json!({"baseline-predictor": 70, "enhanced-predictor": 30})
    );

    // The metrics of the latest evaluation.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let line = |prefix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
            .rsplit_once(' ')
            .map(|(_, v)| v.parse::<f64>().unwrap())
            .unwrap()
    };
    let n = line(&format!(
        "traffic_evidence_samples{{target=\"{EXP}\",role=\"from\"}}"
    ));
    assert!([2210.0, 2310.0].contains(&n), "{n}");
    // Whichever evaluated last: a p-value, no longer NaN.
    let p = line(&format!("traffic_evidence_p_value{{target=\"{EXP}\"}}"));
    assert!((0.0..=1.0).contains(&p), "{p}");
    let decisions: f64 = ["shift", "deferred", "blocked"]
        .iter()
        .map(|d| {
            line(&format!(
                "traffic_evidence_decision{{target=\"{EXP}\",decision=\"{d}\"}}"
            ))
        })
        .sum();
    assert_eq!(decisions, 1.0, "exactly one latest decision");
    app.stop().await;
}

#[test]
fn configuration_errors_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "actions:\n  rollback:\n    type: traffic_shift\n    step: 30\n    evidence: {metric: error_rate, alpha: 2, min_samples: 0}\n",
    )
    .unwrap();
    let e = mlops_alert_router::settings::Settings::load_with_env(Some(&path), Vec::new())
        .unwrap_err()
        .to_string();
    for want in [
        "actions.rollback.evidence.alpha: must be in (0, 0.5], got 2",
        "actions.rollback.evidence.min_samples: must be at least 1",
        "actions.rollback.evidence: needs prometheus.url",
    ] {
        assert!(e.contains(want), "{want:?} not in {e}");
    }
    std::fs::write(
        &path,
        "actions:\n  rollback:\n    type: traffic_shift\n    step: 30\n    evidence: {metric: latency}\n",
    )
    .unwrap();
    let e = mlops_alert_router::settings::Settings::load_with_env(Some(&path), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("actions.rollback") && e.contains("latency"),
        "{e}"
    );
}

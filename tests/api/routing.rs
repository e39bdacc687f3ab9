use crate::helpers::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mlops-alert-router");

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/mlops.yaml")
}

fn routes_test(labels: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["routes", "test", "--config"])
        .arg(example())
        .args(labels)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_mlops_example_config_passes_check_config() {
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(example())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_mlops_example_routes_each_alert_family_as_documented() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "alertname=ModelAccuracyDegraded",
                "model_name=enhanced-predictor",
                "severity=critical",
            ],
            "oncall-webhook,rollback,notify-ml\n",
        ),
        (
            &[
                "alertname=ModelAccuracyDegraded",
                "model_name=baseline-predictor",
                "severity=critical",
            ],
            "oncall-webhook,notify-ml\n",
        ),
        (
            &[
                "alertname=HighModelErrorRate",
                "model_name=enhanced-predictor",
                "severity=warning",
            ],
            "rollback,notify-ml\n",
        ),
        (
            &[
                "alertname=NegativeBusinessImpact",
                "model_name=enhanced-predictor",
            ],
            "rollback,notify-ml\n",
        ),
        (&["alertname=NegativeBusinessImpact"], "notify-ml\n"),
        (
            &[
                "alertname=HighResponseTime",
                "model_name=enhanced-predictor",
                "severity=warning",
            ],
            "notify-ml\n",
        ),
        (
            &["alertname=ABTestTrafficImbalance", "severity=warning"],
            "notify-ml\n",
        ),
        (
            &[
                "alertname=ModelServerDown",
                "component=infrastructure",
                "severity=critical",
            ],
            "oncall-webhook,notify-ml\n",
        ),
        (
            &[
                "alertname=HighModelServerCPU",
                "component=infrastructure",
                "severity=warning",
            ],
            "notify-ml\n",
        ),
        (
            &["alertname=AlertRouterDeadLetters", "component=alert-router"],
            "notify-ml\n",
        ),
        // The deployment's self-test only logs, even with labels that would
        // otherwise page or shift traffic.
        (
            &[
                "alertname=MLOpsAlertRouterSelfTest",
                "model_name=enhanced-predictor",
                "severity=critical",
            ],
            "self-test\n",
        ),
    ];
    for (labels, want) in cases {
        assert_eq!(routes_test(labels), *want, "{labels:?}");
    }
}

#[test]
fn routes_show_prints_the_tree_with_paths() {
    let out = Command::new(BIN)
        .args(["routes", "show", "--config"])
        .arg(example())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "route.routes[1]",
        "model_name!=\"baseline-predictor\"",
        "rollback",
        "continue",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
}

#[test]
fn bad_routes_are_rejected_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    for (yaml, want) in [
        (
            "route:\n  actions: [log]\n  routes:\n    - matchers: ['a=\"1\"']\n      actions: [rollbak]\n",
            "route.routes[0].actions[0]: unknown action \"rollbak\"",
        ),
        (
            "route:\n  actions: [log]\n  routes:\n    - {actions: [log]}\n    - matchers: ['severity=~\"(crit\"']\n",
            "route.routes[1].matchers[0]: error parsing regexp: missing closing ): `^(?:(crit)$`",
        ),
        (
            "route:\n  actions: [log]\n  routes:\n    - matchers: ['alertname']\n",
            "route.routes[0].matchers[0]: bad matcher format: alertname",
        ),
        (
            "route:\n  actions: [log]\n  matchers: ['a=\"b\"']\n",
            "route.matchers: the root route must not have matchers",
        ),
    ] {
        std::fs::write(&file, yaml).unwrap();
        let out = Command::new(BIN)
            .arg("check-config")
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{yaml}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(want), "{want:?} not in {stderr}");
    }
}

/// `match` / `match_re` and matchers only Alertmanager's classic parser reads
/// are accepted (as Alertmanager does) and `check-config` warns about them.
#[test]
fn check_config_warns_about_deprecated_and_ambiguous_matchers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(
        &file,
        "route:\n  actions: [log]\n  routes:\n    - match: {severity: critical}\n      \
         match_re: {team: \"ml|infra\"}\n    - matchers: ['job=', '{foo=\"a\\tb\"}']\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    for want in [
        "warning: route.routes[0].match.severity: `match` is deprecated in Alertmanager; \
         write it as `matchers: ['severity=\"critical\"']`",
        "warning: route.routes[0].match_re.team: `match_re` is deprecated",
        "warning: route.routes[1].matchers[0]: \"job=\": deprecated form",
        "warning: route.routes[1].matchers[1]: ",
        "ambiguous form",
    ] {
        assert!(stderr.contains(want), "{want:?} not in {stderr}");
    }
    let out = Command::new(BIN)
        .args(["routes", "show", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(r#"{severity="critical",team=~"^(?:ml|infra)$"}"#),
        "{text}"
    );
    assert!(text.contains(r#"{foo="a\\tb",job=""}"#), "{text}");
}

#[test]
fn plan_file_prints_the_dry_run_plan() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/accuracy-firing-both-variants.json");
    let out = Command::new(BIN)
        .args(["plan"])
        .arg(&fixture)
        .arg("--config")
        .arg(example())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_model: Vec<(String, Value, Value)> = plan["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["labels"]["model_name"].as_str().unwrap().to_owned(),
                a["routes"].clone(),
                a["actions"].clone(),
            )
        })
        .collect();
    assert!(
        by_model.contains(&(
            "enhanced-predictor".into(),
            json!(["route.routes[1]", "route.routes[2]"]),
            json!(["oncall-webhook", "rollback", "notify-ml"])
        )),
        "{by_model:?}"
    );
    assert!(
        by_model.contains(&(
            "baseline-predictor".into(),
            json!(["route.routes[1]", "route.routes[5]"]),
            json!(["oncall-webhook", "notify-ml"])
        )),
        "{by_model:?}"
    );
}

#[tokio::test]
async fn the_worker_runs_each_matched_action_once_per_alert() {
    let dir = tempfile::tempdir().unwrap();
    let example: mlops_alert_router::settings::Settings =
        mlops_alert_router::settings::Settings::load_with_env(Some(&example()), Vec::new())
            .unwrap();
    let mut settings = test_settings(dir.path());
    settings.actions = example.actions;
    // No cluster here: the example's Seldon rollback becomes a log line.
    settings.actions.insert(
        "rollback".into(),
        serde_yaml::from_str("{type: log}").unwrap(),
    );
    settings.route = example.route;
    let sink = chat_sink().await;
    point_chat_actions_at(&mut settings.actions, &sink.uri());
    let app = spawn_app_with(settings).await;
    let r: Value = app
        .post_alerts(fixture("accuracy-firing-both-variants.json"))
        .await
        .json()
        .await
        .unwrap();
    let detail = app.wait_for(r["id"].as_i64().unwrap(), is_done).await;
    let mut runs: Vec<(String, String)> = detail["action_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["fingerprint"].as_str().unwrap().to_owned(),
                r["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    runs.sort();
    let payload = fixture_json("accuracy-firing-both-variants.json");
    let fp = |model: &str| {
        payload["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["labels"]["model_name"] == model)
            .unwrap()["fingerprint"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (base, cand) = (fp("baseline-predictor"), fp("enhanced-predictor"));
    // The on-call webhook is notification-scoped: one run for the group
    // (fingerprint ""), not one per alert.
    let mut want = vec![
        (base, "notify-ml".to_owned()),
        (cand.clone(), "notify-ml".to_owned()),
        (cand, "rollback".to_owned()),
        (String::new(), "oncall-webhook".to_owned()),
    ];
    want.sort();
    assert_eq!(runs, want);
    assert_eq!(sink.received_requests().await.unwrap().len(), 1, "one page");
    app.stop().await;
}

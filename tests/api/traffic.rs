use crate::fake_kube::FakeKube;
use crate::helpers::*;
use mlops_alert_router::settings::Settings;
use serde_json::{json, Value};
use std::time::Duration;

fn w(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Router settings with the Seldon target on `kube` and a `rollback` action
/// (extra YAML merged into its config) routed for candidate accuracy alerts.
fn settings(dir: &std::path::Path, kube: &FakeKube, rollback: &str) -> Settings {
    let mut s = test_settings(dir);
    s.worker.enabled = false;
    s.ingest.dedup_window = Duration::ZERO;
    s.kubernetes.api_url = Some(kube.url.clone());
    s.traffic_targets = serde_yaml::from_str(
        "financial-ab-test-experiment: {kind: seldon_experiment, namespace: financial-inference, name: financial-ab-test-experiment}",
    )
    .unwrap();
    let mut action: serde_yaml::Value =
        serde_yaml::from_str("{type: traffic_shift, step: 30}").unwrap();
    let extra: serde_yaml::Value = serde_yaml::from_str(rollback).unwrap();
    if let (Some(a), Some(e)) = (action.as_mapping_mut(), extra.as_mapping()) {
        for (k, v) in e {
            a.insert(k.clone(), v.clone());
        }
    }
    s.actions
        .insert("rollback".into(), serde_yaml::from_value(action).unwrap());
    s.route = serde_yaml::from_str(
        "{actions: [log], routes: [{matchers: ['alertname=\"ModelAccuracyDegraded\"', 'model_name!=\"baseline-predictor\"'], actions: [rollback, log]}]}",
    )
    .unwrap();
    s
}

async fn rollback_run(app: &TestApp, id: i64) -> Value {
    app.action_run(id, "rollback").await
}

#[tokio::test]
async fn a_failing_candidate_loses_traffic_once_per_episode() {
    let kube = FakeKube::start().await;
    kube.put_experiment();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(settings(dir.path(), &kube, "{}")).await;

    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    let run = rollback_run(&app, id).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["result"]["decision"], "shifted");
    assert_eq!(
        run["result"]["before"],
        json!({"baseline-predictor": 70, "enhanced-predictor": 30})
    );
    assert_eq!(
        run["result"]["after"],
        json!({"baseline-predictor": 100, "enhanced-predictor": 0})
    );
    assert_eq!(
        kube.experiment_weights(),
        w(&[("baseline-predictor", 100), ("enhanced-predictor", 0)])
    );
    let mark: Value = serde_json::from_str(
        kube.experiment()["metadata"]["annotations"]["mlops-alert-router.io/last-shift"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(mark["episode"], run["result"]["episode"]);
    assert_eq!(
        mark["before"],
        json!({"baseline-predictor": 70, "enhanced-predictor": 30})
    );
    // The patch pinned the weights it read.
    let patch = &kube.patches()[0];
    assert!(
        patch
            .as_array()
            .unwrap()
            .contains(&json!({"op": "test", "path": "/spec/candidates/1/weight", "value": 30})),
        "{patch:#}"
    );

    // Alertmanager's repeat (a new notification after the dedup window) and a
    // replay: no second shift.
    let repeat = app.post(fixture("accuracy-firing.json")).await;
    assert_ne!(repeat, id);
    app.drain().await;
    assert_eq!(
        rollback_run(&app, repeat).await["result"]["decision"],
        "noop"
    );
    app.client
        .post(format!("{}/api/v1/notifications/{id}/replay", app.address))
        .send()
        .await
        .unwrap();
    app.drain().await;
    assert_eq!(rollback_run(&app, id).await["result"]["decision"], "noop");
    assert_eq!(kube.patches().len(), 1, "one PATCH in all");

    let traffic = app.get_json("/api/v1/traffic").await;
    let t = &traffic["targets"]["financial-ab-test-experiment"];
    assert_eq!(
        t["weights"],
        json!({"baseline-predictor": 100, "enhanced-predictor": 0})
    );
    assert_eq!(
        t["target"],
        "seldon_experiment financial-inference/financial-ab-test-experiment"
    );
    let decisions: Vec<&str> = traffic["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["noop", "noop", "shifted"]);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("traffic_weight{target=\"financial-ab-test-experiment\",variant=\"enhanced-predictor\"} 0"), "{metrics}");
    assert!(
        metrics.contains(
            "traffic_shifts_total{target=\"financial-ab-test-experiment\",outcome=\"shifted\"} 1"
        ),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_concurrent_writer_between_read_and_patch_makes_it_decide_again() {
    let kube = FakeKube::start().await;
    kube.put_experiment();
    // Someone sets 50/50 after the router read 70/30, before its PATCH lands.
    kube.state.lock().unwrap().interfere = Some(json!({"spec": {"candidates": [
        {"name": "baseline-predictor", "weight": 50}, {"name": "enhanced-predictor", "weight": 50}]}}));
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(settings(dir.path(), &kube, "{step: 10}")).await;
    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    let run = rollback_run(&app, id).await;
    assert_eq!(run["result"]["decision"], "shifted", "{run:#}");
    assert_eq!(
        run["result"]["before"],
        json!({"baseline-predictor": 50, "enhanced-predictor": 50})
    );
    assert_eq!(
        kube.experiment_weights(),
        w(&[("baseline-predictor", 60), ("enhanced-predictor", 40)])
    );
    assert_eq!(
        kube.patches().len(),
        2,
        "the first PATCH failed its test and was decided again"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_retry_after_a_crash_between_patch_and_ledger_does_not_shift_again() {
    let kube = FakeKube::start().await;
    kube.put_experiment();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(settings(dir.path(), &kube, "{}")).await;
    // Plan first, to learn the episode key the router uses.
    let plan: Value = app.plan(fixture("accuracy-firing.json")).await;
    let episode = plan["alerts"][0]["effects"]["rollback"]["episode"]
        .as_str()
        .unwrap()
        .to_owned();
    // The previous process patched the Experiment, then died before its ledger write.
    let mark = json!({"episode": episode, "before": {"baseline-predictor": 70, "enhanced-predictor": 30},
                      "after": {"baseline-predictor": 100, "enhanced-predictor": 0}, "at": "2026-11-27T00:00:00Z"});
    let mut obj = kube.experiment();
    obj["spec"]["candidates"] = json!([{"name": "baseline-predictor", "weight": 100}, {"name": "enhanced-predictor", "weight": 0}]);
    obj["metadata"]["annotations"] = json!({"mlops-alert-router.io/last-shift": mark.to_string()});
    kube.put(
        "mlops.seldon.io/v1alpha1",
        "financial-inference",
        "experiments",
        obj,
    );

    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    let run = rollback_run(&app, id).await;
    assert_eq!(run["result"]["decision"], "shifted");
    assert!(
        run["result"]["reason"]
            .as_str()
            .unwrap()
            .contains("already applied"),
        "{run:#}"
    );
    assert_eq!(kube.patches().len(), 0, "no second shift");
    app.stop().await;
}

#[tokio::test]
async fn dry_run_changes_nothing_and_shows_the_exact_patch() {
    let kube = FakeKube::start().await;
    kube.put_experiment();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(settings(dir.path(), &kube, "{dry_run: true}")).await;
    let plan: Value = app.plan(fixture("accuracy-firing.json")).await;
    let effect = &plan["alerts"][0]["effects"]["rollback"];
    assert_eq!(effect["decision"], "dry_run");
    let ops = effect["change"]["patch"].as_array().unwrap();
    assert!(
        ops.contains(&json!({"op": "test", "path": "/spec/candidates/0/weight", "value": 70})),
        "{effect:#}"
    );
    assert!(
        ops.contains(&json!({"op": "replace", "path": "/spec/candidates/1/weight", "value": 0})),
        "{effect:#}"
    );

    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    assert_eq!(
        rollback_run(&app, id).await["result"]["decision"],
        "dry_run"
    );
    assert_eq!(kube.patches().len(), 0);
    assert_eq!(
        kube.experiment_weights(),
        w(&[("baseline-predictor", 70), ("enhanced-predictor", 30)])
    );
    app.stop().await;
}

#[tokio::test]
async fn a_resolved_alert_restores_the_weights_only_if_nobody_changed_them() {
    let kube = FakeKube::start().await;
    kube.put_experiment();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(settings(dir.path(), &kube, "{on_resolve: restore}")).await;
    app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    assert_eq!(
        kube.experiment_weights(),
        w(&[("baseline-predictor", 100), ("enhanced-predictor", 0)])
    );
    let id = app.post(fixture("accuracy-resolved.json")).await;
    app.drain().await;
    assert_eq!(
        rollback_run(&app, id).await["result"]["decision"],
        "restored"
    );
    assert_eq!(
        kube.experiment_weights(),
        w(&[("baseline-predictor", 70), ("enhanced-predictor", 30)])
    );

    // A second episode; this time a person changes the weights before it resolves.
    let mut later = fixture_json("accuracy-firing.json");
    later["alerts"][0]["startsAt"] = json!("2026-11-27T03:00:00Z");
    let mut resolved = fixture_json("accuracy-resolved.json");
    resolved["alerts"][0]["startsAt"] = json!("2026-11-27T03:00:00Z");
    let app = {
        app.stop().await;
        let mut s = settings(dir.path(), &kube, "{on_resolve: restore, cooldown: 0s}");
        s.storage.path = dir.path().join("router.db");
        spawn_app_with(s).await
    };
    app.post(later.to_string()).await;
    app.drain().await;
    assert_eq!(
        kube.experiment_weights(),
        w(&[("baseline-predictor", 100), ("enhanced-predictor", 0)])
    );
    let mut obj = kube.experiment();
    obj["spec"]["candidates"] = json!([{"name": "baseline-predictor", "weight": 90}, {"name": "enhanced-predictor", "weight": 10}]);
    kube.put(
        "mlops.seldon.io/v1alpha1",
        "financial-inference",
        "experiments",
        obj,
    );
    let id = app.post(resolved.to_string()).await;
    app.drain().await;
    let run = rollback_run(&app, id).await;
    assert_eq!(run["result"]["decision"], "noop");
    assert!(
        run["result"]["reason"]
            .as_str()
            .unwrap()
            .contains("changed since"),
        "{run:#}"
    );
    assert_eq!(
        kube.experiment_weights(),
        w(&[("baseline-predictor", 90), ("enhanced-predictor", 10)])
    );
    app.stop().await;
}

#[tokio::test]
async fn cooldown_and_hourly_limit_hold_back_further_shifts() {
    let kube = FakeKube::start().await;
    kube.put_experiment();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(settings(dir.path(), &kube, "{step: 10, cooldown: 10m}")).await;
    let episode = |i: u32| {
        let mut v = fixture_json("accuracy-firing.json");
        v["alerts"][0]["startsAt"] = json!(format!("2026-11-27T0{i}:00:00Z"));
        v.to_string()
    };
    app.post(episode(1)).await;
    app.drain().await;
    let id = app.post(episode(2)).await;
    app.drain().await;
    let run = rollback_run(&app, id).await;
    assert_eq!(run["result"]["decision"], "cooldown", "{run:#}");
    assert_eq!(
        kube.experiment_weights(),
        w(&[("baseline-predictor", 80), ("enhanced-predictor", 20)])
    );
    app.stop().await;

    // No cooldown, at most 2 per hour: the third episode is held back.
    let kube = FakeKube::start().await;
    kube.put_experiment();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(settings(
        dir.path(),
        &kube,
        "{step: 10, cooldown: 0s, max_shifts_per_hour: 2}",
    ))
    .await;
    for i in 1..=3 {
        app.post(episode(i)).await;
        app.drain().await;
    }
    let decisions: Vec<String> = app.get_json("/api/v1/traffic").await["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(decisions, ["rate_limited", "shifted", "shifted"]);
    assert_eq!(
        kube.experiment_weights(),
        w(&[("baseline-predictor", 90), ("enhanced-predictor", 10)])
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_experiment_or_variant_fails_with_the_reason_and_guesses_nothing() {
    let kube = FakeKube::start().await;
    kube.put_experiment();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(settings(dir.path(), &kube, "{}")).await;
    for (label, value, reason) in [
        (
            "experiment",
            "other-experiment",
            "unknown experiment \"other-experiment\"",
        ),
        (
            "model_name",
            "ghost-predictor",
            "unknown variant \"ghost-predictor\"",
        ),
    ] {
        let mut v = fixture_json("accuracy-firing.json");
        v["alerts"][0]["labels"][label] = json!(value);
        v["alerts"][0]["fingerprint"] = json!(format!("{label}00000000"));
        let id = app.post(v.to_string()).await;
        app.drain().await;
        let run = rollback_run(&app, id).await;
        assert_eq!(run["status"], "dead", "{run:#}");
        assert!(
            run["last_error"].as_str().unwrap().contains(reason),
            "{run:#}"
        );
    }
    assert_eq!(kube.patches().len(), 0);
    // An experiment named by an alert but not configured is no label value.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(!metrics.contains("other-experiment"), "{metrics}");
    assert!(
        metrics.contains("traffic_shifts_total{target=\"unknown\",outcome=\"failed\"} 1"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_file_target_is_shifted_atomically_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.yaml");
    std::fs::write(
        &weights,
        "default: baseline-predictor\ncandidates:\n  - {name: baseline-predictor, weight: 70}\n  - {name: enhanced-predictor, weight: 30}\n",
    )
    .unwrap();
    let kube = FakeKube::start().await;
    let mut s = settings(dir.path(), &kube, "{}");
    s.traffic_targets = serde_yaml::from_str(&format!(
        "financial-ab-test-experiment: {{kind: file, file: {{path: '{}'}}}}",
        weights.display()
    ))
    .unwrap();
    let app = spawn_app_with(s).await;
    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    assert_eq!(
        rollback_run(&app, id).await["result"]["decision"],
        "shifted"
    );
    let file: Value = serde_yaml::from_str(&std::fs::read_to_string(&weights).unwrap()).unwrap();
    assert_eq!(
        file["candidates"],
        json!([{"name": "baseline-predictor", "weight": 100}, {"name": "enhanced-predictor", "weight": 0}])
    );
    assert_eq!(file["default"], "baseline-predictor");
    assert!(file["last_shift"]["episode"].is_string());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    app.stop().await;
}

#[tokio::test]
async fn an_istio_virtual_service_route_is_shifted() {
    let kube = FakeKube::start().await;
    kube.put(
        "networking.istio.io/v1",
        "financial-inference",
        "virtualservices",
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "predictor", "namespace": "financial-inference"},
               "spec": {"hosts": ["predictor"], "http": [
                   {"name": "health", "route": [{"destination": {"host": "predictor", "subset": "baseline-predictor"}}]},
                   {"name": "ab", "route": [
                       {"destination": {"host": "predictor", "subset": "baseline-predictor"}, "weight": 70},
                       {"destination": {"host": "predictor", "subset": "enhanced-predictor"}, "weight": 30}]}]}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), &kube, "{}");
    s.traffic_targets = serde_yaml::from_str(
        "financial-ab-test-experiment: {kind: istio_virtual_service, namespace: financial-inference, name: predictor, route: ab, default: baseline-predictor}",
    )
    .unwrap();
    let app = spawn_app_with(s).await;
    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    assert_eq!(
        rollback_run(&app, id).await["result"]["decision"],
        "shifted"
    );
    let vs = kube.get(
        "networking.istio.io/v1",
        "financial-inference",
        "virtualservices",
        "predictor",
    );
    assert_eq!(vs["spec"]["http"][1]["route"][0]["weight"], 100);
    assert_eq!(vs["spec"]["http"][1]["route"][1]["weight"], 0);
    assert!(
        vs["spec"]["http"][0]["route"][0].get("weight").is_none(),
        "other routes untouched"
    );
    app.stop().await;
}

fn istio_settings(dir: &std::path::Path, kube: &FakeKube, target: &str) -> Settings {
    let mut s = settings(dir, kube, "{}");
    s.traffic_targets = serde_yaml::from_str(&format!(
        "financial-ab-test-experiment: {{kind: istio_virtual_service, namespace: financial-inference, name: predictor, route: ab, default: baseline-predictor{target}}}"
    ))
    .unwrap();
    s
}

fn put_virtual_service(kube: &FakeKube, api_version: &str, ab_route: Value) {
    kube.put(
        api_version,
        "financial-inference",
        "virtualservices",
        json!({"apiVersion": api_version, "kind": "VirtualService",
               "metadata": {"name": "predictor", "namespace": "financial-inference"},
               "spec": {"hosts": ["predictor"], "http": [{"name": "ab", "route": ab_route}]}}),
    );
}

fn ab_route(kube: &FakeKube, api_version: &str) -> Value {
    kube.get(
        api_version,
        "financial-inference",
        "virtualservices",
        "predictor",
    )["spec"]["http"][0]["route"]
        .clone()
}

#[tokio::test]
async fn istio_variants_named_by_host_are_shifted_testing_the_host() {
    // Istio's two-Service split: each variant is a destination host.
    let kube = FakeKube::start().await;
    put_virtual_service(
        &kube,
        "networking.istio.io/v1",
        json!([{"destination": {"host": "baseline-predictor"}, "weight": 70},
               {"destination": {"host": "enhanced-predictor"}, "weight": 30}]),
    );
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(istio_settings(dir.path(), &kube, "")).await;
    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    let run = rollback_run(&app, id).await;
    assert_eq!(run["result"]["decision"], "shifted", "{run:#}");
    let route = ab_route(&kube, "networking.istio.io/v1");
    assert_eq!(route[0]["weight"], 100);
    assert_eq!(route[1]["weight"], 0);
    let patch = &kube.patches()[0];
    assert!(
        patch.as_array().unwrap().contains(&json!({"op": "test", "path": "/spec/http/0/route/1/destination/host", "value": "enhanced-predictor"})),
        "{patch:#}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_missing_istio_weight_is_added_not_tested() {
    // No weight on the baseline: with two destinations, Istio gives it none.
    let kube = FakeKube::start().await;
    put_virtual_service(
        &kube,
        "networking.istio.io/v1",
        json!([{"destination": {"host": "predictor", "subset": "baseline-predictor"}},
               {"destination": {"host": "predictor", "subset": "enhanced-predictor"}, "weight": 100}]),
    );
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(istio_settings(dir.path(), &kube, "")).await;
    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    let run = rollback_run(&app, id).await;
    assert_eq!(run["result"]["decision"], "shifted", "{run:#}");
    assert_eq!(kube.patches().len(), 1, "one patch, no conflict loop");
    let route = ab_route(&kube, "networking.istio.io/v1");
    assert_eq!(route[0]["weight"], 30);
    assert_eq!(route[1]["weight"], 70);
    app.stop().await;
}

#[tokio::test]
async fn a_422_that_is_not_a_failed_test_is_permanent_with_the_api_servers_message() {
    let kube = FakeKube::start().await;
    kube.put_experiment();
    kube.state.lock().unwrap().reject = Some((
        422,
        "admission webhook \"v2.vexperiment.kb.io\" denied the request: candidate enhanced-predictor has no model".into(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(settings(dir.path(), &kube, "{}")).await;
    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    let run = rollback_run(&app, id).await;
    assert_eq!(run["status"], "dead", "{run:#}");
    assert_eq!(run["attempts"], 1, "not retried: {run:#}");
    let err = run["last_error"].as_str().unwrap();
    assert!(
        err.contains("422") && err.contains("candidate enhanced-predictor has no model"),
        "{run:#}"
    );
    assert_eq!(kube.patches().len(), 1);
    assert_eq!(
        kube.experiment_weights(),
        w(&[("baseline-predictor", 70), ("enhanced-predictor", 30)])
    );
    app.stop().await;
}

#[tokio::test]
async fn the_istio_api_version_is_configurable() {
    let kube = FakeKube::start().await;
    put_virtual_service(
        &kube,
        "networking.istio.io/v1beta1",
        json!([{"destination": {"host": "predictor", "subset": "baseline-predictor"}, "weight": 70},
               {"destination": {"host": "predictor", "subset": "enhanced-predictor"}, "weight": 30}]),
    );
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(istio_settings(
        dir.path(),
        &kube,
        ", api_version: networking.istio.io/v1beta1",
    ))
    .await;
    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    let run = rollback_run(&app, id).await;
    assert_eq!(run["result"]["decision"], "shifted", "{run:#}");
    assert_eq!(
        ab_route(&kube, "networking.istio.io/v1beta1")[1]["weight"],
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn the_dry_run_patch_indexes_candidates_as_the_object_orders_them() {
    // Candidates not in alphabetical order.
    let kube = FakeKube::start().await;
    kube.put(
        "mlops.seldon.io/v1alpha1",
        "financial-inference",
        "experiments",
        json!({"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Experiment",
               "metadata": {"name": "financial-ab-test-experiment", "namespace": "financial-inference"},
               "spec": {"default": "baseline-predictor", "candidates": [
                   {"name": "enhanced-predictor", "weight": 30},
                   {"name": "baseline-predictor", "weight": 70}]}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(settings(dir.path(), &kube, "{dry_run: true}")).await;
    let plan: Value = app.plan(fixture("accuracy-firing.json")).await;
    let effect = &plan["alerts"][0]["effects"]["rollback"];
    let ops = effect["change"]["patch"].as_array().unwrap();
    for op in [
        json!({"op": "test", "path": "/spec/candidates/0/name", "value": "enhanced-predictor"}),
        json!({"op": "replace", "path": "/spec/candidates/0/weight", "value": 0}),
        json!({"op": "test", "path": "/spec/candidates/1/weight", "value": 70}),
        json!({"op": "replace", "path": "/spec/candidates/1/weight", "value": 100}),
    ] {
        assert!(ops.contains(&op), "{op} missing in {effect:#}");
    }
    // The exact patch applies to the object as it is.
    let mut obj = kube.experiment();
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops.clone())).unwrap();
    json_patch::patch(&mut obj, &patch).unwrap();
    app.stop().await;
}

/// A stand-in Prometheus answering every query with these per-variant values.
async fn prometheus_answering(baseline: f64, enhanced: f64) -> String {
    let app = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::get(move || async move {
            axum::Json(json!({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"model_name": "baseline-predictor"}, "value": [1, baseline.to_string()]},
                {"metric": {"model_name": "enhanced-predictor"}, "value": [1, enhanced.to_string()]}]}}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn with_guard(mut s: Settings, prometheus: &str) -> Settings {
    s.prometheus =
        Some(serde_yaml::from_str(&format!("{{url: '{prometheus}', timeout: 500ms}}")).unwrap());
    s.enrichments = serde_yaml::from_str(
        "accuracy: {query: 'ab_test_model_accuracy{experiment=\"{{ labels.experiment }}\"}', by: model_name}",
    )
    .unwrap();
    s.route.routes[0].enrich = vec!["accuracy".into()];
    s
}

#[tokio::test]
async fn the_guard_blocks_a_shift_onto_an_unhealthy_variant() {
    let kube = FakeKube::start().await;
    kube.put_experiment();
    let dir = tempfile::tempdir().unwrap();
    let prometheus = prometheus_answering(40.0, 51.2).await;
    let s = with_guard(
        settings(dir.path(), &kube, "{guard: 'context.accuracy[to] >= 55'}"),
        &prometheus,
    );
    let app = spawn_app_with(s).await;
    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    let run = rollback_run(&app, id).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["result"]["decision"], "blocked");
    assert!(
        run["result"]["reason"]
            .as_str()
            .unwrap()
            .contains("guard `context.accuracy[to] >= 55` is false"),
        "{run:#}"
    );
    assert_eq!(
        run["context"]["accuracy"]["value"]["baseline-predictor"],
        40.0
    );
    assert_eq!(kube.patches().len(), 0);

    // A healthy baseline lets it through.
    let kube = FakeKube::start().await;
    kube.put_experiment();
    let dir = tempfile::tempdir().unwrap();
    let prometheus = prometheus_answering(72.5, 51.2).await;
    let s = with_guard(
        settings(dir.path(), &kube, "{guard: 'context.accuracy[to] >= 55'}"),
        &prometheus,
    );
    let app2 = spawn_app_with(s).await;
    let id = app2.post(fixture("accuracy-firing.json")).await;
    app2.drain().await;
    assert_eq!(
        rollback_run(&app2, id).await["result"]["decision"],
        "shifted"
    );
    app.stop().await;
    app2.stop().await;
}

#[tokio::test]
async fn a_guard_that_cannot_be_evaluated_defers_instead_of_shifting_blind() {
    let kube = FakeKube::start().await;
    kube.put_experiment();
    let dir = tempfile::tempdir().unwrap();
    let down = format!("http://127.0.0.1:{}", crate::components::free_port());
    let mut s = with_guard(
        settings(dir.path(), &kube, "{guard: 'context.accuracy[to] >= 55'}"),
        &down,
    );
    s.worker.backoff_initial = Duration::from_secs(3600);
    s.worker.backoff_max = Duration::from_secs(3600);
    let app = spawn_app_with(s).await;
    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    let run = rollback_run(&app, id).await;
    assert_eq!(run["status"], "pending", "{run:#}");
    assert_eq!(run["attempts"], 1);
    assert!(
        run["last_error"]
            .as_str()
            .unwrap()
            .starts_with("deferred: guard"),
        "{run:#}"
    );
    assert!(run["next_attempt_at"].is_string());
    assert_eq!(kube.patches().len(), 0, "no shift without the guard's data");
    let decisions = app.get_json("/api/v1/traffic").await["decisions"].clone();
    assert_eq!(decisions[0]["decision"], "deferred");
    app.stop().await;
}

#[tokio::test]
async fn a_shift_is_marked_on_the_grafana_dashboard() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let grafana = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/annotations"))
        .and(header("authorization", "Bearer glsa_token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": 7, "message": "Annotation added"})),
        )
        .expect(1)
        .mount(&grafana)
        .await;
    let kube = FakeKube::start().await;
    kube.put_experiment();
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), &kube, "{}");
    s.actions.insert(
        "annotate".into(),
        serde_yaml::from_str(&format!(
            "{{type: grafana_annotation, url: '{}', token: glsa_token}}",
            grafana.uri()
        ))
        .unwrap(),
    );
    s.route.routes[0].actions = Some(vec!["rollback".into(), "annotate".into()]);
    let app = spawn_app_with(s).await;
    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    let detail = app.get_json(&format!("/api/v1/notifications/{id}")).await;
    let run = detail["action_runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "annotate")
        .unwrap()
        .clone();
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["result"], json!({"annotations": 1, "ids": [7]}));
    let sent: Value =
        serde_json::from_slice(&grafana.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(sent["dashboardUID"], "mlops-ab-testing");
    assert!(sent["tags"]
        .as_array()
        .unwrap()
        .contains(&json!("experiment:financial-ab-test-experiment")));
    let text = sent["text"].as_str().unwrap();
    assert!(
        text.contains("enhanced-predictor 30 → 0") && text.contains("baseline-predictor 70 → 100"),
        "{text}"
    );
    assert!(
        !detail.to_string().contains("glsa_token"),
        "the token leaked into the API answer"
    );
    app.stop().await;
}

/// Both variants fire the same alert: moving traffic onto the other, equally
/// failing variant is blocked (whatever the guard says), in the dry-run plan,
/// in the run's result and in the audit trail; on a Seldon Experiment (fake
/// Kubernetes API) and on the file target.
#[tokio::test]
async fn never_shifts_onto_a_variant_that_fires_the_same_alert() {
    let reason = "baseline-predictor is itself firing ModelAccuracyDegraded \
                  (alert 5d376d2a43c31436): traffic never moves onto a firing variant";
    // Seldon Experiment on the fake Kubernetes API.
    let kube = FakeKube::start().await;
    kube.put_experiment();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(settings(dir.path(), &kube, "{guard: 'true'}")).await;
    let plan: Value = app
        .plan(fixture("accuracy-firing-both-variants.json"))
        .await;
    let effect = &plan["alerts"][1]["effects"]["rollback"];
    assert_eq!(effect["decision"], "blocked", "{plan:#}");
    assert_eq!(effect["reason"], reason);
    assert!(effect["change"].is_null(), "{effect:#}");

    let id = app
        .post(fixture("accuracy-firing-both-variants.json"))
        .await;
    app.drain().await;
    let run = rollback_run(&app, id).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["result"]["decision"], "blocked");
    assert_eq!(run["result"]["reason"], reason);
    assert_eq!(
        run["result"]["before"],
        json!({"baseline-predictor": 70, "enhanced-predictor": 30})
    );
    assert!(kube.patches().is_empty(), "no PATCH");
    assert_eq!(
        kube.experiment_weights(),
        w(&[("baseline-predictor", 70), ("enhanced-predictor", 30)])
    );
    let traffic = app.get_json("/api/v1/traffic").await;
    let d = &traffic["decisions"][0];
    assert_eq!(d["decision"], "blocked", "{traffic:#}");
    assert_eq!(d["reason"], reason);
    app.stop().await;

    // The file target, end to end.
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.yaml");
    let original = "default: baseline-predictor\ncandidates:\n  - {name: baseline-predictor, weight: 70}\n  - {name: enhanced-predictor, weight: 30}\n";
    std::fs::write(&weights, original).unwrap();
    let mut s = settings(dir.path(), &kube, "{}");
    s.traffic_targets = serde_yaml::from_str(&format!(
        "financial-ab-test-experiment: {{kind: file, file: {{path: '{}'}}}}",
        weights.display()
    ))
    .unwrap();
    let app = spawn_app_with(s).await;
    let id = app
        .post(fixture("accuracy-firing-both-variants.json"))
        .await;
    app.drain().await;
    let run = rollback_run(&app, id).await;
    assert_eq!(run["result"]["decision"], "blocked", "{run:#}");
    assert_eq!(run["result"]["reason"], reason);
    assert_eq!(std::fs::read_to_string(&weights).unwrap(), original);

    // Once the baseline's alert resolves (same group, next notification),
    // the candidate's alert may shift again.
    let body = fixture("accuracy-firing-both-variants.json").replacen(
        "\"status\": \"firing\",\n      \"labels\"",
        "\"status\": \"resolved\",\n      \"labels\"",
        1,
    );
    let id = app.post(body).await;
    app.drain().await;
    assert_eq!(
        rollback_run(&app, id).await["result"]["decision"],
        "shifted"
    );
    let file: Value = serde_yaml::from_str(&std::fs::read_to_string(&weights).unwrap()).unwrap();
    assert_eq!(file["candidates"][1]["weight"], 0);
    app.stop().await;
}

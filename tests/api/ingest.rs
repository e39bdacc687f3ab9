use crate::helpers::*;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn every_captured_alertmanager_payload_is_stored_before_200() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.worker.enabled = false;
    let app = spawn_app_with(settings).await;
    for name in FIXTURES {
        let body = fixture(name);
        let r = app.post_alerts(body.clone()).await;
        assert_eq!(r.status(), 200, "{name}");
        let answer: Value = r.json().await.unwrap();
        let sent = fixture_json(name);
        assert_eq!(
            answer["alerts"],
            sent["alerts"].as_array().unwrap().len(),
            "{name}"
        );
        assert_eq!(answer["duplicate"], false, "{name}");
        let detail = app
            .get_json(&format!("/api/v1/notifications/{}", answer["id"]))
            .await;
        assert_eq!(detail["payload"], sent, "{name} stored as sent");
        assert_eq!(detail["state"], "pending", "{name}");
    }
    assert_eq!(app.notification_count().await, FIXTURES.len());
    app.stop().await;
}

#[tokio::test]
async fn newer_alertmanager_fields_and_any_content_type_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path())).await;
    let mut body = fixture_json("accuracy-firing.json");
    body["notification_reason"] = json!("repeat_interval");
    body["routeLabels"] = json!({"team": "ml"});
    body["somethingFromTheFuture"] = json!({"nested": [1, 2, 3]});
    body["alerts"][0]["extra"] = json!(true);
    // `curl -d @file` sends application/x-www-form-urlencoded.
    let r = app
        .client
        .post(format!("{}/api/v1/alerts", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // No Content-Type at all.
    let mut other = fixture_json("server-down-firing.json");
    other.as_object_mut().unwrap().remove("truncatedAlerts");
    other.as_object_mut().unwrap().remove("commonAnnotations");
    let r = app
        .client
        .post(format!("{}/api/v1/alerts", app.address))
        .body(other.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

async fn assert_refused(app: &TestApp, body: Vec<u8>, status: u16, needle: &str) {
    let r = app.post_alerts(body).await;
    assert_eq!(r.status(), status);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let answer: Value = r.json().await.unwrap();
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains(needle),
        "{error:?} should mention {needle:?}"
    );
}

fn mutated(f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = fixture_json("accuracy-firing-both-variants.json");
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn each_class_of_bad_input_gets_its_status_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.ingest.max_alerts = 3;
    settings.ingest.max_body_bytes = 64 * 1024;
    let app = spawn_app_with(settings).await;

    assert_refused(
        &app,
        b"{\"version\": \"4\",\n \"alerts\": [}".to_vec(),
        400,
        "line 2, column",
    )
    .await;
    assert_refused(&app, b"".to_vec(), 400, "malformed JSON").await;
    assert_refused(&app, mutated(|v| v["version"] = json!("3")), 422, "version").await;
    assert_refused(
        &app,
        mutated(|v| drop(v.as_object_mut().unwrap().remove("alerts"))),
        422,
        "missing field `alerts`",
    )
    .await;
    assert_refused(
        &app,
        mutated(|v| v["alerts"][1]["startsAt"] = json!("last tuesday")),
        422,
        "alerts[1].startsAt",
    )
    .await;
    assert_refused(
        &app,
        mutated(|v| v["alerts"][0]["status"] = json!("on fire")),
        422,
        "alerts[0].status",
    )
    .await;
    assert_refused(
        &app,
        mutated(|v| v["alerts"] = json!([])),
        422,
        "alerts: must not be empty",
    )
    .await;
    assert_refused(&app, b"[1, 2]".to_vec(), 422, "a JSON array").await;
    assert_refused(
        &app,
        mutated(|v| {
            let a = v["alerts"][0].clone();
            v["alerts"] = json!([a.clone(), a.clone(), a.clone(), a]);
        }),
        413,
        "4 alerts, more than the limit of 3",
    )
    .await;
    let mut big = fixture_json("accuracy-firing.json");
    big["padding"] = json!("x".repeat(70 * 1024));
    assert_refused(
        &app,
        serde_json::to_vec(&big).unwrap(),
        413,
        "larger than 65536 bytes",
    )
    .await;

    assert_eq!(app.notification_count().await, 0, "nothing stored");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for line in [
        "notifications_received_total{outcome=\"malformed\"} 2",
        "notifications_received_total{outcome=\"schema\"} 6",
        "notifications_received_total{outcome=\"too_large\"} 2",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    app.stop().await;
}

#[tokio::test]
async fn trailing_data_bad_label_names_and_alert_lists_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path())).await;
    let one = fixture("accuracy-firing.json");

    let mut junk = one.trim_end().as_bytes().to_vec();
    junk.extend_from_slice(b" xyz");
    assert_refused(&app, junk, 400, "after the end of the JSON document").await;
    assert_refused(
        &app,
        format!("{}{}", one.trim_end(), one).into_bytes(),
        400,
        "after the end of the JSON document",
    )
    .await;
    assert_refused(
        &app,
        mutated(|v| v["alerts"][0]["labels"][""] = json!("x")),
        422,
        "alerts[0].labels: empty label name",
    )
    .await;
    assert_refused(
        &app,
        mutated(|v| v["alerts"][1]["labels"]["model\u{0}name"] = json!("x")),
        422,
        "alerts[1].labels: label name \"model\\0name\" contains a NUL character",
    )
    .await;
    // What Prometheus posts to Alertmanager's /api/v2/alerts.
    let list = json!([{
        "labels": {"alertname": "ModelAccuracyDegraded", "model_name": "enhanced-predictor"},
        "annotations": {"summary": "accuracy dropped"},
        "startsAt": "2026-11-27T01:00:00Z",
        "generatorURL": "http://prometheus:9090/graph"
    }]);
    let r = app.post_alerts(list.to_string()).await;
    assert_eq!(r.status(), 422);
    let error = r.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    for needle in [
        "Prometheus/Alertmanager API v2 alert list",
        "Alertmanager webhook notification",
        "\"version\": \"4\"",
        "webhook_configs",
        "Wiring Alertmanager",
    ] {
        assert!(
            error.contains(needle),
            "{error:?} should mention {needle:?}"
        );
    }
    // A label name in UTF-8, as Alertmanager 0.27+ may send, is fine.
    let r = app
        .post_alerts(mutated(|v| {
            v["alerts"][0]["labels"]["modèle.nom"] = json!("x")
        }))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.notification_count().await,
        1,
        "only the valid one stored"
    );
    app.stop().await;
}

#[tokio::test]
async fn duplicate_redelivery_is_acknowledged_once_and_processed_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path())).await;
    let body = fixture("accuracy-firing-both-variants.json");
    let first: Value = app.post_alerts(body.clone()).await.json().await.unwrap();
    // An HA peer sends the same notification with the alerts in another order.
    let mut reordered = fixture_json("accuracy-firing-both-variants.json");
    reordered["alerts"].as_array_mut().unwrap().reverse();
    let second: Value = app
        .post_alerts(reordered.to_string())
        .await
        .json()
        .await
        .unwrap();
    let third: Value = app.post_alerts(body).await.json().await.unwrap();
    assert_eq!(first["duplicate"], false);
    assert_eq!(
        second,
        json!({"id": first["id"], "alerts": 2, "duplicate": true})
    );
    assert_eq!(third["duplicate"], true);

    let detail = app.wait_for(first["id"].as_i64().unwrap(), is_done).await;
    assert_eq!(detail["duplicates"], 2);
    assert_eq!(
        detail["action_runs"].as_array().unwrap().len(),
        2,
        "one run per alert, once"
    );
    assert_eq!(app.notification_count().await, 1);

    // The resolved notification of the same group is a different notification.
    let resolved: Value = app
        .post_alerts(fixture("accuracy-resolved.json"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(resolved["duplicate"], false);
    app.stop().await;
}

#[tokio::test]
async fn same_content_after_the_dedup_window_is_a_new_notification() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    // A zero window: every delivery is "after" it, like a repeat_interval reminder.
    settings.ingest.dedup_window = Duration::ZERO;
    let app = spawn_app_with(settings).await;
    let body = fixture("accuracy-firing.json");
    let a: Value = app.post_alerts(body.clone()).await.json().await.unwrap();
    let b: Value = app.post_alerts(body).await.json().await.unwrap();
    assert_eq!(b["duplicate"], false);
    assert_ne!(a["id"], b["id"]);
    app.stop().await;
}

#[tokio::test]
async fn dry_run_answers_the_plan_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path())).await;
    let r = app
        .client
        .post(format!("{}/api/v1/alerts?dry_run=true", app.address))
        .body(fixture("accuracy-firing-both-variants.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let plan: Value = r.json().await.unwrap();
    let alerts = plan["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0]["actions"], json!(["log"]));
    assert_eq!(alerts[0]["routes"], json!(["route"]));
    assert_eq!(alerts[0]["labels"]["alertname"], "ModelAccuracyDegraded");
    assert_eq!(app.notification_count().await, 0);
    app.stop().await;
}

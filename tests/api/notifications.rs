use crate::helpers::*;
use serde_json::{json, Value};

fn ids(page: &Value) -> Vec<i64> {
    page["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn list_is_newest_first_paginated_and_filterable() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path())).await;
    let a = app.post(fixture("accuracy-firing.json")).await;
    let b = app.post(fixture("server-down-firing.json")).await;
    let c = app.post(fixture("accuracy-resolved.json")).await;
    let d = app.post(fixture("latency-firing-unicode.json")).await;

    assert_eq!(
        ids(&app.get_json("/api/v1/notifications").await),
        [d, c, b, a]
    );
    let page1 = app.get_json("/api/v1/notifications?limit=2").await;
    assert_eq!(ids(&page1), [d, c]);
    assert_eq!(page1["next_before"], c);
    let page2 = app
        .get_json(&format!("/api/v1/notifications?limit=2&before={c}"))
        .await;
    assert_eq!(ids(&page2), [b, a]);
    assert_eq!(
        ids(&app.get_json("/api/v1/notifications?status=resolved").await),
        [c]
    );
    assert_eq!(
        ids(&app
            .get_json("/api/v1/notifications?alertname=ModelAccuracyDegraded")
            .await),
        [c, a]
    );
    assert_eq!(
        ids(&app
            .get_json("/api/v1/notifications?alertname=ModelServerDown&status=firing")
            .await),
        [b]
    );
    let row = &app.get_json("/api/v1/notifications?limit=1").await["notifications"][0];
    assert_eq!(row["alertnames"], json!(["HighResponseTime"]));
    assert_eq!(
        row["group_key"],
        "{}:{alertname=\"HighResponseTime\", experiment=\"financial-ab-test-experiment\"}"
    );

    for bad in ["?limit=0", "?limit=abc", "?status=burning", "?colour=blue"] {
        let r = app.get(&format!("/api/v1/notifications{bad}")).await;
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].is_string(), "{bad}");
    }
    app.stop().await;
}

#[tokio::test]
async fn detail_shows_alerts_and_every_action_run() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path())).await;
    let id = app
        .post(fixture("accuracy-firing-both-variants.json"))
        .await;
    let detail = app.wait_for(id, is_done).await;
    assert_eq!(
        detail["payload"],
        fixture_json("accuracy-firing-both-variants.json")
    );
    let runs = detail["action_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(run["action"], "log");
        assert_eq!(run["type"], "log");
        assert_eq!(run["status"], "succeeded");
        assert_eq!(run["attempts"], 1);
        assert!(run["finished_at"].is_string());
        assert!(run["duration_ms"].is_i64());
    }
    assert!(detail["processed_at"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn unknown_ids_get_a_json_404() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path())).await;
    let r = app.get("/api/v1/notifications/999").await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "no notification with id 999"})
    );
    let r = app
        .client
        .post(format!("{}/api/v1/notifications/999/replay", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(app.get("/api/v1/notifications/abc").await.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn replay_runs_the_notification_again_in_a_new_round() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path())).await;
    let id = app.post(fixture("accuracy-firing.json")).await;
    app.wait_for(id, is_done).await;

    let dry = app
        .client
        .post(format!(
            "{}/api/v1/notifications/{id}/replay?dry_run=true",
            app.address
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(dry.status(), 200);
    let plan: Value = dry.json().await.unwrap();
    assert_eq!(plan["alerts"][0]["actions"], json!(["log"]));

    let r = app
        .client
        .post(format!("{}/api/v1/notifications/{id}/replay", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"id": id, "round": 1, "state": "pending"})
    );
    let detail = app
        .wait_for(id, |d| {
            is_done(d) && d["action_runs"].as_array().unwrap().len() == 2
        })
        .await;
    let rounds: Vec<_> = detail["action_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["round"].as_i64().unwrap(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(rounds, [(0, "succeeded".into()), (1, "succeeded".into())]);
    app.stop().await;
}

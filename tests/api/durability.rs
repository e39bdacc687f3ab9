use crate::helpers::*;
use async_trait::async_trait;
use mlops_alert_router::act::{Action, ActionContext, ActionError, ActionSet};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

#[tokio::test]
async fn a_store_that_cannot_be_written_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.storage.busy_timeout = Duration::from_millis(50);
    let app = spawn_app_with(settings).await;

    // Another process holds the write lock: every write times out.
    let blocker = rusqlite::Connection::open(&app.db_path).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let r = app.post_alerts(fixture("accuracy-firing.json")).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("store unavailable"),
        "{body}"
    );
    assert_eq!(app.get("/readyz").await.status(), 503);
    blocker.execute_batch("ROLLBACK").unwrap();

    assert_eq!(
        app.notification_count().await,
        0,
        "the refused request left nothing"
    );
    // Alertmanager's retry now goes through, as a new notification.
    let r: Value = app
        .post_alerts(fixture("accuracy-firing.json"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["duplicate"], false);
    assert_eq!(app.get("/readyz").await.status(), 200);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("notifications_received_total{outcome=\"unavailable\"} 1"));
    app.stop().await;
}

#[tokio::test]
async fn a_full_inbox_answers_503_until_the_worker_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.ingest.max_inbox = 1;
    settings.worker.enabled = false;
    let app = spawn_app_with(settings).await;
    assert_eq!(
        app.post_alerts(fixture("accuracy-firing.json"))
            .await
            .status(),
        200
    );
    let r = app.post_alerts(fixture("server-down-firing.json")).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "30");
    // A redelivery of what is already stored is still acknowledged.
    let dup: Value = app
        .post_alerts(fixture("accuracy-firing.json"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(dup["duplicate"], true);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("inbox_depth 1"), "{metrics}");

    app.worker.try_execute_task().await.unwrap();
    assert_eq!(
        app.post_alerts(fixture("server-down-firing.json"))
            .await
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn acknowledged_work_is_processed_after_a_restart_on_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.worker.enabled = false;
    let app = spawn_app_with(settings.clone()).await;
    let stored: Value = app
        .post_alerts(fixture("accuracy-firing-both-variants.json"))
        .await
        .json()
        .await
        .unwrap();
    let claimed: Value = app
        .post_alerts(fixture("server-down-firing.json"))
        .await
        .json()
        .await
        .unwrap();
    // A worker claims the second one and dies before finishing it (lease of an hour).
    let now = chrono::Utc::now().timestamp_millis();
    let c = app.store.claim(now, 3_600_000).await.unwrap().unwrap();
    assert_eq!(c.id, stored["id"].as_i64().unwrap());
    let c = app.store.claim(now, 3_600_000).await.unwrap().unwrap();
    assert_eq!(c.id, claimed["id"].as_i64().unwrap());
    app.stop().await;

    settings.worker.enabled = true;
    let app = spawn_app_with(settings).await;
    for id in [&stored["id"], &claimed["id"]] {
        let detail = app.wait_for(id.as_i64().unwrap(), is_done).await;
        let runs = detail["action_runs"].as_array().unwrap();
        assert!(!runs.is_empty());
        assert!(
            runs.iter()
                .all(|r| r["status"] == "succeeded" && r["attempts"] == 1),
            "{detail:#}"
        );
    }
    app.stop().await;
}

/// An action that starts, then waits for the test to let it finish.
struct Gate {
    started: Arc<Semaphore>,
    release: Arc<Semaphore>,
}

#[async_trait]
impl Action for Gate {
    fn kind(&self) -> &'static str {
        "gate"
    }
    async fn execute(&self, _: &ActionContext<'_>) -> Result<Value, ActionError> {
        self.started.add_permits(1);
        self.release.acquire().await.unwrap().forget();
        Ok(Value::Null)
    }
}

#[tokio::test]
async fn shutdown_stops_accepting_but_finishes_the_item_in_hand() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.worker.concurrency = 1;
    settings.server.grace_period = Duration::from_secs(30);
    let started = Arc::new(Semaphore::new(0));
    let release = Arc::new(Semaphore::new(0));
    let mut actions = ActionSet::default();
    actions.insert(
        "log",
        Arc::new(Gate {
            started: started.clone(),
            release: release.clone(),
        }),
    );
    let app = spawn_app_with_actions(settings.clone(), actions).await;
    let address = app.address.clone();
    let db = app.db_path.clone();
    let id = app.post(fixture("accuracy-firing.json")).await;
    started.acquire().await.unwrap().forget();

    let stopping = tokio::spawn(app.stop());
    // New connections are refused once shutdown began.
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client
        .get(format!("{address}/healthz"))
        .send()
        .await
        .is_ok()
    {
        assert!(std::time::Instant::now() < deadline, "still accepting");
        tokio::task::yield_now().await;
    }
    assert!(!stopping.is_finished(), "must wait for the action in hand");
    release.add_permits(1);
    stopping.await.unwrap();

    let conn = rusqlite::Connection::open(db).unwrap();
    let (state, status): (String, String) = conn
        .query_row(
            "SELECT n.state, r.status FROM notifications n JOIN action_runs r ON r.notification_id = n.id WHERE n.id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((state.as_str(), status.as_str()), ("done", "succeeded"));
}

#[tokio::test]
async fn a_redelivery_after_a_restart_is_still_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(dir.path());
    let app = spawn_app_with(settings.clone()).await;
    let first: Value = app
        .post_alerts(fixture("accuracy-firing.json"))
        .await
        .json()
        .await
        .unwrap();
    app.stop().await;

    let app = spawn_app_with(settings).await;
    let again: Value = app
        .post_alerts(fixture("accuracy-firing.json"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["duplicate"], true);
    app.stop().await;
}

use crate::helpers::*;
use async_trait::async_trait;
use mlops_alert_router::act::{Action, ActionContext, ActionError, ActionSet};
use mlops_alert_router::worker::Outcome;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Fails `failures` times (retryable, or permanent), then succeeds.
struct Flaky {
    failures: u32,
    permanent: bool,
    calls: AtomicU32,
}

#[async_trait]
impl Action for Flaky {
    fn kind(&self) -> &'static str {
        "flaky"
    }
    async fn execute(&self, _: &ActionContext<'_>) -> Result<Value, ActionError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n > self.failures {
            return Ok(json!({"call": n}));
        }
        if self.permanent {
            Err(ActionError::Permanent(format!("HTTP 400 on call {n}")))
        } else {
            Err(ActionError::Retryable {
                message: format!("HTTP 503 on call {n}"),
                retry_after: None,
            })
        }
    }
}

async fn app_with(failures: u32, permanent: bool) -> (TestApp, Arc<Flaky>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.worker.enabled = false;
    settings.worker.max_attempts = 3;
    let flaky = Arc::new(Flaky {
        failures,
        permanent,
        calls: AtomicU32::new(0),
    });
    let mut actions = ActionSet::default();
    actions.insert("log", flaky.clone());
    (spawn_app_with_actions(settings, actions).await, flaky, dir)
}

async fn run_of(app: &TestApp) -> Value {
    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    let detail = app.get_json(&format!("/api/v1/notifications/{id}")).await;
    assert_eq!(detail["state"], "done", "{detail:#}");
    app.action_run(id, "log").await
}

#[tokio::test]
async fn transient_failures_are_retried_until_success() {
    let (app, flaky, _dir) = app_with(2, false).await;
    let run = run_of(&app).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["attempts"], 3);
    assert_eq!(run["last_error"], "HTTP 503 on call 2");
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("action_runs_total{action=\"log\",type=\"flaky\",outcome=\"failed\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("action_runs_total{action=\"log\",type=\"flaky\",outcome=\"succeeded\"} 1"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_run_out_of_attempts_is_dead_and_shown_as_such() {
    let (app, flaky, _dir) = app_with(10, false).await;
    let run = run_of(&app).await;
    assert_eq!(run["status"], "dead");
    assert_eq!(run["attempts"], 3);
    assert_eq!(
        run["last_error"],
        "gave up after 3 attempts: HTTP 503 on call 3"
    );
    assert_eq!(
        flaky.calls.load(Ordering::SeqCst),
        3,
        "no attempt after the limit"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("dead_letters 1"), "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn a_permanent_failure_is_dead_at_once() {
    let (app, flaky, _dir) = app_with(10, true).await;
    let run = run_of(&app).await;
    assert_eq!(run["status"], "dead");
    assert_eq!(run["attempts"], 1);
    assert_eq!(run["last_error"], "HTTP 400 on call 1");
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_failed_run_waits_for_its_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.worker.enabled = false;
    settings.worker.backoff_initial = Duration::from_secs(3600);
    settings.worker.backoff_max = Duration::from_secs(3600);
    let mut actions = ActionSet::default();
    actions.insert(
        "log",
        Arc::new(Flaky {
            failures: 1,
            permanent: false,
            calls: AtomicU32::new(0),
        }),
    );
    let app = spawn_app_with_actions(settings, actions).await;
    let id = app.post(fixture("accuracy-firing.json")).await;
    assert_eq!(
        app.worker.try_execute_task().await.unwrap(),
        Outcome::Completed
    );
    // The retry is an hour away: nothing is due now.
    assert_eq!(app.worker.try_execute_task().await.unwrap(), Outcome::Empty);
    let detail = app.get_json(&format!("/api/v1/notifications/{id}")).await;
    assert_eq!(detail["state"], "pending");
    let run = &detail["action_runs"][0];
    assert_eq!(run["status"], "pending");
    assert_eq!(run["attempts"], 1);
    assert!(run["next_attempt_at"].is_string());
    app.stop().await;
}

/// A notification-scoped action (like a chat message) that reports what it saw.
struct Digest;

#[async_trait]
impl Action for Digest {
    fn kind(&self) -> &'static str {
        "digest"
    }
    fn scope(&self) -> mlops_alert_router::act::Scope {
        mlops_alert_router::act::Scope::Notification
    }
    async fn execute(&self, ctx: &ActionContext<'_>) -> Result<Value, ActionError> {
        let seen: Vec<Value> = ctx
            .alerts
            .iter()
            .map(|a| {
                json!({
                    "model": a.alert.labels["model_name"],
                    "did": a.outcomes.iter().map(|r| format!("{}:{:?}", r.action, r.status)).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(json!({ "alerts": seen }))
    }
    async fn plan(&self, ctx: &ActionContext<'_>) -> Value {
        json!({ "would_cover": ctx.alerts.len() })
    }
}

#[tokio::test]
async fn a_notification_scoped_action_runs_once_after_the_alert_actions_and_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.worker.enabled = false;
    settings.route = serde_yaml::from_str("{actions: [log, digest]}").unwrap();
    settings.actions.insert(
        "digest".into(),
        serde_yaml::from_str("{type: log}").unwrap(),
    );
    let mut actions = ActionSet::default();
    actions.insert("digest", Arc::new(Digest));
    let app = spawn_app_with_actions(settings, actions).await;

    let plan: Value = app
        .plan(fixture("accuracy-firing-both-variants.json"))
        .await;
    assert_eq!(
        plan["notification_actions"]["digest"],
        json!({"would_cover": 2})
    );

    let id = app
        .post(fixture("accuracy-firing-both-variants.json"))
        .await;
    app.drain().await;
    let detail = app.get_json(&format!("/api/v1/notifications/{id}")).await;
    let runs = detail["action_runs"].as_array().unwrap();
    let digests: Vec<&Value> = runs.iter().filter(|r| r["action"] == "digest").collect();
    assert_eq!(
        digests.len(),
        1,
        "one run for the whole notification: {detail:#}"
    );
    assert_eq!(digests[0]["fingerprint"], "");
    let seen = &digests[0]["result"]["alerts"];
    assert_eq!(seen.as_array().unwrap().len(), 2);
    assert_eq!(seen[0]["did"], json!(["log:Succeeded"]), "{seen:#}");
    app.stop().await;
}

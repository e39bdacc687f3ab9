//! `spawn_app`: the router on a free loopback port with a temp-dir store.

use mlops_alert_router::act::ActionSet;
use mlops_alert_router::settings::Settings;
use mlops_alert_router::startup::Application;
use mlops_alert_router::store::Store;
use mlops_alert_router::worker::{Outcome, Worker};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const FIXTURES: &[&str] = &[
    "accuracy-firing-both-variants.json",
    "accuracy-firing.json",
    "accuracy-partially-resolved.json",
    "accuracy-resolved.json",
    "cpu-firing-truncated.json",
    "cpu-resolved-truncated.json",
    "latency-firing-unicode.json",
    "server-down-firing.json",
];

pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

/// Settings for a test: embedded default, port 0, store in `dir`, fast
/// polling, every alert to the `log` action only (the default's traffic
/// rollback needs a weights file; traffic tests set their own).
pub fn test_settings(dir: &Path) -> Settings {
    let mut s = Settings::load_with_env(None, Vec::new()).expect("embedded default loads");
    s.route = serde_yaml::from_str("{actions: [log]}").expect("valid route");
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    s.storage.path = dir.join("router.db");
    s.worker.poll_interval = Duration::from_millis(20);
    s.worker.backoff_initial = Duration::ZERO;
    s
}

/// Most notifications [`TestApp::drain`] processes before it gives up.
pub const MAX_DRAIN_STEPS: usize = 200;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub worker: Worker,
    pub db_path: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Spawns the app built from `settings` with the configured actions.
pub async fn spawn_app_with(settings: Settings) -> TestApp {
    spawn_app_with_actions(settings, ActionSet::default()).await
}

/// Spawns the app with the configured actions, replaced by `actions`.
pub async fn spawn_app_with_actions(settings: Settings, actions: ActionSet) -> TestApp {
    let db_path = settings.storage.path.clone();
    let app = Application::build_with_actions(settings, actions)
        .await
        .expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let store = app.store();
    let worker = app.worker();
    let (tx, rx) = oneshot::channel();
    let handle = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        store,
        worker,
        db_path,
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

impl TestApp {
    pub async fn post_alerts(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/alerts", self.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    /// `POST /api/v1/alerts?dry_run=true`: the plan, as JSON.
    pub async fn plan(&self, body: impl Into<reqwest::Body>) -> Value {
        let r = self
            .client
            .post(format!("{}/api/v1/alerts?dry_run=true", self.address))
            .body(body)
            .send()
            .await
            .expect("request sent");
        assert!(r.status().is_success(), "dry run: {}", r.status());
        r.json().await.expect("a JSON plan")
    }

    /// POSTs a notification; returns its id (panics unless it was stored).
    pub async fn post(&self, body: impl Into<reqwest::Body>) -> i64 {
        let r = self.post_alerts(body).await;
        let status = r.status();
        let answer: Value = r.json().await.expect("a JSON answer");
        answer["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("not stored ({status}): {answer}"))
    }

    /// Runs the worker until nothing is due (every retry is due at once:
    /// `backoff_initial` is zero in tests), at most [`MAX_DRAIN_STEPS`]
    /// notifications, so a run that never settles fails the test instead of
    /// hanging it.
    pub async fn drain(&self) {
        for _ in 0..MAX_DRAIN_STEPS {
            if self.worker.try_execute_task().await.expect("worker step") == Outcome::Empty {
                return;
            }
        }
        panic!("inbox never drained in {MAX_DRAIN_STEPS} steps");
    }

    /// The runs of `action` in notification `id`'s detail, in order.
    pub async fn action_runs(&self, id: i64, action: &str) -> Vec<Value> {
        let detail = self.get_json(&format!("/api/v1/notifications/{id}")).await;
        detail["action_runs"]
            .as_array()
            .unwrap_or_else(|| panic!("no action_runs: {detail:#}"))
            .iter()
            .filter(|r| r["action"] == action)
            .cloned()
            .collect()
    }

    /// The last run of `action` in notification `id` (panics when there is none).
    pub async fn action_run(&self, id: i64, action: &str) -> Value {
        let mut runs = self.action_runs(id, action).await;
        runs.pop()
            .unwrap_or_else(|| panic!("notification {id} has no run of {action:?}"))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn notification_count(&self) -> usize {
        self.get_json("/api/v1/notifications?limit=500").await["notifications"]
            .as_array()
            .unwrap()
            .len()
    }

    /// Polls the detail of `id` until `done` holds for it, or panics after 20 s.
    /// (The cheap list row is polled first: details can be large.)
    pub async fn wait_for(&self, id: i64, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let row = self
                .get_json(&format!("/api/v1/notifications?before={}&limit=1", id + 1))
                .await;
            if row["notifications"][0]["state"] != "done" {
                assert!(Instant::now() < deadline, "timed out waiting on {row:#}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            let detail = self.get_json(&format!("/api/v1/notifications/{id}")).await;
            if done(&detail) {
                return detail;
            }
            assert!(Instant::now() < deadline, "timed out waiting on {detail:#}");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the app the way a SIGTERM would, and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle
                .await
                .expect("app task")
                .expect("app stopped cleanly");
        }
    }
}

/// Points every chat and webhook action at `url`: tests talk to loopback only
/// (the example config's on-call webhook names an in-cluster service).
pub fn point_chat_actions_at(
    actions: &mut std::collections::BTreeMap<String, mlops_alert_router::act::ActionConfig>,
    url: &str,
) {
    use mlops_alert_router::act::ActionConfig;
    use mlops_alert_router::secret::Secret;
    for action in actions.values_mut() {
        let slot = match action {
            ActionConfig::Slack(c) => &mut c.url,
            ActionConfig::Msteams(c) => &mut c.url,
            ActionConfig::Mattermost(c) => &mut c.url,
            ActionConfig::Discord(c) => &mut c.url,
            ActionConfig::GoogleChat(c) => &mut c.url,
            ActionConfig::Webhook(c) => &mut c.url,
            _ => continue,
        };
        *slot = Some(Secret::new(url));
    }
}

/// A loopback endpoint that accepts every request.
pub async fn chat_sink() -> wiremock::MockServer {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

pub fn is_done(detail: &Value) -> bool {
    detail["state"] == "done"
}

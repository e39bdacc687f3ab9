//! Several router processes on one real PostgreSQL (a throwaway server, see
//! `support/pg.rs`): what a single replica guarantees holds for the group.
//!
//! - an HA Alertmanager pair posting the same notification to two replicas:
//!   stored once, acted on once, and a traffic shift happens once per episode
//!   however the notifications of that episode spread over the replicas;
//! - a replica killed with SIGKILL mid-run: its work is taken over after its
//!   lease expires, not before (a starting replica releases no lease); a
//!   live replica renews its lease, so its work is never taken over however
//!   long it takes;
//! - PostgreSQL stopped: ingest answers 503 with Retry-After, `/readyz` is not
//!   ready; started again: everything resumes without a restart.

#[path = "support/pg.rs"]
mod pg;

use axum::extract::State;
use axum::routing::post;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mlops-alert-router");
const DEADLINE: Duration = Duration::from_secs(90);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn fixture(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Polls `f` until it returns `Some`, or panics with `what` after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A webhook receiver: records each delivery (arrival time in ms, body);
/// while `hold` is set, it records the next request and answers it only
/// once `release` is notified.
#[derive(Clone, Default)]
struct Receiver {
    deliveries: Arc<Mutex<Vec<(i64, serde_json::Value)>>>,
    hold: Arc<AtomicBool>,
    /// Answers the held request.
    release: Arc<tokio::sync::Notify>,
}

async fn receive(State(r): State<Receiver>, body: String) -> &'static str {
    let body = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    r.deliveries.lock().unwrap().push((now_ms(), body));
    if r.hold.swap(false, Ordering::SeqCst) {
        r.release.notified().await;
    }
    "ok"
}

impl Receiver {
    async fn start() -> (Self, u16) {
        let r = Receiver::default();
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, port)
    }

    fn count(&self) -> usize {
        self.deliveries.lock().unwrap().len()
    }
}

/// One router process.
struct Router {
    child: tokio::process::Child,
    port: u16,
    log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Router {
    async fn start(dir: &Path, name: &str, db_url: &str, hook_port: u16) -> Self {
        let port = free_port();
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                r#"
server: {{listen: "127.0.0.1:{port}"}}
storage:
  backend: postgres
  postgres: {{url: "{db_url}", connect_timeout: 2s, statement_timeout: 5s}}
worker: {{lease: 3s, poll_interval: 100ms, backoff_initial: 200ms, backoff_max: 1s}}
traffic_targets:
  financial-ab-test-experiment: {{kind: file, file: {{path: {dir}/weights.yaml}}}}
actions:
  hook: {{type: webhook, url: "http://127.0.0.1:{hook_port}/hook", timeout: 60s}}
  rollback: {{type: traffic_shift, step: 10, cooldown: 10m, max_shifts_per_hour: 3, on_resolve: hold}}
route:
  actions: [hook]
  routes:
    - matchers: ['alertname="ModelAccuracyDegraded"']
      actions: [rollback, hook]
"#,
                dir = dir.display()
            ),
        )
        .unwrap();
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = tokio::process::Command::new(BIN)
            .args(["--config"])
            .arg(&config)
            .arg("serve")
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let router = Router { child, port, log };
        let client = reqwest::Client::new();
        eventually(&format!("{name} to be ready"), || {
            let url = router.url("/readyz");
            let client = client.clone();
            async move {
                let r = client.get(url).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        router
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn post(&self, body: &serde_json::Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url("/api/v1/alerts"))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

async fn settled(pg: &pg::PgServer, url: &str, expected: i64) {
    eventually("every notification to be done", || async {
        let out = pg.psql(
            url,
            "SELECT count(*) FILTER (WHERE state = 'done') || ' ' || count(*) FROM notifications",
        );
        (out == format!("{expected} {expected}")).then_some(())
    })
    .await;
}

fn weights_file(dir: &Path) {
    std::fs::write(
        dir.join("weights.yaml"),
        "default: baseline-predictor\ncandidates:\n  - {name: baseline-predictor, weight: 50}\n  - {name: enhanced-predictor, weight: 50}\n",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ha_pair_posting_to_two_replicas_is_stored_and_acted_on_once() {
    let pg = pg::PgServer::start();
    let db = pg.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    weights_file(dir.path());
    let (receiver, hook_port) = Receiver::start().await;
    let a = Router::start(dir.path(), "a", &db, hook_port).await;
    let b = Router::start(dir.path(), "b", &db, hook_port).await;

    // Ten notifications of one firing alert (one traffic episode), each sent
    // by both Alertmanagers of the pair, one to each replica, at once.
    const N: usize = 10;
    let base = fixture("accuracy-firing.json");
    let bodies: Vec<_> = (0..N)
        .map(|i| {
            let mut body = base.clone();
            body["groupKey"] =
                format!("{{}}:{{alertname=\"ModelAccuracyDegraded\", n=\"{i}\"}}").into();
            body
        })
        .collect();
    // All at once: the workers of both replicas decide on the same target concurrently.
    let posts = bodies.iter().flat_map(|body| [a.post(body), b.post(body)]);
    for r in futures_util::future::join_all(posts).await {
        assert_eq!(r.status(), 200, "{}\n{}", a.log(), b.log());
    }
    settled(&pg, &db, N as i64).await;
    assert_eq!(
        pg.psql(&db, "SELECT sum(duplicates) FROM notifications"),
        N.to_string(),
        "each second copy counted as a duplicate"
    );
    // Acted on once: one webhook delivery per notification.
    assert_eq!(receiver.count(), N, "one delivery per notification");
    assert_eq!(
        pg.psql(
            &db,
            "SELECT count(DISTINCT notification_id) FROM action_runs \
             WHERE action = 'hook' AND status = 'succeeded' AND attempts = 1"
        ),
        N.to_string()
    );
    // One shift for the episode, whichever replica decided.
    assert_eq!(
        pg.psql(
            &db,
            "SELECT count(*) FROM traffic_decisions WHERE decision = 'shifted'"
        ),
        "1",
        "{}",
        pg.psql(
            &db,
            "SELECT string_agg(decision || ': ' || reason, E'\\n') FROM traffic_decisions"
        )
    );
    let weights = std::fs::read_to_string(dir.path().join("weights.yaml")).unwrap();
    assert!(
        weights.contains("weight: 40") && weights.contains("weight: 60"),
        "moved by one step of 10 only:\n{weights}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_run_is_taken_over_after_its_lease_not_before() {
    let pg = pg::PgServer::start();
    let db = pg.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    weights_file(dir.path());
    let (receiver, hook_port) = Receiver::start().await;
    receiver.hold.store(true, Ordering::SeqCst);
    let mut a = Router::start(dir.path(), "a", &db, hook_port).await;
    assert_eq!(
        a.post(&fixture("server-down-firing.json")).await.status(),
        200
    );
    // A is mid-run: its webhook call is in flight, unanswered.
    eventually("A's delivery", || async {
        (receiver.count() == 1).then_some(())
    })
    .await;
    let lease_until: i64 = pg
        .psql(&db, "SELECT lease_until FROM notifications")
        .parse()
        .expect("leased");
    a.child.start_kill().unwrap(); // SIGKILL
    a.child.wait().await.unwrap();
    // A replica starting now releases nothing: it waits for the lease.
    let b = Router::start(dir.path(), "b", &db, hook_port).await;
    settled(&pg, &db, 1).await;
    let deliveries = receiver.deliveries.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 2, "{}", b.log());
    assert!(
        deliveries[1].0 >= lease_until,
        "taken over at {} before the lease ran out at {lease_until}",
        deliveries[1].0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_replica_keeps_its_work_past_the_lease_however_long_it_takes() {
    let pg = pg::PgServer::start();
    let db = pg.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    weights_file(dir.path());
    let (receiver, hook_port) = Receiver::start().await;
    receiver.hold.store(true, Ordering::SeqCst);
    let a = Router::start(dir.path(), "a", &db, hook_port).await;
    let b = Router::start(dir.path(), "b", &db, hook_port).await;
    assert_eq!(
        a.post(&fixture("server-down-firing.json")).await.status(),
        200
    );
    eventually("the first delivery", || async {
        (receiver.count() == 1).then_some(())
    })
    .await;
    let first_lease: i64 = pg
        .psql(&db, "SELECT lease_until FROM notifications")
        .parse()
        .expect("leased");
    // Well past the lease it was claimed with, the replica still at work has
    // renewed it, and the other one (polling every 100 ms) has not taken over.
    eventually("the first lease to be long over", || async {
        (now_ms() > first_lease + 1_500).then_some(())
    })
    .await;
    let lease: i64 = pg
        .psql(&db, "SELECT lease_until FROM notifications")
        .parse()
        .unwrap_or_else(|_| panic!("not leased any more:\n{}\n{}", a.log(), b.log()));
    assert!(lease > first_lease, "the lease was renewed");
    assert_eq!(
        receiver.count(),
        1,
        "taken over while alive:\n{}\n{}",
        a.log(),
        b.log()
    );
    receiver.release.notify_one();
    settled(&pg, &db, 1).await;
    assert_eq!(receiver.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgresql_down_means_503_and_not_ready_then_everything_resumes() {
    let pg = pg::PgServer::start();
    let db = pg.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    weights_file(dir.path());
    let (receiver, hook_port) = Receiver::start().await;
    // trust authentication ignores the password: it is only there to be
    // looked for in the logs.
    let with_password = db.replace("postgres@", "postgres:hunter2-never-printed@");
    let a = Router::start(dir.path(), "a", &with_password, hook_port).await;
    let mut body = fixture("server-down-firing.json");
    assert_eq!(a.post(&body).await.status(), 200);
    // Processed before the outage (a webhook sent and then not recorded
    // because the database went away is sent again: at-least-once).
    settled(&pg, &db, 1).await;

    pg.stop();
    body["groupKey"] = "{}:{alertname=\"ModelServerDown\", n=\"2\"}".into();
    let refused = a.post(&body).await;
    assert_eq!(refused.status(), 503, "never 200 without the database");
    assert!(refused.headers().contains_key("retry-after"));
    let ready = reqwest::get(a.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);

    pg.restart();
    // The same router, not restarted: accepts again once the database is back.
    eventually("ingest to accept again", || async {
        (a.post(&body).await.status() == 200).then_some(())
    })
    .await;
    eventually("/readyz to be ready again", || async {
        let r = reqwest::get(a.url("/readyz")).await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    settled(&pg, &db, 2).await;
    assert_eq!(receiver.count(), 2, "{}", a.log());
    let log = a.log();
    assert!(
        !log.contains("hunter2"),
        "the URL's password was logged:\n{log}"
    );
    // The outage is logged once when it starts and once when it ends, not per
    // request or worker poll.
    assert_eq!(log.matches("Storage fault:").count(), 1, "{log}");
    assert_eq!(log.matches("Storage fault cleared").count(), 1, "{log}");
    assert!(!log.contains("Worker step failed"), "{log}");
}

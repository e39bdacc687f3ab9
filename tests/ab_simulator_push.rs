//! ab-simulator's `--push-gateway` mode against a loopback stand-in of the
//! Pushgateway (it records every request): the seed's job name, PUT (the
//! group is replaced), the Prometheus text format, and a variant taken to 0%
//! disappears from the pushed accuracy series instead of staying stale.
//! Every wait polls with a deadline; the simulator is killed at the end.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use std::fs;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SIMULATOR: &str = env!("CARGO_BIN_EXE_ab-simulator");

#[derive(Clone, Debug)]
struct Push {
    method: Method,
    path: String,
    content_type: String,
    body: String,
}

type Log = Arc<Mutex<Vec<Push>>>;

async fn record(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    log.lock().unwrap().push(Push {
        method,
        path: uri.path().to_owned(),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    ""
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first recorded push (from now on) for which `pred` holds.
async fn wait_for(log: &Log, from: usize, what: &str, pred: impl Fn(&Push) -> bool) -> Push {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(p) = log.lock().unwrap()[from..].iter().find(|p| pred(p)) {
            return p.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no push with {what} within 30s: {:#?}",
            log.lock().unwrap().last()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn accuracy_of(body: &str, variant: &str) -> bool {
    body.lines().any(|l| {
        l.starts_with("ab_test_model_accuracy{") && l.contains(&format!("model_name=\"{variant}\""))
    })
}

#[tokio::test]
async fn pushes_replace_the_financial_ab_test_group_and_drop_a_variant_at_zero() {
    let log: Log = Arc::default();
    let app = axum::Router::new().fallback(record).with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.yaml");
    let write_weights = |b: u32, e: u32| {
        let tmp = dir.path().join("weights.tmp");
        fs::write(&tmp, format!("default: baseline-predictor\ncandidates:\n  - {{name: baseline-predictor, weight: {b}}}\n  - {{name: enhanced-predictor, weight: {e}}}\n")).unwrap();
        fs::rename(&tmp, &weights).unwrap();
    };
    write_weights(70, 30);
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/simulator/scenario-accuracy-drop.yaml"
    );
    let _sim = Killed(
        Command::new(SIMULATOR)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--tick",
                "20ms",
                "--push-interval",
                "50ms",
            ])
            .arg("--weights")
            .arg(&weights)
            .args(["--scenario", scenario, "--push-gateway", &gateway])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let first = wait_for(&log, 0, "both variants' accuracy", |p| {
        accuracy_of(&p.body, "enhanced-predictor") && accuracy_of(&p.body, "baseline-predictor")
    })
    .await;
    assert_eq!(first.method, Method::PUT, "PUT replaces the group");
    assert_eq!(first.path, "/metrics/job/financial_ab_test");
    assert!(
        first.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        first.content_type
    );
    assert!(!first.body.contains("# EOF"), "{}", first.body);
    assert!(
        first.body.contains("# TYPE ab_test_requests_total counter"),
        "{}",
        first.body
    );
    assert!(!first.body.contains("_created"), "{}", first.body);

    // The router takes the candidate to 0%: its accuracy must leave the group.
    let seen = log.lock().unwrap().len();
    write_weights(100, 0);
    let after = wait_for(&log, seen, "no enhanced-predictor accuracy", |p| {
        !accuracy_of(&p.body, "enhanced-predictor") && accuracy_of(&p.body, "baseline-predictor")
    })
    .await;
    assert_eq!(after.method, Method::PUT);
}

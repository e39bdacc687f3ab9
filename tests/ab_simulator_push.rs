//! ab-simulator's `--push-gateway` mode, twice:
//!
//! - against a loopback stand-in of the Pushgateway that records every
//!   request: the job name `financial_ab_test`, PUT (the group is replaced),
//!   the Prometheus text format, and a variant taken to 0% disappears from the
//!   pushed accuracy series instead of staying stale;
//! - against the real Pushgateway (`PUSHGATEWAY`, default
//!   `/usr/bin/prometheus-pushgateway`, Debian's `prometheus-pushgateway`
//!   package, which `scripts/setup.sh` installs), on a free loopback port
//!   without a persistence file: the simulator's push removes a series an
//!   earlier push left in the group (PUT semantics; a POST would keep it), the
//!   gateway exposes the `ab_test_*` series under `job="financial_ab_test"`,
//!   and drops a variant's accuracy once the weights take it to 0%. A missing
//!   binary fails the test rather than skipping it.
//!
//! Every wait polls with a deadline; every process is killed at the end, also
//! when the test fails.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
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

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// GET over HTTP/1.0 (no chunked encoding, the server closes): (status, body).
fn http_get(port: u16, target: &str) -> Result<(u16, String), String> {
    http(port, "GET", target, "")
}

/// One HTTP/1.0 request with `body` (sent as the text format): (status, body).
fn http(port: u16, method: &str, target: &str, body: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "{method} {target} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {raw:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// Polls `f` every 100 ms until it yields a value or `within` has passed.
fn poll<T>(what: &str, within: Duration, mut f: impl FnMut() -> Result<Option<T>, String>) -> T {
    let deadline = Instant::now() + within;
    let mut last = String::from("never polled");
    loop {
        match f() {
            Ok(Some(v)) => return v,
            Ok(None) => {}
            Err(e) => last = e,
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The gateway's exposition lines of `metric` pushed under the simulator's job.
fn pushed<'a>(exposition: &'a str, metric: &str) -> Vec<&'a str> {
    let prefix = format!("{metric}{{");
    exposition
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.contains("job=\"financial_ab_test\""))
        .collect()
}

fn has_accuracy(exposition: &str, variant: &str) -> bool {
    pushed(exposition, "ab_test_model_accuracy")
        .iter()
        .any(|l| l.contains(&format!("model_name=\"{variant}\"")))
}

#[test]
fn the_real_pushgateway_exposes_the_group_and_forgets_a_variant_at_zero() {
    let pushgateway = PathBuf::from(
        std::env::var("PUSHGATEWAY").unwrap_or_else(|_| "/usr/bin/prometheus-pushgateway".into()),
    );
    assert!(
        pushgateway.exists(),
        "{} not found: run scripts/setup.sh (it installs Debian's `prometheus-pushgateway` package) or set PUSHGATEWAY",
        pushgateway.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");

    // The real Pushgateway on a free loopback port, no persistence file.
    let port = free_port();
    let gateway_log = dir.path().join("pushgateway.log");
    let _gateway = Killed(
        Command::new(&pushgateway)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&gateway_log).expect("pushgateway log"))
            .spawn()
            .expect("start the pushgateway"),
    );
    let log_tail = || fs::read_to_string(&gateway_log).unwrap_or_default();
    poll("the pushgateway ready", Duration::from_secs(30), || {
        Ok(http_get(port, "/-/ready")?.0.eq(&200).then_some(()))
    });

    // A series of an earlier client in the same group, under a name the
    // simulator never pushes: a PUT replaces the whole group and removes it,
    // a POST (which replaces only the pushed names) would keep it.
    let (status, body) = http(
        port,
        "PUT",
        "/metrics/job/financial_ab_test",
        "# TYPE ab_test_leftover_from_an_earlier_push gauge\nab_test_leftover_from_an_earlier_push 1\n",
    )
    .expect("seed push");
    assert!((200..300).contains(&status), "seed push: {status} {body}");
    let leftover = "ab_test_leftover_from_an_earlier_push";
    assert_eq!(
        pushed(&http_get(port, "/metrics").expect("metrics").1, leftover).len(),
        1,
        "the seed push is on the gateway"
    );

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
                "100ms",
            ])
            .arg("--weights")
            .arg(&weights)
            .args(["--scenario", scenario, "--push-gateway"])
            .arg(format!("http://127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ab-simulator"),
    );

    let metrics = || -> Result<String, String> {
        match http_get(port, "/metrics")? {
            (200, body) => Ok(body),
            (status, body) => Err(format!("GET /metrics: {status} {body}")),
        }
    };
    let first = poll(
        "both variants' accuracy on the gateway",
        Duration::from_secs(30),
        || {
            let m = metrics()?;
            Ok(
                (has_accuracy(&m, "baseline-predictor") && has_accuracy(&m, "enhanced-predictor"))
                    .then_some(m),
            )
        },
    );
    assert!(
        pushed(&first, leftover).is_empty(),
        "the simulator's push left the earlier series in the group (not a PUT?):\n{first}"
    );
    let requests = pushed(&first, "ab_test_requests_total");
    assert!(
        requests
            .iter()
            .any(|l| l.contains("model_name=\"baseline-predictor\"")),
        "no ab_test_requests_total of the baseline under job=\"financial_ab_test\":\n{first}\n{}",
        log_tail()
    );
    assert!(
        first.contains("# TYPE ab_test_requests_total counter"),
        "{first}"
    );
    // The gateway records a successful push (and no failed one) for the group.
    assert!(
        !pushed(&first, "push_time_seconds").is_empty(),
        "no push_time_seconds for the group:\n{first}"
    );
    let failures = pushed(&first, "push_failure_time_seconds");
    assert!(
        failures.iter().all(|l| l.ends_with(" 0")),
        "the gateway rejected a push: {failures:?}\n{}",
        log_tail()
    );

    // The router takes the candidate to 0%: its accuracy series must
    // disappear from the gateway with the next push, not stay stale.
    write_weights(100, 0);
    poll(
        "enhanced-predictor's accuracy gone from the gateway",
        Duration::from_secs(30),
        || {
            let m = metrics()?;
            Ok(
                (!has_accuracy(&m, "enhanced-predictor") && has_accuracy(&m, "baseline-predictor"))
                    .then_some(()),
            )
        },
    );
}

//! The outbound transport against hostile servers on real loopback sockets:
//! endless and huge bodies, silence, slow headers, an absurd `Retry-After`,
//! redirects and secrets echoed in every encoding — for a webhook action and
//! for Prometheus enrichment. Every run ends (retry, then dead letter) with a
//! bounded error naming the destination and the cause, no secret in any form
//! reaches `last_error`, the API or the log, and no more than the cap is read.

use crate::helpers::*;
use mlops_alert_router::settings::Settings;
use mlops_alert_router::worker::Outcome;
use serde_json::Value;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ------------------------------------------------------------ hostile server

/// How the hostile server answers every request.
#[derive(Clone)]
enum Mode {
    /// `status` with a chunked body that never ends.
    Endless(u16),
    /// 200 declaring a 200 MB body, then streaming it.
    Huge,
    /// Reads the request, never answers.
    Silent,
    /// A status line, then one header line every 100 ms, forever.
    SlowHeaders,
    /// 200 with its headers, then one body byte every 100 ms.
    SlowBody,
    /// This whole response, then close.
    Raw(String),
}

struct Hostile {
    base: String,
    /// Body bytes written on each finished connection (socket buffers included).
    written: Arc<Mutex<Vec<u64>>>,
    requests: Arc<AtomicU64>,
}

impl Hostile {
    async fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let written = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(AtomicU64::new(0));
        let (w, r) = (written.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (mode, w, r) = (mode.clone(), w.clone(), r.clone());
                tokio::spawn(async move {
                    let mine = AtomicU64::new(0);
                    serve(stream, mode, &mine, &r).await;
                    w.lock().unwrap().push(mine.load(Ordering::SeqCst));
                });
            }
        });
        Self {
            base,
            written,
            requests,
        }
    }

    /// Once every connection that got a request is over: the most body bytes
    /// one of them managed to write.
    async fn most_written_per_connection(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let done = self.written.lock().unwrap().clone();
            if done.len() as u64 >= self.requests.load(Ordering::SeqCst) && !done.is_empty() {
                return done.into_iter().max().unwrap_or(0);
            }
            assert!(
                Instant::now() < deadline,
                "the server never saw the client go"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Reads one request (headers and a Content-Length body).
async fn read_request(stream: &mut TcpStream) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = buf.len() - header_end;
    while have < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        have += n;
    }
    Some(())
}

async fn serve(mut stream: TcpStream, mode: Mode, written: &AtomicU64, requests: &AtomicU64) {
    if read_request(&mut stream).await.is_none() {
        return;
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let block = vec![b'x'; 64 * 1024];
    match mode {
        Mode::Endless(status) => {
            let head = format!("HTTP/1.1 {status} Whatever\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n");
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let mut chunk = format!("{:x}\r\n", block.len()).into_bytes();
            chunk.extend_from_slice(&block);
            chunk.extend_from_slice(b"\r\n");
            while stream.write_all(&chunk).await.is_ok() {
                written.fetch_add(block.len() as u64, Ordering::SeqCst);
            }
        }
        Mode::Huge => {
            let total: u64 = 200 * 1000 * 1000;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {total}\r\n\r\n"
            );
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            while written.load(Ordering::SeqCst) < total && stream.write_all(&block).await.is_ok() {
                written.fetch_add(block.len() as u64, Ordering::SeqCst);
            }
        }
        Mode::Silent => {
            // Hold the connection open until the client gives up.
            let mut sink = [0u8; 64];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        Mode::SlowHeaders => {
            if stream.write_all(b"HTTP/1.1 200 OK\r\n").await.is_err() {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if stream.write_all(b"x-slow: a\r\n").await.is_err() {
                    return;
                }
            }
        }
        Mode::SlowBody => {
            if stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if stream.write_all(b"x").await.is_err() {
                    return;
                }
            }
        }
        Mode::Raw(response) => {
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    }
}

fn raw(status: &str, headers: &[(&str, &str)], body: &str) -> Mode {
    let mut r = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("connection: close\r\n\r\n");
    r.push_str(body);
    Mode::Raw(r)
}

// ------------------------------------------------------------ secrets

const TOKEN: &str = "Zq8vR2sPq1LmN4tUvW6xYz0A";
const QUERY_TOKEN: &str = "qT0k3nAbc123def456";
const BEARER: &str = "bearer-Zz9yX8wV7uT6";
const PROM_PASSWORD: &str = "pr0m-s3cret-Pa55word";

/// Pieces no output may contain (a secret's start included: no partial token).
fn forbidden() -> Vec<String> {
    let mut out = vec![
        TOKEN.to_owned(),
        TOKEN[..6].to_owned(),
        QUERY_TOKEN.to_owned(),
        QUERY_TOKEN[..10].to_owned(),
        BEARER.to_owned(),
        PROM_PASSWORD.to_owned(),
        "pr0m-s3cret".to_owned(),
        b64(&format!("prom:{PROM_PASSWORD}")),
    ];
    out.push(b64(&format!("prom:{PROM_PASSWORD}"))[..12].to_owned());
    out
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn assert_clean(what: &str, text: &str) {
    for s in forbidden() {
        assert!(!text.contains(&s), "{what} leaks {s:?}:\n{text}");
    }
}

/// Percent escapes with lowercase hex digits.
fn lower_hex(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let end = (i + 3).min(rest.len());
        out.push_str(&rest[i..end].to_lowercase());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The secret `url` in every form a platform may echo it.
fn echoes(url: &str) -> String {
    let percent: String = url::form_urlencoded::byte_serialize(url.as_bytes()).collect();
    let component = percent.replace('+', "%20");
    let json = serde_json::to_string(url).unwrap();
    let json_slashes = json.replace('/', "\\/");
    format!(
        "raw {url}\npercent {percent}\ncomponent {component}\nlower {}\njson {json}\njson-slashes {json_slashes}\n\
         bare {TOKEN} and {QUERY_TOKEN}\nauth Bearer {BEARER}\nhtml {}\n",
        lower_hex(&component),
        url.replace('&', "&amp;"),
    )
}

/// Log lines, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    // #[tokio::test] runs everything on this thread, so the scoped subscriber sees the app.
    (logs, tracing::subscriber::set_default(subscriber))
}

// ------------------------------------------------------------ webhook action

fn hook_url(base: &str) -> String {
    format!("{base}/hooks/T0AB12CD3/{TOKEN}?token={QUERY_TOKEN}&v=1")
}

fn webhook_settings(dir: &std::path::Path, base: &str, extra: &str) -> Settings {
    let mut s = test_settings(dir);
    s.worker.enabled = false;
    let yaml = format!(
        "{{type: webhook, url: '{}', bearer_token: '{BEARER}', timeout: 1s, max_attempts: 2{extra}}}",
        hook_url(base)
    );
    s.actions
        .insert("hook".into(), serde_yaml::from_str(&yaml).unwrap());
    s.route = serde_yaml::from_str("{actions: [hook]}").unwrap();
    s
}

/// Runs the worker until the notification is done, making retries due.
async fn run_to_the_end(app: &TestApp, id: i64) -> Value {
    for _ in 0..10 {
        while app.worker.try_execute_task().await.unwrap() == Outcome::Completed {}
        let detail = app.get_json(&format!("/api/v1/notifications/{id}")).await;
        if detail["state"] == "done" {
            return detail;
        }
        let conn = rusqlite::Connection::open(&app.db_path).unwrap();
        conn.execute_batch(
            "UPDATE action_runs SET next_attempt_at = 0 WHERE status = 'pending';
             UPDATE notifications SET next_attempt_at = 0 WHERE state = 'pending';",
        )
        .unwrap();
    }
    panic!("the run never ended");
}

struct Case {
    name: &'static str,
    mode: Mode,
    /// Attempts made before the run is dead.
    attempts: u64,
    /// In `last_error`.
    needles: Vec<&'static str>,
}

fn webhook_cases(base_for_echo: &str) -> Vec<Case> {
    let echoed = echoes(&hook_url(base_for_echo));
    // A secret straddling the 8 KiB read limit of an error body.
    let mut at_cut = "e".repeat(8 * 1024 - 10);
    at_cut.push_str(TOKEN);
    at_cut.push_str(" and more");
    vec![
        Case {
            name: "endless 200",
            mode: Mode::Endless(200),
            attempts: 1,
            needles: vec![
                "HTTP 200 OK with an answer over the 256 KiB limit",
                "the message was delivered",
            ],
        },
        Case {
            name: "endless 500",
            mode: Mode::Endless(500),
            attempts: 2,
            needles: vec!["gave up after 2 attempts: HTTP 500", "xxxx…"],
        },
        Case {
            name: "huge declared",
            mode: Mode::Huge,
            attempts: 1,
            needles: vec!["with a 200000000 byte answer, over the 256 KiB limit; not read"],
        },
        Case {
            name: "silent",
            mode: Mode::Silent,
            attempts: 2,
            needles: vec!["gave up after 2 attempts: no answer within 1s (POST http://127.0.0.1:"],
        },
        Case {
            name: "slow headers",
            mode: Mode::SlowHeaders,
            attempts: 2,
            needles: vec!["no answer within 1s"],
        },
        Case {
            name: "slow body after a 200",
            mode: Mode::SlowBody,
            attempts: 1,
            needles: vec![
                "HTTP 200 OK, then reading the answer: no answer within 1s (POST http://127.0.0.1:",
                "the message was delivered, so it is not sent again",
            ],
        },
        Case {
            name: "redirect",
            mode: raw(
                "302 Found",
                &[("location", &hook_url("http://evil.example"))],
                "",
            ),
            attempts: 1,
            needles: vec![
                "HTTP 302 Found: a redirect to http://evil.example<redacted>",
                "not followed",
            ],
        },
        Case {
            name: "echo",
            mode: raw("400 Bad Request", &[], &echoed),
            attempts: 1,
            needles: vec![
                "HTTP 400 Bad Request (POST http://127.0.0.1:",
                "raw <redacted>",
                "json-slashes \"<redacted>\"",
            ],
        },
        Case {
            name: "echo at the clip edge",
            mode: raw(
                "503 Service Unavailable",
                &[],
                &format!("{}{TOKEN} tail", "e".repeat(2040)),
            ),
            attempts: 2,
            needles: vec!["HTTP 503 Service Unavailable", "eeee<reda"],
        },
        Case {
            name: "echo at the read limit",
            mode: raw("503 Service Unavailable", &[], &at_cut),
            attempts: 2,
            needles: vec!["HTTP 503 Service Unavailable", "eeee…"],
        },
    ]
}

#[tokio::test]
async fn hostile_webhook_endpoints_end_every_run_with_a_bounded_clean_error() {
    let (logs, _guard) = capture_logs();
    // The echo case's body is built by its server, from its own address.
    for template in webhook_cases("http://unused") {
        let server = if template.name == "echo" {
            // The echoed URL must be the configured one (same host and port).
            EchoServer::start().await
        } else {
            EchoServer::plain(Hostile::start(template.mode.clone()).await)
        };
        let dir = tempfile::tempdir().unwrap();
        let app = spawn_app_with(webhook_settings(dir.path(), &server.base(), "")).await;
        let r: Value = app
            .post_alerts(fixture("accuracy-firing.json"))
            .await
            .json()
            .await
            .unwrap();
        let id = r["id"].as_i64().unwrap();
        let detail = run_to_the_end(&app, id).await;
        let run = &detail["action_runs"][0];
        let name = template.name;
        assert_eq!(run["status"], "dead", "{name}: {run:#}");
        assert_eq!(run["attempts"], template.attempts, "{name}: {run:#}");
        let error = run["last_error"].as_str().unwrap();
        for needle in &template.needles {
            assert!(
                error.contains(needle),
                "{name}: {needle:?} not in {error:?}"
            );
        }
        // Bounded: a few KiB of an error body at most, whatever was sent.
        assert!(error.len() < 3 * 1024, "{name}: {} bytes", error.len());
        assert_eq!(server.requests(), template.attempts, "{name}");
        assert_clean(name, &detail.to_string());
        assert_clean(
            name,
            &app.get("/api/v1/dead-letters").await.text().await.unwrap(),
        );
        if let Some(hostile) = &server.hostile {
            if matches!(template.mode, Mode::Endless(_) | Mode::Huge) {
                // The client stopped reading at the cap: the server could
                // write no more than that plus the sockets' buffers.
                let written = hostile.most_written_per_connection().await;
                eprintln!("webhook {name}: the server wrote at most {written} body bytes on one connection");
                assert!(
                    written < 32 * 1024 * 1024,
                    "{name}: {written} bytes written"
                );
            }
        }
        app.stop().await;
    }
    assert_clean("the log", &logs.text());
    assert!(
        logs.text().contains("Action dead-lettered"),
        "the capture works"
    );
}

/// A hostile server, or one that echoes its own configured URL.
struct EchoServer {
    hostile: Option<Hostile>,
    base: String,
    requests: Arc<AtomicU64>,
}

impl EchoServer {
    fn plain(h: Hostile) -> Self {
        Self {
            base: h.base.clone(),
            requests: h.requests.clone(),
            hostile: Some(h),
        }
    }

    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let Mode::Raw(response) = raw("400 Bad Request", &[], &echoes(&hook_url(&base))) else {
            unreachable!()
        };
        let requests = Arc::new(AtomicU64::new(0));
        let r = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (response, r) = (response.clone(), r.clone());
                tokio::spawn(async move {
                    serve(stream, Mode::Raw(response), &AtomicU64::new(0), &r).await;
                });
            }
        });
        Self {
            hostile: None,
            base,
            requests,
        }
    }

    fn base(&self) -> String {
        self.base.clone()
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

// ------------------------------------------------------------ Prometheus

/// The example config with Prometheus at `base` (basic auth with a secret
/// password), chat at `sink`, no cluster.
fn prometheus_settings(dir: &std::path::Path, base: &str, sink: &str) -> Settings {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/mlops.yaml");
    let example = Settings::load_with_env(Some(&path), Vec::new()).unwrap();
    let mut s = test_settings(dir);
    let mut prometheus = example.prometheus.unwrap();
    prometheus.url = base.to_owned();
    prometheus.timeout = Duration::from_secs(1);
    prometheus.basic_auth = Some(
        serde_yaml::from_str(&format!("{{username: prom, password: '{PROM_PASSWORD}'}}")).unwrap(),
    );
    s.prometheus = Some(prometheus);
    s.enrichments = example.enrichments;
    s.actions = example.actions;
    s.actions.insert(
        "rollback".into(),
        serde_yaml::from_str("{type: log}").unwrap(),
    );
    point_chat_actions_at(&mut s.actions, sink);
    s.route = example.route;
    s
}

/// Prometheus' JSON for a vector of `n` series.
fn vector(n: usize) -> String {
    let series: Vec<Value> = (0..n)
        .map(|i| serde_json::json!({"metric": {"model_name": format!("m{i}")}, "value": [1, "1"]}))
        .collect();
    serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": series}})
        .to_string()
}

/// The password in every form a proxy may echo it.
fn password_echoes() -> String {
    let percent: String = url::form_urlencoded::byte_serialize(PROM_PASSWORD.as_bytes()).collect();
    format!(
        "raw {PROM_PASSWORD} percent {percent} json {} basic Basic {} user-pass prom:{PROM_PASSWORD}",
        serde_json::to_string(PROM_PASSWORD).unwrap(),
        b64(&format!("prom:{PROM_PASSWORD}")),
    )
}

#[tokio::test]
async fn a_hostile_prometheus_fails_the_enrichment_clearly_and_the_actions_still_run() {
    let (logs, _guard) = capture_logs();
    let closed = format!("http://127.0.0.1:{}", crate::components::free_port());
    let cases: Vec<(&str, Option<Mode>, &str)> = vec![
        (
            "connection refused",
            None,
            "prometheus unreachable: connection refused (GET http://127.0.0.1:",
        ),
        (
            "endless",
            Some(Mode::Endless(200)),
            "over the 4 MiB limit (prometheus.max_response_bytes); stopped reading",
        ),
        (
            "huge declared",
            Some(Mode::Huge),
            "with a 200000000 byte answer, over the 4 MiB limit (prometheus.max_response_bytes); not read",
        ),
        (
            "endless error",
            Some(Mode::Endless(500)),
            "prometheus answered HTTP 500",
        ),
        (
            "silent",
            Some(Mode::Silent),
            "prometheus did not answer: no answer within 1s (GET http://127.0.0.1:",
        ),
        ("slow headers", Some(Mode::SlowHeaders), "no answer within 1s"),
        (
            "absurd retry-after",
            Some(raw("429 Too Many Requests", &[("retry-after", "999999999")], "slow down")),
            "HTTP 429 Too Many Requests with Retry-After 999999999",
        ),
        (
            "redirect",
            Some(raw("302 Found", &[("location", "http://elsewhere.example/api/v1/query")], "")),
            "HTTP 302 Found: a redirect to http://elsewhere.example/api/v1/query, not followed",
        ),
        (
            "echo",
            Some(raw("500 Internal Server Error", &[], &password_echoes())),
            "raw <redacted> percent <redacted> json \"<redacted>\" basic Basic <redacted>",
        ),
        (
            "too many series",
            Some(raw("200 OK", &[("content-type", "application/json")], &vector(1001))),
            "the query returned 1001 series, over the limit of 1000 (prometheus.max_series)",
        ),
    ];
    for (name, mode, needle) in cases {
        let hostile = match mode {
            Some(mode) => Some(Hostile::start(mode).await),
            None => None,
        };
        let base = hostile.as_ref().map_or(closed.clone(), |h| h.base.clone());
        let sink = chat_sink().await;
        let dir = tempfile::tempdir().unwrap();
        let app = spawn_app_with(prometheus_settings(dir.path(), &base, &sink.uri())).await;

        let plan = app.plan(fixture("accuracy-firing.json")).await;
        let error = plan["alerts"][0]["context"]["accuracy"]["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            error.contains(needle),
            "{name}: {needle:?} not in {error:?}"
        );
        assert!(error.len() < 3 * 1024, "{name}: {} bytes", error.len());
        assert_clean(name, &plan.to_string());

        // The alert still flows: every action runs, the context records the error.
        let r: Value = app
            .post_alerts(fixture("accuracy-firing.json"))
            .await
            .json()
            .await
            .unwrap();
        let detail = app.wait_for(r["id"].as_i64().unwrap(), is_done).await;
        let runs = detail["action_runs"].as_array().unwrap();
        assert!(!runs.is_empty(), "{name}");
        for run in runs {
            assert_eq!(run["status"], "succeeded", "{name}: {run:#}");
            if run["fingerprint"] != "" {
                let e = run["context"]["accuracy"]["error"].as_str().unwrap();
                assert!(e.contains(needle), "{name}: {run:#}");
            }
        }
        assert_clean(name, &detail.to_string());
        if let Some(h) = &hostile {
            if matches!(name, "endless" | "huge declared" | "endless error") {
                let written = h.most_written_per_connection().await;
                eprintln!("prometheus {name}: the server wrote at most {written} body bytes on one connection");
                assert!(
                    written < 32 * 1024 * 1024,
                    "{name}: {written} bytes written on one connection"
                );
            }
        }
        app.stop().await;
    }
    assert_clean("the log", &logs.text());
}

#[tokio::test]
async fn an_absurd_retry_after_is_capped_by_backoff_max_and_dead_letters_past_max_age() {
    let server = Hostile::start(raw(
        "429 Too Many Requests",
        &[("retry-after", "999999999")],
        "",
    ))
    .await;
    // Without max_age: the wait is worker.backoff_max, not 31 years.
    let dir = tempfile::tempdir().unwrap();
    let mut settings = webhook_settings(dir.path(), &server.base, "");
    settings.worker.backoff_max = Duration::from_secs(60);
    let app = spawn_app_with(settings).await;
    let r: Value = app
        .post_alerts(fixture("accuracy-firing.json"))
        .await
        .json()
        .await
        .unwrap();
    let id = r["id"].as_i64().unwrap();
    assert_eq!(
        app.worker.try_execute_task().await.unwrap(),
        Outcome::Completed
    );
    let detail = app.get_json(&format!("/api/v1/notifications/{id}")).await;
    let run = &detail["action_runs"][0];
    assert_eq!(run["status"], "pending", "{run:#}");
    let at = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(run[k].as_str().unwrap())
            .unwrap()
            .timestamp_millis()
    };
    let waited = at("next_attempt_at") - at("last_attempt_at");
    assert!(
        // next_attempt_at counts from the end of the attempt, last_attempt_at from its start.
        (0..=61_000).contains(&waited),
        "waited {waited} ms: {run:#}"
    );
    assert!(
        run["last_error"].as_str().unwrap().starts_with(
            "HTTP 429 Too Many Requests with Retry-After 999999999 (POST http://127.0.0.1:"
        ),
        "{run:#}"
    );
    // The next attempt meets the same answer: max_attempts (2) ends the run.
    let detail = run_to_the_end(&app, id).await;
    assert_eq!(detail["action_runs"][0]["status"], "dead");
    assert_eq!(detail["action_runs"][0]["attempts"], 2);
    app.stop().await;

    // With max_age: dead at once, saying why.
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(webhook_settings(dir.path(), &server.base, ", max_age: 1h")).await;
    let r: Value = app
        .post_alerts(fixture("accuracy-firing.json"))
        .await
        .json()
        .await
        .unwrap();
    let detail = run_to_the_end(&app, r["id"].as_i64().unwrap()).await;
    let run = &detail["action_runs"][0];
    assert_eq!(run["status"], "dead", "{run:#}");
    assert_eq!(run["attempts"], 1);
    assert!(
        run["last_error"].as_str().unwrap().starts_with(
            "gave up after 1 attempts: the destination asked to wait 1day (Retry-After), over max_age 1h: HTTP 429"
        ),
        "{run:#}"
    );
    app.stop().await;
}

// ------------------------------------------------------------ Alertmanager, Kubernetes

#[tokio::test]
async fn an_endless_alertmanager_answer_fails_the_completion_at_its_cap() {
    let server = Hostile::start(Mode::Endless(200)).await;
    let settings: mlops_alert_router::ingest::alertmanager::AlertmanagerSettings =
        serde_yaml::from_str(&format!("{{url: '{}', timeout: 20s}}", server.base)).unwrap();
    let client = mlops_alert_router::ingest::alertmanager::AlertmanagerClient::new(
        &settings,
        &mlops_alert_router::outbound::CaPolicy::default(),
    )
    .unwrap();
    let n =
        mlops_alert_router::ingest::parse(fixture("cpu-firing-truncated.json").as_bytes(), 10_000)
            .unwrap()
            .notification;
    let error = client.group_alerts(&n).await.unwrap_err();
    assert!(
        error.starts_with("alertmanager: HTTP 200 OK with an answer over the 16 MiB limit; stopped reading (GET http://127.0.0.1:"),
        "{error}"
    );
    let written = server.most_written_per_connection().await;
    assert!(written < 64 * 1024 * 1024, "{written} bytes written");
}

#[tokio::test]
async fn an_endless_kubernetes_answer_fails_the_read_at_its_cap() {
    use mlops_alert_router::act::traffic::kube::{ClientSource, KubeWeights, Layout};
    use mlops_alert_router::act::traffic::target::TrafficTarget;
    let server = Hostile::start(Mode::Endless(200)).await;
    let target = KubeWeights::new(
        "ns",
        "exp",
        Layout::Seldon,
        ClientSource {
            api_url: Some(server.base.clone()),
        },
    );
    let error = target.read().await.unwrap_err().to_string();
    assert_eq!(
        error,
        "seldon_experiment ns/exp: ServiceError: length limit exceeded (answers are read up to 4 MiB)"
    );
    let written = server.most_written_per_connection().await;
    assert!(written < 64 * 1024 * 1024, "{written} bytes written");
}

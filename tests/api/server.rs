//! The server's own limits, over raw sockets: header, body and idle
//! timeouts, the connection cap, `Expect: 100-continue`, JSON 404/405 and
//! bounded metric labels.

use crate::helpers::*;
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for something that should happen within a fraction
/// of it (generous: the machine may be busy).
const PATIENCE: Duration = Duration::from_secs(30);

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.address.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connects")
}

/// Reads until the server closes the connection (or the deadline passes,
/// which fails the test); returns what was read.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "connection still open after {PATIENCE:?}; read so far: {:?}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads the status line of the next response.
async fn read_status_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                break;
            }
            line.push(byte[0]);
        }
    })
    .await
    .expect("a status line in time");
    String::from_utf8_lossy(&line).trim_end().to_owned()
}

async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test]
async fn a_stalled_request_head_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.server.header_read_timeout = Duration::from_millis(300);
    let app = spawn_app_with(settings).await;

    // Half a head, then nothing.
    let mut stalled = connect(&app).await;
    stalled
        .write_all(b"POST /api/v1/alerts HTTP/1.1\r\nHost: router\r\nContent-Le")
        .await
        .unwrap();
    // A connection that never sends a byte is held to the same deadline.
    let mut silent = connect(&app).await;
    assert_eq!(
        read_until_closed(&mut stalled).await,
        "",
        "closed, no answer"
    );
    assert_eq!(read_until_closed(&mut silent).await, "");
    assert!(
        metric(
            &app,
            "http_connections_closed_total{reason=\"header_timeout\"}"
        )
        .await
            >= 2.0
    );
    assert_eq!(app.notification_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_the_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.server.body_read_timeout = Duration::from_millis(300);
    let app = spawn_app_with(settings).await;

    let body = fixture("accuracy-firing.json");
    let mut stream = connect(&app).await;
    stream
        .write_all(
            format!(
                "POST /api/v1/alerts HTTP/1.1\r\nHost: router\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    stream.write_all(&body.as_bytes()[..20]).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        answer.contains("server.body_read_timeout"),
        "names the setting: {answer}"
    );
    assert!(
        answer.to_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert_eq!(app.notification_count().await, 0, "nothing stored");
    assert_eq!(
        metric(&app, "notifications_received_total{outcome=\"timeout\"}").await,
        1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.server.idle_timeout = Duration::from_millis(300);
    let app = spawn_app_with(settings).await;

    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: router\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("{\"status\":\"ok\"}"), "{answer}");
    assert_eq!(
        metric(
            &app,
            "http_connections_closed_total{reason=\"idle_timeout\"}"
        )
        .await,
        1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn past_the_connection_cap_fresh_requests_are_answered_by_evicting_idle_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.server.max_connections = 20;
    // Long enough that only eviction closes the idle connections.
    settings.server.header_read_timeout = Duration::from_secs(600);
    settings.server.idle_timeout = Duration::from_secs(600);
    let app = spawn_app_with(settings).await;

    // Ten times the cap of connections that send nothing or half a head.
    let mut idle = Vec::new();
    for i in 0..200 {
        let mut s = connect(&app).await;
        if i % 2 == 0 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
        }
        idle.push(s);
    }
    // Fresh requests, each on a new connection, are answered.
    for _ in 0..5 {
        let client = reqwest::Client::new();
        let r = client
            .post(format!("{}/api/v1/alerts", app.address))
            .body(fixture("accuracy-firing.json"))
            .send()
            .await
            .expect("answered past the cap");
        assert_eq!(r.status(), 200);
    }
    let open = metric(&app, "http_open_connections").await;
    assert!(open <= 20.0, "{open} connections open, cap 20");
    // The oldest idle connections made room.
    assert_eq!(read_until_closed(&mut idle[0]).await, "");
    let evicted = metric(&app, "http_connections_closed_total{reason=\"evicted\"}").await;
    assert!(evicted >= 180.0, "evicted {evicted}");
    app.stop().await;
}

#[tokio::test]
async fn expect_100_continue_over_the_body_limit_gets_413_before_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path())).await;

    let mut stream = connect(&app).await;
    stream
        .write_all(
            b"POST /api/v1/alerts HTTP/1.1\r\nHost: router\r\nContent-Length: 52428800\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let first = read_status_line(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 413 "), "{first}");
    let rest = read_until_closed(&mut stream).await;
    assert!(rest.contains("ingest.max_body_bytes"), "{rest}");

    // Within the limit: "100 Continue", then the answer.
    let body = fixture("accuracy-firing.json");
    let mut stream = connect(&app).await;
    stream
        .write_all(
            format!(
                "POST /api/v1/alerts HTTP/1.1\r\nHost: router\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let first = read_status_line(&mut stream).await;
    assert_eq!(first, "HTTP/1.1 100 Continue");
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut blank = read_status_line(&mut stream).await;
    if blank.is_empty() {
        blank = read_status_line(&mut stream).await;
    }
    assert!(blank.starts_with("HTTP/1.1 200 "), "{blank}");
    assert_eq!(app.notification_count().await, 1);
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path())).await;

    let r = app.get("/api/v1/alert").await;
    assert_eq!(r.status(), 404);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let answer: Value = r.json().await.unwrap();
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("no route for \"/api/v1/alert\""),
        "{answer}"
    );

    let r = app
        .client
        .delete(format!("{}/api/v1/alerts", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let answer: Value = r.json().await.unwrap();
    assert!(
        answer["error"].as_str().unwrap().contains("\"DELETE\""),
        "{answer}"
    );
    app.stop().await;
}

#[tokio::test]
async fn invented_methods_and_unknown_paths_create_no_metric_series() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path())).await;

    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("http_request_duration_seconds_count{"))
            .map(|l| {
                l.rsplit_once(' ')
                    .map_or(l, |(labels, _)| labels)
                    .to_owned()
            })
            .collect::<std::collections::BTreeSet<_>>()
    };
    // One of each kind first, so the bounded series exist.
    let send = |method: &str, path: &str| {
        let req = app.client.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", app.address),
        );
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send("FROBNICATE0", "/healthz").await, 405);
    assert_eq!(send("GET", "/no/such/path/0").await, 404);
    let before = series(&app.get("/metrics").await.text().await.unwrap());

    for i in 1..50 {
        assert_eq!(send(&format!("FROBNICATE{i}"), "/healthz").await, 405);
        assert_eq!(send("GET", &format!("/no/such/path/{i}")).await, 404);
        assert_eq!(
            send("GET", &format!("/api/v1/notifications/{i}")).await,
            404
        );
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    let after = series(&text);
    let new: Vec<_> = after.difference(&before).collect();
    // Only the route template of the notification detail is new (and the
    // scrape of /metrics itself).
    assert!(
        new.iter()
            .all(|l| l.contains("path=\"/api/v1/notifications/{id}\"")
                || l.contains("path=\"/metrics\"")),
        "new series: {new:#?}"
    );
    assert!(new.len() <= 2, "new series: {new:#?}");
    assert!(!text.contains("FROBNICATE"), "{text}");
    assert!(!text.contains("/no/such/path"), "{text}");
    assert!(
        text.contains("method=\"other\",path=\"/healthz\",status=\"405\""),
        "{text}"
    );
    assert!(text.contains("path=\"unmatched\",status=\"404\""), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_and_half_sent_connections_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.server.header_read_timeout = Duration::from_secs(600);
    settings.server.idle_timeout = Duration::from_secs(600);
    settings.server.grace_period = Duration::from_secs(600);
    let app = spawn_app_with(settings).await;
    let mut half = connect(&app).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut silent = connect(&app).await;
    // Make sure both are accepted before shutdown begins.
    assert_eq!(app.get("/healthz").await.status(), 200);
    // Stops without waiting for the 600 s grace period or timeouts.
    tokio::time::timeout(PATIENCE, app.stop())
        .await
        .expect("stopped without waiting on idle connections");
    assert_eq!(read_until_closed(&mut half).await, "");
    assert_eq!(read_until_closed(&mut silent).await, "");
}

#[tokio::test]
async fn shutdown_finishes_a_request_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.server.grace_period = Duration::from_secs(600);
    let app = spawn_app_with(settings).await;
    let address = app.address.clone();
    let body = fixture("accuracy-firing.json");
    let mut stream = connect(&app).await;
    stream
        .write_all(
            format!(
                "POST /api/v1/alerts HTTP/1.1\r\nHost: router\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // "100 Continue" comes when the handler starts reading the body: the
    // request is in flight.
    assert_eq!(read_status_line(&mut stream).await, "HTTP/1.1 100 Continue");
    stream.write_all(&body.as_bytes()[..20]).await.unwrap();
    let db = app.db_path.clone();
    let stopping = tokio::spawn(app.stop());
    // Refusing new connections shows shutdown has begun.
    let deadline = std::time::Instant::now() + PATIENCE;
    while TcpStream::connect(address.trim_start_matches("http://"))
        .await
        .is_ok()
    {
        assert!(std::time::Instant::now() < deadline, "still accepting");
        tokio::task::yield_now().await;
    }
    stream.write_all(&body.as_bytes()[20..]).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("\r\nHTTP/1.1 200 "), "{answer:?}");
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("stops once the request is answered")
        .unwrap();
    let conn = rusqlite::Connection::open(db).unwrap();
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM notifications", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn a_client_that_does_not_read_its_answer_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.worker.enabled = false;
    settings.ingest.max_body_bytes = 32 * 1024 * 1024;
    settings.server.idle_timeout = Duration::from_millis(300);
    let app = spawn_app_with(settings).await;
    // An answer larger than the socket buffers can hold (the server's send
    // buffer grows to a few MiB; the client's receive buffer is kept small).
    let mut big = fixture_json("accuracy-firing.json");
    big["padding"] = Value::String("x".repeat(16 * 1024 * 1024));
    // On a client dropped at once: its connection ends by the client's close,
    // not by the server's idle timeout this test counts.
    let id = {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/alerts", app.address))
            .body(big.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    };

    let closed = |text: &str| {
        ["idle_timeout", "write_timeout"]
            .iter()
            .map(|reason| {
                let series = format!("http_connections_closed_total{{reason=\"{reason}\"}} ");
                text.lines()
                    .find_map(|l| l.strip_prefix(series.as_str())?.parse::<f64>().ok())
                    .unwrap_or(0.0)
            })
            .sum::<f64>()
    };
    // A fresh client each time, and `Connection: close`: a kept-alive
    // scrape connection would itself end by the idle timeout under load and
    // be counted as the closure this test waits for.
    let scrape = || async {
        reqwest::Client::new()
            .get(format!("{}/metrics", app.address))
            .header("connection", "close")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = closed(&scrape().await);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr = app.address.trim_start_matches("http://").parse().unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET /api/v1/notifications/{id} HTTP/1.1\r\nHost: router\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    // Not reading: the server gives up on it.
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if closed(&scrape().await) > before {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 "));
    assert!(answer.len() < 16 * 1024 * 1024, "cut short");
    app.stop().await;
}

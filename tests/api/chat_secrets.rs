//! No chat secret (webhook URL, token, header value) shows up in a log line,
//! an API answer (detail, dead letters, dry-run plan, metrics) or the
//! `check-config` output — even when the platform echoes it back.

use crate::helpers::*;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const HOOK_SECRET: &str = "T0SECRET/B0SECRET/hunter2webhook";
const BOT_TOKEN: &str = "xoxb-sekrit-bot-token";
const HEADER_SECRET: &str = "hdr-s3cr3t-value";
const BEARER: &str = "bearer-s3cr3t-value";
const SECRETS: &[&str] = &["hunter2webhook", BOT_TOKEN, HEADER_SECRET, BEARER];

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

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} leaks {s}:\n{text}");
    }
}

fn config_yaml(uri: &str) -> String {
    format!(
        r#"
worker: {{max_attempts: 1}}
actions:
  hook:
    type: slack
    url: '{uri}/services/{HOOK_SECRET}'
  bot:
    type: slack
    token: {BOT_TOKEN}
    channel: C1
    api_url: '{uri}/api'
  pager:
    type: webhook
    url: '{uri}/pager'
    headers: {{X-Api-Key: {HEADER_SECRET}}}
    bearer_token: {BEARER}
route:
  actions: [hook, bot, pager]
"#
    )
}

#[tokio::test]
async fn secrets_stay_out_of_logs_and_api_answers_even_when_echoed() {
    let server = MockServer::start().await;
    // Each platform fails, quoting the secret back.
    Mock::given(method("POST"))
        .and(path_regex("^/services/"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_string(format!("no_service for /services/{HOOK_SECRET}")),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": false, "error": "invalid_auth", "token": BOT_TOKEN})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/pager"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_string(format!("bad key {HEADER_SECRET} / {BEARER}")),
        )
        .mount(&server)
        .await;

    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    // #[tokio::test] runs everything on this thread, so the scoped subscriber sees the worker.
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, config_yaml(&server.uri())).unwrap();
    let mut settings =
        mlops_alert_router::settings::Settings::load_with_env(Some(&file), Vec::new()).unwrap();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.storage.path = dir.path().join("router.db");
    settings.worker.enabled = false;
    let app = spawn_app_with(settings).await;

    let plan = app
        .client
        .post(format!("{}/api/v1/alerts?dry_run=true", app.address))
        .body(fixture("accuracy-firing.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(plan.contains("<redacted>"), "{plan}");
    assert_clean("the dry-run plan", &plan);

    let r: Value = app
        .post_alerts(fixture("accuracy-firing.json"))
        .await
        .json()
        .await
        .unwrap();
    let id = r["id"].as_i64().unwrap();
    app.drain().await;

    let detail = app
        .get(&format!("/api/v1/notifications/{id}"))
        .await
        .text()
        .await
        .unwrap();
    let parsed: Value = serde_json::from_str(&detail).unwrap();
    let runs = parsed["action_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r["status"] == "dead"), "{parsed:#}");
    let hook = runs.iter().find(|r| r["action"] == "hook").unwrap();
    assert_eq!(
        hook["last_error"],
        format!(
            "HTTP 400 Bad Request (POST {}/<redacted>): no_service for <redacted>",
            server.uri()
        )
    );
    assert_clean("the notification detail", &detail);

    let dead = app.get("/api/v1/dead-letters").await.text().await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&dead).unwrap()["dead_letters"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_clean("the dead letters", &dead);
    assert_clean(
        "the metrics",
        &app.get("/metrics").await.text().await.unwrap(),
    );

    app.stop().await;
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("Action dead-lettered"),
        "the capture works:\n{logs}"
    );
    assert_clean("the log", &logs);
}

#[test]
fn check_config_prints_chat_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, config_yaml("https://chat.example")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mlops-alert-router"))
        .args(["check-config", "--print"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("type: webhook"), "{stdout}");
    assert!(stdout.contains("<redacted>"), "{stdout}");
    assert_clean("check-config", &stdout);

    // A config error next to a secret does not print the secret either.
    std::fs::write(
        &file,
        format!(
            "actions: {{hook: {{type: slack, url: 'https://chat.example/services/{HOOK_SECRET}', template: '{{{{ x | nope }}}}'}}}}\nroute: {{actions: [hook]}}\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mlops-alert-router"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("actions.hook.template: unknown filter"),
        "{stderr}"
    );
    assert_clean("the config error", &stderr);
}

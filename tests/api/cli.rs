use crate::helpers::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mlops-alert-router");

#[test]
fn check_config_prints_the_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, "auth:\n  bearer_tokens: [t0p-s3cret]\n").unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg("--print")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("listen: 127.0.0.1:9095"), "{stdout}");
    assert!(stdout.contains("<redacted>"), "{stdout}");
    assert!(!stdout.contains("t0p-s3cret"), "{stdout}");
    // The verdict is the last line.
    let last = stdout.lines().last().unwrap();
    assert!(
        last.starts_with("config OK: 2 actions, 1 route under the root"),
        "{last}"
    );
    assert!(last.contains("auth on"), "{last}");
}

#[test]
fn check_config_says_ok_or_invalid_in_one_line() {
    let out = Command::new(BIN)
        .arg("check-config")
        .env_remove("MLOPS_ALERT_ROUTER_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout,
        "config OK: 2 actions, 1 route under the root, 0 enrichments, 1 traffic target; \
         listens on 127.0.0.1:9095, no auth, stores into ./data/router.db (embedded default)\n"
    );
    let out = Command::new(BIN)
        .arg("check-config")
        .env("MLOPS_ALERT_ROUTER__WORKER__CONCURRENCY", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "worker.concurrency: must be at least 1 (environment: MLOPS_ALERT_ROUTER__WORKER__CONCURRENCY)\n\
         config INVALID: 1 error in embedded default + environment MLOPS_ALERT_ROUTER__WORKER__CONCURRENCY\n"
    );
}

#[test]
fn check_config_names_the_bad_key_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(
        &file,
        "worker:\n  max_attempts: 0\nroute:\n  actions: [nope]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("worker.max_attempts: must be at least 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("route.actions[0]: unknown action \"nope\""),
        "{stderr}"
    );
}

/// A config the action cannot be built from (here a Slack bot token that is
/// no valid header value) stops `check-config` and startup, naming the
/// action's key, instead of failing every run.
#[tokio::test]
async fn an_action_that_cannot_be_built_stops_check_config_and_startup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    let yaml = "actions:\n  notify:\n    type: slack\n    token: \"xoxb-1\\u0001\"\n    channel: \"#ml\"\n";
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("actions.notify.token: not a valid header value\n"),
        "{stderr}"
    );
    assert!(stderr.contains("config INVALID: 1 error"), "{stderr}");
    assert!(
        !stderr.contains("xoxb-1"),
        "the token is not printed: {stderr}"
    );

    let mut settings = test_settings(dir.path());
    settings.actions.insert(
        "notify".into(),
        serde_yaml::from_str("{type: slack, token: \"xoxb-1\\u0001\", channel: \"#ml\"}").unwrap(),
    );
    let err = match mlops_alert_router::startup::Application::build(settings).await {
        Ok(_) => panic!("startup accepted an action it cannot build"),
        Err(e) => e.to_string(),
    };
    assert_eq!(err, "actions.notify.token: not a valid header value");
}

#[test]
fn env_overrides_reach_check_config() {
    let out = Command::new(BIN)
        .args(["check-config", "--print"])
        .env("MLOPS_ALERT_ROUTER__SERVER__LISTEN", "0.0.0.0:8080")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("listen: 0.0.0.0:8080"));
}

#[tokio::test]
async fn replay_posts_a_saved_payload_and_prints_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.auth.bearer_tokens = vec![mlops_alert_router::secret::Secret::new("tok")];
    let app = spawn_app_with(settings).await;
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/accuracy-firing.json");
    let url = format!("{}/api/v1/alerts", app.address);
    let run = |token: &str| {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args([
            "replay",
            file.to_str().unwrap(),
            "--url",
            &url,
            "--token",
            token,
        ]);
        cmd.output()
    };
    let ok = run("tok").await.unwrap();
    assert!(ok.status.success());
    let stdout = String::from_utf8(ok.stdout).unwrap();
    assert!(stdout.starts_with("200 {"), "{stdout}");
    assert!(stdout.contains("\"duplicate\":false"), "{stdout}");
    let refused = run("wrong").await.unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8(refused.stdout)
        .unwrap()
        .starts_with("401 "));
    app.stop().await;
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(BIN)
        .arg("serve")
        .env(
            "MLOPS_ALERT_ROUTER__SERVER__LISTEN",
            format!("127.0.0.1:{port}"),
        )
        .env("MLOPS_ALERT_ROUTER__STORAGE__PATH", dir.path().join("r.db"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "router never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "router did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

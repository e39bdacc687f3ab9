//! One CA policy for every outbound HTTPS client: the system roots plus
//! `tls.ca_file`. A webhook action posts to a loopback HTTPS server whose
//! certificate is signed by a CA generated here: without `tls.ca_file` the
//! delivery fails on the unknown issuer, with it the post arrives. A bad
//! `tls.ca_file` is a configuration error naming the key and the file.

use crate::fake_kube::serve_tls;
use crate::helpers::*;
use crate::kube_tls::ca;
use axum::routing::post;
use axum::Router;
use mlops_alert_router::settings::Settings;
use mlops_alert_router::worker::Outcome;
use rcgen::{CertificateParams, KeyPair};
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Settings loaded from a config file as the binary would (so `tls.ca_file`
/// goes through the real load and checks), with test storage and listener.
fn load(dir: &Path, yaml: &str) -> Result<Settings, String> {
    let file = dir.join("config.yaml");
    std::fs::write(&file, yaml).unwrap();
    let mut s = Settings::load_with_env(Some(&file), Vec::new()).map_err(|e| e.0.join("\n"))?;
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    s.storage.path = dir.join("router.db");
    s.worker.poll_interval = Duration::from_millis(20);
    s.worker.backoff_initial = Duration::ZERO;
    s.worker.enabled = false;
    Ok(s)
}

/// Posts the accuracy alert, runs the worker until idle, returns the hook's run.
async fn deliver(settings: Settings) -> Value {
    let app = spawn_app_with(settings).await;
    let r: Value = app
        .post_alerts(fixture("accuracy-firing.json"))
        .await
        .json()
        .await
        .unwrap();
    let id = r["id"].as_i64().expect("stored");
    for _ in 0..20 {
        if app.worker.try_execute_task().await.unwrap() == Outcome::Empty {
            break;
        }
    }
    let detail = app.get_json(&format!("/api/v1/notifications/{id}")).await;
    let run = detail["action_runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "hook")
        .cloned()
        .unwrap_or_else(|| panic!("no run of hook: {detail:#}"));
    app.stop().await;
    run
}

#[tokio::test]
async fn a_webhook_to_a_private_ca_needs_tls_ca_file() {
    let (ca_pem, issuer) = ca("private-ca");
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let received = Arc::new(Mutex::new(Vec::<Value>::new()));
    let app = Router::new().route(
        "/hook",
        post({
            let received = received.clone();
            move |body: axum::Json<Value>| async move {
                received.lock().unwrap().push(body.0);
                "ok"
            }
        }),
    );
    let url = serve_tls(app, &server_cert.pem(), &server_key.serialize_pem())
        .await
        .replace("127.0.0.1", "localhost");
    let dir = tempfile::tempdir().unwrap();
    // The bundle holds an unrelated CA first: every certificate of the file counts.
    let (other_pem, _) = ca("unrelated-ca");
    let bundle = dir.path().join("ca-bundle.pem");
    std::fs::write(&bundle, format!("{other_pem}{ca_pem}")).unwrap();
    let config = format!(
        "actions:\n  hook: {{type: webhook, url: '{url}/hook', max_attempts: 1}}\nroute:\n  actions: [hook]\n"
    );

    // System roots only: the server's issuer is unknown, nothing arrives.
    let run = deliver(load(dir.path(), &config).unwrap()).await;
    assert_eq!(run["status"], "dead", "{run:#}");
    let error = run["last_error"].as_str().unwrap().to_lowercase();
    assert!(
        error.contains("unknownissuer") || error.contains("unknown issuer"),
        "the error names the certificate problem: {run:#}"
    );
    assert!(received.lock().unwrap().is_empty());

    // The same action with tls.ca_file: delivered.
    let with_ca = format!("tls:\n  ca_file: {}\n{config}", bundle.display());
    // (A fresh store: the same notification would be a duplicate of the first.)
    let second = tempfile::tempdir().unwrap();
    let run = deliver(load(second.path(), &with_ca).unwrap()).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["status"], "firing", "{:#}", got[0]);
}

#[test]
fn a_bad_tls_ca_file_is_a_config_error_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not-pem.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for (key, file) in [
        ("tls.ca_file", &missing),
        ("tls.ca_file", &not_pem),
        ("tls.ca_file", &broken),
        ("prometheus.tls.ca_file", &not_pem),
    ] {
        let yaml = if key == "tls.ca_file" {
            format!("tls:\n  ca_file: {}\n", file.display())
        } else {
            format!(
                "prometheus:\n  url: https://prometheus.example\n  tls:\n    ca_file: {}\n",
                file.display()
            )
        };
        let err = load(dir.path(), &yaml).unwrap_err();
        assert!(
            err.contains(key) && err.contains(&file.display().to_string()),
            "{key} {}: {err}",
            file.display()
        );
    }
}

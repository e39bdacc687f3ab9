//! The PostgreSQL store on its own (the behaviour shared with SQLite is in
//! `store_contract.rs`): several replicas starting at once on an empty
//! database, TLS with a private CA, and a store handle that outlives a
//! server restart.

#[path = "support/pg.rs"]
mod pg;

use mlops_alert_router::secret::Secret;
use mlops_alert_router::store::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::sync::Arc;

async fn connect(options: PostgresOptions) -> Result<PostgresStore, StoreError> {
    PostgresStore::connect(options, Default::default()).await
}

fn note(at: i64, key: u8) -> NewNotification<'static> {
    NewNotification {
        received_at: at,
        dedup_key: [key; 32],
        receiver: "team",
        status: "firing",
        group_key: "g",
        alert_count: 1,
        alertnames: vec!["A"],
        payload: "{}",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_at_once_apply_the_schema_once() {
    let server = pg::PgServer::start();
    let url = server.fresh_database();
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { connect(PostgresOptions::new(Secret::new(url))).await })
        })
        .collect();
    let mut stores = Vec::new();
    for s in starts {
        stores.push(Arc::new(s.await.unwrap().expect("every replica starts")));
    }
    assert_eq!(
        server.psql(
            &url,
            "SELECT string_agg(version::text, ',') FROM schema_migrations"
        ),
        "1"
    );
    // And they share one inbox: a redelivery to another replica is a duplicate.
    let first = stores[0]
        .insert_notification(note(1, 1), 100)
        .await
        .unwrap();
    let again = stores[5]
        .insert_notification(note(2, 1), 100)
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_handle_survives_a_server_restart() {
    let server = pg::PgServer::start();
    let url = server.fresh_database();
    let store = connect(PostgresOptions::new(Secret::new(url)))
        .await
        .unwrap();
    store.insert_notification(note(1, 1), 100).await.unwrap();
    server.stop();
    let down = store.insert_notification(note(2, 2), 100).await;
    assert!(
        matches!(
            &down,
            Err(StoreError::Storage {
                fault: Fault::Unreachable,
                ..
            })
        ),
        "{down:?}"
    );
    assert!(store.check_writable().await.is_err());
    server.restart();
    // Broken pooled connections are replaced: the first call after the
    // restart may still meet one, the next ones work.
    let start = std::time::Instant::now();
    loop {
        if store.check_writable().await.is_ok() {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "never recovered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let back = store.insert_notification(note(3, 3), 100).await.unwrap();
    assert!(!back.duplicate);
    let rows = store
        .list(ListQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "the one refused while down was not stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_verifies_the_server_certificate_against_the_configured_ca() {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test-postgres-ca");
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let server = pg::PgServer::start_tls(&cert.pem(), &key.serialize_pem());
    let url = server.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();

    for mode in ["require", "verify-full"] {
        let tls_url = url.replace("sslmode=disable", &format!("sslmode={mode}"));
        // Without the CA: the certificate is not trusted, nothing connects.
        let refused = connect(PostgresOptions::new(Secret::new(tls_url.clone()))).await;
        let message = refused.expect_err("an untrusted certificate").to_string();
        assert!(message.contains("certificate"), "{mode}: {message}");
        // With it: connected over TLS.
        let mut options = PostgresOptions::new(Secret::new(tls_url));
        options.ca_files = vec![ca_file.clone()];
        let store = connect(options).await.expect("trusted");
        store.check_writable().await.unwrap();
    }
}

/// `store copy --to postgres` (the real binary): everything a SQLite store
/// holds arrives with its ids; the copy is a working store; a second copy
/// into the now non-empty database is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_copy_moves_a_sqlite_store_into_postgres() {
    let now = chrono::Utc::now().timestamp_millis();
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("router.db");
    {
        let sqlite = SqliteStore::open(
            &db_path,
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs(300),
            Default::default(),
        )
        .unwrap();
        let s: &dyn Store = &sqlite;
        for k in 1..=3 {
            s.insert_notification(note(now + k as i64, k), 100)
                .await
                .unwrap();
        }
        let c = s.claim(now + 10, 60_000).await.unwrap().unwrap();
        let runs = s
            .ensure_runs(
                c.id,
                c.round,
                vec![PlannedRun {
                    fingerprint: "f".into(),
                    action: "hook".into(),
                    action_type: "webhook".into(),
                }],
            )
            .await
            .unwrap();
        s.record_attempt(RunAttempt {
            run_id: runs[0].id,
            started_at: now,
            finished_at: now + 5,
            outcome: RunOutcome::Dead {
                error: "410".into(),
            },
            context: Some(serde_json::json!({"k": "v"})),
        })
        .await
        .unwrap();
        s.settle(c.id, c.round, now + 20).await.unwrap();
        s.record_decision(TrafficDecision {
            id: 0,
            at: now,
            action: "rollback".into(),
            target: "exp".into(),
            episode: "rollback/exp/f/t".into(),
            fingerprint: "f".into(),
            notification_id: c.id,
            decision: "shifted".into(),
            before: Some(serde_json::json!({"a": 50})),
            after: Some(serde_json::json!({"a": 40})),
            reason: "r".into(),
        })
        .await
        .unwrap();
        // Another target's decision without weights (NULL columns copy as NULL).
        s.record_decision(TrafficDecision {
            id: 0,
            at: now + 1,
            action: "rollback".into(),
            target: "other".into(),
            episode: "rollback/other/f/t".into(),
            fingerprint: "f".into(),
            notification_id: c.id,
            decision: "failed".into(),
            before: None,
            after: None,
            reason: "unreachable".into(),
        })
        .await
        .unwrap();
        s.save_chat_thread(ChatThread {
            key: ChatThreadKey {
                action: "slack".into(),
                channel: "#ab".into(),
                group_key: "g".into(),
            },
            channel_id: "C1".into(),
            message_id: "1.5".into(),
            resolved: true,
            updated_at: now,
        })
        .await
        .unwrap();
    }
    let server = pg::PgServer::start();
    let url = server.fresh_database();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "storage:\n  path: {}\n  postgres: {{url: \"{url}\"}}\n",
            db_path.display()
        ),
    )
    .unwrap();
    let copy = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mlops-alert-router"))
            .arg("--config")
            .arg(&config)
            .args(["store", "copy", "--to", "postgres"])
            .output()
            .unwrap()
    };
    let out = copy();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .contains("copied 3 notifications, 1 action runs, 2 traffic decisions, 1 chat threads"),
        "{stdout}"
    );

    let pg = connect(PostgresOptions::new(Secret::new(url.clone())))
        .await
        .unwrap();
    let p: &dyn Store = &pg;
    let rows = p
        .list(ListQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), vec![3, 2, 1]);
    assert_eq!(rows[2].state, "done");
    assert_eq!(rows[2].alertnames, vec!["A"]);
    assert_eq!(
        p.inbox_depth(),
        2,
        "the two pending ones are still the inbox"
    );
    let detail = p.get(1).await.unwrap().unwrap();
    assert_eq!(detail.action_runs[0].status, RunStatus::Dead);
    assert_eq!(
        detail.action_runs[0].context,
        Some(serde_json::json!({"k": "v"}))
    );
    assert_eq!(p.dead_letter_count().await.unwrap(), 1);
    let shifts = p
        .decisions(DecisionQuery {
            target: Some("exp".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(shifts.len(), 1);
    assert_eq!(shifts[0].after, Some(serde_json::json!({"a": 40})));
    let thread = p
        .chat_thread(ChatThreadKey {
            action: "slack".into(),
            channel: "#ab".into(),
            group_key: "g".into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert!(thread.resolved);
    // The dedup window carried over; new rows continue after the copied ids.
    let again = p
        .insert_notification(note(now + 100, 2), 100)
        .await
        .unwrap();
    assert_eq!((again.id, again.duplicate), (2, true));
    let fresh = p
        .insert_notification(note(now + 100, 9), 100)
        .await
        .unwrap();
    assert_eq!((fresh.id, fresh.duplicate), (4, false));
    // Claimable there: the pending ones were copied without leases.
    assert!(p.claim(now + 200, 60_000).await.unwrap().is_some());

    let refused = copy();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("copy only into an empty one"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// The storage keys at `check-config`: what is wrong is named, the URL
/// (a secret) never printed.
#[test]
fn check_config_names_bad_postgres_settings_without_printing_the_url() {
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mlops-alert-router"));
        cmd.arg("check-config").args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let backend = ("MLOPS_ALERT_ROUTER__STORAGE__BACKEND", "postgres");
    let (ok, out) = run(&[backend], &[]);
    assert!(!ok);
    assert!(
        out.contains("storage.postgres.url: is required with storage.backend: postgres"),
        "{out}"
    );
    let bad = (
        "MLOPS_ALERT_ROUTER__STORAGE__POSTGRES__URL",
        "postgres://u:pw-never-printed@db/x?sslmode=bogus",
    );
    let (ok, out) = run(&[backend, bad], &[]);
    assert!(!ok);
    assert!(
        out.contains("storage.postgres.url: not a valid PostgreSQL connection URL"),
        "{out}"
    );
    assert!(out.contains("sslmode"), "{out}");
    assert!(!out.contains("pw-never-printed"), "{out}");
    let good = (
        "MLOPS_ALERT_ROUTER__STORAGE__POSTGRES__URL",
        "postgres://u:pw-never-printed@db/x?sslmode=verify-full",
    );
    let (ok, out) = run(&[backend, good], &["--print"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("stores into PostgreSQL (storage.postgres)"),
        "{out}"
    );
    assert!(out.contains("url: <redacted>"), "{out}");
    assert!(!out.contains("pw-never-printed"), "{out}");
    let (ok, out) = run(&[("MLOPS_ALERT_ROUTER__STORAGE__BACKEND", "mysql")], &[]);
    assert!(!ok);
    assert!(out.contains("storage.backend"), "{out}");
}

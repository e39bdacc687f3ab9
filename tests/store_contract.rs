//! The store contract: what every backend must do, run against SQLite and
//! against a real PostgreSQL (a throwaway server, see `support/pg.rs`).
//!
//! Each case gets a fresh, empty store from its backend. A new backend
//! passes when it passes every case here.

#[path = "support/pg.rs"]
mod pg;

use futures_util::future::BoxFuture;
use mlops_alert_router::secret::Secret;
use mlops_alert_router::store::*;
use std::sync::Arc;
use std::time::Duration;

const T0: i64 = 1_700_000_000_000;
const WINDOW: Duration = Duration::from_secs(300);

/// Opens a fresh, empty store.
type Open<'a> = &'a (dyn Fn() -> BoxFuture<'static, Arc<dyn Store>> + Sync);

fn key(n: u8) -> [u8; 32] {
    [n; 32]
}

fn note<'a>(at: i64, key: [u8; 32], names: Vec<&'a str>, status: &'a str) -> NewNotification<'a> {
    NewNotification {
        received_at: at,
        dedup_key: key,
        receiver: "team",
        status,
        group_key: "{}:{alertname=\"A\"}",
        alert_count: names.len(),
        alertnames: names,
        payload: r#"{"version":"4","alerts":[]}"#,
    }
}

async fn insert(s: &dyn Store, at: i64, k: u8) -> Inserted {
    s.insert_notification(note(at, key(k), vec!["A"], "firing"), 1000)
        .await
        .expect("insert")
}

fn planned(action: &str) -> PlannedRun {
    PlannedRun {
        fingerprint: "f1".into(),
        action: action.into(),
        action_type: "webhook".into(),
    }
}

async fn inserts_round_trip_and_list_filters(open: Open<'_>) {
    let s = open().await;
    let a = s
        .insert_notification(note(T0, key(1), vec!["B", "A", "B"], "firing"), 100)
        .await
        .unwrap();
    let b = s
        .insert_notification(note(T0 + 1, key(2), vec!["C"], "resolved"), 100)
        .await
        .unwrap();
    assert!(!a.duplicate && !b.duplicate);
    assert!(b.id > a.id, "ids grow with arrival");
    assert_eq!(s.inbox_depth(), 2);
    let detail = s.get(a.id).await.unwrap().expect("stored");
    assert_eq!(
        detail.summary.alertnames,
        vec!["A", "B"],
        "distinct, sorted"
    );
    assert_eq!(detail.summary.alerts, 3);
    assert_eq!(detail.summary.state, "pending");
    assert_eq!(detail.summary.receiver, "team");
    assert_eq!(detail.summary.received_at, T0);
    assert_eq!(detail.payload["version"], "4");
    assert!(s.get(b.id + 1000).await.unwrap().is_none());
    let all = s
        .list(ListQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|n| n.id).collect::<Vec<_>>(),
        vec![b.id, a.id]
    );
    let by = |q: ListQuery| {
        let s = s.clone();
        async move {
            let limit = if q.limit == 0 { 10 } else { q.limit };
            s.list(ListQuery { limit, ..q })
                .await
                .unwrap()
                .iter()
                .map(|n| n.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        by(ListQuery {
            status: Some("resolved".into()),
            ..Default::default()
        })
        .await,
        vec![b.id]
    );
    assert_eq!(
        by(ListQuery {
            alertname: Some("A".into()),
            ..Default::default()
        })
        .await,
        vec![a.id]
    );
    assert_eq!(
        by(ListQuery {
            before: Some(b.id),
            ..Default::default()
        })
        .await,
        vec![a.id]
    );
    assert_eq!(
        by(ListQuery {
            state: Some("done".into()),
            ..Default::default()
        })
        .await,
        Vec::<i64>::new()
    );
    assert_eq!(
        by(ListQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .len(),
        1
    );
}

async fn redeliveries_within_the_window_are_stored_once(open: Open<'_>) {
    let s = open().await;
    let first = insert(s.as_ref(), T0, 7).await;
    let again = insert(s.as_ref(), T0 + 10_000, 7).await;
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
    assert_eq!(
        s.get(first.id).await.unwrap().unwrap().summary.duplicates,
        1
    );
    assert_eq!(s.inbox_depth(), 1);
    // Outside the window the same content is a new notification.
    let later = insert(s.as_ref(), T0 + WINDOW.as_millis() as i64 + 1, 7).await;
    assert!(!later.duplicate);
    assert_ne!(later.id, first.id);
}

async fn concurrent_redeliveries_store_one_row(open: Open<'_>) {
    let s = open().await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { insert(s.as_ref(), T0 + i, 9).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let fresh: Vec<_> = results.iter().filter(|r| !r.duplicate).collect();
    assert_eq!(fresh.len(), 1, "exactly one insert stores the row");
    assert!(results.iter().all(|r| r.id == fresh[0].id));
    let rows = s
        .list(ListQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].duplicates, 15);
}

async fn a_full_inbox_refuses_new_notifications_but_counts_redeliveries(open: Open<'_>) {
    let s = open().await;
    s.insert_notification(note(T0, key(1), vec!["A"], "firing"), 1)
        .await
        .unwrap();
    let refused = s
        .insert_notification(note(T0, key(2), vec!["A"], "firing"), 1)
        .await;
    assert!(
        matches!(refused, Err(StoreError::InboxFull { limit: 1, .. })),
        "{refused:?}"
    );
    let again = s
        .insert_notification(note(T0 + 1, key(1), vec!["A"], "firing"), 1)
        .await
        .unwrap();
    assert!(again.duplicate);
}

async fn claims_are_leased_until_they_expire(open: Open<'_>) {
    let s = open().await;
    let a = insert(s.as_ref(), T0, 1).await;
    let b = insert(s.as_ref(), T0 + 1, 2).await;
    let first = s.claim(T0 + 5, 60_000).await.unwrap().expect("due");
    assert_eq!(first.id, a.id, "oldest first");
    assert_eq!(first.round, 0);
    assert!(first.payload.contains("\"version\""));
    let second = s.claim(T0 + 5, 60_000).await.unwrap().expect("due");
    assert_eq!(second.id, b.id);
    assert!(
        s.claim(T0 + 60_000, 60_000).await.unwrap().is_none(),
        "both leased"
    );
    let again = s
        .claim(T0 + 60_006, 60_000)
        .await
        .unwrap()
        .expect("expired");
    assert_eq!(again.id, a.id, "taken over only after its lease");
    // Not due before it arrived.
    let s2 = open().await;
    insert(s2.as_ref(), T0, 1).await;
    assert!(s2.claim(T0 - 1, 60_000).await.unwrap().is_none());
}

async fn a_renewed_lease_is_not_taken_over(open: Open<'_>) {
    let s = open().await;
    let n = insert(s.as_ref(), T0, 1).await;
    let c = s.claim(T0, 60_000).await.unwrap().unwrap();
    s.renew_lease(c.id, T0 + 50_000, 60_000).await.unwrap();
    assert!(s.claim(T0 + 60_001, 60_000).await.unwrap().is_none());
    let again = s.claim(T0 + 110_001, 60_000).await.unwrap();
    assert_eq!(
        again.map(|c| c.id),
        Some(n.id),
        "taken over once the renewal ran out"
    );
    // A settled notification has no lease to renew.
    s.ensure_runs(n.id, 0, vec![]).await.unwrap();
    s.settle(n.id, 0, T0 + 110_002).await.unwrap();
    s.renew_lease(n.id, T0 + 110_003, 60_000).await.unwrap();
    assert_eq!(s.get(n.id).await.unwrap().unwrap().summary.state, "done");
    assert!(s.claim(T0 + 500_000, 60_000).await.unwrap().is_none());
}

async fn concurrent_claims_never_hand_out_the_same_notification(open: Open<'_>) {
    let s = open().await;
    for k in 0..20 {
        insert(s.as_ref(), T0 + k as i64, k).await;
    }
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(c) = s.claim(T0 + 100, 60_000).await.unwrap() {
                    got.push(c.id);
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(n, 20, "every notification claimed");
    assert_eq!(all.len(), 20, "none claimed twice");
}

async fn runs_attempts_settle_and_dead_letters(open: Open<'_>) {
    let s = open().await;
    let n = insert(s.as_ref(), T0, 1).await;
    let c = s.claim(T0, 60_000).await.unwrap().unwrap();
    let runs = s
        .ensure_runs(c.id, c.round, vec![planned("a"), planned("b")])
        .await
        .unwrap();
    assert_eq!(runs.len(), 2);
    let again = s
        .ensure_runs(c.id, c.round, vec![planned("a"), planned("b")])
        .await
        .unwrap();
    assert_eq!(
        runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        again.iter().map(|r| r.id).collect::<Vec<_>>(),
        "idempotent"
    );
    assert!(runs.iter().all(|r| r.status == RunStatus::Pending));
    s.record_attempt(RunAttempt {
        run_id: runs[0].id,
        started_at: T0,
        finished_at: T0 + 7,
        outcome: RunOutcome::Succeeded {
            result: serde_json::json!({"ok": true}),
        },
        context: Some(serde_json::json!({"q": 1})),
    })
    .await
    .unwrap();
    s.record_attempt(RunAttempt {
        run_id: runs[1].id,
        started_at: T0,
        finished_at: T0 + 3,
        outcome: RunOutcome::Retry {
            error: "503".into(),
            retry_at: T0 + 30_000,
        },
        context: None,
    })
    .await
    .unwrap();
    s.settle(c.id, c.round, T0 + 10).await.unwrap();
    assert!(
        s.claim(T0 + 29_999, 60_000).await.unwrap().is_none(),
        "waits for its retry"
    );
    let c = s
        .claim(T0 + 30_000, 60_000)
        .await
        .unwrap()
        .expect("retry due");
    s.record_attempt(RunAttempt {
        run_id: runs[1].id,
        started_at: T0 + 30_000,
        finished_at: T0 + 30_001,
        outcome: RunOutcome::Dead {
            error: "gone".into(),
        },
        context: None,
    })
    .await
    .unwrap();
    s.settle(c.id, c.round, T0 + 30_002).await.unwrap();
    let d = s.get(n.id).await.unwrap().unwrap();
    assert_eq!(d.summary.state, "done");
    assert_eq!(d.summary.processed_at, Some(T0 + 30_002));
    assert_eq!(s.inbox_depth(), 0);
    let ok = &d.action_runs[0];
    assert_eq!(ok.status, RunStatus::Succeeded);
    assert_eq!(ok.attempts, 1);
    assert_eq!(ok.duration_ms, Some(7));
    assert_eq!(ok.result, Some(serde_json::json!({"ok": true})));
    assert_eq!(ok.context, Some(serde_json::json!({"q": 1})));
    let dead = &d.action_runs[1];
    assert_eq!(dead.status, RunStatus::Dead);
    assert_eq!(dead.attempts, 2);
    assert_eq!(dead.last_error.as_deref(), Some("gone"));
    assert_eq!(dead.first_attempt_at, Some(T0));
    assert_eq!(s.dead_letter_count().await.unwrap(), 1);
    let letters = s
        .dead_letters(DeadLetterQuery {
            limit: 10,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].notification_id, n.id);
    assert_eq!(letters[0].alertnames, vec!["A"]);
    assert!(letters[0].run.context.is_none());
    assert!(
        s.claim(T0 + 90_000, 60_000).await.unwrap().is_none(),
        "done"
    );

    // A replay starts a new round: due at once, the dead letter is gone.
    let round = s.replay(n.id, T0 + 100_000).await.unwrap();
    assert_eq!(round, Some(1));
    assert_eq!(s.inbox_depth(), 1);
    assert_eq!(s.dead_letter_count().await.unwrap(), 0);
    let c = s
        .claim(T0 + 100_000, 60_000)
        .await
        .unwrap()
        .expect("replayed");
    assert_eq!((c.id, c.round), (n.id, 1));
    assert_eq!(s.replay(n.id + 1000, T0).await.unwrap(), None);
    // Settling an older round leaves the notification due.
    s.settle(c.id, 0, T0 + 100_001).await.unwrap();
    assert!(s.claim(T0 + 100_001, 60_000).await.unwrap().is_some());
}

async fn chat_threads_are_saved_and_replaced(open: Open<'_>) {
    let s = open().await;
    let key = ChatThreadKey {
        action: "slack".into(),
        channel: "#ab".into(),
        group_key: "g".into(),
    };
    assert!(s.chat_thread(key.clone()).await.unwrap().is_none());
    let mut t = ChatThread {
        key: key.clone(),
        channel_id: "C1".into(),
        message_id: "1.0".into(),
        resolved: false,
        updated_at: T0,
    };
    s.save_chat_thread(t.clone()).await.unwrap();
    assert_eq!(s.chat_thread(key.clone()).await.unwrap(), Some(t.clone()));
    t.resolved = true;
    t.message_id = "2.0".into();
    s.save_chat_thread(t.clone()).await.unwrap();
    assert_eq!(s.chat_thread(key).await.unwrap(), Some(t));
}

fn decision(at: i64, target: &str, episode: &str, decision: &str) -> TrafficDecision {
    TrafficDecision {
        id: 0,
        at,
        action: "shift".into(),
        target: target.into(),
        episode: episode.into(),
        fingerprint: "f".into(),
        notification_id: 1,
        decision: decision.into(),
        before: Some(serde_json::json!({"a": 50, "b": 50})),
        after: None,
        reason: "r".into(),
    }
}

async fn traffic_decisions_are_queried_newest_first(open: Open<'_>) {
    let s = open().await;
    let a = s
        .record_decision(decision(T0, "exp", "e1", "shifted"))
        .await
        .unwrap();
    let b = s
        .record_decision(decision(T0 + 1, "exp", "e2", "cooldown"))
        .await
        .unwrap();
    let c = s
        .record_decision(decision(T0 + 2, "other", "e3", "shifted"))
        .await
        .unwrap();
    assert!(a < b && b < c);
    let q = |q: DecisionQuery| {
        let s = s.clone();
        async move {
            s.decisions(DecisionQuery { limit: 10, ..q })
                .await
                .unwrap()
                .iter()
                .map(|d| d.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(q(DecisionQuery::default()).await, vec![c, b, a]);
    assert_eq!(
        q(DecisionQuery {
            target: Some("exp".into()),
            ..Default::default()
        })
        .await,
        vec![b, a]
    );
    assert_eq!(
        q(DecisionQuery {
            decisions: vec!["shifted".into(), "restored".into()],
            ..Default::default()
        })
        .await,
        vec![c, a]
    );
    assert_eq!(
        q(DecisionQuery {
            episode: Some("e2".into()),
            ..Default::default()
        })
        .await,
        vec![b]
    );
    assert_eq!(
        q(DecisionQuery {
            since: Some(T0 + 1),
            ..Default::default()
        })
        .await,
        vec![c, b]
    );
    let all = s
        .decisions(DecisionQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].target, "other");
    assert_eq!(all[0].before, Some(serde_json::json!({"a": 50, "b": 50})));
    assert_eq!(all[0].after, None);
}

async fn a_target_lock_serialises_decisions_on_that_target_only(open: Open<'_>) {
    let s = open().await;
    let held = s.lock_target("exp").await.unwrap();
    // Another target is free.
    let other = tokio::time::timeout(Duration::from_secs(30), s.lock_target("other"))
        .await
        .expect("another target is not blocked")
        .unwrap();
    drop(other);
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move { s.lock_target("exp").await.map(|_| ()) })
    };
    // Still held: the waiter cannot have it (bounded look, not a timing claim).
    let early = tokio::time::timeout(Duration::from_millis(300), async {
        while !waiter.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(early.is_err(), "the lock was handed out while held");
    drop(held);
    tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the waiter gets the lock once released")
        .unwrap()
        .unwrap();
}

async fn pruning_deletes_what_the_retention_allows(open: Open<'_>) {
    let s = open().await;
    let old = insert(s.as_ref(), T0, 1).await;
    let c = s.claim(T0, 60_000).await.unwrap().unwrap();
    let runs = s
        .ensure_runs(c.id, c.round, vec![planned("a")])
        .await
        .unwrap();
    s.record_attempt(RunAttempt {
        run_id: runs[0].id,
        started_at: T0,
        finished_at: T0,
        outcome: RunOutcome::Succeeded {
            result: serde_json::json!({}),
        },
        context: None,
    })
    .await
    .unwrap();
    s.settle(c.id, c.round, T0 + 1).await.unwrap();
    let day = 24 * 3_600_000;
    let young = insert(s.as_ref(), T0 + 200 * 3_600_000, 2).await;
    s.record_decision(decision(T0, "exp", "e1", "cooldown"))
        .await
        .unwrap();
    s.save_chat_thread(ChatThread {
        key: ChatThreadKey {
            action: "slack".into(),
            channel: "c".into(),
            group_key: "g".into(),
        },
        channel_id: "C".into(),
        message_id: "1".into(),
        resolved: true,
        updated_at: T0,
    })
    .await
    .unwrap();
    // 120 h retention (the default): 6 days later the old one goes.
    let report = s.prune(T0 + 6 * day).await.unwrap();
    assert_eq!(report.notifications, 1);
    assert_eq!(report.action_runs, 1);
    assert_eq!(report.traffic_decisions, 1);
    assert_eq!(report.chat_threads, 1);
    assert!(s.get(old.id).await.unwrap().is_none());
    assert!(s.get(young.id).await.unwrap().is_some(), "pending: kept");
    assert_eq!(s.prune(T0 + 6 * day).await.unwrap().notifications, 0);
}

async fn the_store_is_writable(open: Open<'_>) {
    let s = open().await;
    s.check_writable().await.unwrap();
}

type Case = for<'a> fn(Open<'a>) -> BoxFuture<'a, ()>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), (|open| Box::pin($name(open))) as Case)),*]
    };
}

const CASES: &[(&str, Case)] = cases![
    inserts_round_trip_and_list_filters,
    redeliveries_within_the_window_are_stored_once,
    concurrent_redeliveries_store_one_row,
    a_full_inbox_refuses_new_notifications_but_counts_redeliveries,
    claims_are_leased_until_they_expire,
    a_renewed_lease_is_not_taken_over,
    concurrent_claims_never_hand_out_the_same_notification,
    runs_attempts_settle_and_dead_letters,
    chat_threads_are_saved_and_replaced,
    traffic_decisions_are_queried_newest_first,
    a_target_lock_serialises_decisions_on_that_target_only,
    pruning_deletes_what_the_retention_allows,
    the_store_is_writable,
];

async fn run_contract(backend: &str, open: Open<'_>) {
    for (name, case) in CASES {
        eprintln!("{backend}: {name}");
        case(open).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_passes_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let dir = Arc::new(dir);
    let n = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let open = move || -> BoxFuture<'static, Arc<dyn Store>> {
        let path = dir.path().join(format!(
            "{}.db",
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        Box::pin(async move {
            Arc::new(
                SqliteStore::open_with(
                    &path,
                    StoreOptions::new(Duration::from_secs(5), WINDOW),
                    Default::default(),
                )
                .unwrap(),
            ) as Arc<dyn Store>
        })
    };
    run_contract("sqlite", &open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_passes_the_store_contract() {
    let server = Arc::new(pg::PgServer::start());
    let open = {
        let server = server.clone();
        move || -> BoxFuture<'static, Arc<dyn Store>> {
            let url = server.fresh_database();
            Box::pin(async move {
                let mut options = PostgresOptions::new(Secret::new(url));
                options.dedup_window = WINDOW;
                Arc::new(
                    PostgresStore::connect(options, Default::default())
                        .await
                        .unwrap(),
                ) as Arc<dyn Store>
            })
        }
    };
    run_contract("postgres", &open).await;
}

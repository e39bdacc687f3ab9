//! Copying a SQLite store into an empty PostgreSQL store
//! (`mlops-alert-router store copy --to postgres`).
//!
//! Everything is copied with its ids: the inbox (pending notifications stay
//! pending, leases dropped), the ledger, the traffic decisions (cooldowns,
//! hourly limits and episodes carry over), the chat threads and the dedup
//! keys. The SQLite side is read in one read transaction (a consistent
//! snapshot); the PostgreSQL side is written in one transaction, so a failed
//! copy leaves the destination empty. The router must be stopped while it
//! runs: what it would accept after the snapshot would not be copied.

use super::postgres::PostgresStore;
use super::*;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// What a copy moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub notifications: u64,
    pub action_runs: u64,
    pub traffic_decisions: u64,
    pub chat_threads: u64,
}

type SqlRow = Vec<rusqlite::types::Value>;

fn read_all(conn: &Connection, sql: &str) -> Result<Vec<SqlRow>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let n = stmt.column_count();
    let rows = stmt
        .query_map([], |r| {
            (0..n).map(|i| r.get(i)).collect::<Result<SqlRow, _>>()
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn int(v: &rusqlite::types::Value) -> Option<i64> {
    match v {
        rusqlite::types::Value::Integer(i) => Some(*i),
        _ => None,
    }
}

fn text(v: &rusqlite::types::Value) -> Option<String> {
    match v {
        rusqlite::types::Value::Text(s) => Some(s.clone()),
        _ => None,
    }
}

/// The payload as text, compressed or not in the SQLite file.
fn payload(v: &rusqlite::types::Value) -> Result<String, StoreError> {
    super::sqlite::unpack_payload(v.into()).map_err(|e| StoreError::Unavailable(e.to_string()))
}

fn blob(v: &rusqlite::types::Value) -> Vec<u8> {
    match v {
        rusqlite::types::Value::Blob(b) => b.clone(),
        _ => Vec::new(),
    }
}

/// The rows of a SQLite store, read in one snapshot.
struct Snapshot {
    notifications: Vec<SqlRow>,
    runs: Vec<SqlRow>,
    decisions: Vec<SqlRow>,
    threads: Vec<SqlRow>,
}

fn read_snapshot(path: &Path) -> Result<Snapshot, StoreError> {
    if !path.exists() {
        return Err(StoreError::Unavailable(format!(
            "no SQLite database at {} (storage.path)",
            path.display()
        )));
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.execute_batch("BEGIN")?;
    let snapshot = Snapshot {
        notifications: read_all(
            &conn,
            "SELECT id, received_at, dedup_key, receiver, status, group_key, alert_count, \
             alertnames, payload, duplicates, state, round, next_attempt_at, processed_at \
             FROM notifications ORDER BY id",
        )?,
        runs: read_all(
            &conn,
            "SELECT id, notification_id, round, fingerprint, action, action_type, status, \
             attempts, last_error, next_attempt_at, first_attempt_at, last_attempt_at, \
             finished_at, duration_ms, result, context FROM action_runs ORDER BY id",
        )?,
        decisions: read_all(
            &conn,
            "SELECT id, at, action, target, episode, fingerprint, notification_id, decision, \
             before, after, reason FROM traffic_decisions ORDER BY id",
        )?,
        threads: read_all(
            &conn,
            "SELECT action, channel, group_key, channel_id, message_id, resolved, updated_at \
             FROM chat_threads",
        )?,
    };
    conn.execute_batch("COMMIT")?;
    Ok(snapshot)
}

/// Copies the SQLite store at `sqlite` into the (empty) PostgreSQL store `to`.
pub async fn copy_sqlite_to_postgres(
    sqlite: &Path,
    to: &PostgresStore,
) -> Result<CopyReport, StoreError> {
    let path = sqlite.to_owned();
    let snap = tokio::task::spawn_blocking(move || read_snapshot(&path))
        .await
        .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))??;
    let mut client = to.pool_client().await?;
    let tx = client.transaction().await?;
    let existing: i64 = tx
        .query_one("SELECT count(*) FROM notifications", &[])
        .await?
        .get(0);
    if existing > 0 {
        return Err(StoreError::Unavailable(format!(
            "the PostgreSQL store already holds {existing} notifications: copy only into an empty one"
        )));
    }
    let insert = tx
        .prepare(
            "INSERT INTO notifications (id, received_at, dedup_key, receiver, status, group_key, \
             alert_count, alertnames, payload, duplicates, state, round, next_attempt_at, \
             processed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .await?;
    let dedup = tx
        .prepare(
            "INSERT INTO dedup_keys (key, notification_id, received_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET notification_id = EXCLUDED.notification_id, \
             received_at = EXCLUDED.received_at WHERE dedup_keys.received_at < EXCLUDED.received_at",
        )
        .await?;
    let mut report = CopyReport::default();
    for r in &snap.notifications {
        let id = int(&r[0]);
        let received_at = int(&r[1]);
        let key = blob(&r[2]);
        let names: Vec<String> = text(&r[7])
            .unwrap_or_default()
            .split('\u{1f}')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        tx.execute(
            &insert,
            &[
                &id,
                &received_at,
                &key,
                &text(&r[3]),
                &text(&r[4]),
                &text(&r[5]),
                &int(&r[6]),
                &names,
                &payload(&r[8])?,
                &int(&r[9]),
                &text(&r[10]),
                &int(&r[11]),
                &int(&r[12]),
                &int(&r[13]),
            ],
        )
        .await?;
        tx.execute(&dedup, &[&key, &id, &received_at]).await?;
        report.notifications += 1;
    }
    let insert = tx
        .prepare(
            "INSERT INTO action_runs (id, notification_id, round, fingerprint, action, \
             action_type, status, attempts, last_error, next_attempt_at, first_attempt_at, \
             last_attempt_at, finished_at, duration_ms, result, context) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .await?;
    for r in &snap.runs {
        tx.execute(
            &insert,
            &[
                &int(&r[0]),
                &int(&r[1]),
                &int(&r[2]),
                &text(&r[3]),
                &text(&r[4]),
                &text(&r[5]),
                &text(&r[6]),
                &int(&r[7]),
                &text(&r[8]),
                &int(&r[9]),
                &int(&r[10]),
                &int(&r[11]),
                &int(&r[12]),
                &int(&r[13]),
                &text(&r[14]),
                &text(&r[15]),
            ],
        )
        .await?;
        report.action_runs += 1;
    }
    let insert = tx
        .prepare(
            "INSERT INTO traffic_decisions (id, at, action, target, episode, fingerprint, \
             notification_id, decision, before, after, reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .await?;
    for r in &snap.decisions {
        tx.execute(
            &insert,
            &[
                &int(&r[0]),
                &int(&r[1]),
                &text(&r[2]),
                &text(&r[3]),
                &text(&r[4]),
                &text(&r[5]),
                &int(&r[6]),
                &text(&r[7]),
                &text(&r[8]),
                &text(&r[9]),
                &text(&r[10]),
            ],
        )
        .await?;
        report.traffic_decisions += 1;
    }
    let insert = tx
        .prepare(
            "INSERT INTO chat_threads (action, channel, group_key, channel_id, message_id, \
             resolved, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (action, channel, group_key) DO UPDATE SET \
             channel_id = EXCLUDED.channel_id, message_id = EXCLUDED.message_id, \
             resolved = EXCLUDED.resolved, updated_at = EXCLUDED.updated_at",
        )
        .await?;
    for r in &snap.threads {
        let resolved = int(&r[5]).unwrap_or(0) != 0;
        tx.execute(
            &insert,
            &[
                &text(&r[0]),
                &text(&r[1]),
                &text(&r[2]),
                &text(&r[3]),
                &text(&r[4]),
                &resolved,
                &int(&r[6]),
            ],
        )
        .await?;
        report.chat_threads += 1;
    }
    // New rows continue after the copied ids.
    for table in ["notifications", "action_runs", "traffic_decisions"] {
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                 COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
            ),
            &[],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(report)
}

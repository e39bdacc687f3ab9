//! SQLite (WAL, `synchronous=FULL`) implementation of [`Store`].
//!
//! Every write goes through one writer thread that owns the write connection.
//! It takes whatever jobs are queued, runs them in one transaction (each in a
//! savepoint, so one failing job does not undo the others), commits once and
//! only then answers each caller: group commit. Durability then costs one
//! fsync per batch, not per request. Reads use a separate connection, which
//! WAL lets proceed while the writer works.

use super::*;
use crate::metrics::StoreMetrics;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 1024;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
    id              INTEGER PRIMARY KEY,
    received_at     INTEGER NOT NULL,
    dedup_key       BLOB    NOT NULL,
    receiver        TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    group_key       TEXT    NOT NULL,
    alert_count     INTEGER NOT NULL,
    -- distinct alertnames, each followed by char(31), led by char(31): filterable with instr()
    alertnames      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    duplicates      INTEGER NOT NULL DEFAULT 0,
    state           TEXT    NOT NULL DEFAULT 'pending',
    round           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    processed_at    INTEGER
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (next_attempt_at)
    WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS action_runs (
    id               INTEGER PRIMARY KEY,
    notification_id  INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    round            INTEGER NOT NULL,
    fingerprint      TEXT    NOT NULL,
    action           TEXT    NOT NULL,
    action_type      TEXT    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    next_attempt_at  INTEGER,
    first_attempt_at INTEGER,
    last_attempt_at  INTEGER,
    finished_at      INTEGER,
    duration_ms      INTEGER,
    result           TEXT,
    context          TEXT,
    UNIQUE (notification_id, round, fingerprint, action)
);
CREATE TABLE IF NOT EXISTS traffic_decisions (
    id              INTEGER PRIMARY KEY,
    at              INTEGER NOT NULL,
    action          TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    episode         TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,
    notification_id INTEGER NOT NULL,
    decision        TEXT    NOT NULL,
    before          TEXT,
    after           TEXT,
    reason          TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS traffic_decisions_target ON traffic_decisions (target, at);
CREATE INDEX IF NOT EXISTS traffic_decisions_episode ON traffic_decisions (episode);
-- The message each chat action posted for a notification group (Slack bot
-- mode updates it and replies in its thread when the group changes).
CREATE TABLE IF NOT EXISTS chat_threads (
    action       TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    group_key    TEXT    NOT NULL,
    channel_id   TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    resolved     INTEGER NOT NULL DEFAULT 0,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (action, channel, group_key)
);
CREATE INDEX IF NOT EXISTS action_runs_dead ON action_runs (id) WHERE status = 'dead';
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '1');
INSERT OR IGNORE INTO meta (key, value) VALUES ('heartbeat', '0');
"#;

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Job = Box<dyn WriteJob>;

/// A unit of work for the writer thread.
trait WriteJob: Send {
    /// Runs inside the batch transaction; the completion is called after COMMIT.
    fn run(self: Box<Self>, conn: &Connection, state: &mut WriterState) -> Completion;
    /// The batch could not even start: answer with the error.
    fn fail(self: Box<Self>, error: StoreError);
}

struct TypedJob<F, T> {
    f: F,
    tx: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> WriteJob for TypedJob<F, T>
where
    T: Send + 'static,
    F: FnOnce(&Connection, &mut WriterState) -> Result<T, StoreError> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection, state: &mut WriterState) -> Completion {
        let TypedJob { f, tx } = *self;
        let result = in_savepoint(conn, || f(conn, state));
        Box::new(move |committed: Result<(), StoreError>| {
            // The caller may have gone away (request cancelled): nothing to tell.
            let _ = tx.send(committed.and(result));
        })
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.tx.send(Err(error));
    }
}

/// What the writer thread knows besides the database.
struct WriterState {
    /// Notifications not yet done, as committed so far in this batch.
    pending: u64,
    /// Redelivery detection: dedup key → (id, received_at) of notifications
    /// received within the window. Kept here, not in an index, because a
    /// random-hash index costs a page write per insert.
    recent: HashMap<[u8; 32], (i64, i64)>,
    /// `recent` keys in arrival order, for expiry.
    recent_order: VecDeque<([u8; 32], i64)>,
    /// Keys added by the batch in progress (forgotten again if it fails to commit).
    batch_added: Vec<[u8; 32]>,
    dedup_window_ms: i64,
}

impl WriterState {
    fn expire(&mut self, now: i64) {
        while let Some((key, at)) = self.recent_order.front().copied() {
            if at > now - self.dedup_window_ms {
                break;
            }
            self.recent_order.pop_front();
            if self.recent.get(&key).is_some_and(|(_, t)| *t == at) {
                self.recent.remove(&key);
            }
        }
    }

    fn remember(&mut self, key: [u8; 32], id: i64, at: i64) {
        self.recent.insert(key, (id, at));
        self.recent_order.push_back((key, at));
        self.batch_added.push(key);
    }
}

/// The SQLite store.
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    reader: Arc<Mutex<Connection>>,
    pending: Arc<AtomicU64>,
    /// Dropping it stops the checkpoint thread.
    _checkpointer: std::sync::mpsc::Sender<()>,
}

/// How often the WAL is checkpointed, off the commit path.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(
        path: &Path,
        busy_timeout: Duration,
        dedup_window: Duration,
        metrics: StoreMetrics,
    ) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let writer = Connection::open(path)?;
        writer.busy_timeout(busy_timeout)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk before we answer 200, power loss included.
        writer.pragma_update(None, "synchronous", "FULL")?;
        writer.pragma_update(None, "foreign_keys", "ON")?;
        // Checkpoints copy the WAL into the database and fsync it; done by the
        // writer they would stall every commit behind them, so a separate
        // connection does them (PASSIVE: never blocks writers).
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        writer.execute_batch(SCHEMA)?;
        let pending: u64 = writer.query_row(
            "SELECT COUNT(*) FROM notifications WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?;
        let mut state = WriterState {
            pending,
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            batch_added: Vec::new(),
            dedup_window_ms: dedup_window.as_millis() as i64,
        };
        load_recent(&writer, &mut state)?;
        state.batch_added.clear();
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(busy_timeout)?;

        let shared_pending = Arc::new(AtomicU64::new(pending));
        let (tx, rx) = mpsc::channel::<Job>(4 * MAX_BATCH);
        let published = shared_pending.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(writer, rx, state, published, metrics))
            .map_err(|e| StoreError::Unavailable(format!("cannot start writer thread: {e}")))?;
        let checkpointer = spawn_checkpointer(path, busy_timeout)?;
        Ok(Self {
            jobs: tx,
            reader: Arc::new(Mutex::new(reader)),
            pending: shared_pending,
            _checkpointer: checkpointer,
        })
    }

    /// Runs `f` in the writer's next transaction; resolves once it is committed.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut WriterState) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(TypedJob { f, tx });
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs a read on the read connection, off the async threads.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader
                .lock()
                .map_err(|_| StoreError::Unavailable("read connection poisoned".into()))?;
            f(&conn).map_err(StoreError::from)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
    }
}

/// Starts the thread that checkpoints the WAL every [`CHECKPOINT_INTERVAL`]
/// until the returned sender is dropped.
fn spawn_checkpointer(
    path: &Path,
    busy_timeout: Duration,
) -> Result<std::sync::mpsc::Sender<()>, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(CHECKPOINT_INTERVAL)
            {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
                }
            }
            // Leave a small WAL behind on a clean stop.
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start checkpoint thread: {e}")))?;
    Ok(stop)
}

/// Reloads the dedup keys of the notifications still inside the window.
fn load_recent(conn: &Connection, state: &mut WriterState) -> Result<(), StoreError> {
    let cutoff = now_ms() - state.dedup_window_ms;
    let mut stmt =
        conn.prepare("SELECT dedup_key, id, received_at FROM notifications ORDER BY id DESC")?;
    let mut rows = stmt.query([])?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        let at: i64 = row.get(2)?;
        // Ids grow with time: the first row outside the window ends the scan.
        if at <= cutoff {
            break;
        }
        let key: Vec<u8> = row.get(0)?;
        if let Ok(key) = <[u8; 32]>::try_from(key.as_slice()) {
            found.push((key, row.get::<_, i64>(1)?, at));
        }
    }
    for (key, id, at) in found.into_iter().rev() {
        if !state.recent.contains_key(&key) {
            state.remember(key, id, at);
        }
    }
    Ok(())
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    let result = f();
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    conn.prepare_cached("RELEASE job")?.execute([])?;
    result
}

fn writer_loop(
    conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    mut state: WriterState,
    published: Arc<AtomicU64>,
    metrics: StoreMetrics,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        metrics.batch_jobs.observe(batch.len() as f64);
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "Store write failed: cannot begin transaction");
            for job in batch.drain(..) {
                job.fail(StoreError::Unavailable(e.to_string()));
            }
            continue;
        }
        let before = state.pending;
        let completions: Vec<Completion> = batch
            .drain(..)
            .map(|job| job.run(&conn, &mut state))
            .collect();
        let committed = conn.execute_batch("COMMIT").map_err(StoreError::from);
        if let Err(e) = &committed {
            tracing::error!(error = %e, "Store write failed: commit");
            let _ = conn.execute_batch("ROLLBACK");
            state.pending = before;
        }
        metrics
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        if committed.is_err() {
            for key in std::mem::take(&mut state.batch_added) {
                state.recent.remove(&key);
            }
        }
        state.batch_added.clear();
        published.store(state.pending, Ordering::Relaxed);
        for done in completions {
            done(match &committed {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Unavailable(e.to_string())),
            });
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Separates alertnames in `notifications.alertnames`.
const UNIT_SEPARATOR: char = '\u{1f}';

const SUMMARY_COLUMNS: &str = "n.id, n.received_at, n.receiver, n.status, n.group_key, \
     n.alert_count, n.state, n.duplicates, n.round, n.processed_at, n.alertnames";

fn summary_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NotificationSummary> {
    let names: String = r.get(10)?;
    Ok(NotificationSummary {
        id: r.get(0)?,
        received_at: r.get(1)?,
        receiver: r.get(2)?,
        status: r.get(3)?,
        group_key: r.get(4)?,
        alerts: r.get(5)?,
        state: r.get(6)?,
        duplicates: r.get(7)?,
        round: r.get(8)?,
        processed_at: r.get(9)?,
        alertnames: names
            .split(UNIT_SEPARATOR)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ActionRun> {
    let status: String = r.get(6)?;
    let result: Option<String> = r.get(14)?;
    let context: Option<String> = r.get(15)?;
    Ok(ActionRun {
        id: r.get(0)?,
        round: r.get(2)?,
        fingerprint: r.get(3)?,
        action: r.get(4)?,
        action_type: r.get(5)?,
        status: RunStatus::parse(&status),
        attempts: r.get(7)?,
        last_error: r.get(8)?,
        next_attempt_at: r.get(9)?,
        first_attempt_at: r.get(10)?,
        last_attempt_at: r.get(11)?,
        finished_at: r.get(12)?,
        duration_ms: r.get(13)?,
        result: result.and_then(|s| serde_json::from_str(&s).ok()),
        context: context.and_then(|s| serde_json::from_str(&s).ok()),
    })
}

const RUN_COLUMNS: &str = "id, notification_id, round, fingerprint, action, action_type, status, \
     attempts, last_error, next_attempt_at, first_attempt_at, last_attempt_at, finished_at, \
     duration_ms, result, context";

#[async_trait]
impl Store for SqliteStore {
    async fn insert_notification(
        &self,
        n: NewNotification<'_>,
        max_inbox: u64,
    ) -> Result<Inserted, StoreError> {
        let received_at = n.received_at;
        let key = n.dedup_key;
        let receiver = n.receiver.to_owned();
        let status = n.status.to_owned();
        let group_key = n.group_key.to_owned();
        let payload = n.payload.to_owned();
        let alert_count = n.alert_count as i64;
        let mut names: Vec<&str> = n.alertnames.clone();
        names.sort_unstable();
        names.dedup();
        let mut alertnames = String::from(UNIT_SEPARATOR);
        for name in names {
            alertnames.push_str(name);
            alertnames.push(UNIT_SEPARATOR);
        }
        self.write(move |conn, state| {
            state.expire(received_at);
            let existing = state
                .recent
                .get(&key)
                .filter(|(_, at)| *at > received_at - state.dedup_window_ms)
                .map(|(id, _)| *id);
            if let Some(id) = existing {
                conn.prepare_cached(
                    "UPDATE notifications SET duplicates = duplicates + 1 WHERE id = ?1",
                )?
                .execute([id])?;
                return Ok(Inserted {
                    id,
                    duplicate: true,
                });
            }
            if state.pending >= max_inbox {
                return Err(StoreError::InboxFull {
                    pending: state.pending,
                    limit: max_inbox,
                });
            }
            conn.prepare_cached(
                "INSERT INTO notifications (received_at, dedup_key, receiver, status, group_key, \
                 alert_count, alertnames, payload, next_attempt_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?1)",
            )?
            .execute(params![
                received_at,
                &key[..],
                receiver,
                status,
                group_key,
                alert_count,
                alertnames,
                payload
            ])?;
            let id = conn.last_insert_rowid();
            state.pending += 1;
            state.remember(key, id, received_at);
            Ok(Inserted {
                id,
                duplicate: false,
            })
        })
        .await
    }

    async fn claim(&self, now: i64, lease_ms: i64) -> Result<Option<Claimed>, StoreError> {
        self.write(move |conn, _| {
            let claimed = conn
                .prepare_cached(
                    "UPDATE notifications SET lease_until = ?1 + ?2 WHERE id = ( \
                       SELECT id FROM notifications WHERE state = 'pending' \
                       AND next_attempt_at <= ?1 AND (lease_until IS NULL OR lease_until < ?1) \
                       ORDER BY next_attempt_at, id LIMIT 1) \
                     RETURNING id, round, payload",
                )?
                .query_row(params![now, lease_ms], |r| {
                    Ok(Claimed {
                        id: r.get(0)?,
                        round: r.get(1)?,
                        payload: r.get(2)?,
                    })
                })
                .optional()?;
            Ok(claimed)
        })
        .await
    }

    async fn ensure_runs(
        &self,
        notification_id: i64,
        round: i64,
        planned: Vec<PlannedRun>,
    ) -> Result<Vec<ActionRun>, StoreError> {
        self.write(move |conn, _| {
            let mut insert = conn.prepare_cached(
                "INSERT OR IGNORE INTO action_runs (notification_id, round, fingerprint, action, \
                 action_type) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for p in &planned {
                insert.execute(params![
                    notification_id,
                    round,
                    p.fingerprint,
                    p.action,
                    p.action_type
                ])?;
            }
            let mut select = conn.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM action_runs WHERE notification_id = ?1 AND round = ?2 \
                 ORDER BY id"
            ))?;
            let runs = select
                .query_map(params![notification_id, round], run_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(runs)
        })
        .await
    }

    async fn record_attempt(&self, a: RunAttempt) -> Result<(), StoreError> {
        self.write(move |conn, _| {
            let duration = a.finished_at - a.started_at;
            let (status, error, next, finished, result) = match &a.outcome {
                RunOutcome::Succeeded { result } => (
                    RunStatus::Succeeded,
                    None,
                    None,
                    Some(a.finished_at),
                    Some(result.to_string()),
                ),
                RunOutcome::Retry { error, retry_at } => (
                    RunStatus::Pending,
                    Some(error.clone()),
                    Some(*retry_at),
                    None,
                    None,
                ),
                RunOutcome::Dead { error } => (
                    RunStatus::Dead,
                    Some(error.clone()),
                    None,
                    Some(a.finished_at),
                    None,
                ),
            };
            conn.prepare_cached(
                "UPDATE action_runs SET status = ?2, attempts = attempts + 1, \
                   last_error = COALESCE(?3, last_error), next_attempt_at = ?4, \
                   first_attempt_at = COALESCE(first_attempt_at, ?5), last_attempt_at = ?5, \
                   finished_at = ?6, duration_ms = ?7, result = ?8, \
                   context = COALESCE(?9, context) \
                 WHERE id = ?1",
            )?
            .execute(params![
                a.run_id,
                status.as_str(),
                error,
                next,
                a.started_at,
                finished,
                duration,
                result,
                a.context.as_ref().map(|c| c.to_string())
            ])?;
            Ok(())
        })
        .await
    }

    async fn settle(&self, notification_id: i64, round: i64, now: i64) -> Result<(), StoreError> {
        self.write(move |conn, state| {
            let (current_round, current): (i64, String) = conn
                .prepare_cached("SELECT round, state FROM notifications WHERE id = ?1")?
                .query_row([notification_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            if current_round != round {
                conn.prepare_cached(
                    "UPDATE notifications SET next_attempt_at = ?2, lease_until = NULL \
                     WHERE id = ?1",
                )?
                .execute(params![notification_id, now])?;
                return Ok(());
            }
            let next_retry: Option<i64> = conn
                .prepare_cached(
                    "SELECT MIN(COALESCE(next_attempt_at, 0)) FROM action_runs \
                     WHERE notification_id = ?1 AND round = ?2 AND status = 'pending'",
                )?
                .query_row(params![notification_id, round], |r| r.get(0))?;
            match next_retry {
                Some(at) => {
                    conn.prepare_cached(
                        "UPDATE notifications SET next_attempt_at = ?2, lease_until = NULL \
                         WHERE id = ?1",
                    )?
                    .execute(params![notification_id, at.max(now)])?;
                }
                None => {
                    conn.prepare_cached(
                        "UPDATE notifications SET state = 'done', processed_at = ?2, \
                         lease_until = NULL WHERE id = ?1",
                    )?
                    .execute(params![notification_id, now])?;
                    if current == "pending" {
                        state.pending = state.pending.saturating_sub(1);
                    }
                }
            }
            Ok(())
        })
        .await
    }

    async fn release_leases(&self) -> Result<u64, StoreError> {
        self.write(|conn, _| {
            let n = conn.execute(
                "UPDATE notifications SET lease_until = NULL WHERE lease_until IS NOT NULL",
                [],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn replay(&self, id: i64, now: i64) -> Result<Option<i64>, StoreError> {
        self.write(move |conn, state| {
            let before: Option<String> = conn
                .prepare_cached("SELECT state FROM notifications WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?;
            let Some(before) = before else {
                return Ok(None);
            };
            let round: i64 = conn
                .prepare_cached(
                    "UPDATE notifications SET round = round + 1, state = 'pending', \
                     next_attempt_at = ?2, lease_until = NULL, processed_at = NULL \
                     WHERE id = ?1 RETURNING round",
                )?
                .query_row(params![id, now], |r| r.get(0))?;
            if before != "pending" {
                state.pending += 1;
            }
            Ok(Some(round))
        })
        .await
    }

    async fn list(&self, q: ListQuery) -> Result<Vec<NotificationSummary>, StoreError> {
        self.read(move |conn| {
            let mut sql = format!("SELECT {SUMMARY_COLUMNS} FROM notifications n WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(before) = q.before {
                args.push(before.into());
                sql += &format!(" AND n.id < ?{}", args.len());
            }
            if let Some(status) = q.status {
                args.push(status.into());
                sql += &format!(" AND n.status = ?{}", args.len());
            }
            if let Some(state) = q.state {
                args.push(state.into());
                sql += &format!(" AND n.state = ?{}", args.len());
            }
            if let Some(name) = q.alertname {
                args.push(format!("{UNIT_SEPARATOR}{name}{UNIT_SEPARATOR}").into());
                sql += &format!(" AND instr(n.alertnames, ?{}) > 0", args.len());
            }
            args.push(i64::from(q.limit).into());
            sql += &format!(" ORDER BY n.id DESC LIMIT ?{}", args.len());
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), summary_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn get(&self, id: i64) -> Result<Option<NotificationDetail>, StoreError> {
        self.read(move |conn| {
            let found = conn
                .prepare_cached(&format!(
                    "SELECT {SUMMARY_COLUMNS}, n.payload FROM notifications n WHERE n.id = ?1"
                ))?
                .query_row([id], |r| {
                    Ok((summary_from_row(r)?, r.get::<_, String>(11)?))
                })
                .optional()?;
            let Some((summary, payload)) = found else {
                return Ok(None);
            };
            let action_runs = conn
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM action_runs WHERE notification_id = ?1 \
                     ORDER BY round, id"
                ))?
                .query_map([id], run_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            // Stored bodies were validated JSON.
            let payload =
                serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload));
            Ok(Some(NotificationDetail {
                summary,
                payload,
                action_runs,
            }))
        })
        .await
    }

    async fn dead_letter_count(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM action_runs r JOIN notifications n ON n.id = r.notification_id \
                 WHERE r.status = 'dead' AND r.round = n.round",
                [],
                |r| r.get(0),
            )
        })
        .await
    }

    async fn record_decision(&self, d: TrafficDecision) -> Result<i64, StoreError> {
        self.write(move |conn, _| {
            conn.prepare_cached(
                "INSERT INTO traffic_decisions (at, action, target, episode, fingerprint, \
                 notification_id, decision, before, after, reason) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                d.at,
                d.action,
                d.target,
                d.episode,
                d.fingerprint,
                d.notification_id,
                d.decision,
                d.before.map(|v| v.to_string()),
                d.after.map(|v| v.to_string()),
                d.reason
            ])?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    async fn decisions(&self, q: DecisionQuery) -> Result<Vec<TrafficDecision>, StoreError> {
        self.read(move |conn| {
            let mut sql = String::from(
                "SELECT id, at, action, target, episode, fingerprint, notification_id, decision, \
                 before, after, reason FROM traffic_decisions WHERE 1 = 1",
            );
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(t) = q.target {
                args.push(t.into());
                sql += &format!(" AND target = ?{}", args.len());
            }
            if let Some(e) = q.episode {
                args.push(e.into());
                sql += &format!(" AND episode = ?{}", args.len());
            }
            if let Some(since) = q.since {
                args.push(since.into());
                sql += &format!(" AND at >= ?{}", args.len());
            }
            if !q.decisions.is_empty() {
                let mut marks = Vec::new();
                for d in q.decisions {
                    args.push(d.into());
                    marks.push(format!("?{}", args.len()));
                }
                sql += &format!(" AND decision IN ({})", marks.join(", "));
            }
            args.push(i64::from(q.limit).into());
            sql += &format!(" ORDER BY id DESC LIMIT ?{}", args.len());
            let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), |r| {
                    Ok(TrafficDecision {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        action: r.get(2)?,
                        target: r.get(3)?,
                        episode: r.get(4)?,
                        fingerprint: r.get(5)?,
                        notification_id: r.get(6)?,
                        decision: r.get(7)?,
                        before: json(r.get(8)?),
                        after: json(r.get(9)?),
                        reason: r.get(10)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn dead_letters(&self, q: DeadLetterQuery) -> Result<Vec<DeadLetter>, StoreError> {
        self.read(move |conn| {
            let columns: String = RUN_COLUMNS
                .split(", ")
                .map(|c| format!("r.{}", c.trim()))
                .collect::<Vec<_>>()
                .join(", ");
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {columns}, n.receiver, n.group_key, n.status, n.alertnames \
                 FROM action_runs r JOIN notifications n ON n.id = r.notification_id \
                 WHERE r.status = 'dead' AND r.round = n.round AND r.id < ?1 \
                 ORDER BY r.id DESC LIMIT ?2"
            ))?;
            let rows = stmt
                .query_map(
                    params![q.before.unwrap_or(i64::MAX), i64::from(q.limit)],
                    |r| {
                        let mut run = run_from_row(r)?;
                        // The context can be large; the detail has it.
                        run.context = None;
                        let names: String = r.get(19)?;
                        Ok(DeadLetter {
                            notification_id: r.get(1)?,
                            receiver: r.get(16)?,
                            group_key: r.get(17)?,
                            notification_status: r.get(18)?,
                            alertnames: names
                                .split(UNIT_SEPARATOR)
                                .filter(|s| !s.is_empty())
                                .map(str::to_owned)
                                .collect(),
                            run,
                        })
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn chat_thread(&self, key: ChatThreadKey) -> Result<Option<ChatThread>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT channel_id, message_id, resolved, updated_at FROM chat_threads \
                 WHERE action = ?1 AND channel = ?2 AND group_key = ?3",
            )?
            .query_row(params![key.action, key.channel, key.group_key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
            .map(|found| {
                found.map(
                    |(channel_id, message_id, resolved, updated_at)| ChatThread {
                        key,
                        channel_id,
                        message_id,
                        resolved,
                        updated_at,
                    },
                )
            })
        })
        .await
    }

    async fn save_chat_thread(&self, t: ChatThread) -> Result<(), StoreError> {
        self.write(move |conn, _| {
            conn.prepare_cached(
                "INSERT INTO chat_threads (action, channel, group_key, channel_id, message_id, \
                 resolved, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (action, channel, group_key) DO UPDATE SET \
                 channel_id = excluded.channel_id, message_id = excluded.message_id, \
                 resolved = excluded.resolved, updated_at = excluded.updated_at",
            )?
            .execute(params![
                t.key.action,
                t.key.channel,
                t.key.group_key,
                t.channel_id,
                t.message_id,
                t.resolved,
                t.updated_at
            ])?;
            Ok(())
        })
        .await
    }

    fn inbox_depth(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.write(|conn, _| {
            conn.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'heartbeat'")?
                .execute([now_ms().to_string()])?;
            Ok(())
        })
        .await
    }
}

//! SQLite (WAL) implementation of [`Store`].
//!
//! Every write goes through one writer thread that owns the write connection.
//! It takes whatever jobs are queued, runs them in one transaction (each in a
//! savepoint, so one failing job does not undo the others) and commits once:
//! group commit. A commit writes the transaction's frames to the WAL; the
//! writer then makes the WAL durable (`fdatasync`) and only then answers each
//! caller of the batch. What arrives while it waits for the disk goes into
//! the next batch, so durability costs one flush per flush-time, not one per
//! request. (A separate flushing thread, overlapping the next commit with
//! the flush, was measured slower: twice the context switches per request
//! for little overlap; see BENCHMARKS.md.)
//! Reads use a separate connection, which WAL lets proceed while the writer
//! works.

use super::health::{free_bytes, size_of, wal_path, FileIdentity, Health};
use super::*;
use crate::metrics::{KindLabels, StoreMetrics};
use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

// rusqlite's errors become store errors here, at the backend's edge: the
// store's error type itself carries no rusqlite type.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match Fault::of(&e) {
            Some(fault) => StoreError::Storage {
                fault,
                message: e.to_string(),
            },
            None => StoreError::Unavailable(e.to_string()),
        }
    }
}

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 1024;

/// Leases kept before long-expired ones are dropped (a lease is dropped when
/// its notification settles; one whose notification was pruned meanwhile
/// would otherwise stay).
const MAX_LEASES_KEPT: usize = 4096;

/// How long after it ran out a lease may be dropped by that cleanup (until
/// then a late renewal still extends it, as it would a lease in a row).
const STALE_LEASE_MS: i64 = 3_600_000;

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
    -- unused: leases are kept in the writer's memory (one process owns the
    -- file); set only by earlier versions, and cleared at startup
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
    /// Changes no row (reads, or only the writer's memory): a batch of such
    /// jobs alone has nothing to flush.
    fn reads_only(&self) -> bool;
}

struct TypedJob<F, T> {
    f: F,
    tx: oneshot::Sender<Result<T, StoreError>>,
    /// Run in a savepoint, so a failure undoes its earlier statements and
    /// leaves the rest of the batch alone. A job of a single statement needs
    /// none: SQLite undoes a failed statement by itself.
    savepoint: bool,
    reads_only: bool,
}

impl<F, T> WriteJob for TypedJob<F, T>
where
    T: Send + 'static,
    F: FnOnce(&Connection, &mut WriterState) -> Result<T, StoreError> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection, state: &mut WriterState) -> Completion {
        let TypedJob {
            f, tx, savepoint, ..
        } = *self;
        let result = if savepoint {
            in_savepoint(conn, || f(conn, state))
        } else {
            f(conn, state)
        };
        if let Err(StoreError::Storage { fault, message }) = &result {
            state.batch_fault = Some((*fault, message.clone()));
        }
        Box::new(move |committed: Result<(), StoreError>| {
            // The caller may have gone away (request cancelled): nothing to tell.
            let _ = tx.send(committed.and(result));
        })
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.tx.send(Err(error));
    }

    fn reads_only(&self) -> bool {
        self.reads_only
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
    /// A storage fault a job of the batch in progress ran into.
    batch_fault: Option<(Fault, String)>,
    /// Leases of claimed notifications: id → held until (ms). Kept here, not
    /// in the notification's row: one process owns the file, so no other
    /// process ever reads a lease, and a claim or a renewal then writes nothing.
    leases: HashMap<i64, i64>,
    /// Lease changes of the batch in progress, with what they replaced and
    /// whether a claim made them (undone, newest first, if it fails).
    batch_leases: Vec<(i64, Option<i64>, bool)>,
}

impl WriterState {
    fn new(pending: u64, dedup_window_ms: i64) -> Self {
        Self {
            pending,
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            batch_added: Vec::new(),
            dedup_window_ms,
            batch_fault: None,
            leases: HashMap::new(),
            batch_leases: Vec::new(),
        }
    }

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

    /// Whether `id` is leased at `now`.
    fn leased(&self, id: i64, now: i64) -> bool {
        self.leases.get(&id).is_some_and(|until| *until >= now)
    }

    /// Leases `id` until `until`, or releases it (`None`): a renewal or a
    /// release, which stands once its batch is committed.
    fn set_lease(&mut self, id: i64, until: Option<i64>) {
        self.change_lease(id, until, false);
    }

    /// Leases `id` for a claim, which stands only once its caller is answered.
    fn claim_lease(&mut self, id: i64, until: i64) {
        self.change_lease(id, Some(until), true);
    }

    fn change_lease(&mut self, id: i64, until: Option<i64>, claim: bool) {
        let before = match until {
            Some(t) => self.leases.insert(id, t),
            None => self.leases.remove(&id),
        };
        if before != until {
            self.batch_leases.push((id, before, claim));
        }
    }

    /// Undoes lease changes of a batch that failed: all of them if it was
    /// rolled back; only its claims if it committed but could not be flushed
    /// (its rows are what every later read sees, while the claims' callers
    /// were told it failed and will not work on what they claimed).
    fn undo_leases(&mut self, rolled_back: bool) {
        while let Some((id, before, claim)) = self.batch_leases.pop() {
            if !(rolled_back || claim) {
                continue;
            }
            match before {
                Some(t) => self.leases.insert(id, t),
                None => self.leases.remove(&id),
            };
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
    path: PathBuf,
    options: StoreOptions,
    metrics: StoreMetrics,
    /// Dropping it stops the checkpoint thread.
    _checkpointer: std::sync::mpsc::Sender<()>,
    /// Dropping it stops the pruner thread (if any).
    _pruner: Option<std::sync::mpsc::Sender<()>>,
    /// Per-target serialisation of traffic decisions (one process owns the file).
    locks: LocalLocks,
}

/// How the store is run.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long a write waits for a lock held by another process.
    pub busy_timeout: Duration,
    /// Redeliveries within this window are recognised (and their rows never pruned).
    pub dedup_window: Duration,
    /// Finished notifications older than this are pruned.
    pub retention: Duration,
    /// Notifications holding a dead letter are kept this long unless replayed.
    pub dead_letter_retention: Duration,
    /// How often the background pruner runs; `None`: no background pruner
    /// ([`SqliteStore::prune`] still works).
    pub prune_interval: Option<Duration>,
}

impl StoreOptions {
    /// Alertmanager's 120 h retention, 30 days for dead letters, no background pruner.
    pub fn new(busy_timeout: Duration, dedup_window: Duration) -> Self {
        Self {
            busy_timeout,
            dedup_window,
            retention: Duration::from_secs(120 * 3600),
            dead_letter_retention: Duration::from_secs(720 * 3600),
            prune_interval: None,
        }
    }
}

/// A WAL without a commit for this long is truncated to zero.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// How often the checkpointer runs while commits happen: a PASSIVE pass,
/// and a restart of the WAL once it holds over [`WAL_SIZE_LIMIT`], so under
/// load the log stays within the limit plus one tick of commits.
const CHECKPOINT_TICK: Duration = Duration::from_millis(100);

/// A restarted WAL is cut back to this size (`journal_size_limit`); under
/// load it stays below it, so the next commits overwrite blocks the file
/// already has (a flush of data only) instead of growing it again block by
/// block (each flush also a filesystem journal commit). An idle second
/// truncates it to zero.
const WAL_KEEP_BYTES: i64 = 64 << 20;

/// Frames a RESTART checkpoint may find not yet copied (see [`catch_up`]).
const RESTART_BACKLOG: i64 = 256;

/// The WAL file is cut back to this size when a checkpoint resets it
/// (`journal_size_limit`). Over it, or after an idle second, the
/// checkpointer truncates it to zero.
const WAL_SIZE_LIMIT: i64 = 4 << 20;

/// Notifications (or decisions, or chat threads) deleted per write job: small
/// enough that a pruning job adds little to the group commit it shares.
const PRUNE_BATCH: i64 = 200;

/// Pages returned to the filesystem per write job after pruning (1 MiB).
const VACUUM_PAGES: i64 = 256;

/// Shifts and restores are kept at least this long, whatever the retention:
/// a target's cooldown and hourly limit count them.
const SHIFT_MIN_KEEP_MS: i64 = 7 * 24 * 3600 * 1000;

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, with default
    /// retention and no background pruner.
    pub fn open(
        path: &Path,
        busy_timeout: Duration,
        dedup_window: Duration,
        metrics: StoreMetrics,
    ) -> Result<Self, StoreError> {
        Self::open_with(path, StoreOptions::new(busy_timeout, dedup_window), metrics)
    }

    /// Opens (creating if needed) the database at `path`.
    pub fn open_with(
        path: &Path,
        options: StoreOptions,
        metrics: StoreMetrics,
    ) -> Result<Self, StoreError> {
        let busy_timeout = options.busy_timeout;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let writer = Connection::open(path)?;
        writer.busy_timeout(busy_timeout)?;
        // Freed pages can go back to the filesystem after pruning. Takes effect
        // for a new file when its first table is created; an existing file
        // needs one VACUUM (below).
        let auto_vacuum: i64 = writer.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
        let fresh: bool = writer.query_row(
            "SELECT COUNT(*) = 0 FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )?;
        if auto_vacuum != 2 {
            writer.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        }
        writer.pragma_update(None, "journal_mode", "WAL")?;
        // FULL while opening: the schema and migrations are durable at once.
        // The writer thread switches to NORMAL and makes each commit durable
        // itself before anyone is answered (see `writer_loop`).
        writer.pragma_update(None, "synchronous", "FULL")?;
        writer.pragma_update(None, "foreign_keys", "ON")?;
        // Checkpoints copy the WAL into the database and fsync it; done by the
        // writer they would stall every commit behind them, so a separate
        // connection does them (PASSIVE: never blocks writers).
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        writer.pragma_update(None, "journal_size_limit", WAL_KEEP_BYTES)?;
        writer.execute_batch(SCHEMA)?;
        if auto_vacuum != 2 && !fresh {
            migrate_auto_vacuum(&writer, path);
        }
        let pending: u64 = writer.query_row(
            "SELECT COUNT(*) FROM notifications WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?;
        let mut state = WriterState::new(pending, options.dedup_window.as_millis() as i64);
        load_recent(&writer, &mut state)?;
        state.batch_added.clear();
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(busy_timeout)?;
        let identity = FileIdentity::capture(path)
            .map_err(|e| StoreError::Unavailable(format!("cannot stat {}: {e}", path.display())))?;

        let shared_pending = Arc::new(AtomicU64::new(pending));
        let commits = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel::<Job>(4 * MAX_BATCH);
        let published = shared_pending.clone();
        let writer_metrics = metrics.clone();
        // The writer flushes the WAL through its own handle: fdatasync acts
        // on the file, whichever descriptor wrote the pages.
        let wal = std::fs::OpenOptions::new()
            .write(true)
            .open(wal_path(path))
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot open the write-ahead log of {}: {e}",
                    path.display()
                ))
            })?;
        // NORMAL: COMMIT writes the WAL frames without waiting for the disk;
        // the writer's fdatasync makes them durable before any caller is
        // answered, so a 200 still means "on disk, power loss included".
        // Checkpoints (another connection, FULL) sync the WAL before copying
        // it and the database after, so a restarted WAL never drops a frame
        // that was not already in the synced database.
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        let ctx = WriterContext {
            health: Arc::new(Health::new(metrics.clone())),
            identity,
            commits: commits.clone(),
            busy_timeout,
            wal,
            path: path.to_owned(),
        };
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(writer, rx, state, published, writer_metrics, ctx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start writer thread: {e}")))?;
        let checkpointer = spawn_checkpointer(path, commits, metrics.clone())?;
        for (kind, keep) in [
            ("notifications", options.retention),
            ("dead_letters", options.dead_letter_retention),
        ] {
            metrics
                .retention
                .get_or_create(&KindLabels { kind })
                .set(keep.as_secs() as i64);
        }
        let pruner = match options.prune_interval {
            Some(every) => Some(spawn_pruner(
                path,
                every,
                tx.clone(),
                options.clone(),
                metrics.clone(),
            )?),
            None => None,
        };
        Ok(Self {
            jobs: tx,
            reader: Arc::new(Mutex::new(reader)),
            pending: shared_pending,
            path: path.to_owned(),
            options,
            metrics,
            _checkpointer: checkpointer,
            _pruner: pruner,
            locks: LocalLocks::default(),
        })
    }

    /// Deletes what the retention allows as of `now` (ms), in small batches
    /// through the writer, then gives freed pages back to the filesystem. The
    /// background pruner calls this every `prune_interval`; tests call it
    /// with the time they want.
    pub async fn prune(&self, now: i64) -> Result<PruneReport, StoreError> {
        let jobs = self.jobs.clone();
        let options = self.options.clone();
        let metrics = self.metrics.clone();
        tokio::task::spawn_blocking(move || prune_pass(&jobs, &options, now, &metrics))
            .await
            .map_err(|e| StoreError::Unavailable(format!("prune task failed: {e}")))?
    }

    /// The database file this store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in the writer's next transaction; resolves once it is committed.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut WriterState) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(f, true, false).await
    }

    /// [`Self::write`] for a job that executes at most one statement (no
    /// savepoint around it: the statement fails or succeeds as a whole).
    async fn write_one<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut WriterState) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(f, false, false).await
    }

    /// [`Self::write`] for a job that changes no row: it reads, or changes
    /// only the writer's memory (leases). It still runs in the writer's
    /// order, so it sees every job queued before it.
    async fn in_writer<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut WriterState) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(f, false, true).await
    }

    async fn submit<T, F>(&self, f: F, savepoint: bool, reads_only: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut WriterState) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(TypedJob {
            f,
            tx,
            savepoint,
            reads_only,
        });
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

/// Starts the thread that checkpoints the WAL until the returned sender is
/// dropped. Every [`CHECKPOINT_TICK`] with commits: PASSIVE (never blocks
/// the writer). Under steady load a PASSIVE checkpoint rarely catches the
/// very last frame, so SQLite never restarts the WAL from its beginning and
/// it grows: when it holds more than [`WAL_SIZE_LIMIT`], a RESTART checkpoint
/// (after [`catch_up`]: a hold on the write lock of a few frames and one
/// flush) makes the next commit start it over, overwriting blocks the file
/// already has. After a whole [`CHECKPOINT_INTERVAL`] without a commit, a
/// TRUNCATE checkpoint empties it.
fn spawn_checkpointer(
    path: &Path,
    commits: Arc<AtomicU64>,
    metrics: StoreMetrics,
) -> Result<std::sync::mpsc::Sender<()>, StoreError> {
    let conn = Connection::open(path)?;
    // TRUNCATE waits for readers while holding the write lock: a short wait,
    // then try again at the next idle tick, rather than stall a commit.
    conn.busy_timeout(Duration::from_millis(50))?;
    // A checkpoint syncs the WAL before copying frames and the database
    // after: the writer's commits (NORMAL) rely on it before the WAL restarts.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "journal_size_limit", WAL_KEEP_BYTES)?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let db_path = path.to_owned();
    let wal = wal_path(path);
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            // Commits as of the last tick, and as of the last idle check.
            let mut seen_tick = commits.load(Ordering::Relaxed);
            let mut seen_interval = seen_tick;
            let mut wal_frames = 0i64;
            let mut last_interval = std::time::Instant::now();
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(CHECKPOINT_TICK)
            {
                let now = commits.load(Ordering::Relaxed);
                let busy_tick = now != seen_tick;
                seen_tick = now;
                let mut mode = if busy_tick { Some("PASSIVE") } else { None };
                if last_interval.elapsed() >= CHECKPOINT_INTERVAL {
                    last_interval = std::time::Instant::now();
                    // A whole interval without a commit: empty the file.
                    if now == seen_interval && wal_frames > 0 {
                        mode = Some("TRUNCATE");
                    }
                    seen_interval = now;
                }
                let Some(mode) = mode else { continue };
                let mut result = checkpoint(&conn, mode);
                // Over the limit under load: RESTART, so the next commits
                // write the WAL again from its start instead of growing it.
                // It holds the write lock while it copies what is left and
                // flushes the database: PASSIVE passes first leave it little.
                if let Ok((_, frames, _)) = result {
                    if mode == "PASSIVE" && frames.saturating_mul(page_size) > WAL_SIZE_LIMIT {
                        catch_up(&conn, result);
                        result = checkpoint(&conn, "RESTART");
                    }
                }
                match result {
                    // Busy: readers kept it from finishing; try again next tick.
                    Ok((busy, frames, _)) => {
                        wal_frames = if mode == "TRUNCATE" && busy == 0 {
                            0
                        } else {
                            frames.max(1)
                        }
                    }
                    Err(e) if Fault::of(&e).is_some() => {
                        tracing::debug!(error = %e, "WAL checkpoint failed (storage fault)")
                    }
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; will retry"),
                }
                metrics.database_bytes.set(size_of(&db_path) as i64);
                metrics.wal_bytes.set(size_of(&wal) as i64);
            }
            // Leave a small WAL behind on a clean stop.
            let _ = checkpoint(&conn, "TRUNCATE");
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start checkpoint thread: {e}")))?;
    Ok(stop)
}

/// Runs one checkpoint in `mode` (PASSIVE, RESTART, TRUNCATE): (busy,
/// frames in the WAL, frames copied into the database).
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

/// Before a RESTART checkpoint, which holds the write lock while it copies
/// the frames not yet in the database and flushes it: more PASSIVE passes
/// (no lock; each copies what was committed during the one before) until
/// fewer than [`RESTART_BACKLOG`] frames are left, at most three, so the
/// writer waits for a few frames and one flush, not for a tick of commits.
/// `last` is the result of the pass just made: (busy, frames, copied).
fn catch_up(conn: &Connection, mut last: rusqlite::Result<(i64, i64, i64)>) {
    for _ in 0..3 {
        match last {
            Ok((_, frames, copied)) if frames - copied >= RESTART_BACKLOG => {}
            _ => return,
        }
        last = checkpoint(conn, "PASSIVE");
    }
}

/// Turns on incremental vacuum for a database created without it: one full
/// VACUUM (it rewrites the file; needs about its size free again). If that
/// fails, pruning still works: freed pages are reused, the file just does
/// not shrink.
fn migrate_auto_vacuum(conn: &Connection, path: &Path) {
    let started = std::time::Instant::now();
    match conn.execute_batch("VACUUM") {
        Ok(()) => tracing::info!(
            path = %path.display(),
            took_ms = started.elapsed().as_millis() as u64,
            "Database rewritten once with auto_vacuum=INCREMENTAL: pruned space now goes back to the filesystem"
        ),
        Err(e) => tracing::warn!(
            path = %path.display(),
            error = %e,
            "Cannot VACUUM the database to turn on incremental vacuum (needs free space about the size of the file); pruned space is reused but the file does not shrink; will try again at the next start"
        ),
    }
}

/// Starts the thread that prunes every `every` until the returned sender is dropped.
fn spawn_pruner(
    path: &Path,
    every: Duration,
    jobs: mpsc::Sender<Job>,
    options: StoreOptions,
    metrics: StoreMetrics,
) -> Result<std::sync::mpsc::Sender<()>, StoreError> {
    let reader = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    reader.busy_timeout(options.busy_timeout)?;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("store-pruner".into())
        .spawn(move || loop {
            match prune_pass(&jobs, &options, now_ms(), &metrics) {
                Ok(r) if r != PruneReport::default() => tracing::info!(
                    notifications = r.notifications,
                    action_runs = r.action_runs,
                    traffic_decisions = r.traffic_decisions,
                    chat_threads = r.chat_threads,
                    vacuumed_pages = r.vacuumed_pages,
                    "Pruned expired rows"
                ),
                Ok(_) => {}
                // Logged once by the store's health.
                Err(StoreError::Storage { .. }) => {}
                Err(e) => tracing::warn!(error = %e, "Pruning failed; will retry"),
            }
            if let Err(e) = refresh_gauges(&reader, now_ms(), &metrics) {
                tracing::debug!(error = %e, "Cannot read store row counts");
            }
            match stopped.recv_timeout(every) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => break,
            }
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start pruner thread: {e}")))?;
    Ok(stop)
}

/// Runs `f` in the writer's next transaction from a plain thread.
fn write_blocking<T, F>(jobs: &mpsc::Sender<Job>, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&Connection, &mut WriterState) -> Result<T, StoreError> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(TypedJob {
        f,
        tx,
        savepoint: true,
        reads_only: false,
    });
    jobs.blocking_send(job).map_err(|_| StoreError::Closed)?;
    rx.blocking_recv().map_err(|_| StoreError::Closed)?
}

/// One pruning pass as of `now`: each kind in batches of [`PRUNE_BATCH`],
/// each batch its own write job (so ingest commits interleave), then
/// incremental vacuum in steps of [`VACUUM_PAGES`].
///
/// What is kept:
/// - notifications not done (the inbox), and any received within the dedup window;
/// - done notifications finished within `retention`;
/// - done notifications with a dead run in their latest round (a dead letter)
///   finished within `dead_letter_retention`; a replay makes a new round, so
///   a replayed one that then succeeds follows `retention` again;
/// - traffic decisions made within `retention`; a shift or restore also for
///   at least [`SHIFT_MIN_KEEP_MS`] (cooldowns and the hourly limit count
///   them) and for as long as its episode had any decision within `retention`
///   (an alert still firing is re-notified every repeat_interval; its
///   episode's shift is what makes the next notification a no-op and what a
///   later `restore` puts back);
/// - chat threads: resolved ones updated within `retention`, open ones
///   (their group may still get a notification to thread under) updated
///   within `dead_letter_retention`.
fn prune_pass(
    jobs: &mpsc::Sender<Job>,
    options: &StoreOptions,
    now: i64,
    metrics: &StoreMetrics,
) -> Result<PruneReport, StoreError> {
    let retention = options.retention.as_millis() as i64;
    let dedup = options.dedup_window.as_millis() as i64;
    let dead_keep = options.dead_letter_retention.as_millis() as i64;
    let done_cutoff = now - retention;
    let received_cutoff = now - retention.max(dedup);
    let dead_cutoff = now - dead_keep;
    let shift_cutoff = now - retention.max(SHIFT_MIN_KEEP_MS);
    let mut report = PruneReport::default();
    metrics.prune_runs.inc();

    // Notifications (with their runs), oldest first, in id windows.
    let mut cursor = 0i64;
    loop {
        let (deleted, runs, next) = write_blocking(jobs, move |conn, _| {
            let window = scan_window(
                conn,
                "SELECT id, received_at FROM notifications WHERE id > ?1 ORDER BY id LIMIT ?2",
                cursor,
                received_cutoff,
            )?;
            let Some(end) = window else {
                return Ok((0u64, 0u64, None));
            };
            let ids: Vec<i64> = conn
                .prepare_cached(
                    "SELECT id FROM notifications n WHERE id > ?1 AND id <= ?2 \
                     AND state = 'done' AND received_at < ?3 AND processed_at < ?4 \
                     AND (processed_at < ?5 OR NOT EXISTS (SELECT 1 FROM action_runs r \
                       WHERE r.notification_id = n.id AND r.round = n.round \
                       AND r.status = 'dead'))",
                )?
                .query_map(
                    params![cursor, end, received_cutoff, done_cutoff, dead_cutoff],
                    |r| r.get(0),
                )?
                .collect::<Result<_, _>>()?;
            let mut runs = 0u64;
            let mut delete_runs =
                conn.prepare_cached("DELETE FROM action_runs WHERE notification_id = ?1")?;
            let mut delete = conn.prepare_cached("DELETE FROM notifications WHERE id = ?1")?;
            for id in &ids {
                runs += delete_runs.execute([id])? as u64;
                delete.execute([id])?;
            }
            Ok((ids.len() as u64, runs, Some(end)))
        })?;
        report.notifications += deleted;
        report.action_runs += runs;
        match next {
            Some(end) => cursor = end,
            None => break,
        }
    }

    // Traffic decisions.
    let mut cursor = 0i64;
    loop {
        let (deleted, next) = write_blocking(jobs, move |conn, _| {
            let window = scan_window(
                conn,
                "SELECT id, at FROM traffic_decisions WHERE id > ?1 ORDER BY id LIMIT ?2",
                cursor,
                done_cutoff,
            )?;
            let Some(end) = window else {
                return Ok((0u64, None));
            };
            let deleted = conn
                .prepare_cached(
                    "DELETE FROM traffic_decisions WHERE id > ?1 AND id <= ?2 AND at < ?3 \
                     AND (decision NOT IN ('shifted', 'restored') \
                       OR (at < ?4 AND NOT EXISTS (SELECT 1 FROM traffic_decisions e \
                         WHERE e.episode = traffic_decisions.episode AND e.at >= ?3)))",
                )?
                .execute(params![cursor, end, done_cutoff, shift_cutoff])?;
            Ok((deleted as u64, Some(end)))
        })?;
        report.traffic_decisions += deleted;
        match next {
            Some(end) => cursor = end,
            None => break,
        }
    }

    // Chat threads (one row per group: a small table).
    loop {
        let deleted = write_blocking(jobs, move |conn, _| {
            Ok(conn
                .prepare_cached(
                    "DELETE FROM chat_threads WHERE rowid IN (SELECT rowid FROM chat_threads \
                     WHERE (resolved = 1 AND updated_at < ?1) OR updated_at < ?2 LIMIT ?3)",
                )?
                .execute(params![done_cutoff, dead_cutoff, PRUNE_BATCH])? as u64)
        })?;
        report.chat_threads += deleted;
        if deleted < PRUNE_BATCH as u64 {
            break;
        }
    }

    // Space back to the filesystem, a step at a time.
    if report != PruneReport::default() {
        loop {
            let freed = write_blocking(jobs, |conn, _| {
                let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
                if free == 0 {
                    return Ok(0i64);
                }
                // Each step of the statement frees one page: step it to the end.
                let mut stmt =
                    conn.prepare_cached(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))?;
                let mut rows = stmt.query([])?;
                while rows.next()?.is_some() {}
                let left: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
                Ok(free - left)
            })?;
            report.vacuumed_pages += freed.max(0) as u64;
            if freed < VACUUM_PAGES {
                break;
            }
        }
    }
    for (kind, n) in [
        ("notifications", report.notifications),
        ("action_runs", report.action_runs),
        ("traffic_decisions", report.traffic_decisions),
        ("chat_threads", report.chat_threads),
    ] {
        if n > 0 {
            metrics
                .pruned_rows
                .get_or_create(&KindLabels { kind })
                .inc_by(n);
        }
    }
    Ok(report)
}

/// The last id of the next window of at most [`PRUNE_BATCH`] rows after
/// `cursor` whose time (second column) is before `cutoff`; `None` when there
/// is none (rows are scanned in id order, which is time order).
fn scan_window(
    conn: &Connection,
    sql: &str,
    cursor: i64,
    cutoff: i64,
) -> Result<Option<i64>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params![cursor, PRUNE_BATCH])?;
    let mut end = None;
    while let Some(row) = rows.next()? {
        let at: i64 = row.get(1)?;
        if at >= cutoff {
            break;
        }
        end = Some(row.get::<_, i64>(0)?);
    }
    Ok(end)
}

/// Rows per kind and the age of the oldest row the retention applies to.
fn refresh_gauges(conn: &Connection, now: i64, metrics: &StoreMetrics) -> Result<(), StoreError> {
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
    for (kind, sql) in [
        ("notifications", "SELECT COUNT(*) FROM notifications"),
        ("action_runs", "SELECT COUNT(*) FROM action_runs"),
        (
            "traffic_decisions",
            "SELECT COUNT(*) FROM traffic_decisions",
        ),
        ("chat_threads", "SELECT COUNT(*) FROM chat_threads"),
        (
            "dead_letters",
            "SELECT COUNT(*) FROM action_runs r JOIN notifications n ON n.id = r.notification_id \
             WHERE r.status = 'dead' AND r.round = n.round",
        ),
    ] {
        metrics
            .rows
            .get_or_create(&KindLabels { kind })
            .set(count(sql)?);
    }
    // Done and not holding a dead letter: the oldest such row is the first in id order.
    let oldest: Option<i64> = conn
        .query_row(
            "SELECT received_at FROM notifications n WHERE state = 'done' AND NOT EXISTS \
             (SELECT 1 FROM action_runs r WHERE r.notification_id = n.id AND r.round = n.round \
              AND r.status = 'dead') ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let oldest_dead: Option<i64> = conn.query_row(
        "SELECT MIN(n.processed_at) FROM action_runs r JOIN notifications n \
         ON n.id = r.notification_id WHERE r.status = 'dead' AND r.round = n.round \
         AND n.state = 'done'",
        [],
        |r| r.get(0),
    )?;
    for (kind, at) in [("notifications", oldest), ("dead_letters", oldest_dead)] {
        let age = at.map(|at| ((now - at) / 1000).max(0)).unwrap_or(0);
        metrics
            .oldest_row_age
            .get_or_create(&KindLabels { kind })
            .set(age);
    }
    Ok(())
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
    // After SQLITE_FULL or an I/O error SQLite may have rolled back the whole
    // transaction (and the savepoint with it): then the job's own error is
    // the one to report, and the writer fails the rest of the batch.
    if conn.is_autocommit() {
        return result;
    }
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    conn.prepare_cached("RELEASE job")?.execute([])?;
    result
}

/// What the writer thread needs besides the connection and its state.
struct WriterContext {
    health: Arc<Health>,
    /// The file as opened, compared with the path after each commit.
    identity: FileIdentity,
    /// Commits so far (the checkpointer truncates the WAL when it stands still).
    commits: Arc<AtomicU64>,
    /// `storage.busy_timeout`: how long a write waits for a lock.
    busy_timeout: Duration,
    /// The WAL, flushed after each commit.
    wal: std::fs::File,
    /// The database file (its volume's free space decides whether a "disk
    /// full" fault has cleared).
    path: PathBuf,
}

/// The same error again, for each caller of a batch.
fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Storage { fault, message } => StoreError::Storage {
            fault: *fault,
            message: message.clone(),
        },
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// How the writer waits for a lock held by another connection (a RESTART
/// checkpoint holds the write lock while it copies the last frames and
/// flushes the database): it polls every [`BUSY_POLL`] until the lock is free
/// or `storage.busy_timeout` has passed. SQLite's own handler backs off to
/// 100 ms sleeps, so a commit that found a 30 ms checkpoint in its way slept
/// up to 60 ms, and every request of the next batch waited with it.
struct BusyWait {
    timeout: std::cell::Cell<Duration>,
    started: std::cell::Cell<Option<std::time::Instant>>,
}

/// Lock poll interval of the writer (see [`BusyWait`]).
const BUSY_POLL: Duration = Duration::from_micros(200);

thread_local! {
    static WRITER_BUSY: BusyWait = const {
        BusyWait {
            timeout: std::cell::Cell::new(Duration::from_secs(5)),
            started: std::cell::Cell::new(None),
        }
    };
}

/// SQLite's busy callback for the writer connection: `count` is how many
/// times it was called for this lock already; false gives up (SQLITE_BUSY).
fn writer_busy(count: i32) -> bool {
    WRITER_BUSY.with(|b| {
        let now = std::time::Instant::now();
        let started = match b.started.get() {
            Some(at) if count > 0 => at,
            _ => {
                b.started.set(Some(now));
                now
            }
        };
        if now.duration_since(started) >= b.timeout.get() {
            return false;
        }
        std::thread::sleep(BUSY_POLL);
        true
    })
}

/// Installs [`writer_busy`] on the writer connection, on the writer thread
/// (its state is per thread). Falls back to SQLite's own handler on error.
fn poll_when_busy(conn: &Connection, timeout: Duration) {
    WRITER_BUSY.with(|b| b.timeout.set(timeout));
    if let Err(e) = conn.busy_handler(Some(writer_busy)) {
        tracing::warn!(error = %e, "Cannot install the store writer's busy handler; using SQLite's");
    }
}

fn writer_loop(
    conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    mut state: WriterState,
    published: Arc<AtomicU64>,
    metrics: StoreMetrics,
    mut ctx: WriterContext,
) {
    poll_when_busy(&conn, ctx.busy_timeout);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = next_job(&mut rx) {
        batch.push(first);
        // Everything that arrived during the last commit and flush goes in
        // this one (fewer commits, fewer WAL frames and flushes per job).
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // The file is gone: nothing written now would survive a restart.
        if let Some((Fault::Gone, message)) = ctx.health.current() {
            for job in batch.drain(..) {
                job.fail(Health::error(Fault::Gone, &message));
            }
            continue;
        }
        let started = std::time::Instant::now();
        metrics.batch_jobs.observe(batch.len() as f64);
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let error = StoreError::from(e);
            match &error {
                StoreError::Storage { fault, message } => ctx.health.fail(*fault, message),
                other => {
                    tracing::error!(error = %other, "Store write failed: cannot begin transaction")
                }
            }
            for job in batch.drain(..) {
                job.fail(copy_error(&error));
            }
            continue;
        }
        let before = state.pending;
        let reads_only = batch.iter().all(|job| job.reads_only());
        state.batch_fault = None;
        let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            if conn.is_autocommit() {
                // SQLite rolled the transaction back (disk full, I/O error):
                // nothing more of this batch can commit.
                let (fault, message) = state.batch_fault.clone().unwrap_or((
                    Fault::Io,
                    "the transaction was rolled back by SQLite".to_owned(),
                ));
                job.fail(Health::error(fault, &message));
            } else {
                completions.push(job.run(&conn, &mut state));
            }
        }
        let mut committed = if conn.is_autocommit() {
            let (fault, message) = state.batch_fault.clone().unwrap_or((
                Fault::Io,
                "the transaction was rolled back by SQLite".to_owned(),
            ));
            Err(Health::error(fault, &message))
        } else {
            conn.execute_batch("COMMIT").map_err(StoreError::from)
        };
        if let Err(e) = &committed {
            if !matches!(e, StoreError::Storage { .. }) {
                tracing::error!(error = %e, "Store write failed: commit");
            }
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            state.pending = before;
        }
        let rolled_back = committed.is_err();
        // Committed, but to the file at the path? (Two stats.)
        if committed.is_ok() {
            if let Err(message) = ctx.identity.check() {
                committed = Err(Health::error(Fault::Gone, &message));
            }
        }
        // A clean commit clears a storage fault, once it is durable.
        let mut clean = false;
        match (&committed, state.batch_fault.take()) {
            (Err(StoreError::Storage { fault, message }), _) => ctx.health.fail(*fault, message),
            (_, Some((fault, message))) => ctx.health.fail(fault, &message),
            (Ok(()), None) => clean = true,
            (Err(_), None) => {}
        }
        ctx.commits.fetch_add(1, Ordering::Relaxed);
        published.store(state.pending, Ordering::Relaxed);
        // Nobody is answered before the commit is on disk, power loss
        // included. A batch of claims and lease renewals alone (they read,
        // and keep the lease in memory) wrote nothing to flush; everything
        // they read was flushed before its own callers were answered, unless
        // a flush failed: then a fault is current, and they flush again.
        let result = committed.and_then(|()| {
            if reads_only && ctx.health.current().is_none() {
                Ok(())
            } else {
                flush(&ctx, clean)
            }
        });
        metrics
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            // The callers are told to retry, and a retry must be stored
            // again, not taken for a duplicate.
            for key in state.batch_added.drain(..) {
                state.recent.remove(&key);
            }
            state.undo_leases(rolled_back);
        }
        state.batch_added.clear();
        state.batch_leases.clear();
        for done in completions {
            done(result.as_ref().copied().map_err(copy_error));
        }
    }
}

/// Times the writer gives up its CPU, checking for a job after each, before
/// it sleeps on an empty queue. Under load the next job (an answered
/// caller's next request) usually arrives within microseconds, and sleeping
/// costs a context switch plus a wake-up call from the sender; when nothing
/// comes, this is a few microseconds per batch, not a busy wait.
const YIELDS_BEFORE_SLEEP: usize = 20;

/// The next job: at once if one is queued, after up to
/// [`YIELDS_BEFORE_SLEEP`] yields if one arrives meanwhile, else whenever
/// one comes. `None` once every sender is gone.
fn next_job(rx: &mut mpsc::Receiver<Job>) -> Option<Job> {
    for _ in 0..YIELDS_BEFORE_SLEEP {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
    rx.blocking_recv()
}

/// Flushes the WAL after a commit (`fdatasync`: one for every job of the
/// batch). Success only once the frames are on disk; after a clean batch, a
/// storage fault clears (a full disk only once it has room again). A failed
/// flush is a storage fault: the batch's transaction may or may not survive
/// a crash, so its callers are told to retry.
fn flush(ctx: &WriterContext, clean: bool) -> Result<(), StoreError> {
    match ctx.wal.sync_data() {
        Ok(()) => {
            if clean {
                if let Some((fault, _)) = ctx.health.current() {
                    if fault != Fault::Full
                        || free_bytes(&ctx.path).is_none_or(|b| b >= MIN_FREE_BYTES)
                    {
                        ctx.health.clear();
                    }
                }
            }
            Ok(())
        }
        Err(e) => {
            let message = format!("cannot flush the write-ahead log to disk: {e}");
            ctx.health.fail(Fault::Io, &message);
            Err(Health::error(Fault::Io, &message))
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Largest payload stored compressed; a larger one is stored as text.
const MAX_PACKED_PAYLOAD: usize = 256 << 20;

/// A notification's payload as stored: LZ4-compressed (its length first) in
/// a BLOB, about a third of the JSON (fewer pages written, copied into the
/// database and flushed per notification; a smaller file). Text over
/// [`MAX_PACKED_PAYLOAD`] stays text, as do rows written before payloads
/// were compressed: [`unpack_payload`] reads both.
pub(crate) enum StoredPayload {
    Packed(Vec<u8>),
    Text(String),
}

impl rusqlite::ToSql for StoredPayload {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            StoredPayload::Packed(b) => b.to_sql(),
            StoredPayload::Text(t) => t.to_sql(),
        }
    }
}

/// Payloads up to this size are compressed with a table and buffer kept by
/// the calling thread (LZ4's 16-bit table covers inputs under 64 KiB).
const REUSED_TABLE_MAX: usize = 60 << 10;

pub(crate) fn pack_payload(text: &str) -> StoredPayload {
    if text.len() > MAX_PACKED_PAYLOAD {
        return StoredPayload::Text(text.to_owned());
    }
    if text.len() <= REUSED_TABLE_MAX {
        if let Some(packed) = pack_with_thread_table(text.as_bytes()) {
            return StoredPayload::Packed(packed);
        }
    }
    StoredPayload::Packed(lz4_flex::compress_prepend_size(text.as_bytes()))
}

/// The same bytes as `lz4_flex::compress_prepend_size`, without allocating
/// a hash table and allocating and zeroing a worst-case output buffer per
/// payload (both showed in profiles of the webhook path; the table is still
/// cleared for each payload). Each thread keeps one table and one buffer of
/// at most [`lz4_flex::block::get_maximum_output_size`] of
/// [`REUSED_TABLE_MAX`] (about 66 KiB). `None` for an input over
/// [`REUSED_TABLE_MAX`] (it would turn the thread's table into LZ4's large
/// one for good, and later payloads would no longer pack as a fresh table
/// does) or if the scratch is in use (no re-entry happens, but a nested call
/// would simply take the other path).
fn pack_with_thread_table(input: &[u8]) -> Option<Vec<u8>> {
    if input.len() > REUSED_TABLE_MAX {
        return None;
    }
    use lz4_flex::block::{compress_into_with_table, get_maximum_output_size, CompressTable};
    use std::cell::RefCell;
    thread_local! {
        static SCRATCH: RefCell<(CompressTable, Vec<u8>)> =
            RefCell::new((CompressTable::small(), Vec::new()));
    }
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.try_borrow_mut().ok()?;
        let (table, out) = &mut *scratch;
        let max = get_maximum_output_size(input.len());
        if out.len() < max {
            out.resize(max, 0);
        }
        // Fails only if `out` is too small, which it is not.
        let n = compress_into_with_table(input, out, table).ok()?;
        let mut packed = Vec::with_capacity(4 + n);
        packed.extend_from_slice(&(input.len() as u32).to_le_bytes());
        packed.extend_from_slice(&out[..n]);
        Some(packed)
    })
}

/// The payload column as text, whichever way it was stored.
pub(crate) fn unpack_payload(
    value: rusqlite::types::ValueRef<'_>,
) -> Result<String, rusqlite::types::FromSqlError> {
    use rusqlite::types::{FromSqlError, ValueRef};
    let corrupt = |why: String| FromSqlError::Other(format!("stored payload: {why}").into());
    match value {
        ValueRef::Text(t) => String::from_utf8(t.to_vec()).map_err(|e| corrupt(e.to_string())),
        ValueRef::Blob(b) => {
            // The length written first, checked before anything is allocated.
            let declared = b
                .get(..4)
                .and_then(|n| <[u8; 4]>::try_from(n).ok())
                .map(|n| u32::from_le_bytes(n) as usize)
                .ok_or_else(|| corrupt("shorter than its length field".into()))?;
            if declared > MAX_PACKED_PAYLOAD {
                return Err(corrupt(format!("declares {declared} bytes")));
            }
            let bytes = lz4_flex::decompress_size_prepended(b)
                .map_err(|e| corrupt(format!("cannot decompress: {e}")))?;
            String::from_utf8(bytes).map_err(|e| corrupt(e.to_string()))
        }
        other => Err(corrupt(format!("unexpected {:?}", other.data_type()))),
    }
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

// The operations themselves; the store traits below delegate to them.
impl SqliteStore {
    pub(crate) async fn insert_notification(
        &self,
        n: NewNotification<'_>,
        max_inbox: u64,
    ) -> Result<Inserted, StoreError> {
        let received_at = n.received_at;
        let key = n.dedup_key;
        let receiver = n.receiver.to_owned();
        let status = n.status.to_owned();
        let group_key = n.group_key.to_owned();
        // Compressed here, on the caller's thread, not on the writer's.
        let payload = pack_payload(n.payload);
        let alert_count = n.alert_count as i64;
        let mut names: Vec<&str> = n.alertnames.clone();
        names.sort_unstable();
        names.dedup();
        let mut alertnames = String::from(UNIT_SEPARATOR);
        for name in names {
            alertnames.push_str(name);
            alertnames.push(UNIT_SEPARATOR);
        }
        // One statement either way (the UPDATE of a duplicate or the INSERT).
        self.write_one(move |conn, state| {
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

    pub(crate) async fn claim(
        &self,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<Claimed>, StoreError> {
        // Reads only: the lease is kept in the writer's memory.
        self.in_writer(move |conn, state| {
            if state.leases.len() > MAX_LEASES_KEPT {
                state
                    .leases
                    .retain(|_, until| *until >= now - STALE_LEASE_MS);
            }
            let mut due = conn.prepare_cached(
                "SELECT id FROM notifications WHERE state = 'pending' \
                     AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id",
            )?;
            let mut rows = due.query([now])?;
            let mut id = None;
            while let Some(row) = rows.next()? {
                let candidate: i64 = row.get(0)?;
                if !state.leased(candidate, now) {
                    id = Some(candidate);
                    break;
                }
            }
            drop(rows);
            let Some(id) = id else {
                return Ok(None);
            };
            let mut row =
                conn.prepare_cached("SELECT round, payload FROM notifications WHERE id = ?1")?;
            let mut rows = row.query([id])?;
            let r = rows.next()?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            // Leased before the payload is read back: a row that no longer
            // decodes is passed over until its lease runs out, rather than
            // failing every claim after it.
            state.claim_lease(id, now + lease_ms);
            let payload = unpack_payload(r.get_ref(1)?).map_err(rusqlite::Error::from)?;
            Ok(Some(Claimed {
                id,
                round: r.get(0)?,
                payload,
            }))
        })
        .await
    }

    pub(crate) async fn ensure_runs(
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

    pub(crate) async fn record_attempt(&self, a: RunAttempt) -> Result<(), StoreError> {
        self.write_one(move |conn, _| {
            let duration = a.finished_at - a.started_at;
            let (status, error, next, finished, result) = a.columns();
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

    pub(crate) async fn settle(
        &self,
        notification_id: i64,
        round: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        self.write_one(move |conn, state| {
            let (current_round, current): (i64, String) = conn
                .prepare_cached("SELECT round, state FROM notifications WHERE id = ?1")?
                .query_row([notification_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            if current_round != round {
                conn.prepare_cached("UPDATE notifications SET next_attempt_at = ?2 WHERE id = ?1")?
                    .execute(params![notification_id, now])?;
                state.set_lease(notification_id, None);
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
                        "UPDATE notifications SET next_attempt_at = ?2 WHERE id = ?1",
                    )?
                    .execute(params![notification_id, at.max(now)])?;
                }
                None => {
                    conn.prepare_cached(
                        "UPDATE notifications SET state = 'done', processed_at = ?2 WHERE id = ?1",
                    )?
                    .execute(params![notification_id, now])?;
                    if current == "pending" {
                        state.pending = state.pending.saturating_sub(1);
                    }
                }
            }
            state.set_lease(notification_id, None);
            Ok(())
        })
        .await
    }

    /// At startup: clears the leases earlier versions kept in rows, and
    /// counts the work a previous process started and did not finish
    /// (pending notifications with runs planned in their round; those due
    /// resume at once, the others at their retry time).
    pub(crate) async fn release_leases(&self) -> Result<u64, StoreError> {
        self.write(|conn, _| {
            conn.execute(
                "UPDATE notifications SET lease_until = NULL WHERE lease_until IS NOT NULL",
                [],
            )?;
            let started: i64 = conn.query_row(
                "SELECT COUNT(*) FROM notifications n WHERE state = 'pending' AND EXISTS \
                 (SELECT 1 FROM action_runs r WHERE r.notification_id = n.id AND r.round = n.round)",
                [],
                |r| r.get(0),
            )?;
            Ok(started as u64)
        })
        .await
    }

    pub(crate) async fn replay(&self, id: i64, now: i64) -> Result<Option<i64>, StoreError> {
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
                     next_attempt_at = ?2, processed_at = NULL \
                     WHERE id = ?1 RETURNING round",
                )?
                .query_row(params![id, now], |r| r.get(0))?;
            if before != "pending" {
                state.pending += 1;
            }
            state.set_lease(id, None);
            Ok(Some(round))
        })
        .await
    }

    pub(crate) async fn list(&self, q: ListQuery) -> Result<Vec<NotificationSummary>, StoreError> {
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

    pub(crate) async fn get(&self, id: i64) -> Result<Option<NotificationDetail>, StoreError> {
        self.read(move |conn| {
            let found = conn
                .prepare_cached(&format!(
                    "SELECT {SUMMARY_COLUMNS}, n.payload FROM notifications n WHERE n.id = ?1"
                ))?
                .query_row([id], |r| {
                    Ok((summary_from_row(r)?, unpack_payload(r.get_ref(11)?)?))
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

    pub(crate) async fn dead_letter_count(&self) -> Result<u64, StoreError> {
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

    pub(crate) async fn record_decision(&self, d: TrafficDecision) -> Result<i64, StoreError> {
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

    pub(crate) async fn decisions(
        &self,
        q: DecisionQuery,
    ) -> Result<Vec<TrafficDecision>, StoreError> {
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

    pub(crate) async fn dead_letters(
        &self,
        q: DeadLetterQuery,
    ) -> Result<Vec<DeadLetter>, StoreError> {
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

    pub(crate) async fn chat_thread(
        &self,
        key: ChatThreadKey,
    ) -> Result<Option<ChatThread>, StoreError> {
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

    pub(crate) async fn save_chat_thread(&self, t: ChatThread) -> Result<(), StoreError> {
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

    pub(crate) fn inbox_depth(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    pub(crate) async fn check_writable(&self) -> Result<(), StoreError> {
        let path = self.path.clone();
        self.write(move |conn, _| {
            if let Some(free) = free_bytes(&path).filter(|b| *b < MIN_FREE_BYTES) {
                return Err(Health::error(
                    Fault::Full,
                    &format!(
                        "{free} bytes free on the volume of {} (at least {MIN_FREE_BYTES} needed)",
                        path.display()
                    ),
                ));
            }
            // A write the size of a notification, rolled back: a database at
            // its page limit fails here even when the one-page heartbeat fits.
            conn.execute_batch("SAVEPOINT probe")?;
            let probe = conn.execute(
                "INSERT INTO meta (key, value) VALUES ('probe', zeroblob(65536))",
                [],
            );
            if let Err(e) = probe {
                // SQLITE_FULL may have rolled back the whole transaction.
                if !conn.is_autocommit() {
                    conn.execute_batch("ROLLBACK TO probe; RELEASE probe")?;
                }
                return Err(e.into());
            }
            conn.execute_batch("ROLLBACK TO probe; RELEASE probe")?;
            conn.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'heartbeat'")?
                .execute([now_ms().to_string()])?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl Inbox for SqliteStore {
    async fn insert_notification(
        &self,
        n: NewNotification<'_>,
        max_inbox: u64,
    ) -> Result<Inserted, StoreError> {
        SqliteStore::insert_notification(self, n, max_inbox).await
    }

    fn inbox_depth(&self) -> u64 {
        SqliteStore::inbox_depth(self)
    }
}

#[async_trait]
impl WorkQueue for SqliteStore {
    async fn claim(&self, now: i64, lease_ms: i64) -> Result<Option<Claimed>, StoreError> {
        SqliteStore::claim(self, now, lease_ms).await
    }

    async fn ensure_runs(
        &self,
        notification_id: i64,
        round: i64,
        planned: Vec<PlannedRun>,
    ) -> Result<Vec<ActionRun>, StoreError> {
        SqliteStore::ensure_runs(self, notification_id, round, planned).await
    }

    /// In the writer's memory: only a lease still held is renewed (a
    /// settled notification has none).
    async fn renew_lease(&self, id: i64, now: i64, lease_ms: i64) -> Result<(), StoreError> {
        self.in_writer(move |_, state| {
            if state.leases.contains_key(&id) {
                state.set_lease(id, Some(now + lease_ms));
            }
            Ok(())
        })
        .await
    }

    async fn record_attempt(&self, attempt: RunAttempt) -> Result<(), StoreError> {
        SqliteStore::record_attempt(self, attempt).await
    }

    async fn settle(&self, notification_id: i64, round: i64, now: i64) -> Result<(), StoreError> {
        SqliteStore::settle(self, notification_id, round, now).await
    }

    async fn replay(&self, id: i64, now: i64) -> Result<Option<i64>, StoreError> {
        SqliteStore::replay(self, id, now).await
    }

    /// One process owns a SQLite database (its writer holds the file), and
    /// its leases live in the writer's memory: work a process that is gone
    /// had claimed is free to claim at once. Returns how many notifications
    /// it had started and not finished.
    async fn resume_at_start(&self) -> Result<u64, StoreError> {
        self.release_leases().await
    }
}

#[async_trait]
impl ChatThreads for SqliteStore {
    async fn chat_thread(&self, key: ChatThreadKey) -> Result<Option<ChatThread>, StoreError> {
        SqliteStore::chat_thread(self, key).await
    }

    async fn save_chat_thread(&self, thread: ChatThread) -> Result<(), StoreError> {
        SqliteStore::save_chat_thread(self, thread).await
    }
}

#[async_trait]
impl TrafficLedger for SqliteStore {
    async fn record_decision(&self, d: TrafficDecision) -> Result<i64, StoreError> {
        SqliteStore::record_decision(self, d).await
    }

    async fn decisions(&self, q: DecisionQuery) -> Result<Vec<TrafficDecision>, StoreError> {
        SqliteStore::decisions(self, q).await
    }

    async fn lock_target(&self, target: &str) -> Result<TargetLock, StoreError> {
        Ok(self.locks.lock(target).await)
    }
}

#[async_trait]
impl Queries for SqliteStore {
    async fn list(&self, query: ListQuery) -> Result<Vec<NotificationSummary>, StoreError> {
        SqliteStore::list(self, query).await
    }

    async fn get(&self, id: i64) -> Result<Option<NotificationDetail>, StoreError> {
        SqliteStore::get(self, id).await
    }

    async fn dead_letters(&self, query: DeadLetterQuery) -> Result<Vec<DeadLetter>, StoreError> {
        SqliteStore::dead_letters(self, query).await
    }

    async fn dead_letter_count(&self) -> Result<u64, StoreError> {
        SqliteStore::dead_letter_count(self).await
    }
}

#[async_trait]
impl Upkeep for SqliteStore {
    async fn check_writable(&self) -> Result<(), StoreError> {
        SqliteStore::check_writable(self).await
    }

    async fn prune(&self, now: i64) -> Result<PruneReport, StoreError> {
        SqliteStore::prune(self, now).await
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600 * 1000;
    const T0: i64 = 1_800_000_000_000;

    fn open(dir: &Path) -> SqliteStore {
        let mut o = StoreOptions::new(Duration::from_secs(1), Duration::from_secs(300));
        o.retention = Duration::from_secs(2 * 3600);
        o.dead_letter_retention = Duration::from_secs(48 * 3600);
        SqliteStore::open_with(&dir.join("r.db"), o, StoreMetrics::default()).unwrap()
    }

    /// `n` characters LZ4 cannot shrink (payloads are stored compressed).
    fn incompressible(n: usize) -> String {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'!' + (x % 90) as u8)
            })
            .collect()
    }

    #[test]
    fn the_reused_lz4_table_packs_exactly_as_a_fresh_one() {
        let fixture = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/accuracy-firing-both-variants.json"
        ))
        .unwrap();
        // One after another on this thread: each call finds the table and the
        // buffer the previous, larger or smaller, input left behind.
        let inputs = [
            fixture.repeat(20),
            fixture.clone(),
            String::new(),
            "x".into(),
            incompressible(REUSED_TABLE_MAX),
            fixture.repeat(3),
            "a".repeat(REUSED_TABLE_MAX),
            fixture,
        ];
        for input in &inputs {
            let reused = pack_with_thread_table(input.as_bytes()).unwrap();
            assert_eq!(
                reused,
                lz4_flex::compress_prepend_size(input.as_bytes()),
                "{} bytes",
                input.len()
            );
            let StoredPayload::Packed(packed) = pack_payload(input) else {
                panic!("{} bytes not compressed", input.len());
            };
            let back = unpack_payload(rusqlite::types::ValueRef::Blob(&packed)).unwrap();
            assert_eq!(&back, input);
        }
        // Over the limit (and LZ4's 64 KiB small table): the allocating path,
        // and the thread's table stays the small one.
        assert!(pack_with_thread_table(&[b'c'; 70_000]).is_none());
        let big = incompressible(70_000) + &"b".repeat(10_000);
        let StoredPayload::Packed(packed) = pack_payload(&big) else {
            panic!("not compressed");
        };
        let back = unpack_payload(rusqlite::types::ValueRef::Blob(&packed)).unwrap();
        assert_eq!(back, big);
    }

    fn note<'a>(key: u8, payload: &'a str) -> NewNotification<'a> {
        NewNotification {
            received_at: T0,
            dedup_key: [key; 32],
            receiver: "r",
            status: "firing",
            group_key: "g",
            alert_count: 1,
            alertnames: vec!["A"],
            payload,
        }
    }

    #[tokio::test]
    async fn payloads_are_stored_compressed_and_read_back_as_received() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let body = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/accuracy-firing-both-variants.json"
        ))
        .unwrap();
        let id = s
            .insert_notification(note(1, &body), u64::MAX)
            .await
            .unwrap()
            .id;
        // A row written before payloads were compressed: text.
        let old = s
            .insert_notification(note(2, "{}"), u64::MAX)
            .await
            .unwrap()
            .id;
        let conn = Connection::open(dir.path().join("r.db")).unwrap();
        conn.execute(
            "UPDATE notifications SET payload = '{\"old\": true}' WHERE id = ?1",
            [old],
        )
        .unwrap();
        let (kind, stored): (String, i64) = conn
            .query_row(
                "SELECT typeof(payload), length(payload) FROM notifications WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(kind, "blob");
        assert!(
            stored * 2 < body.len() as i64,
            "{stored} bytes stored for {}",
            body.len()
        );

        let got = s.get(id).await.unwrap().unwrap();
        let sent: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(got.payload, sent);
        assert_eq!(
            s.get(old).await.unwrap().unwrap().payload,
            serde_json::json!({"old": true})
        );
        let claimed = s.claim(T0, 60_000).await.unwrap().unwrap();
        assert_eq!((claimed.id, claimed.payload.as_str()), (id, body.as_str()));
        let claimed = s.claim(T0, 60_000).await.unwrap().unwrap();
        assert_eq!(
            (claimed.id, claimed.payload.as_str()),
            (old, "{\"old\": true}")
        );
    }

    #[test]
    fn a_corrupt_stored_payload_is_an_error_not_a_panic_or_a_huge_allocation() {
        use rusqlite::types::ValueRef;
        // Declares 4 GiB.
        let huge = [0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let e = unpack_payload(ValueRef::Blob(&huge)).unwrap_err();
        assert!(e.to_string().contains("declares 4294967295 bytes"), "{e}");
        let e = unpack_payload(ValueRef::Blob(&[1, 0])).unwrap_err();
        assert!(
            e.to_string().contains("shorter than its length field"),
            "{e}"
        );
        let e = unpack_payload(ValueRef::Blob(&[10, 0, 0, 0, 0xf0, 1])).unwrap_err();
        assert!(e.to_string().contains("cannot decompress"), "{e}");
        let packed = match pack_payload("{\"a\": 1}") {
            StoredPayload::Packed(b) => b,
            StoredPayload::Text(_) => panic!("a small payload is compressed"),
        };
        assert_eq!(
            unpack_payload(ValueRef::Blob(&packed)).unwrap(),
            "{\"a\": 1}"
        );
    }

    #[tokio::test]
    async fn a_write_waits_for_a_lock_held_elsewhere_and_gives_up_after_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.insert_notification(note(1, "{}"), u64::MAX)
            .await
            .unwrap();
        // Another process holds the write lock for a moment: the write waits.
        let other = Connection::open(dir.path().join("r.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            held_rx.recv().unwrap();
            other.execute_batch("COMMIT").unwrap();
            other
        });
        let write = tokio::spawn(async move {
            let r = s.insert_notification(note(2, "{}"), u64::MAX).await;
            (s, r)
        });
        // Still waiting while the lock is held (the writer polls, it does not fail).
        tokio::task::yield_now().await;
        assert!(!write.is_finished());
        held_tx.send(()).unwrap();
        let (s, r) = write.await.unwrap();
        assert!(!r.unwrap().duplicate);
        // Held for longer than busy_timeout (1 s here): the write fails.
        let other = holder.join().unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let e = s
            .insert_notification(note(3, "{}"), u64::MAX)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("locked"), "{e}");
        other.execute_batch("COMMIT").unwrap();
        s.insert_notification(note(3, "{}"), u64::MAX)
            .await
            .unwrap();
    }

    /// Stores a notification received at `at` whose one run ends `outcome` at `at + 1`.
    async fn finished(s: &SqliteStore, at: i64, dead: bool) -> i64 {
        let key: [u8; 32] = sha2_like(at);
        let id = s
            .insert_notification(
                NewNotification {
                    received_at: at,
                    dedup_key: key,
                    receiver: "r",
                    status: "firing",
                    group_key: &format!("g{at}"),
                    alert_count: 1,
                    alertnames: vec!["A"],
                    payload: "{}",
                },
                u64::MAX,
            )
            .await
            .unwrap()
            .id;
        let c = s.claim(at, 1000).await.unwrap().unwrap();
        assert_eq!(c.id, id);
        let runs = s
            .ensure_runs(
                id,
                0,
                vec![PlannedRun {
                    fingerprint: "f".into(),
                    action: "log".into(),
                    action_type: "log".into(),
                }],
            )
            .await
            .unwrap();
        let outcome = if dead {
            RunOutcome::Dead { error: "no".into() }
        } else {
            RunOutcome::Succeeded {
                result: serde_json::json!({}),
            }
        };
        s.record_attempt(RunAttempt {
            run_id: runs[0].id,
            started_at: at,
            finished_at: at + 1,
            outcome,
            context: None,
        })
        .await
        .unwrap();
        s.settle(id, 0, at + 1).await.unwrap();
        id
    }

    fn sha2_like(n: i64) -> [u8; 32] {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&n.to_le_bytes());
        k
    }

    async fn exists(s: &SqliteStore, id: i64) -> bool {
        s.get(id).await.unwrap().is_some()
    }

    #[tokio::test]
    async fn pruning_keeps_the_inbox_recent_rows_and_dead_letters_until_their_retention() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let old = finished(&s, T0, false).await;
        let old_dead = finished(&s, T0 + 1, true).await;
        let recent = finished(&s, T0 + 3 * H, false).await;

        let r = s.prune(T0 + 4 * H).await.unwrap();
        assert_eq!((r.notifications, r.action_runs), (1, 1));
        assert!(!exists(&s, old).await);
        assert!(
            exists(&s, old_dead).await,
            "a dead letter outlives retention"
        );
        assert!(exists(&s, recent).await, "within retention");
        assert_eq!(s.dead_letter_count().await.unwrap(), 1);

        // A replay that succeeds makes it an ordinary finished notification.
        s.replay(old_dead, T0 + 4 * H).await.unwrap();
        let c = s.claim(T0 + 4 * H, 1000).await.unwrap().unwrap();
        let runs = s
            .ensure_runs(
                c.id,
                c.round,
                vec![PlannedRun {
                    fingerprint: "f".into(),
                    action: "log".into(),
                    action_type: "log".into(),
                }],
            )
            .await
            .unwrap();
        s.record_attempt(RunAttempt {
            run_id: runs[0].id,
            started_at: T0 + 4 * H,
            finished_at: T0 + 4 * H,
            outcome: RunOutcome::Succeeded {
                result: serde_json::json!({}),
            },
            context: None,
        })
        .await
        .unwrap();
        s.settle(c.id, c.round, T0 + 4 * H).await.unwrap();
        assert_eq!(c.id, old_dead);
        s.prune(T0 + 5 * H).await.unwrap();
        assert!(
            exists(&s, old_dead).await,
            "finished again within retention"
        );
        // Received long ago, never processed: still in the inbox.
        let waiting = s
            .insert_notification(
                NewNotification {
                    received_at: T0 + 2,
                    dedup_key: [9; 32],
                    receiver: "r",
                    status: "firing",
                    group_key: "w",
                    alert_count: 1,
                    alertnames: vec!["A"],
                    payload: "{}",
                },
                u64::MAX,
            )
            .await
            .unwrap()
            .id;
        s.prune(T0 + 7 * H).await.unwrap();
        assert!(!exists(&s, old_dead).await, "replayed, then past retention");
        assert!(exists(&s, waiting).await, "the inbox is never pruned");
    }

    #[tokio::test]
    async fn an_unreplayed_dead_letter_goes_after_its_own_retention() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let dead = finished(&s, T0, true).await;
        s.prune(T0 + 47 * H).await.unwrap();
        assert!(exists(&s, dead).await);
        s.prune(T0 + 49 * H).await.unwrap();
        assert!(!exists(&s, dead).await);
        assert_eq!(s.dead_letter_count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn pruning_many_rows_goes_in_batches_and_gives_space_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let big = incompressible(4000);
        for i in 0..1000i64 {
            s.insert_notification(
                NewNotification {
                    received_at: T0 + i,
                    dedup_key: sha2_like(i),
                    receiver: "r",
                    status: "firing",
                    group_key: "g",
                    alert_count: 1,
                    alertnames: vec!["A"],
                    payload: &big,
                },
                u64::MAX,
            )
            .await
            .unwrap();
        }
        // Mark them done without runs.
        s.write(|conn, state| {
            conn.execute(
                "UPDATE notifications SET state = 'done', processed_at = received_at",
                [],
            )?;
            state.pending = 0;
            Ok(())
        })
        .await
        .unwrap();
        async fn pages(s: &SqliteStore) -> Result<i64, StoreError> {
            s.write(|conn, _| Ok(conn.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))?))
                .await
        }
        let before = pages(&s).await.unwrap();
        let r = s.prune(T0 + 10 * H).await.unwrap();
        assert_eq!(r.notifications, 1000);
        assert!(r.vacuumed_pages > 900, "{r:?}");
        let after = pages(&s).await.unwrap();
        assert!(after < before / 10, "{before} pages before, {after} after");
    }

    fn decision(at: i64, episode: &str, decision: &str) -> TrafficDecision {
        TrafficDecision {
            id: 0,
            at,
            action: "rollback".into(),
            target: "exp".into(),
            episode: episode.into(),
            fingerprint: "f".into(),
            notification_id: 1,
            decision: decision.into(),
            before: None,
            after: None,
            reason: String::new(),
        }
    }

    async fn decisions_of(s: &SqliteStore, episode: &str) -> Vec<String> {
        s.decisions(DecisionQuery {
            episode: Some(episode.into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.decision)
        .collect()
    }

    #[tokio::test]
    async fn a_shift_is_kept_while_its_episode_is_heard_of_and_for_a_week_at_least() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        // Episode a: shifted at T0, re-notified (noop) every 4 h for 10 days.
        // Episode b: shifted and resolved (held) at T0.
        s.record_decision(decision(T0, "a", "shifted"))
            .await
            .unwrap();
        s.record_decision(decision(T0, "b", "shifted"))
            .await
            .unwrap();
        s.record_decision(decision(T0 + 1, "b", "held"))
            .await
            .unwrap();
        for i in 1..=60 {
            s.record_decision(decision(T0 + i * 4 * H, "a", "noop"))
                .await
                .unwrap();
        }
        let now = T0 + 240 * H + 1;
        s.prune(now).await.unwrap();
        let a = decisions_of(&s, "a").await;
        assert!(a.contains(&"shifted".to_owned()), "episode a still firing");
        assert_eq!(a.len(), 1 + 1, "old noops go, the shift stays: {a:?}");
        assert!(
            decisions_of(&s, "b").await.is_empty(),
            "b resolved 10 days ago"
        );

        // A shift 3 days old is kept for the week even with nothing heard since.
        let s2dir = tempfile::tempdir().unwrap();
        let s2 = open(s2dir.path());
        s2.record_decision(decision(T0, "c", "shifted"))
            .await
            .unwrap();
        s2.record_decision(decision(T0, "c", "cooldown"))
            .await
            .unwrap();
        s2.prune(T0 + 72 * H).await.unwrap();
        assert_eq!(decisions_of(&s2, "c").await, vec!["shifted"]);
        s2.prune(T0 + 169 * H).await.unwrap();
        assert!(decisions_of(&s2, "c").await.is_empty());
    }

    #[tokio::test]
    async fn chat_threads_open_ones_outlive_resolved_ones() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let thread = |group: &str, resolved: bool| ChatThread {
            key: ChatThreadKey {
                action: "slack".into(),
                channel: "#c".into(),
                group_key: group.into(),
            },
            channel_id: "C1".into(),
            message_id: "1.2".into(),
            resolved,
            updated_at: T0,
        };
        s.save_chat_thread(thread("open", false)).await.unwrap();
        s.save_chat_thread(thread("closed", true)).await.unwrap();
        let found = |g: &str| s.chat_thread(thread(g, false).key);
        s.prune(T0 + 3 * H).await.unwrap();
        assert!(found("open").await.unwrap().is_some());
        assert!(found("closed").await.unwrap().is_none());
        s.prune(T0 + 49 * H).await.unwrap();
        assert!(found("open").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_existing_database_is_migrated_to_incremental_vacuum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch("PRAGMA journal_mode=WAL;").unwrap();
            c.execute_batch(SCHEMA).unwrap();
            let v: i64 = c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
            assert_eq!(v, 0);
        }
        let s = SqliteStore::open(
            &path,
            Duration::from_secs(1),
            Duration::from_secs(300),
            StoreMetrics::default(),
        )
        .unwrap();
        let v = s
            .write(|c, _| Ok(c.query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0))?))
            .await
            .unwrap();
        assert_eq!(v, 2);
        // And a fresh one is created with it.
        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh = open(fresh_dir.path());
        let v = fresh
            .write(|c, _| Ok(c.query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0))?))
            .await
            .unwrap();
        assert_eq!(v, 2);
    }

    #[tokio::test]
    async fn a_full_database_is_not_ready_until_it_has_room_again() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.check_writable().await.unwrap();
        // The database may not grow any more: SQLITE_FULL, as on a full disk.
        s.write(|c, _| {
            let n: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            c.query_row(&format!("PRAGMA max_page_count = {n}"), [], |_| Ok(()))?;
            Ok(())
        })
        .await
        .unwrap();
        let body = incompressible(20_000);
        let insert = |k: u8| s.insert_notification(note(k, &body), u64::MAX);
        let e = insert(1).await.unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Storage {
                    fault: Fault::Full,
                    ..
                }
            ),
            "{e}"
        );
        let e = s.check_writable().await.unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Storage {
                    fault: Fault::Full,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(s.metrics.writable.get(), 0);
        s.write(|c, _| {
            c.query_row("PRAGMA max_page_count = 1000000", [], |_| Ok(()))?;
            Ok(())
        })
        .await
        .unwrap();
        s.check_writable().await.unwrap();
        assert_eq!(s.metrics.writable.get(), 1);
        insert(2).await.unwrap();
    }

    #[test]
    fn the_lease_changes_of_a_batch_that_failed_are_undone() {
        let batch = |state: &mut WriterState| {
            state.claim_lease(1, T0 + 10);
            state.batch_leases.clear(); // committed and flushed
            state.set_lease(1, Some(T0 + 20)); // renewed
            state.claim_lease(2, T0 + 30); // claimed
            state.set_lease(3, None); // nothing to release
            state.set_lease(4, None); // settled
        };
        // Rolled back: every change is undone.
        let mut state = WriterState::new(0, 60_000);
        state.claim_lease(4, T0 + 40);
        batch(&mut state);
        assert!(state.leased(1, T0 + 20) && state.leased(2, T0) && !state.leased(4, T0));
        state.undo_leases(true);
        assert_eq!(state.leases.get(&1), Some(&(T0 + 10)));
        assert!(state.leased(1, T0 + 10) && !state.leased(1, T0 + 11));
        assert!(!state.leased(2, T0) && !state.leases.contains_key(&3));
        assert!(state.leased(4, T0 + 40));
        assert!(state.batch_leases.is_empty());
        // Committed but not flushed: only the claims are undone (their callers
        // were told it failed); the renewal and the release stand, like the
        // rows every later read sees.
        let mut state = WriterState::new(0, 60_000);
        state.claim_lease(4, T0 + 40);
        batch(&mut state);
        state.undo_leases(false);
        assert!(state.leased(1, T0 + 20), "the renewal stands");
        assert!(!state.leased(2, T0), "the claim is undone");
        assert!(!state.leased(4, T0), "the release stands");
    }

    #[tokio::test]
    async fn a_claim_writes_nothing_and_its_lease_ends_with_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let n = s.insert_notification(note(1, "{}"), 10).await.unwrap();
        let no_lease_in_row = |s: &SqliteStore| {
            let c = s.reader.lock().unwrap();
            c.query_row(
                "SELECT lease_until IS NULL FROM notifications WHERE id = ?1",
                [n.id],
                |r| r.get::<_, bool>(0),
            )
            .unwrap()
        };
        let c = s.claim(T0, 60_000).await.unwrap().unwrap();
        assert_eq!(c.id, n.id);
        s.renew_lease(c.id, T0 + 1, 60_000).await.unwrap();
        assert!(no_lease_in_row(&s), "the row carries no lease");
        assert!(s.claim(T0 + 2, 60_000).await.unwrap().is_none(), "leased");
        let run = PlannedRun {
            fingerprint: "f".into(),
            action: "log".into(),
            action_type: "log".into(),
        };
        s.ensure_runs(n.id, 0, vec![run]).await.unwrap();
        drop(s);
        // The next process on the file: nothing is leased any more, and the
        // notification counts as started.
        let s = open(dir.path());
        assert_eq!(WorkQueue::resume_at_start(&s).await.unwrap(), 1);
        assert_eq!(s.claim(T0 + 3, 60_000).await.unwrap().unwrap().id, n.id);
    }

    #[tokio::test]
    async fn a_read_only_database_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.write(|c, _| Ok(c.execute_batch("PRAGMA query_only = ON")?))
            .await
            .unwrap();
        let e = s.check_writable().await.unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Storage {
                    fault: Fault::ReadOnly,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(s.metrics.writable.get(), 0);
        let e = s.release_leases().await.unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Storage {
                    fault: Fault::ReadOnly,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_deleted_database_file_refuses_every_write_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.check_writable().await.unwrap();
        std::fs::remove_file(dir.path().join("r.db")).unwrap();
        let e = s.check_writable().await.unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Storage {
                    fault: Fault::Gone,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("r.db"), "{e}");
        // Even once something is at the path again.
        std::fs::write(dir.path().join("r.db"), b"").unwrap();
        let e = s.check_writable().await.unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Storage {
                    fault: Fault::Gone,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn the_wal_is_truncated_when_idle() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let s = rt.block_on(async {
            let s = open(dir.path());
            let body = incompressible(100_000);
            for i in 0..50u8 {
                s.insert_notification(
                    NewNotification {
                        received_at: T0,
                        dedup_key: [i; 32],
                        receiver: "r",
                        status: "firing",
                        group_key: "g",
                        alert_count: 1,
                        alertnames: vec!["A"],
                        payload: &body,
                    },
                    u64::MAX,
                )
                .await
                .unwrap();
            }
            s
        });
        let wal = wal_path(&dir.path().join("r.db"));
        assert!(std::fs::metadata(&wal).unwrap().len() > 1_000_000);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(&wal).unwrap().len() > 0 {
            assert!(std::time::Instant::now() < deadline, "WAL never truncated");
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(s);
    }
}

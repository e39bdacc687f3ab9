//! Store: the durable inbox and the ledger of action runs.
//!
//! [`Store`] is the seam, made of the parts the router uses: [`Inbox`]
//! (ingest), [`WorkQueue`] (leases and the action ledger), [`ChatThreads`],
//! [`TrafficLedger`], [`Queries`] (the API) and [`Upkeep`] (health,
//! retention). Two backends implement it: [`SqliteStore`] (embedded, one
//! process, the default) and [`PostgresStore`] (shared by several replicas).
//! Both pass one contract suite (`tests/store_contract.rs`). All timestamps
//! are Unix milliseconds.

mod copy;
mod health;
mod postgres;
mod sqlite;

use async_trait::async_trait;
use serde::Serialize;

pub use copy::{copy_sqlite_to_postgres, CopyReport};
pub use health::{Fault, MIN_FREE_BYTES};
pub use postgres::{check_url as check_postgres_url, PostgresOptions, PostgresStore};
pub use sqlite::{SqliteStore, StoreOptions};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be read or written (disk full, locked, I/O).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Too many notifications are waiting; try again later.
    #[error("inbox is full: {pending} notifications waiting (limit {limit}, ingest.max_inbox)")]
    InboxFull { pending: u64, limit: u64 },
    /// The store has been shut down.
    #[error("store is closed")]
    Closed,
    /// The storage itself failed: the file is gone, the disk is full, the
    /// file is read-only, or an I/O error. Logged once by the store.
    #[error("store unavailable ({}): {message}", fault.as_str())]
    Storage { fault: Fault, message: String },
}

/// A validated notification to store.
pub struct NewNotification<'a> {
    pub received_at: i64,
    pub dedup_key: [u8; 32],
    pub receiver: &'a str,
    pub status: &'a str,
    pub group_key: &'a str,
    /// Number of alerts.
    pub alert_count: usize,
    /// The `alertname` of each alert (repeats allowed).
    pub alertnames: Vec<&'a str>,
    /// The body as received.
    pub payload: &'a str,
}

/// What [`Store::insert_notification`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    pub id: i64,
    /// True when this was a redelivery within the dedup window.
    pub duplicate: bool,
}

/// A notification claimed by a worker.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    /// Incremented by each replay; runs are per round.
    pub round: i64,
    pub payload: String,
}

/// The state of an action run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Not attempted yet, or failed and waiting for a retry.
    Pending,
    Succeeded,
    /// Gave up: permanent error, or out of attempts.
    Dead,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "succeeded" => RunStatus::Succeeded,
            "dead" => RunStatus::Dead,
            _ => RunStatus::Pending,
        }
    }

    /// True when nothing more will happen to the run.
    pub fn is_final(self) -> bool {
        self != RunStatus::Pending
    }
}

/// An action run the pipeline wants for a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRun {
    pub fingerprint: String,
    pub action: String,
    pub action_type: String,
}

/// An action run as stored.
#[derive(Debug, Clone, Serialize)]
pub struct ActionRun {
    pub id: i64,
    pub round: i64,
    pub fingerprint: String,
    pub action: String,
    #[serde(rename = "type")]
    pub action_type: String,
    pub status: RunStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    #[serde(serialize_with = "time::opt")]
    pub next_attempt_at: Option<i64>,
    #[serde(serialize_with = "time::opt")]
    pub first_attempt_at: Option<i64>,
    #[serde(serialize_with = "time::opt")]
    pub last_attempt_at: Option<i64>,
    #[serde(serialize_with = "time::opt")]
    pub finished_at: Option<i64>,
    pub duration_ms: Option<i64>,
    pub result: Option<serde_json::Value>,
    /// The enrichment context of the last attempt.
    pub context: Option<serde_json::Value>,
}

/// How one attempt of a run ended.
#[derive(Debug, Clone)]
pub enum RunOutcome {
    Succeeded {
        result: serde_json::Value,
    },
    /// Failed; try again at `retry_at`.
    Retry {
        error: String,
        retry_at: i64,
    },
    /// Failed for good.
    Dead {
        error: String,
    },
}

/// One attempt's record.
#[derive(Debug, Clone)]
pub struct RunAttempt {
    pub run_id: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub outcome: RunOutcome,
    /// The enrichment context the attempt saw (queries, values, links).
    pub context: Option<serde_json::Value>,
}

impl RunAttempt {
    /// The run's columns after this attempt, as every backend stores them:
    /// status, last error, next attempt, finished at, result.
    pub fn columns(
        &self,
    ) -> (
        RunStatus,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<String>,
    ) {
        match &self.outcome {
            RunOutcome::Succeeded { result } => (
                RunStatus::Succeeded,
                None,
                None,
                Some(self.finished_at),
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
                Some(self.finished_at),
                None,
            ),
        }
    }
}

/// Filters and cursor of the notification list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub limit: u32,
    /// Only ids below this (the previous page's last id).
    pub before: Option<i64>,
    pub status: Option<String>,
    pub alertname: Option<String>,
    pub state: Option<String>,
}

/// A row of the notification list.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationSummary {
    pub id: i64,
    #[serde(serialize_with = "time::ms")]
    pub received_at: i64,
    pub receiver: String,
    pub status: String,
    pub group_key: String,
    pub alerts: u32,
    pub alertnames: Vec<String>,
    /// `pending` until every action run is final, then `done`.
    pub state: String,
    pub duplicates: u32,
    pub round: i64,
    #[serde(serialize_with = "time::opt")]
    pub processed_at: Option<i64>,
}

/// One notification with everything known about it.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationDetail {
    #[serde(flatten)]
    pub summary: NotificationSummary,
    /// The body as received.
    pub payload: serde_json::Value,
    pub action_runs: Vec<ActionRun>,
}

/// One decision of a traffic-shift action: shifted, blocked, cooldown, …
#[derive(Debug, Clone, Serialize)]
pub struct TrafficDecision {
    pub id: i64,
    #[serde(serialize_with = "time::ms")]
    pub at: i64,
    pub action: String,
    /// The `traffic_targets` key (the experiment).
    pub target: String,
    /// (action, target, alert fingerprint, startsAt).
    pub episode: String,
    pub fingerprint: String,
    pub notification_id: i64,
    /// shifted, restored, blocked, cooldown, rate_limited, noop, deferred, failed, dry_run, held
    pub decision: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub reason: String,
}

/// Filters of [`Store::decisions`].
#[derive(Debug, Clone, Default)]
pub struct DecisionQuery {
    pub target: Option<String>,
    pub episode: Option<String>,
    /// Only these decisions.
    pub decisions: Vec<String>,
    /// Only decisions at or after this time (ms).
    pub since: Option<i64>,
    pub limit: u32,
}

/// Filters and cursor of the dead-letter list.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterQuery {
    pub limit: u32,
    /// Only run ids below this (the previous page's last id).
    pub before: Option<i64>,
}

/// A dead action run in the latest round of its notification: what needs a
/// look (and perhaps a replay).
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub notification_id: i64,
    pub receiver: String,
    pub group_key: String,
    /// The notification's status (`firing`/`resolved`).
    pub notification_status: String,
    pub alertnames: Vec<String>,
    /// The run (without its context: see the notification's detail).
    #[serde(flatten)]
    pub run: ActionRun,
}

/// Which chat message a notification group owns: one per (action, channel, groupKey).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatThreadKey {
    pub action: String,
    /// The channel as configured (a name or an id).
    pub channel: String,
    pub group_key: String,
}

/// The message a chat action posted for a group, to update or reply to later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatThread {
    pub key: ChatThreadKey,
    /// The channel id the platform answered with (Slack's `chat.update` needs it).
    pub channel_id: String,
    /// The message's id (Slack: `ts`).
    pub message_id: String,
    /// True once a resolved notification closed it: the next firing starts a new message.
    pub resolved: bool,
    pub updated_at: i64,
}

/// The durable inbox: what ingest needs.
#[async_trait]
pub trait Inbox: Send + Sync {
    /// Stores a notification unless the same one (same dedup key) arrived
    /// within the store's dedup window (on any replica sharing the store).
    /// Returns only once the row is durable.
    async fn insert_notification(
        &self,
        n: NewNotification<'_>,
        max_inbox: u64,
    ) -> Result<Inserted, StoreError>;

    /// Notifications stored but not yet done (a shared store: as of the last refresh).
    fn inbox_depth(&self) -> u64;
}

/// Work leases and the action ledger: what the workers and the pipeline need.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Claims the oldest due notification for `lease_ms`. A lease is only ever
    /// taken over after it has expired: a replica never takes a live one's work.
    async fn claim(&self, now: i64, lease_ms: i64) -> Result<Option<Claimed>, StoreError>;

    /// Creates the runs of this round that do not exist yet, and returns all runs of the round.
    async fn ensure_runs(
        &self,
        notification_id: i64,
        round: i64,
        planned: Vec<PlannedRun>,
    ) -> Result<Vec<ActionRun>, StoreError>;

    /// Extends the lease of a notification being processed to `now + lease_ms`
    /// (only while it is still leased and pending).
    async fn renew_lease(&self, id: i64, now: i64, lease_ms: i64) -> Result<(), StoreError>;

    /// Records one attempt of a run.
    async fn record_attempt(&self, attempt: RunAttempt) -> Result<(), StoreError>;

    /// Marks the notification done when all runs of `round` are final, else
    /// schedules it for the earliest pending retry. Releases the lease. If a
    /// replay started a newer round meanwhile, it stays due at once.
    async fn settle(&self, notification_id: i64, round: i64, now: i64) -> Result<(), StoreError>;

    /// Starts a new round for the notification. `None` when the id is unknown.
    async fn replay(&self, id: i64, now: i64) -> Result<Option<i64>, StoreError>;

    /// Called once at startup: makes due at once the work that a process which
    /// is gone still holds, where the backend can know it is gone. SQLite (one
    /// process per database file, see [`SqliteStore`]) releases every lease;
    /// a store shared by replicas releases nothing (a lease may belong to a
    /// live replica): there, leases expire by time. Returns how many.
    async fn resume_at_start(&self) -> Result<u64, StoreError>;
}

/// Chat thread state (Slack bot mode), shared by every replica.
#[async_trait]
pub trait ChatThreads: Send + Sync {
    /// The message a chat action posted for a group, if any.
    async fn chat_thread(&self, key: ChatThreadKey) -> Result<Option<ChatThread>, StoreError>;

    /// Records (or replaces) the message a chat action posted for a group.
    async fn save_chat_thread(&self, thread: ChatThread) -> Result<(), StoreError>;
}

/// Held while a traffic-shift action decides and acts on one target; dropping
/// it lets the next decision on that target go ahead.
pub struct TargetLock {
    _held: Box<dyn Send + Sync>,
}

impl TargetLock {
    /// Wraps whatever keeps the lock held until it is dropped.
    pub fn new(held: impl Send + Sync + 'static) -> Self {
        Self {
            _held: Box::new(held),
        }
    }
}

/// The audit trail of traffic decisions; cooldowns and hourly limits count it.
#[async_trait]
pub trait TrafficLedger: Send + Sync {
    /// Appends a traffic decision to the audit trail; returns its id.
    async fn record_decision(&self, d: TrafficDecision) -> Result<i64, StoreError>;

    /// Traffic decisions, newest first.
    async fn decisions(&self, q: DecisionQuery) -> Result<Vec<TrafficDecision>, StoreError>;

    /// Serialises decisions on one target across every worker sharing the
    /// store (every replica for a shared one): read decisions, change the
    /// target and record the decision while holding it, so a shift happens
    /// once per episode and per cooldown.
    async fn lock_target(&self, target: &str) -> Result<TargetLock, StoreError>;
}

/// What the HTTP API reads.
#[async_trait]
pub trait Queries: Send + Sync {
    /// Newest first.
    async fn list(&self, query: ListQuery) -> Result<Vec<NotificationSummary>, StoreError>;

    /// One notification; `None` when the id is unknown.
    async fn get(&self, id: i64) -> Result<Option<NotificationDetail>, StoreError>;

    /// Dead runs of the latest round of their notification, newest (highest run id) first.
    async fn dead_letters(&self, query: DeadLetterQuery) -> Result<Vec<DeadLetter>, StoreError>;

    /// Runs that are dead in the latest round of their notification.
    async fn dead_letter_count(&self) -> Result<u64, StoreError>;
}

/// Health and housekeeping.
#[async_trait]
pub trait Upkeep: Send + Sync {
    /// Proves the store can commit a write right now.
    async fn check_writable(&self) -> Result<(), StoreError>;

    /// Deletes what the retention allows as of `now` (ms). A background
    /// pruner calls it every `storage.prune_interval`.
    async fn prune(&self, now: i64) -> Result<PruneReport, StoreError>;

    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
}

/// Everything a router needs from its store: one value of each part. Any
/// type implementing the parts is a `Store`.
pub trait Store:
    Inbox + WorkQueue + ChatThreads + TrafficLedger + Queries + Upkeep + 'static
{
}

impl<T> Store for T where
    T: Inbox + WorkQueue + ChatThreads + TrafficLedger + Queries + Upkeep + 'static
{
}

/// What one pruning pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub notifications: u64,
    pub action_runs: u64,
    pub traffic_decisions: u64,
    pub chat_threads: u64,
    /// Pages given back to the filesystem (SQLite).
    pub vacuumed_pages: u64,
}

/// Serialises work per key inside one process (the SQLite store's
/// [`TrafficLedger::lock_target`]: one process owns the database).
#[derive(Default)]
pub(crate) struct LocalLocks {
    locks:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

impl LocalLocks {
    pub(crate) async fn lock(&self, key: &str) -> TargetLock {
        let lock = {
            // A poisoned map only means another thread panicked while holding
            // it; the map itself is still consistent (insert or clone).
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|k, l| k == key || std::sync::Arc::strong_count(l) > 1);
            map.entry(key.to_owned()).or_default().clone()
        };
        TargetLock::new(lock.lock_owned().await)
    }
}

/// Unix milliseconds serialised as RFC 3339 for API answers.
mod time {
    use chrono::{DateTime, SecondsFormat};
    use serde::Serializer;

    pub fn ms<S: Serializer>(t: &i64, s: S) -> Result<S::Ok, S::Error> {
        match DateTime::from_timestamp_millis(*t) {
            Some(t) => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            None => s.serialize_i64(*t),
        }
    }

    pub fn opt<S: Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => ms(t, s),
            None => s.serialize_none(),
        }
    }
}

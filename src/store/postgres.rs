//! PostgreSQL implementation of [`Store`], shared by several replicas.
//!
//! Driver: `tokio-postgres` (async, the Rust PostgreSQL driver most projects
//! use), pooled by `deadpool-postgres`, TLS by `tokio-postgres-rustls` on the
//! rustls (ring) the HTTP clients already use.
//!
//! What makes several replicas behave as one:
//! - **Ingest**: every insert is its own transaction, committed before the
//!   caller answers 200. Concurrent commits share WAL flushes (PostgreSQL's
//!   own group commit). Redeliveries are recognised through `dedup_keys`, a
//!   table keyed by the dedup key: the first insert of a key within the window
//!   wins, a concurrent one waits on the key and then counts as a duplicate,
//!   whichever replica received it.
//! - **Work**: claimed with `FOR UPDATE SKIP LOCKED` and a lease that expires
//!   by time; a replica never takes over a lease that has not expired, and a
//!   replica that starts does not release anyone's leases.
//! - **Traffic shifts**: [`TrafficLedger::lock_target`] takes a session
//!   advisory lock keyed by the target on a pooled connection, held while the
//!   decision is read, applied and recorded. If the replica dies, PostgreSQL
//!   drops the session and with it the lock.
//! - **Schema**: migrations are embedded and applied under an advisory lock,
//!   so replicas starting at once apply each one exactly once.
//!
//! PostgreSQL down or failing over: each operation fails within
//! `connect_timeout` + `statement_timeout` with [`StoreError::Unavailable`]
//! (ingest answers 503 with `Retry-After`, `/readyz` is not ready); the pool
//! drops broken connections and opens new ones once the server is back.

use super::*;
use crate::metrics::{KindLabels, StoreMetrics};
use crate::secret::Secret;
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How the PostgreSQL store is run.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `postgres://user:password@host:port/database?sslmode=…` (or the
    /// `key=value` form). A secret: never printed.
    pub url: Secret,
    /// Most connections this replica opens.
    pub pool_size: usize,
    /// Opening a connection (and waiting for a free one) gives up after this.
    pub connect_timeout: Duration,
    /// A statement running longer is cancelled by the server.
    pub statement_timeout: Duration,
    /// PEM files of CAs trusted for the server's certificate, besides the
    /// system roots.
    pub ca_files: Vec<PathBuf>,
    /// Redeliveries within this window are recognised.
    pub dedup_window: Duration,
    /// Finished notifications older than this are pruned.
    pub retention: Duration,
    /// Notifications holding a dead letter are kept this long unless replayed.
    pub dead_letter_retention: Duration,
    /// How often the background pruner runs; `None`: none.
    pub prune_interval: Option<Duration>,
}

impl PostgresOptions {
    /// Defaults for everything but the URL (tests).
    pub fn new(url: Secret) -> Self {
        Self {
            url,
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            ca_files: Vec::new(),
            dedup_window: Duration::from_secs(300),
            retention: Duration::from_secs(120 * 3600),
            dead_letter_retention: Duration::from_secs(720 * 3600),
            prune_interval: None,
        }
    }
}

/// Checks a connection URL without connecting; the error never repeats the URL.
pub fn check_url(url: &str) -> Result<(), String> {
    parse_url(url).map(|_| ())
}

fn parse_url(url: &str) -> Result<tokio_postgres::Config, String> {
    // tokio-postgres knows disable/prefer/require; libpq's verify-ca and
    // verify-full mean what this store always does once TLS is on: the
    // server's certificate is verified (chain and host name).
    let url = url
        .replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require");
    url.parse::<tokio_postgres::Config>().map_err(|e| {
        // The reason ("invalid value for option `sslmode`") is the source;
        // neither repeats the URL.
        let reason = std::error::Error::source(&e)
            .map(|s| format!("{e}: {s}"))
            .unwrap_or_else(|| e.to_string());
        format!("not a valid PostgreSQL connection URL ({reason})")
    })
}

/// The store error for a driver error: a connection-level failure (no
/// connection, server shutting down or in recovery, a standby refusing
/// writes) is a storage fault, logged once while it lasts; anything else is
/// reported as it happens.
impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The driver's message is short ("db error", "error connecting to
        // server"); the reason is in its sources. None of them holds the
        // connection URL.
        let mut message = format!("PostgreSQL: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        let unreachable = match e.code() {
            None => true,
            Some(code) => {
                let code = code.code();
                // 08: connection exception; 57P0x: shutdown, crash, cannot
                // connect now; 25006: read-only transaction (a standby);
                // 53300: too many connections.
                code.starts_with("08")
                    || code.starts_with("57P0")
                    || code == "25006"
                    || code == "53300"
            }
        };
        if unreachable {
            unreachable_error(message)
        } else {
            StoreError::Unavailable(message)
        }
    }
}

fn unreachable_error(message: String) -> StoreError {
    StoreError::Storage {
        fault: Fault::Unreachable,
        message,
    }
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => e.into(),
            PoolError::Timeout(_) => {
                unreachable_error("PostgreSQL: no connection within connect_timeout".into())
            }
            other => unreachable_error(format!("PostgreSQL: {other}")),
        }
    }
}

/// Embedded schema migrations, applied in order, each once.
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('heartbeat', '0');
CREATE TABLE notifications (
    id              BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    received_at     BIGINT  NOT NULL,
    dedup_key       BYTEA   NOT NULL,
    receiver        TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    group_key       TEXT    NOT NULL,
    alert_count     BIGINT  NOT NULL,
    alertnames      TEXT[]  NOT NULL,
    payload         TEXT    NOT NULL,
    duplicates      BIGINT  NOT NULL DEFAULT 0,
    state           TEXT    NOT NULL DEFAULT 'pending',
    round           BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    lease_until     BIGINT,
    processed_at    BIGINT
);
CREATE INDEX notifications_due ON notifications (next_attempt_at, id) WHERE state = 'pending';
-- One row per dedup key: the notification that holds it and when it arrived.
CREATE TABLE dedup_keys (
    key             BYTEA  PRIMARY KEY,
    notification_id BIGINT NOT NULL,
    received_at     BIGINT NOT NULL
);
CREATE INDEX dedup_keys_received ON dedup_keys (received_at);
CREATE TABLE action_runs (
    id               BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    notification_id  BIGINT NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    round            BIGINT NOT NULL,
    fingerprint      TEXT   NOT NULL,
    action           TEXT   NOT NULL,
    action_type      TEXT   NOT NULL,
    status           TEXT   NOT NULL DEFAULT 'pending',
    attempts         BIGINT NOT NULL DEFAULT 0,
    last_error       TEXT,
    next_attempt_at  BIGINT,
    first_attempt_at BIGINT,
    last_attempt_at  BIGINT,
    finished_at      BIGINT,
    duration_ms      BIGINT,
    result           TEXT,
    context          TEXT,
    UNIQUE (notification_id, round, fingerprint, action)
);
CREATE INDEX action_runs_dead ON action_runs (id) WHERE status = 'dead';
CREATE TABLE traffic_decisions (
    id              BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    at              BIGINT NOT NULL,
    action          TEXT   NOT NULL,
    target          TEXT   NOT NULL,
    episode         TEXT   NOT NULL,
    fingerprint     TEXT   NOT NULL,
    notification_id BIGINT NOT NULL,
    decision        TEXT   NOT NULL,
    before          TEXT,
    after           TEXT,
    reason          TEXT   NOT NULL
);
CREATE INDEX traffic_decisions_target ON traffic_decisions (target, at);
CREATE INDEX traffic_decisions_episode ON traffic_decisions (episode);
CREATE TABLE chat_threads (
    action       TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    group_key    TEXT    NOT NULL,
    channel_id   TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    resolved     BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at   BIGINT  NOT NULL,
    PRIMARY KEY (action, channel, group_key)
);
"#,
)];

/// Advisory lock key (two int4 halves: a namespace and a value) taken while
/// migrating: "mlar" and 1.
const LOCK_NAMESPACE: i32 = 0x6d6c_6172;
const MIGRATION_LOCK: i32 = 1;
/// Namespace of the per-target locks ("mlat"); the value is hashtext(target).
const TARGET_NAMESPACE: i32 = 0x6d6c_6174;

/// Rows deleted per pruning statement.
const PRUNE_BATCH: i64 = 500;

/// Shifts and restores are kept at least this long (as the SQLite store).
const SHIFT_MIN_KEEP_MS: i64 = 7 * 24 * 3600 * 1000;

/// How often the shared inbox depth is read back.
const DEPTH_REFRESH: Duration = Duration::from_secs(1);

struct Inner {
    pool: Pool,
    /// Connection-level faults, logged once when they start and clear.
    health: super::health::Health,
    options: PostgresOptions,
    /// Pending notifications, as last counted (plus this replica's inserts since).
    depth: AtomicU64,
    metrics: StoreMetrics,
}

/// The PostgreSQL store.
pub struct PostgresStore {
    inner: Arc<Inner>,
    /// Waiters for a target queue here first, so at most one pooled
    /// connection per target waits on the advisory lock.
    local: LocalLocks,
    /// Dropping it stops the background tasks.
    _stop: DropGuard,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn tls_config(ca_files: &[PathBuf]) -> Result<rustls::ClientConfig, StoreError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: the CA files may be enough.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    for path in ca_files {
        let bad = |e: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!(
                "storage.postgres.ca_file: cannot read {}: {e}",
                path.display()
            ))
        };
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Unavailable(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl PostgresStore {
    /// Connects, applies the embedded migrations (once, whichever replica
    /// gets there first) and starts the background tasks.
    pub async fn connect(
        options: PostgresOptions,
        metrics: StoreMetrics,
    ) -> Result<Self, StoreError> {
        let mut config = parse_url(options.url.expose())
            .map_err(|e| StoreError::Unavailable(format!("storage.postgres.url: {e}")))?;
        config
            .connect_timeout(options.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .options(format!(
                "-c statement_timeout={}",
                options.statement_timeout.as_millis().max(1)
            ));
        if config.get_application_name().is_none() {
            config.application_name("mlops-alert-router");
        }
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(&options.ca_files)?);
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("PostgreSQL pool: {e}")))?;
        let inner = Arc::new(Inner {
            pool,
            health: super::health::Health::new(metrics.clone()),
            options,
            depth: AtomicU64::new(0),
            metrics,
        });
        inner.migrate().await?;
        inner.refresh_depth().await?;
        for (kind, keep) in [
            ("notifications", inner.options.retention),
            ("dead_letters", inner.options.dead_letter_retention),
        ] {
            inner
                .metrics
                .retention
                .get_or_create(&KindLabels { kind })
                .set(keep.as_secs() as i64);
        }
        let stop = CancellationToken::new();
        tokio::spawn(background(inner.clone(), stop.clone()));
        Ok(Self {
            inner,
            local: LocalLocks::default(),
            _stop: stop.drop_guard(),
        })
    }

    /// Runs `f` within `connect_timeout` + `statement_timeout`: a server that
    /// vanished without closing the connection fails the call, not hangs it.
    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self.inner.options.connect_timeout + self.inner.options.statement_timeout;
        let mark = self.inner.health.mark();
        let result = match tokio::time::timeout(limit, f).await {
            Ok(result) => result,
            Err(_) => Err(unreachable_error(format!(
                "PostgreSQL: no answer within {}",
                humantime::format_duration(limit)
            ))),
        };
        match &result {
            Err(StoreError::Storage { fault, message }) => self.inner.health.fail(*fault, message),
            // Reached the server and it answered: whatever was wrong is over.
            Ok(_) | Err(StoreError::Unavailable(_)) | Err(StoreError::InboxFull { .. }) => {
                self.inner.health.clear_since(mark)
            }
            Err(StoreError::Closed) => {}
        }
        result
    }

    async fn client(&self) -> Result<Object, StoreError> {
        Ok(self.inner.pool.get().await?)
    }

    /// A pooled connection, for the copy tool.
    pub(crate) async fn pool_client(&self) -> Result<Object, StoreError> {
        self.client().await
    }
}

impl Inner {
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        // Session lock: replicas starting at once wait here for the first.
        client
            .execute(
                "SELECT pg_advisory_lock($1, $2)",
                &[&LOCK_NAMESPACE, &MIGRATION_LOCK],
            )
            .await?;
        let result = async {
            // Checked first: IF NOT EXISTS would log a notice at every start.
            let exists: bool = client
                .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
                .await?
                .get(0);
            if !exists {
                client
                    .batch_execute(
                        "CREATE TABLE schema_migrations (\
                           version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
                    )
                    .await?;
            }
            for (version, sql) in MIGRATIONS {
                let tx = client.transaction().await?;
                let done = tx
                    .query_opt(
                        "SELECT 1 FROM schema_migrations WHERE version = $1",
                        &[version],
                    )
                    .await?
                    .is_some();
                if !done {
                    tx.batch_execute(sql).await?;
                    tx.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                        &[version, &now_ms()],
                    )
                    .await?;
                    tracing::info!(version, "Applied PostgreSQL schema migration");
                }
                tx.commit().await?;
            }
            Ok::<_, StoreError>(())
        }
        .await;
        let unlocked = client
            .execute(
                "SELECT pg_advisory_unlock($1, $2)",
                &[&LOCK_NAMESPACE, &MIGRATION_LOCK],
            )
            .await;
        if result.is_err() || unlocked.is_err() {
            // Do not hand a session that may still hold the lock back to the pool.
            drop(Object::take(client));
        }
        result
    }

    async fn refresh_depth(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let n: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM notifications WHERE state = 'pending'",
                &[],
            )
            .await?
            .get(0);
        self.depth.store(n.max(0) as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn prune(&self, now: i64) -> Result<PruneReport, StoreError> {
        let o = &self.options;
        let retention = o.retention.as_millis() as i64;
        let dedup = o.dedup_window.as_millis() as i64;
        let done_cutoff = now - retention;
        let received_cutoff = now - retention.max(dedup);
        let dead_cutoff = now - o.dead_letter_retention.as_millis() as i64;
        let shift_cutoff = now - retention.max(SHIFT_MIN_KEEP_MS);
        let client = self.pool.get().await?;
        let mut report = PruneReport::default();
        self.metrics.prune_runs.inc();
        let notifications = client
            .prepare_cached(
                "WITH doomed AS (SELECT id FROM notifications n WHERE state = 'done' \
                   AND received_at < $1 AND processed_at < $2 \
                   AND (processed_at < $3 OR NOT EXISTS (SELECT 1 FROM action_runs r \
                     WHERE r.notification_id = n.id AND r.round = n.round AND r.status = 'dead')) \
                   ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED), \
                 runs AS (DELETE FROM action_runs WHERE notification_id IN (SELECT id FROM doomed) \
                   RETURNING 1), \
                 gone AS (DELETE FROM notifications WHERE id IN (SELECT id FROM doomed) RETURNING 1) \
                 SELECT (SELECT COUNT(*) FROM gone), (SELECT COUNT(*) FROM runs)",
            )
            .await?;
        loop {
            let row = client
                .query_one(
                    &notifications,
                    &[&received_cutoff, &done_cutoff, &dead_cutoff, &PRUNE_BATCH],
                )
                .await?;
            let (n, runs): (i64, i64) = (row.get(0), row.get(1));
            report.notifications += n as u64;
            report.action_runs += runs as u64;
            if n < PRUNE_BATCH {
                break;
            }
        }
        let decisions = client
            .prepare_cached(
                "DELETE FROM traffic_decisions WHERE id IN (SELECT id FROM traffic_decisions d \
                   WHERE at < $1 AND (decision NOT IN ('shifted', 'restored') \
                     OR (at < $2 AND NOT EXISTS (SELECT 1 FROM traffic_decisions e \
                       WHERE e.episode = d.episode AND e.at >= $1))) \
                   ORDER BY id LIMIT $3)",
            )
            .await?;
        loop {
            let n = client
                .execute(&decisions, &[&done_cutoff, &shift_cutoff, &PRUNE_BATCH])
                .await?;
            report.traffic_decisions += n;
            if (n as i64) < PRUNE_BATCH {
                break;
            }
        }
        let threads = client
            .prepare_cached(
                "DELETE FROM chat_threads WHERE (action, channel, group_key) IN \
                 (SELECT action, channel, group_key FROM chat_threads \
                   WHERE (resolved AND updated_at < $1) OR updated_at < $2 LIMIT $3)",
            )
            .await?;
        loop {
            let n = client
                .execute(&threads, &[&done_cutoff, &dead_cutoff, &PRUNE_BATCH])
                .await?;
            report.chat_threads += n;
            if (n as i64) < PRUNE_BATCH {
                break;
            }
        }
        // Dedup keys outside the window recognise nothing any more.
        client
            .execute(
                "DELETE FROM dedup_keys WHERE received_at <= $1",
                &[&(now - dedup)],
            )
            .await?;
        for (kind, n) in [
            ("notifications", report.notifications),
            ("action_runs", report.action_runs),
            ("traffic_decisions", report.traffic_decisions),
            ("chat_threads", report.chat_threads),
        ] {
            if n > 0 {
                self.metrics
                    .pruned_rows
                    .get_or_create(&KindLabels { kind })
                    .inc_by(n);
            }
        }
        Ok(report)
    }
}

/// Refreshes the inbox depth every second and prunes every `prune_interval`,
/// until `stop`. Failures are retried at the next tick (the health check and
/// ingest report an unavailable database).
async fn background(inner: Arc<Inner>, stop: CancellationToken) {
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(DEPTH_REFRESH) => {}
        }
        if let Err(e) = inner.refresh_depth().await {
            tracing::debug!(error = %e, "Cannot count the inbox");
        }
        let Some(every) = inner.options.prune_interval else {
            continue;
        };
        if last_prune.is_some_and(|at| at.elapsed() < every) {
            continue;
        }
        last_prune = Some(tokio::time::Instant::now());
        match inner.prune(now_ms()).await {
            Ok(r) if r != PruneReport::default() => tracing::info!(
                notifications = r.notifications,
                action_runs = r.action_runs,
                traffic_decisions = r.traffic_decisions,
                chat_threads = r.chat_threads,
                "Pruned expired rows"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Pruning failed; will retry"),
        }
    }
}

const SUMMARY_COLUMNS: &str = "n.id, n.received_at, n.receiver, n.status, n.group_key, \
     n.alert_count, n.state, n.duplicates, n.round, n.processed_at, n.alertnames";

fn summary_from_row(r: &tokio_postgres::Row) -> NotificationSummary {
    NotificationSummary {
        id: r.get(0),
        received_at: r.get(1),
        receiver: r.get(2),
        status: r.get(3),
        group_key: r.get(4),
        alerts: r.get::<_, i64>(5) as u32,
        state: r.get(6),
        duplicates: r.get::<_, i64>(7) as u32,
        round: r.get(8),
        processed_at: r.get(9),
        alertnames: r.get(10),
    }
}

const RUN_COLUMNS: &str = "r.id, r.notification_id, r.round, r.fingerprint, r.action, \
     r.action_type, r.status, r.attempts, r.last_error, r.next_attempt_at, r.first_attempt_at, \
     r.last_attempt_at, r.finished_at, r.duration_ms, r.result, r.context";

fn json(s: Option<String>) -> Option<serde_json::Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

fn run_from_row(r: &tokio_postgres::Row) -> ActionRun {
    let status: String = r.get(6);
    ActionRun {
        id: r.get(0),
        round: r.get(2),
        fingerprint: r.get(3),
        action: r.get(4),
        action_type: r.get(5),
        status: RunStatus::parse(&status),
        attempts: r.get::<_, i64>(7) as u32,
        last_error: r.get(8),
        next_attempt_at: r.get(9),
        first_attempt_at: r.get(10),
        last_attempt_at: r.get(11),
        finished_at: r.get(12),
        duration_ms: r.get(13),
        result: json(r.get(14)),
        context: json(r.get(15)),
    }
}

type Params = Vec<Box<dyn ToSql + Sync + Send>>;

fn refs(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

#[async_trait]
impl Inbox for PostgresStore {
    async fn insert_notification(
        &self,
        n: NewNotification<'_>,
        max_inbox: u64,
    ) -> Result<Inserted, StoreError> {
        let window = self.inner.options.dedup_window.as_millis() as i64;
        let mut names: Vec<&str> = n.alertnames.clone();
        names.sort_unstable();
        names.dedup();
        let inserted = self
            .timed(async {
                let mut client = self.client().await?;
                let tx = client.transaction().await?;
                // Take the key unless a notification within the window holds
                // it. A concurrent insert of the same key waits here for ours
                // to commit, then finds it held.
                let took = tx
                    .query_opt(
                        "INSERT INTO dedup_keys (key, notification_id, received_at) \
                         VALUES ($1, 0, $2) ON CONFLICT (key) DO UPDATE \
                         SET notification_id = 0, received_at = EXCLUDED.received_at \
                         WHERE dedup_keys.received_at <= $3 RETURNING 1",
                        &[&&n.dedup_key[..], &n.received_at, &(n.received_at - window)],
                    )
                    .await?
                    .is_some();
                if !took {
                    let id: i64 = tx
                        .query_one(
                            "SELECT notification_id FROM dedup_keys WHERE key = $1",
                            &[&&n.dedup_key[..]],
                        )
                        .await?
                        .get(0);
                    tx.execute(
                        "UPDATE notifications SET duplicates = duplicates + 1 WHERE id = $1",
                        &[&id],
                    )
                    .await?;
                    tx.commit().await?;
                    return Ok(Inserted {
                        id,
                        duplicate: true,
                    });
                }
                let pending = self.inner.depth.load(Ordering::Relaxed);
                if pending >= max_inbox {
                    // Dropping the transaction rolls it back.
                    return Err(StoreError::InboxFull {
                        pending,
                        limit: max_inbox,
                    });
                }
                let id: i64 = tx
                    .query_one(
                        "INSERT INTO notifications (received_at, dedup_key, receiver, status, \
                         group_key, alert_count, alertnames, payload, next_attempt_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $1) RETURNING id",
                        &[
                            &n.received_at,
                            &&n.dedup_key[..],
                            &n.receiver,
                            &n.status,
                            &n.group_key,
                            &(n.alert_count as i64),
                            &names,
                            &n.payload,
                        ],
                    )
                    .await?
                    .get(0);
                tx.execute(
                    "UPDATE dedup_keys SET notification_id = $2 WHERE key = $1",
                    &[&&n.dedup_key[..], &id],
                )
                .await?;
                tx.commit().await?;
                Ok(Inserted {
                    id,
                    duplicate: false,
                })
            })
            .await?;
        if !inserted.duplicate {
            self.inner.depth.fetch_add(1, Ordering::Relaxed);
        }
        Ok(inserted)
    }

    fn inbox_depth(&self) -> u64 {
        self.inner.depth.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl WorkQueue for PostgresStore {
    async fn claim(&self, now: i64, lease_ms: i64) -> Result<Option<Claimed>, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "UPDATE notifications SET lease_until = $1::BIGINT + $2::BIGINT WHERE id = ( \
                       SELECT id FROM notifications WHERE state = 'pending' \
                       AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1) \
                       ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                     RETURNING id, round, payload",
                    &[&now, &lease_ms],
                )
                .await?;
            Ok(row.map(|r| Claimed {
                id: r.get(0),
                round: r.get(1),
                payload: r.get(2),
            }))
        })
        .await
    }

    async fn ensure_runs(
        &self,
        notification_id: i64,
        round: i64,
        planned: Vec<PlannedRun>,
    ) -> Result<Vec<ActionRun>, StoreError> {
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let insert = tx
                .prepare_cached(
                    "INSERT INTO action_runs (notification_id, round, fingerprint, action, \
                     action_type) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .await?;
            for p in &planned {
                tx.execute(
                    &insert,
                    &[
                        &notification_id,
                        &round,
                        &p.fingerprint,
                        &p.action,
                        &p.action_type,
                    ],
                )
                .await?;
            }
            let runs = tx
                .query(
                    &format!(
                        "SELECT {RUN_COLUMNS} FROM action_runs r WHERE r.notification_id = $1 \
                         AND r.round = $2 ORDER BY r.id"
                    ),
                    &[&notification_id, &round],
                )
                .await?
                .iter()
                .map(run_from_row)
                .collect();
            tx.commit().await?;
            Ok(runs)
        })
        .await
    }

    async fn renew_lease(&self, id: i64, now: i64, lease_ms: i64) -> Result<(), StoreError> {
        self.timed(async {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE notifications SET lease_until = $2::BIGINT + $3::BIGINT \
                     WHERE id = $1 AND lease_until IS NOT NULL AND state = 'pending'",
                    &[&id, &now, &lease_ms],
                )
                .await?;
            Ok(())
        })
        .await
    }

    async fn record_attempt(&self, a: RunAttempt) -> Result<(), StoreError> {
        self.timed(async {
            let duration = a.finished_at - a.started_at;
            let (status, error, next, finished, result) = a.columns();
            let context = a.context.as_ref().map(|c| c.to_string());
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE action_runs SET status = $2, attempts = attempts + 1, \
                       last_error = COALESCE($3, last_error), next_attempt_at = $4, \
                       first_attempt_at = COALESCE(first_attempt_at, $5), last_attempt_at = $5, \
                       finished_at = $6, duration_ms = $7, result = $8, \
                       context = COALESCE($9, context) \
                     WHERE id = $1",
                    &[
                        &a.run_id,
                        &status.as_str(),
                        &error,
                        &next,
                        &a.started_at,
                        &finished,
                        &duration,
                        &result,
                        &context,
                    ],
                )
                .await?;
            Ok(())
        })
        .await
    }

    async fn settle(&self, notification_id: i64, round: i64, now: i64) -> Result<(), StoreError> {
        let finished = self
            .timed(async {
                let mut client = self.client().await?;
                let tx = client.transaction().await?;
                let row = tx
                    .query_one(
                        "SELECT round, state FROM notifications WHERE id = $1 FOR UPDATE",
                        &[&notification_id],
                    )
                    .await?;
                let (current_round, current): (i64, String) = (row.get(0), row.get(1));
                if current_round != round {
                    tx.execute(
                        "UPDATE notifications SET next_attempt_at = $2, lease_until = NULL \
                         WHERE id = $1",
                        &[&notification_id, &now],
                    )
                    .await?;
                    tx.commit().await?;
                    return Ok(false);
                }
                let next_retry: Option<i64> = tx
                    .query_one(
                        "SELECT MIN(COALESCE(next_attempt_at, 0)) FROM action_runs \
                         WHERE notification_id = $1 AND round = $2 AND status = 'pending'",
                        &[&notification_id, &round],
                    )
                    .await?
                    .get(0);
                let finished = match next_retry {
                    Some(at) => {
                        tx.execute(
                            "UPDATE notifications SET next_attempt_at = $2, lease_until = NULL \
                             WHERE id = $1",
                            &[&notification_id, &at.max(now)],
                        )
                        .await?;
                        false
                    }
                    None => {
                        tx.execute(
                            "UPDATE notifications SET state = 'done', processed_at = $2, \
                             lease_until = NULL WHERE id = $1",
                            &[&notification_id, &now],
                        )
                        .await?;
                        current == "pending"
                    }
                };
                tx.commit().await?;
                Ok(finished)
            })
            .await?;
        if finished {
            let _ = self
                .inner
                .depth
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                    Some(d.saturating_sub(1))
                });
        }
        Ok(())
    }

    async fn replay(&self, id: i64, now: i64) -> Result<Option<i64>, StoreError> {
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let before = tx
                .query_opt(
                    "SELECT state FROM notifications WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await?;
            let Some(before) = before else {
                return Ok(None);
            };
            let before: String = before.get(0);
            let round: i64 = tx
                .query_one(
                    "UPDATE notifications SET round = round + 1, state = 'pending', \
                     next_attempt_at = $2, lease_until = NULL, processed_at = NULL \
                     WHERE id = $1 RETURNING round",
                    &[&id, &now],
                )
                .await?
                .get(0);
            tx.commit().await?;
            if before != "pending" {
                self.inner.depth.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(round))
        })
        .await
    }

    /// Replicas share this database: a lease held at startup may be a live
    /// replica's. Nothing is released; leases expire by time.
    async fn resume_at_start(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

#[async_trait]
impl ChatThreads for PostgresStore {
    async fn chat_thread(&self, key: ChatThreadKey) -> Result<Option<ChatThread>, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT channel_id, message_id, resolved, updated_at FROM chat_threads \
                     WHERE action = $1 AND channel = $2 AND group_key = $3",
                    &[&key.action, &key.channel, &key.group_key],
                )
                .await?;
            Ok(row.map(|r| ChatThread {
                key: key.clone(),
                channel_id: r.get(0),
                message_id: r.get(1),
                resolved: r.get(2),
                updated_at: r.get(3),
            }))
        })
        .await
    }

    async fn save_chat_thread(&self, t: ChatThread) -> Result<(), StoreError> {
        self.timed(async {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO chat_threads (action, channel, group_key, channel_id, \
                     message_id, resolved, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (action, channel, group_key) DO UPDATE SET \
                     channel_id = EXCLUDED.channel_id, message_id = EXCLUDED.message_id, \
                     resolved = EXCLUDED.resolved, updated_at = EXCLUDED.updated_at",
                    &[
                        &t.key.action,
                        &t.key.channel,
                        &t.key.group_key,
                        &t.channel_id,
                        &t.message_id,
                        &t.resolved,
                        &t.updated_at,
                    ],
                )
                .await?;
            Ok(())
        })
        .await
    }
}

/// A session holding a target's advisory lock; dropping it unlocks and gives
/// the connection back to the pool (or closes it, which unlocks too).
struct HeldTarget {
    client: Option<Object>,
    key: String,
}

impl Drop for HeldTarget {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let key = std::mem::take(&mut self.key);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let unlocked = client
                        .execute(
                            "SELECT pg_advisory_unlock($1, hashtext($2))",
                            &[&TARGET_NAMESPACE, &key],
                        )
                        .await;
                    if unlocked.is_err() {
                        // Closing the session releases the lock.
                        drop(Object::take(client));
                    }
                });
            }
            // No runtime: closing the session releases the lock.
            Err(_) => drop(Object::take(client)),
        }
    }
}

#[async_trait]
impl TrafficLedger for PostgresStore {
    async fn record_decision(&self, d: TrafficDecision) -> Result<i64, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let id: i64 = client
                .query_one(
                    "INSERT INTO traffic_decisions (at, action, target, episode, fingerprint, \
                     notification_id, decision, before, after, reason) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                    &[
                        &d.at,
                        &d.action,
                        &d.target,
                        &d.episode,
                        &d.fingerprint,
                        &d.notification_id,
                        &d.decision,
                        &d.before.as_ref().map(|v| v.to_string()),
                        &d.after.as_ref().map(|v| v.to_string()),
                        &d.reason,
                    ],
                )
                .await?
                .get(0);
            Ok(id)
        })
        .await
    }

    async fn decisions(&self, q: DecisionQuery) -> Result<Vec<TrafficDecision>, StoreError> {
        self.timed(async {
            let mut sql = String::from(
                "SELECT id, at, action, target, episode, fingerprint, notification_id, \
                 decision, before, after, reason FROM traffic_decisions WHERE TRUE",
            );
            let mut params: Params = Vec::new();
            if let Some(t) = q.target {
                params.push(Box::new(t));
                sql += &format!(" AND target = ${}", params.len());
            }
            if let Some(e) = q.episode {
                params.push(Box::new(e));
                sql += &format!(" AND episode = ${}", params.len());
            }
            if let Some(since) = q.since {
                params.push(Box::new(since));
                sql += &format!(" AND at >= ${}", params.len());
            }
            if !q.decisions.is_empty() {
                params.push(Box::new(q.decisions));
                sql += &format!(" AND decision = ANY(${})", params.len());
            }
            params.push(Box::new(i64::from(q.limit)));
            sql += &format!(" ORDER BY id DESC LIMIT ${}", params.len());
            let client = self.client().await?;
            let rows = client.query(&sql, &refs(&params)).await?;
            Ok(rows
                .iter()
                .map(|r| TrafficDecision {
                    id: r.get(0),
                    at: r.get(1),
                    action: r.get(2),
                    target: r.get(3),
                    episode: r.get(4),
                    fingerprint: r.get(5),
                    notification_id: r.get(6),
                    decision: r.get(7),
                    before: json(r.get(8)),
                    after: json(r.get(9)),
                    reason: r.get(10),
                })
                .collect())
        })
        .await
    }

    async fn lock_target(&self, target: &str) -> Result<TargetLock, StoreError> {
        let key = target.to_owned();
        let local = self.local.lock(target).await;
        self.timed(async {
            let client = self.client().await?;
            // Waits for another replica's decision on the same target; the
            // statement timeout bounds the wait.
            client
                .execute(
                    "SELECT pg_advisory_lock($1, hashtext($2))",
                    &[&TARGET_NAMESPACE, &key],
                )
                .await?;
            // Dropped in order: this process's next waiter may start waiting
            // on the advisory lock as the unlock is sent.
            Ok(TargetLock::new((
                local,
                HeldTarget {
                    client: Some(client),
                    key: key.clone(),
                },
            )))
        })
        .await
    }
}

#[async_trait]
impl Queries for PostgresStore {
    async fn list(&self, q: ListQuery) -> Result<Vec<NotificationSummary>, StoreError> {
        self.timed(async {
            let mut sql = format!("SELECT {SUMMARY_COLUMNS} FROM notifications n WHERE TRUE");
            let mut params: Params = Vec::new();
            if let Some(before) = q.before {
                params.push(Box::new(before));
                sql += &format!(" AND n.id < ${}", params.len());
            }
            if let Some(status) = q.status {
                params.push(Box::new(status));
                sql += &format!(" AND n.status = ${}", params.len());
            }
            if let Some(state) = q.state {
                params.push(Box::new(state));
                sql += &format!(" AND n.state = ${}", params.len());
            }
            if let Some(name) = q.alertname {
                params.push(Box::new(name));
                sql += &format!(" AND ${} = ANY(n.alertnames)", params.len());
            }
            params.push(Box::new(i64::from(q.limit)));
            sql += &format!(" ORDER BY n.id DESC LIMIT ${}", params.len());
            let client = self.client().await?;
            let rows = client.query(&sql, &refs(&params)).await?;
            Ok(rows.iter().map(summary_from_row).collect())
        })
        .await
    }

    async fn get(&self, id: i64) -> Result<Option<NotificationDetail>, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let Some(row) = client
                .query_opt(
                    &format!(
                        "SELECT {SUMMARY_COLUMNS}, n.payload FROM notifications n WHERE n.id = $1"
                    ),
                    &[&id],
                )
                .await?
            else {
                return Ok(None);
            };
            let summary = summary_from_row(&row);
            let payload: String = row.get(11);
            let action_runs = client
                .query(
                    &format!(
                        "SELECT {RUN_COLUMNS} FROM action_runs r WHERE r.notification_id = $1 \
                         ORDER BY r.round, r.id"
                    ),
                    &[&id],
                )
                .await?
                .iter()
                .map(run_from_row)
                .collect();
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

    async fn dead_letters(&self, q: DeadLetterQuery) -> Result<Vec<DeadLetter>, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let rows = client
                .query(
                    &format!(
                        "SELECT {RUN_COLUMNS}, n.receiver, n.group_key, n.status, n.alertnames \
                         FROM action_runs r JOIN notifications n ON n.id = r.notification_id \
                         WHERE r.status = 'dead' AND r.round = n.round AND r.id < $1 \
                         ORDER BY r.id DESC LIMIT $2"
                    ),
                    &[&q.before.unwrap_or(i64::MAX), &i64::from(q.limit)],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| {
                    let mut run = run_from_row(r);
                    // The context can be large; the detail has it.
                    run.context = None;
                    DeadLetter {
                        notification_id: r.get(1),
                        receiver: r.get(16),
                        group_key: r.get(17),
                        notification_status: r.get(18),
                        alertnames: r.get(19),
                        run,
                    }
                })
                .collect())
        })
        .await
    }

    async fn dead_letter_count(&self) -> Result<u64, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let n: i64 = client
                .query_one(
                    "SELECT COUNT(*) FROM action_runs r JOIN notifications n \
                     ON n.id = r.notification_id WHERE r.status = 'dead' AND r.round = n.round",
                    &[],
                )
                .await?
                .get(0);
            Ok(n.max(0) as u64)
        })
        .await
    }
}

#[async_trait]
impl Upkeep for PostgresStore {
    async fn check_writable(&self) -> Result<(), StoreError> {
        let result = self
            .timed(async {
                let client = self.client().await?;
                // A standby (or a primary being demoted) refuses the write.
                client
                    .execute(
                        "UPDATE meta SET value = $1 WHERE key = 'heartbeat'",
                        &[&now_ms().to_string()],
                    )
                    .await?;
                Ok(())
            })
            .await;
        // (The writable gauge follows the store's health.)
        result
    }

    async fn prune(&self, now: i64) -> Result<PruneReport, StoreError> {
        // Not bounded as one call: each statement has the statement timeout.
        self.inner.prune(now).await
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}

//! Application: builds every part from the settings, binds the socket, and
//! runs the HTTP server and the workers until a shutdown signal.

use crate::act::traffic::{kube::ClientSource, Targets};
use crate::act::{ActionDeps, ActionSet};
use crate::enrich::Enricher;
use crate::http::{self, auth::Authenticator, AppContext, AppState};
use crate::ingest::alertmanager::Completer;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, Planner, RetryPolicy};
use crate::settings::Settings;
use crate::settings::StorageBackend;
use crate::store::{PostgresOptions, PostgresStore, SqliteStore, Store, StoreOptions};
use crate::worker::Worker;
use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A built, bound, not yet running router.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    router: axum::Router,
    store: Arc<dyn Store>,
    worker: Worker,
    workers: usize,
    grace: Duration,
    limits: http::server::Limits,
    targets: Arc<crate::act::traffic::Targets>,
    metrics: Arc<Metrics>,
    weights_poll: Duration,
}

impl Application {
    /// Builds with the configured actions.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_actions(settings, ActionSet::default()).await
    }

    /// Builds with the configured actions, replaced by those in `overrides`
    /// (tests inject faulty actions).
    pub async fn build_with_actions(
        settings: Settings,
        overrides: ActionSet,
    ) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let store = open_store(&settings, &metrics).await?;
        // SQLite: one process owns the database and keeps its leases in
        // memory, so what a process that is gone had claimed resumes now.
        // PostgreSQL: shared by replicas, nothing is released; leases expire
        // by time.
        let released = store.resume_at_start().await?;
        if released > 0 {
            tracing::warn!(
                count = released,
                "Resuming notifications a previous run had started and not finished"
            );
        }
        let targets = Arc::new(Targets::build(
            &settings.traffic_targets,
            &ClientSource {
                api_url: settings.kubernetes.api_url.clone(),
            },
        ));
        crate::act::traffic::declare_targets(&targets, &metrics);
        let deps = ActionDeps::new(
            Some(store.clone()),
            metrics.clone(),
            targets.clone(),
            settings.ca.clone(),
        )
        .with_prometheus(settings.prometheus.as_ref())?;
        // A config the actions cannot be built from stops startup here.
        let mut actions = ActionSet::build(&settings.actions, &deps)
            .map_err(|e| anyhow::anyhow!("{}", e.join("\n")))?;
        actions.override_with(overrides);
        let planner = Arc::new(Planner::new(
            settings.compile_route()?,
            Enricher::new(
                &settings.enrichments,
                settings.prometheus.as_ref(),
                settings.link_settings(),
                metrics.clone(),
                &settings.ca,
            )?,
            Completer::new(settings.alertmanager.as_ref(), &settings.ca)?,
            actions,
        ));
        let pipeline = Arc::new(Pipeline::new(
            planner.clone(),
            store.clone(),
            metrics.clone(),
            RetryPolicy {
                max_attempts: settings.worker.max_attempts,
                initial: settings.worker.backoff_initial,
                max: settings.worker.backoff_max,
                max_age: settings.worker.max_age,
            },
        ));
        let wake = Arc::new(Notify::new());
        let worker = Worker::new(
            store.clone(),
            pipeline.clone(),
            settings.worker.lease,
            settings.worker.poll_interval,
            wake.clone(),
        );
        let console = settings
            .ui
            .enabled
            .then(|| {
                http::console::Console::new(
                    store.clone(),
                    planner.clone(),
                    targets.clone(),
                    wake.clone(),
                    settings.ui.read_only,
                )
                .map(Arc::new)
            })
            .transpose()?;
        let state_metrics = metrics.clone();
        let state = AppState::new(AppContext {
            store: store.clone(),
            planner,
            metrics,
            auth: Arc::new(Authenticator::new(&settings.auth)),
            ingest: Arc::new(settings.ingest.clone()),
            body_read_timeout: settings.server.body_read_timeout,
            wake,
            targets: targets.clone(),
            console,
        });
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("binding {} (server.listen)", settings.server.listen))?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            addr,
            router: http::router(state),
            store,
            worker,
            workers: if settings.worker.enabled {
                settings.worker.concurrency
            } else {
                0
            },
            grace: settings.server.grace_period,
            limits: http::server::Limits {
                header_read_timeout: settings.server.header_read_timeout,
                idle_timeout: settings.server.idle_timeout,
                max_connections: settings.server.max_connections,
            },
            targets,
            metrics: state_metrics,
            weights_poll: settings.worker.weights_poll_interval,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store, for tests and tools.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// A handle on the worker, for driving it step by step.
    pub fn worker(&self) -> Worker {
        self.worker.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight
    /// requests and each worker's current notification finish, bounded by
    /// `server.grace_period`.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let token = CancellationToken::new();
        let mut workers = JoinSet::new();
        for _ in 0..self.workers {
            let worker = self.worker.clone().share_in_flight(self.workers);
            workers.spawn(worker.run(token.clone()));
        }
        workers.spawn(crate::act::traffic::poll_weights(
            self.targets.clone(),
            self.metrics.clone(),
            self.weights_poll,
            token.clone(),
        ));
        let mut server = tokio::spawn(http::server::serve(
            self.listener,
            self.router,
            self.limits,
            self.metrics.clone(),
            token.clone(),
        ));
        tracing::info!(address = %self.addr, workers = self.workers, max_connections = self.limits.max_connections, "Listening");

        let server_ended_early = tokio::select! {
            _ = shutdown => false,
            result = &mut server => {
                token.cancel();
                result.context("server task panicked")?;
                true
            }
        };
        if !server_ended_early {
            tracing::info!(grace_period = ?self.grace, "Shutting down");
            token.cancel();
        }
        let drain = async {
            if !server_ended_early {
                let _ = (&mut server).await;
            }
            while workers.join_next().await.is_some() {}
        };
        if tokio::time::timeout(self.grace, drain).await.is_err() {
            tracing::warn!(
                "Grace period elapsed with work in flight; it stays claimed and resumes on the next start"
            );
            server.abort();
            workers.abort_all();
        }
        tracing::info!("Stopped");
        Ok(())
    }
}

/// `store copy --to postgres`: the SQLite database at `storage.path` into the
/// empty PostgreSQL database of `storage.postgres.*`.
pub async fn copy_store_to_postgres(
    settings: &Settings,
) -> anyhow::Result<crate::store::CopyReport> {
    let metrics = Metrics::new();
    let options = postgres_options(settings)?;
    let to = PostgresStore::connect(options, metrics.store.clone())
        .await
        .context("opening the PostgreSQL store (storage.postgres)")?;
    crate::store::copy_sqlite_to_postgres(&settings.storage.path, &to)
        .await
        .with_context(|| format!("copying {}", settings.storage.path.display()))
}

fn postgres_options(settings: &Settings) -> anyhow::Result<PostgresOptions> {
    let s = &settings.storage;
    let pg = &s.postgres;
    let url = pg
        .url
        .clone()
        .context("storage.postgres.url (or url_file) is required")?;
    Ok(PostgresOptions {
        url,
        pool_size: pg.pool_size,
        connect_timeout: pg.connect_timeout,
        statement_timeout: pg.statement_timeout,
        ca_files: settings
            .tls
            .ca_file
            .iter()
            .chain(pg.ca_file.iter())
            .cloned()
            .collect(),
        dedup_window: settings.ingest.dedup_window,
        retention: s.retention,
        dead_letter_retention: s.dead_letter_retention,
        prune_interval: Some(s.prune_interval),
    })
}

/// Opens the configured store (`storage.backend`).
async fn open_store(settings: &Settings, metrics: &Metrics) -> anyhow::Result<Arc<dyn Store>> {
    let s = &settings.storage;
    Ok(match s.backend {
        StorageBackend::Sqlite => Arc::new(
            SqliteStore::open_with(
                &s.path,
                StoreOptions {
                    busy_timeout: s.busy_timeout,
                    dedup_window: settings.ingest.dedup_window,
                    retention: s.retention,
                    dead_letter_retention: s.dead_letter_retention,
                    prune_interval: Some(s.prune_interval),
                },
                metrics.store.clone(),
            )
            .with_context(|| format!("opening store {}", s.path.display()))?,
        ),
        StorageBackend::Postgres => {
            let options = postgres_options(settings)?;
            Arc::new(
                PostgresStore::connect(options, metrics.store.clone())
                    .await
                    .context("opening the PostgreSQL store (storage.postgres)")?,
            )
        }
    })
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is
/// called (not when first polled), so a signal sent right after the socket is
/// bound already counts; call it inside the runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            tokio::select! {
                () = wait_for(term, "SIGTERM") => {},
                () = wait_for(int, "SIGINT") => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "Cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(unix)]
async fn wait_for(signal: std::io::Result<tokio::signal::unix::Signal>, name: &str) {
    match signal {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(e) => {
            tracing::error!(error = %e, "Cannot listen for {name}");
            std::future::pending::<()>().await;
        }
    }
}

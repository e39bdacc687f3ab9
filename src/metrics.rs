//! The router's own metrics (prometheus-client, OpenMetrics text).
//!
//! Names follow `<name>_<unit>_total` without a namespace prefix: the alert
//! rules and dashboards in this repository select them by `job`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// `outcome` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Labels of `action_runs_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionRunLabels {
    pub action: String,
    #[prometheus(flatten)]
    pub kind: TypeLabel,
    pub outcome: String,
}

/// `type` label (a keyword in Rust, hence the wrapper).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct TypeLabel(pub String);

impl EncodeLabelSet for TypeLabel {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelSetEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        ("type", self.0.as_str()).encode(encoder.encode_label())
    }
}

/// Labels of `action_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionTypeLabels {
    #[prometheus(flatten)]
    pub kind: TypeLabel,
}

/// `action` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: String,
}

/// `enrichment` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnrichmentLabels {
    pub enrichment: String,
}

/// Labels of `traffic_weight`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WeightLabels {
    pub target: String,
    pub variant: String,
}

/// Labels of `traffic_shifts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShiftLabels {
    pub target: String,
    pub outcome: String,
}

/// `target` label (the `traffic_evidence_*` gauges of one target).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: String,
}

/// Labels of the evidence gauges per variant: `role` is `from` (the alerting
/// variant) or `to` (the destination).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub target: String,
    pub role: String,
}

/// Labels of `traffic_evidence_difference`: `bound` is `estimate`, `lower`, `upper`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BoundLabels {
    pub target: String,
    pub bound: String,
}

/// Labels of `traffic_evidence_decision`: `decision` is `shift`, `deferred`, `blocked`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvidenceDecisionLabels {
    pub target: String,
    pub decision: String,
}

/// A float gauge.
pub type GaugeF = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The evidence guard's latest evaluation per target (`traffic_evidence_*`);
/// NaN until the first one.
#[derive(Clone, Default)]
pub struct EvidenceMetrics {
    /// Sample size per role.
    pub samples: Family<RoleLabels, GaugeF>,
    /// Observed bad rate (0-1) per role.
    pub bad_ratio: Family<RoleLabels, GaugeF>,
    /// Bad rate of `from` minus `to`, with the always-valid interval's bounds.
    pub difference: Family<BoundLabels, GaugeF>,
    /// Always-valid p-value of "no difference".
    pub p_value: Family<TargetLabels, GaugeF>,
    /// 1 for the latest decision, 0 for the others.
    pub decision: Family<EvidenceDecisionLabels, Gauge>,
}

/// Labels of `http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: &'static str,
    pub path: std::borrow::Cow<'static, str>,
    pub status: u16,
}

/// `reason` label of `http_connections_closed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Why the server closed a connection itself (`http_connections_closed_total{reason}`).
pub const CLOSE_REASONS: [&str; 4] = ["header_timeout", "idle_timeout", "write_timeout", "evicted"];

/// The `method` label value of a request: one of the methods the API knows,
/// else `other` (a client must not create series by inventing methods).
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "other",
    }
}

/// Every metric the router exports.
pub struct Metrics {
    registry: Registry,
    /// Webhook requests by outcome: stored, duplicate, malformed, schema,
    /// too_large, unauthorized, unavailable.
    pub notifications: Family<OutcomeLabels, Counter>,
    /// Alerts in accepted notifications (stored or duplicate).
    pub alerts: Counter,
    /// Stored notifications not yet processed.
    pub inbox_depth: Gauge,
    /// Action runs whose latest round ended dead.
    pub dead_letters: Gauge,
    /// Action run attempts by action, type and outcome (succeeded, failed, dead).
    pub action_runs: Family<ActionRunLabels, Counter>,
    /// Time one action attempt took.
    pub action_duration: Family<ActionTypeLabels, Histogram>,
    /// Custom chat/webhook templates that failed to render (the default message was sent).
    pub template_errors: Family<ActionLabels, Counter>,
    /// Chat messages waiting on their destination's rate limit, per action.
    pub chat_queued: Family<ActionLabels, Gauge>,
    /// Digests delivered instead of a queue, per action.
    pub chat_digests: Family<ActionLabels, Counter>,
    /// Notifications delivered through a digest, per action.
    pub chat_digested: Family<ActionLabels, Counter>,
    /// HTTP request latency.
    pub http_duration: Family<HttpLabels, Histogram>,
    /// HTTP connections open now.
    pub open_connections: Gauge,
    /// Connections the server closed itself, by reason (header_timeout, idle_timeout, write_timeout, evicted).
    pub connections_closed: Family<ReasonLabels, Counter>,
    /// Prometheus queries sent by enrichment, by outcome (success, error, timeout).
    pub enrichment_queries: Family<OutcomeLabels, Counter>,
    /// Enrichment queries answered from the cache or a request already in flight.
    pub enrichment_cache_hits: Counter,
    /// Time one Prometheus query took.
    pub enrichment_duration: Histogram,
    /// Enrichments that gave no value for an alert (query or render failed), by name.
    pub enrichment_failures: Family<EnrichmentLabels, Counter>,
    /// The store's group commits: time from BEGIN to durable COMMIT, and jobs per commit.
    pub store: StoreMetrics,
    /// Current weight (percent) per traffic target and variant, as last read or written.
    pub traffic_weight: Family<WeightLabels, Gauge>,
    /// Traffic-shift decisions per target and outcome (shifted, blocked, cooldown, …).
    pub traffic_shifts: Family<ShiftLabels, Counter>,
    /// The evidence guard's latest evaluation per target.
    pub traffic_evidence: EvidenceMetrics,
}

/// Metrics of the store's writer thread.
#[derive(Clone)]
pub struct StoreMetrics {
    /// BEGIN → COMMIT (fsync included) of one batch.
    pub commit_duration: Histogram,
    /// Writes sharing one commit.
    pub batch_jobs: Histogram,
    // --- storage health, size and retention (store) ---
    /// 1 while the store commits writes, 0 while a storage fault refuses them.
    pub writable: Gauge,
    /// Size of the database file, and of its write-ahead log.
    pub database_bytes: Gauge,
    pub wal_bytes: Gauge,
    /// Rows per kind (notifications, action_runs, dead_letters, traffic_decisions, chat_threads).
    pub rows: Family<KindLabels, Gauge>,
    /// Age of the oldest row the retention applies to, per kind (notifications, dead_letters).
    pub oldest_row_age: Family<KindLabels, Gauge>,
    /// The configured retention per kind, for alerting on a pruner that falls behind.
    pub retention: Family<KindLabels, Gauge>,
    /// Pruning passes, and rows deleted by them per kind.
    pub prune_runs: Counter,
    pub pruned_rows: Family<KindLabels, Counter>,
}

/// `kind` label of the store's row metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            commit_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            batch_jobs: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            writable: Gauge::default(),
            database_bytes: Gauge::default(),
            wal_bytes: Gauge::default(),
            rows: Family::default(),
            oldest_row_age: Family::default(),
            retention: Family::default(),
            prune_runs: Counter::default(),
            pruned_rows: Family::default(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let notifications = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "notifications_received",
            "Alertmanager webhook requests by outcome",
            notifications.clone(),
        );
        let alerts = Counter::default();
        registry.register(
            "alerts_received",
            "Alerts in accepted notifications",
            alerts.clone(),
        );
        let inbox_depth = Gauge::default();
        registry.register(
            "inbox_depth",
            "Stored notifications not yet processed",
            inbox_depth.clone(),
        );
        let dead_letters = Gauge::default();
        registry.register(
            "dead_letters",
            "Action runs dead-lettered in their notification's latest round",
            dead_letters.clone(),
        );
        let action_runs = Family::<ActionRunLabels, Counter>::default();
        registry.register(
            "action_runs",
            "Action run attempts by action, type and outcome",
            action_runs.clone(),
        );
        let action_duration = Family::<ActionTypeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "action_duration_seconds",
            "Time one action attempt took",
            action_duration.clone(),
        );
        let template_errors = Family::<ActionLabels, Counter>::default();
        registry.register(
            "chat_template_errors",
            "Custom message templates that failed to render; the default message was sent instead",
            template_errors.clone(),
        );
        let chat_queued = Family::<ActionLabels, Gauge>::default();
        registry.register(
            "chat_queued_messages",
            "Chat messages waiting on their destination's rate limit",
            chat_queued.clone(),
        );
        let chat_digests = Family::<ActionLabels, Counter>::default();
        registry.register(
            "chat_digests",
            "Digest messages delivered instead of a destination's queue",
            chat_digests.clone(),
        );
        let chat_digested = Family::<ActionLabels, Counter>::default();
        registry.register(
            "chat_digested_notifications",
            "Notifications delivered through a digest instead of a message of their own",
            chat_digested.clone(),
        );
        let http_duration = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method, route and status",
            http_duration.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "http_open_connections",
            "HTTP connections open now",
            open_connections.clone(),
        );
        let connections_closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "http_connections_closed",
            "HTTP connections the server closed itself, by reason",
            connections_closed.clone(),
        );
        for reason in CLOSE_REASONS {
            let _ = connections_closed.get_or_create(&ReasonLabels {
                reason: reason.into(),
            });
        }
        let enrichment_queries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "enrichment_queries",
            "Prometheus queries sent by enrichment, by outcome",
            enrichment_queries.clone(),
        );
        let enrichment_cache_hits = Counter::default();
        registry.register(
            "enrichment_cache_hits",
            "Enrichment queries answered from the cache or a request in flight",
            enrichment_cache_hits.clone(),
        );
        let enrichment_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "enrichment_query_duration_seconds",
            "Time one Prometheus query took",
            enrichment_duration.clone(),
        );
        let enrichment_failures = Family::<EnrichmentLabels, Counter>::default();
        registry.register(
            "enrichment_failures",
            "Enrichments that gave no value for an alert, by name",
            enrichment_failures.clone(),
        );
        // Known label values start at 0, so rate() and increase() see the first event.
        for outcome in [
            "stored",
            "duplicate",
            "malformed",
            "schema",
            "too_large",
            "timeout",
            "unauthorized",
            "unavailable",
            "dry_run",
            "error",
        ] {
            let _ = notifications.get_or_create(&OutcomeLabels { outcome });
        }
        for outcome in ["success", "error", "timeout"] {
            let _ = enrichment_queries.get_or_create(&OutcomeLabels { outcome });
        }
        let store = StoreMetrics::default();
        registry.register(
            "store_commit_duration_seconds",
            "Time of one group commit of the store, fsync included",
            store.commit_duration.clone(),
        );
        registry.register(
            "store_batch_jobs",
            "Writes sharing one commit of the store",
            store.batch_jobs.clone(),
        );
        // Storage health, size and retention.
        registry.register(
            "store_writable",
            "1 while the store commits writes, 0 while a storage fault (file gone, disk full, read-only, I/O error) refuses them",
            store.writable.clone(),
        );
        registry.register(
            "store_database_bytes",
            "Size of the SQLite database file",
            store.database_bytes.clone(),
        );
        registry.register(
            "store_wal_bytes",
            "Size of the SQLite write-ahead log",
            store.wal_bytes.clone(),
        );
        registry.register(
            "store_rows",
            "Rows in the store per kind",
            store.rows.clone(),
        );
        registry.register(
            "store_oldest_row_age_seconds",
            "Age of the oldest row the retention applies to, per kind",
            store.oldest_row_age.clone(),
        );
        registry.register(
            "store_retention_seconds",
            "Configured retention per kind (storage.retention, storage.dead_letter_retention)",
            store.retention.clone(),
        );
        registry.register(
            "store_prune_runs",
            "Pruning passes of the store",
            store.prune_runs.clone(),
        );
        registry.register(
            "store_pruned_rows",
            "Rows deleted by pruning per kind",
            store.pruned_rows.clone(),
        );
        let traffic_weight = Family::<WeightLabels, Gauge>::default();
        registry.register(
            "traffic_weight",
            "Current A/B weight in percent per traffic target and variant",
            traffic_weight.clone(),
        );
        let traffic_shifts = Family::<ShiftLabels, Counter>::default();
        registry.register(
            "traffic_shifts",
            "Traffic-shift decisions per target and outcome",
            traffic_shifts.clone(),
        );
        let traffic_evidence = EvidenceMetrics::default();
        registry.register(
            "traffic_evidence_samples",
            "Evidence guard, latest evaluation: sample size of the alerting variant (role=from) and of the destination (role=to)",
            traffic_evidence.samples.clone(),
        );
        registry.register(
            "traffic_evidence_bad_ratio",
            "Evidence guard, latest evaluation: share of bad outcomes (errors, incorrect predictions, slow requests) per role",
            traffic_evidence.bad_ratio.clone(),
        );
        registry.register(
            "traffic_evidence_difference",
            "Evidence guard, latest evaluation: bad ratio of from minus to (bound=estimate) and its always-valid confidence interval (bound=lower|upper)",
            traffic_evidence.difference.clone(),
        );
        registry.register(
            "traffic_evidence_p_value",
            "Evidence guard, latest evaluation: always-valid p-value of no difference",
            traffic_evidence.p_value.clone(),
        );
        registry.register(
            "traffic_evidence_decision",
            "Evidence guard, latest evaluation: 1 for its decision (shift, deferred, blocked), 0 for the others",
            traffic_evidence.decision.clone(),
        );
        Self {
            registry,
            store,
            traffic_weight,
            traffic_shifts,
            traffic_evidence,
            enrichment_queries,
            enrichment_cache_hits,
            enrichment_duration,
            enrichment_failures,
            notifications,
            alerts,
            inbox_depth,
            dead_letters,
            action_runs,
            action_duration,
            template_errors,
            chat_queued,
            chat_digests,
            chat_digested,
            http_duration,
            open_connections,
            connections_closed,
        }
    }

    /// Counts a connection the server closed itself.
    pub fn connection_closed(&self, reason: &str) {
        self.connections_closed
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Creates the `action_runs_total` series of an action at 0.
    pub fn declare_action(&self, action: &str, kind: &str) {
        for outcome in ["succeeded", "failed", "dead"] {
            let _ = self.action_runs.get_or_create(&ActionRunLabels {
                action: action.to_owned(),
                kind: TypeLabel(kind.to_owned()),
                outcome: outcome.to_owned(),
            });
        }
    }

    /// Creates the `chat_template_errors_total` series of an action with a
    /// message template (a chat or webhook action) at 0.
    pub fn declare_template_errors(&self, action: &str) {
        let _ = self.template_errors.get_or_create(&ActionLabels {
            action: action.to_owned(),
        });
    }

    /// Creates the digest series of a chat action at 0 (`chat_queued_messages`,
    /// `chat_digests_total`, `chat_digested_notifications_total`).
    pub fn declare_digest(&self, action: &str) {
        let label = ActionLabels {
            action: action.to_owned(),
        };
        let _ = self.chat_queued.get_or_create(&label);
        let _ = self.chat_digests.get_or_create(&label);
        let _ = self.chat_digested.get_or_create(&label);
    }

    /// Counts a custom template that failed to render.
    pub fn template_error(&self, action: &str) {
        self.template_errors
            .get_or_create(&ActionLabels {
                action: action.to_owned(),
            })
            .inc();
    }

    /// Counts a webhook request outcome.
    pub fn notification(&self, outcome: &'static str) {
        self.notifications
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Counts one Prometheus query and its latency.
    pub fn enrichment_query(&self, outcome: &'static str, took: std::time::Duration) {
        self.enrichment_queries
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.enrichment_duration.observe(took.as_secs_f64());
    }

    /// Counts an enrichment that gave no value.
    pub fn enrichment_failure(&self, name: &str) {
        self.enrichment_failures
            .get_or_create(&EnrichmentLabels {
                enrichment: name.to_owned(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

//! mlops-alert-router: receives Prometheus Alertmanager webhooks for ML models
//! under A/B test, stores them durably, routes each alert to actions and acts.
//!
//! # A tour, in pipeline order
//!
//! ```text
//! Alertmanager ──POST──▶ http ──▶ ingest ──▶ store (SQLite inbox) ──▶ worker ──▶ pipeline
//!                                                                       route → act → ledger
//! ```
//!
//! - [`http`]: the axum API. Handlers extract, convert, make one call, map to
//!   a status. [`http::error::ApiError`] is the only error they answer with.
//! - [`ingest`]: the Alertmanager v4 payload parsed once into domain types,
//!   with field-naming validation errors and the redelivery (dedup) key.
//! - [`store`]: the durable inbox and ledger behind the [`store::Store`] trait;
//!   [`store::SqliteStore`] group-commits concurrent writes in one transaction.
//! - [`worker`]: claims stored notifications with a lease; one step at a time
//!   ([`worker::Worker::try_execute_task`]) or in a loop until shutdown.
//! - [`pipeline`]: the only place that knows the stage order; records each
//!   action run's outcome, retries with backoff, dead-letters.
//! - [`route`]: labels → named actions.
//! - [`act`]: the actions, a closed config enum that builds runtime objects;
//!   [`act::chat`] holds the chat platforms and the generic webhook (one
//!   message per notification, cut to each platform's limits).
//! - [`settings`], [`secret`]: layered config with key-path errors; secrets
//!   that cannot be printed.
//! - [`metrics`], [`telemetry`]: OpenMetrics and `tracing`.
//! - [`startup`]: [`startup::Application`] wires it all and handles shutdown;
//!   [`cli`] is the command line.

#![forbid(unsafe_code)]

pub mod act;
pub mod cli;
pub mod clock;
pub mod conf;
pub mod enrich;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod outbound;
pub mod pipeline;
pub mod route;
pub mod secret;
pub mod settings;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod worker;

/// The Alertmanager payloads under `tests/fixtures/`, for unit tests.
#[cfg(test)]
pub(crate) fn testing_fixtures() -> Vec<(&'static str, &'static str)> {
    macro_rules! fixtures {
        ($($name:literal),*) => {
            vec![$(($name, include_str!(concat!("../tests/fixtures/", $name)))),*]
        };
    }
    fixtures!(
        "accuracy-firing-both-variants.json",
        "accuracy-firing.json",
        "accuracy-partially-resolved.json",
        "accuracy-resolved.json",
        "cpu-firing-truncated.json",
        "cpu-resolved-truncated.json",
        "latency-firing-unicode.json",
        "server-down-firing.json"
    )
}

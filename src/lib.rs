//! mlops-alert-router: receives Prometheus Alertmanager webhooks for ML models
//! under A/B test, stores them durably, routes each alert to actions and acts.
//!
//! # A tour, in pipeline order
//!
//! ```text
//! Alertmanager ──POST──▶ http ──▶ ingest ──▶ store (SQLite inbox) ──▶ worker ──▶ pipeline
//!                                                    complete → route → enrich → act → ledger
//! ```
//!
//! - [`http`]: the axum API. Handlers extract, convert, make one call, map to
//!   a status. [`http::error::ApiError`] is the only error they answer with.
//! - [`ingest`]: the Alertmanager v4 payload parsed once into domain types,
//!   with field-naming validation errors and the redelivery (dedup) key;
//!   [`ingest::alertmanager`] completes a group Alertmanager truncated.
//! - [`store`]: the durable inbox and ledger behind the [`store::Store`] trait;
//!   [`store::SqliteStore`] group-commits concurrent writes in one transaction.
//! - [`worker`]: claims stored notifications with a lease; one step at a time
//!   ([`worker::Worker::try_execute_task`]) or in a loop until shutdown.
//! - [`pipeline`]: the only place that knows the stage order:
//!   [`pipeline::plan`] (complete, route, enrich; the dry-run plan),
//!   [`pipeline::run`] (act, record each run's outcome) and
//!   [`pipeline::retry`] (backoff, dead letters: a pure decision).
//! - [`route`]: labels → named actions.
//! - [`enrich`]: Prometheus queries rendered per alert (cached, coalesced,
//!   bounded) and links, the [`enrich::Context`] actions see.
//! - [`act`]: the actions, a closed config enum that builds runtime objects
//!   once (a config that cannot be built stops startup); [`act::chat`] holds
//!   the chat platforms and the generic webhook (one message per
//!   notification, cut to each platform's limits); [`act::traffic`] the
//!   traffic shift and its typed [`act::traffic::Decision`].
//! - [`outbound`]: the one outbound HTTP client (timeouts, caps, CA policy,
//!   secrets scrubbed from errors).
//! - [`settings`], [`secret`]: layered config with key-path errors; secrets
//!   that cannot be printed. [`conf`], [`clock`], [`text`]: the leaves every
//!   layer shares (config helpers, the wall clock, clipping).
//! - [`metrics`], [`telemetry`]: OpenMetrics and `tracing`.
//! - [`startup`]: [`startup::Application`] wires it all and handles shutdown;
//!   [`cli`] is the command line.
//!
//! Imports flow one way, from [`startup`]/[`cli`] down through [`http`],
//! [`pipeline`], [`settings`], the stages ([`act`] over [`enrich`]) and the
//! domain ([`ingest`], [`route`], [`store`]) to [`outbound`] and the leaves;
//! `scripts/check-layering.py` fails on an upward import or a cycle
//! (ARCHITECTURE.md, "Layers").

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

//! HTTP API, worker and store, end to end in one process (one test binary).

mod helpers;

mod auth;
mod cli;
mod closed_loop;
mod components;
mod durability;
mod enrichment;
mod fake_kube;
mod ingest;
mod notifications;
mod routing;
mod traffic;
mod worker;

//! HTTP API, worker and store, end to end in one process (one test binary).

mod helpers;

mod auth;
mod chat;
mod chat_secrets;
mod chat_snapshots;
mod cli;
mod components;
mod durability;
mod enrichment;
mod ingest;
mod notifications;
mod routing;
mod worker;

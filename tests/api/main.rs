//! HTTP API, worker and store, end to end in one process (one test binary).

mod helpers;

mod auth;
mod chat;
mod chat_escaping;
mod chat_secrets;
mod chat_snapshots;
mod cli;
mod closed_loop;
mod closed_loop_evidence;
mod components;
mod console;
mod digest;
mod durability;
mod enrichment;
mod evidence;
mod fake_kube;
mod ingest;
mod kube_tls;
mod notifications;
mod outbound;
mod outbound_tls;
mod routing;
mod server;
mod storage;
mod traffic;
mod worker;

//! The properties the fuzz targets check, one module per target. Each
//! `check(data)` panics when the property is broken; anything else is a pass.
//!
//! The modules use only the router's public API and `serde_json`/`tokio`, so
//! `tests/fuzz_corpus.rs` (stable toolchain) includes the same files with
//! `#[path]` and replays `fuzz/seeds/` and `fuzz/regressions/`.
//!
//! Bugs known to be open can be tolerated while measuring the rest:
//! `ROUTER_FUZZ_KNOWN=trailing-bytes,label-names` (see [`ingest`]).

pub mod chat_render;
pub mod ingest;
pub mod matcher;
pub mod promql_template;

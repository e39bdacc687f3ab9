//! Route: labels → named actions, with Alertmanager's matcher language and
//! route-tree semantics, so a route written for Alertmanager reads the same here.
//!
//! - [`matcher`]: `name="v"`, `!=`, `=~`, `!~`, brace sets, quoting and
//!   escapes as Alertmanager (≥ 0.27, default fallback mode) parses them,
//!   combining [`utf8`] (its UTF-8 parser) and [`classic`] (its classic
//!   parser); regexes fully anchored.
//! - [`go_regex`]: Go regexp syntax rewritten so Rust's `regex` matches what
//!   Alertmanager (Go) matches (ASCII `\d`, `\w`, `\s`, `\b`).
//! - [`tree`]: the config shape, [`compile`] (once, at startup) and
//!   [`Route::evaluate`] (pure and synchronous): depth-first, first matching
//!   child wins unless it has `continue: true`, a node none of whose children
//!   match is itself the match, a route without `actions` inherits them.
//!
//! The semantics are checked against Alertmanager v0.34.0's own test tables
//! by `tests/alertmanager_tables.rs`, and against the real `amtool config
//! routes test` (0.25, classic parser only; on matcher strings both versions
//! read alike) by `tests/amtool_differential.rs`. `routes test` reads its
//! `LABEL=VALUE` arguments as amtool 0.25 does ([`matcher::parse_label_arg`]).

pub mod classic;
pub mod go_regex;
pub mod matcher;
pub mod tree;
pub mod utf8;

pub use tree::{compile, test_output, Route, RouteConfig, RouteError, RouteMatch, RouteWarning};

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
//! The semantics are checked against the real `amtool config routes test` by
//! `tests/amtool_differential.rs`.

pub mod classic;
pub mod go_regex;
pub mod matcher;
pub mod tree;
pub mod utf8;

pub use tree::{compile, test_output, Route, RouteConfig, RouteError, RouteMatch, RouteWarning};

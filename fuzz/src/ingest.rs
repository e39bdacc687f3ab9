//! The webhook payload parser, `ingest::parse`: any bytes in, an `Accepted`
//! notification or an `IngestError` out, never a panic.
//!
//! Properties of an accepted body:
//! - 1..=max alerts, each with a non-empty fingerprint;
//! - what is stored parses again to the same dedup key (serialise the domain
//!   notification, parse it: same key, same alert count) — a replay or a
//!   restart sees the notification Alertmanager sent;
//! - the body is exactly one JSON document (no bytes after it);
//! - no label name is empty or contains NUL.
//!
//! Properties of a refused body: the error message is non-empty and
//! `Malformed` positions are 1-based.
//!
//! The last two accepted-body properties are bugs known to be open on the
//! pre-hardening router; `ROUTER_FUZZ_KNOWN=trailing-bytes,label-names`
//! tolerates them while the rest is measured.

use mlops_alert_router::ingest::{parse, IngestError};
use std::sync::OnceLock;

const MAX_ALERTS: usize = 64;

/// True when `ROUTER_FUZZ_KNOWN` lists `bug`.
fn known(bug: &str) -> bool {
    static KNOWN: OnceLock<Vec<String>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            std::env::var("ROUTER_FUZZ_KNOWN")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .iter()
        .any(|k| k == bug)
}

pub fn check(data: &[u8]) {
    match parse(data, MAX_ALERTS) {
        Ok(accepted) => {
            let n = &accepted.notification;
            assert!(!n.alerts.is_empty(), "accepted without alerts");
            assert!(n.alerts.len() <= MAX_ALERTS, "accepted over max_alerts");
            for a in &n.alerts {
                assert!(!a.fingerprint.is_empty(), "accepted without a fingerprint");
            }
            if !known("trailing-bytes") {
                assert!(
                    serde_json::from_slice::<serde_json::Value>(data).is_ok(),
                    "accepted a body that is not exactly one JSON document"
                );
            }
            if !known("label-names") {
                for a in &n.alerts {
                    for name in a.labels.keys() {
                        assert!(
                            !name.is_empty() && !name.contains('\0'),
                            "accepted label name {name:?}"
                        );
                    }
                }
            }
            let stored = serde_json::to_vec(n).expect("a parsed notification serialises");
            let again = parse(&stored, MAX_ALERTS)
                .unwrap_or_else(|e| panic!("re-parsing what was accepted failed: {e}"));
            assert_eq!(
                again.dedup_key, accepted.dedup_key,
                "dedup key changed across serialise + parse"
            );
            assert_eq!(again.notification.alerts.len(), n.alerts.len());
        }
        Err(e) => {
            assert!(!e.to_string().is_empty(), "empty error message");
            if let IngestError::Malformed { line, .. } = e {
                assert!(line >= 1, "line {line} of a malformed body");
            }
        }
    }
}

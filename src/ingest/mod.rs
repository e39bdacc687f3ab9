//! Ingest: the Alertmanager webhook (payload version 4) turned into domain
//! types once, at the edge. Nothing downstream re-checks the payload.
//!
//! Parsing is strict about what we need (version, status, receiver,
//! groupKey, alerts with status, labels and startsAt) and lenient about the
//! rest: unknown fields are ignored, optional ones may be missing.

pub mod alertmanager;
mod fingerprint;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

pub use fingerprint::label_fingerprint;

/// Label or annotation set, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// `firing` or `resolved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

impl fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Alertmanager notification (a group of alerts for one receiver).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub version: String,
    pub receiver: String,
    pub status: AlertStatus,
    pub alerts: Vec<Alert>,
    pub group_key: String,
    #[serde(default)]
    pub group_labels: Labels,
    #[serde(default)]
    pub common_labels: Labels,
    #[serde(default)]
    pub common_annotations: Labels,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    #[serde(default)]
    pub truncated_alerts: u64,
}

/// One alert of a notification.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: AlertStatus,
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
    #[serde(deserialize_with = "timestamp")]
    pub starts_at: DateTime<FixedOffset>,
    /// `0001-01-01T00:00:00Z` (Go's zero time) while still firing.
    #[serde(default = "zero_time", deserialize_with = "timestamp")]
    pub ends_at: DateTime<FixedOffset>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's label fingerprint; computed from the labels when absent.
    #[serde(default)]
    pub fingerprint: String,
}

impl Alert {
    /// The `alertname` label, or "" when absent.
    pub fn alertname(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// Go's zero time, `0001-01-01T00:00:00Z`.
pub fn zero_time() -> DateTime<FixedOffset> {
    // Go's zero time, what Alertmanager sends as endsAt of a firing alert.
    DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z").unwrap_or_default()
}

fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<FixedOffset>, D::Error> {
    let text = String::deserialize(d)?;
    DateTime::parse_from_rfc3339(&text)
        .map_err(|e| serde::de::Error::custom(format!("not an RFC 3339 timestamp: {text:?} ({e})")))
}

/// Why a body was refused. Each maps to one HTTP status.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IngestError {
    /// Not JSON at all (400).
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Malformed {
        line: usize,
        column: usize,
        message: String,
    },
    /// JSON, but not an Alertmanager v4 notification (422).
    #[error("{0}")]
    Schema(String),
    /// More alerts than `ingest.max_alerts` (413).
    #[error("notification has {count} alerts, more than the limit of {max} (ingest.max_alerts)")]
    TooManyAlerts { count: usize, max: usize },
}

/// A validated notification, ready to store.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub notification: Notification,
    /// Identifies a redelivery of the same notification (see [`dedup_key`]).
    pub dedup_key: [u8; 32],
}

/// Parses and validates a webhook body.
pub fn parse(body: &[u8], max_alerts: usize) -> Result<Accepted, IngestError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(alert_list(body));
    }
    // JSON is UTF-8 (RFC 8259). serde_json checks it only in the strings it
    // keeps, so invalid bytes inside an unknown field would be accepted and
    // stored, and the payload "as received" could then not be served back.
    let text = std::str::from_utf8(body).map_err(|e| {
        let before = &body[..e.valid_up_to()];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        IngestError::Malformed {
            line,
            column: before.len() - line_start + 1,
            message: "invalid UTF-8 (JSON must be UTF-8)".into(),
        }
    })?;
    // Fast path: plain serde. Only a body it refuses is parsed again with
    // path tracking, which costs on every field, to say where it is wrong.
    let mut notification = match parse_fast(text) {
        Some(n) => n,
        None => parse_tracked(text)?,
    };
    check_label_names(&notification)?;
    if notification.version != "4" {
        return Err(IngestError::Schema(format!(
            "version: expected \"4\" (Alertmanager webhook payload version 4), got {:?}",
            notification.version
        )));
    }
    if notification.alerts.is_empty() {
        return Err(IngestError::Schema("alerts: must not be empty".into()));
    }
    if notification.alerts.len() > max_alerts {
        return Err(IngestError::TooManyAlerts {
            count: notification.alerts.len(),
            max: max_alerts,
        });
    }
    fill_fingerprints(&mut notification);
    let dedup_key = dedup_key(&notification);
    Ok(Accepted {
        notification,
        dedup_key,
    })
}

/// A payload [`parse`] accepted before it was stored, for the worker: the
/// same notification (fingerprints filled in where Alertmanager left them
/// out) without the checks and the dedup key, which ingest already did. A
/// payload that no longer parses (a row altered by hand) gets [`parse`]'s
/// error.
pub fn parse_stored(text: &str) -> Result<Notification, IngestError> {
    let Some(mut notification) = parse_fast(text) else {
        return parse(text.as_bytes(), usize::MAX).map(|a| a.notification);
    };
    fill_fingerprints(&mut notification);
    Ok(notification)
}

/// Alertmanager's label fingerprint for each alert that came without one.
fn fill_fingerprints(notification: &mut Notification) {
    for alert in &mut notification.alerts {
        if alert.fingerprint.is_empty() {
            alert.fingerprint = label_fingerprint(&alert.labels);
        }
    }
}

/// The whole body as one notification, or `None` (then [`parse_tracked`] says why).
fn parse_fast(text: &str) -> Option<Notification> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let n = Notification::deserialize(&mut *de).ok()?;
    de.end().ok()?;
    Some(n)
}

/// Parses with the path of every value tracked, for an error naming the field.
fn parse_tracked(text: &str) -> Result<Notification, IngestError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let notification: Notification = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let msg = strip_position(&inner.to_string());
                if path == "." {
                    IngestError::Schema(msg)
                } else {
                    IngestError::Schema(format!("{path}: {msg}"))
                }
            }
            _ => malformed(&inner),
        }
    })?;
    // One document per request: `{...} xyz` or two concatenated documents
    // are not a notification with something ignorable after it.
    de.end().map_err(|e| IngestError::Malformed {
        line: e.line(),
        column: e.column(),
        message: "unexpected data after the end of the JSON document (send exactly one notification per request)".into(),
    })?;
    Ok(notification)
}

fn malformed(e: &serde_json::Error) -> IngestError {
    IngestError::Malformed {
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    }
}

/// A top-level array: malformed if it is not JSON, else the 422 that says
/// what it looks like and what this endpoint takes.
fn alert_list(body: &[u8]) -> IngestError {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let checked = serde::de::IgnoredAny::deserialize(&mut *de).and_then(|_| de.end());
    if let Err(e) = checked {
        return malformed(&e);
    }
    IngestError::Schema(
        "the body is a JSON array, which looks like a Prometheus/Alertmanager API v2 alert list \
         (what Prometheus posts to Alertmanager's /api/v2/alerts); this endpoint takes an \
         Alertmanager webhook notification: a JSON object with \"version\": \"4\", \"receiver\", \
         \"groupKey\", \"status\" and \"alerts\", sent by an Alertmanager receiver's \
         webhook_configs (see \"Wiring Alertmanager\" in the README)"
            .into(),
    )
}

/// Label and annotation names must be non-empty and free of NUL. Any other
/// UTF-8 is accepted: Alertmanager 0.27+ allows UTF-8 names (older versions
/// only send `[a-zA-Z_][a-zA-Z0-9_]*`, a subset); JSON is UTF-8 already.
fn check_label_names(n: &Notification) -> Result<(), IngestError> {
    let check = |path: &str, set: &Labels, what: &str| -> Result<(), IngestError> {
        for name in set.keys() {
            if name.is_empty() {
                return Err(IngestError::Schema(format!("{path}: empty {what} name")));
            }
            if name.contains('\0') {
                return Err(IngestError::Schema(format!(
                    "{path}: {what} name {name:?} contains a NUL character"
                )));
            }
        }
        Ok(())
    };
    check("groupLabels", &n.group_labels, "label")?;
    check("commonLabels", &n.common_labels, "label")?;
    check("commonAnnotations", &n.common_annotations, "annotation")?;
    for (i, a) in n.alerts.iter().enumerate() {
        check(&format!("alerts[{i}].labels"), &a.labels, "label")?;
        check(
            &format!("alerts[{i}].annotations"),
            &a.annotations,
            "annotation",
        )?;
    }
    Ok(())
}

/// serde_json appends " at line L column C"; we report the position in our own words.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// The identity of a notification for redelivery detection: receiver,
/// groupKey, status and the set of (fingerprint, status, startsAt, endsAt)
/// of its alerts, in any order.
pub fn dedup_key(n: &Notification) -> [u8; 32] {
    let mut alerts: Vec<String> = n
        .alerts
        .iter()
        .map(|a| {
            format!(
                "{}\u{0}{}\u{0}{}\u{0}{}",
                a.fingerprint,
                a.status,
                a.starts_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                a.ends_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            )
        })
        .collect();
    alerts.sort_unstable();
    let mut h = Sha256::new();
    for part in [n.receiver.as_str(), n.group_key.as_str(), n.status.as_str()] {
        h.update(part.as_bytes());
        h.update([0xff]);
    }
    for a in &alerts {
        h.update(a.as_bytes());
        h.update([0xff]);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRING: &str = include_str!("../../tests/fixtures/accuracy-firing.json");

    fn with(f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_str(FIRING).unwrap();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn fixture_parses_with_zero_end_time_and_fingerprint() {
        let a = parse(FIRING.as_bytes(), 10).unwrap();
        let alert = &a.notification.alerts[0];
        assert_eq!(alert.fingerprint, "afae611b2038566d");
        assert_eq!(alert.ends_at, zero_time());
        assert_eq!(a.notification.status, AlertStatus::Firing);
    }

    #[test]
    fn a_stored_payload_parses_as_ingest_parsed_it() {
        // Without fingerprints: the worker computes them exactly as ingest did.
        let body = with(|v| {
            for a in v["alerts"].as_array_mut().unwrap() {
                a.as_object_mut().unwrap().remove("fingerprint");
            }
        });
        let accepted = parse(&body, 10).unwrap().notification;
        let stored = parse_stored(std::str::from_utf8(&body).unwrap()).unwrap();
        assert!(!stored.alerts[0].fingerprint.is_empty());
        assert_eq!(
            stored
                .alerts
                .iter()
                .map(|a| &a.fingerprint)
                .collect::<Vec<_>>(),
            accepted
                .alerts
                .iter()
                .map(|a| &a.fingerprint)
                .collect::<Vec<_>>()
        );
        assert_eq!(stored.group_key, accepted.group_key);
        // A row altered by hand gets ingest's error, naming what is wrong.
        let err = parse_stored(r#"{"version": "4", "alerts": 3}"#).unwrap_err();
        assert!(err.to_string().contains("alerts"), "{err}");
    }

    #[test]
    fn invalid_utf8_anywhere_is_malformed_even_in_an_unknown_field() {
        let body = b"{\n  \"unknownField\": \"a\xff\",\n  \"version\": \"4\"}";
        let err = parse(body, 10).unwrap_err();
        assert!(
            matches!(
                err,
                IngestError::Malformed {
                    line: 2,
                    column: 21,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("invalid UTF-8"), "{err}");
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let err = parse(b"{\n  \"version\": \"4\",\n  oops\n}", 10).unwrap_err();
        assert!(
            matches!(
                err,
                IngestError::Malformed {
                    line: 3,
                    column: 3,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn schema_errors_name_the_field() {
        let err = parse(&with(|v| v["version"] = "3".into()), 10).unwrap_err();
        assert!(
            err.to_string().starts_with("version: expected \"4\""),
            "{err}"
        );

        let err = parse(
            &with(|v| drop(v.as_object_mut().unwrap().remove("alerts"))),
            10,
        )
        .unwrap_err();
        assert_eq!(err, IngestError::Schema("missing field `alerts`".into()));

        let err = parse(
            &with(|v| v["alerts"][0]["startsAt"] = "yesterday".into()),
            10,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("alerts[0].startsAt: not an RFC 3339 timestamp"),
            "{err}"
        );

        let err = parse(&with(|v| v["alerts"][0]["status"] = "burning".into()), 10).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("alerts[0].status: unknown variant `burning`"),
            "{err}"
        );

        let err = parse(&with(|v| v["alerts"][0]["labels"]["x"] = 1.into()), 10).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("alerts[0].labels.x: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn bytes_after_the_document_are_malformed() {
        for tail in [" xyz", " {}", "{}", "\n[1]", " 1"] {
            let body = format!("{}{tail}", FIRING.trim_end());
            let err = parse(body.as_bytes(), 10).unwrap_err();
            assert!(
                matches!(&err, IngestError::Malformed { message, .. } if message.contains("after the end of the JSON document")),
                "{tail:?}: {err:?}"
            );
        }
        // Trailing whitespace is fine.
        assert!(parse(format!("{FIRING}\n\n  ").as_bytes(), 10).is_ok());
    }

    #[test]
    fn top_level_array_is_named_for_what_it_is() {
        let list =
            serde_json::json!([{"labels": {"alertname": "X"}, "annotations": {}}]).to_string();
        let err = parse(list.as_bytes(), 10).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, IngestError::Schema(_)), "{err:?}");
        assert!(
            msg.contains("Prometheus/Alertmanager API v2 alert list"),
            "{msg}"
        );
        assert!(msg.contains("\"version\": \"4\""), "{msg}");
        assert!(msg.contains("Wiring Alertmanager"), "{msg}");
        // Not JSON at all is still malformed, with its position.
        assert!(matches!(
            parse(b"  [1, 2", 10).unwrap_err(),
            IngestError::Malformed { line: 1, .. }
        ));
    }

    #[test]
    fn empty_or_nul_label_names_are_refused_utf8_names_accepted() {
        let err = parse(&with(|v| v["alerts"][0]["labels"][""] = "x".into()), 10).unwrap_err();
        assert_eq!(
            err,
            IngestError::Schema("alerts[0].labels: empty label name".into())
        );
        let err = parse(
            &with(|v| v["alerts"][0]["labels"]["a\u{0}b"] = "x".into()),
            10,
        )
        .unwrap_err();
        assert_eq!(
            err,
            IngestError::Schema(
                "alerts[0].labels: label name \"a\\0b\" contains a NUL character".into()
            )
        );
        let err = parse(&with(|v| v["commonLabels"][""] = "x".into()), 10).unwrap_err();
        assert_eq!(
            err,
            IngestError::Schema("commonLabels: empty label name".into())
        );
        let err = parse(
            &with(|v| v["alerts"][0]["annotations"][""] = "x".into()),
            10,
        )
        .unwrap_err();
        assert_eq!(
            err,
            IngestError::Schema("alerts[0].annotations: empty annotation name".into())
        );
        // Alertmanager 0.27+ sends UTF-8 label names.
        assert!(parse(
            &with(|v| v["alerts"][0]["labels"]["modèle.名前 x"] = "x".into()),
            10
        )
        .is_ok());
        // A lone surrogate is not UTF-8: malformed.
        let body = FIRING.replacen("\"labels\": {", "\"labels\": {\"\\ud800\": \"x\", ", 1);
        assert!(
            matches!(
                parse(body.as_bytes(), 10).unwrap_err(),
                IngestError::Malformed { .. }
            ),
            "{body}"
        );
    }

    #[test]
    fn unknown_fields_are_accepted() {
        let body = with(|v| {
            v["notification_reason"] = "repeat".into();
            v["routeLabels"] = serde_json::json!({"team": "ml"});
            v["alerts"][0]["somethingNew"] = serde_json::json!([1, 2]);
        });
        assert!(parse(&body, 10).is_ok());
    }

    #[test]
    fn too_many_alerts_is_its_own_error() {
        let body = with(|v| {
            let a = v["alerts"][0].clone();
            v["alerts"] = serde_json::Value::Array(vec![a; 3]);
        });
        assert_eq!(
            parse(&body, 2).unwrap_err(),
            IngestError::TooManyAlerts { count: 3, max: 2 }
        );
    }

    #[test]
    fn dedup_key_ignores_alert_order_but_not_status_or_times() {
        let two = with(|v| {
            let mut b = v["alerts"][0].clone();
            b["fingerprint"] = "0000000000000001".into();
            v["alerts"].as_array_mut().unwrap().push(b);
        });
        let swapped = {
            let mut v: serde_json::Value = serde_json::from_slice(&two).unwrap();
            v["alerts"].as_array_mut().unwrap().reverse();
            serde_json::to_vec(&v).unwrap()
        };
        let key = |b: &[u8]| parse(b, 10).unwrap().dedup_key;
        assert_eq!(key(&two), key(&swapped));
        assert_ne!(key(FIRING.as_bytes()), key(&two));
        let resolved = with(|v| v["alerts"][0]["status"] = "resolved".into());
        assert_ne!(key(FIRING.as_bytes()), key(&resolved));
        let later = with(|v| v["alerts"][0]["endsAt"] = "2026-11-27T02:00:00Z".into());
        assert_ne!(key(FIRING.as_bytes()), key(&later));
    }
}

//! `POST /api/v1/alerts`: the Alertmanager webhook.
//!
//! Validate, store, answer. No routing, enrichment or outbound call happens
//! here; the 200 means the notification is on disk.

use super::error::ApiError;
use super::AppState;
use crate::ingest;
use crate::pipeline::now_ms;
use crate::settings::IngestSettings;
use crate::store::NewNotification;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn router(settings: &IngestSettings) -> Router<AppState> {
    Router::new().route(
        "/api/v1/alerts",
        post(receive).layer(DefaultBodyLimit::max(settings.max_body_bytes)),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestQuery {
    #[serde(default)]
    dry_run: bool,
}

async fn receive(
    State(state): State<AppState>,
    query: Result<Query<IngestQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let outcome = receive_inner(&state, query, body).await;
    let label = match &outcome {
        Ok((_, _, label)) => *label,
        Err(ApiError::BadRequest(_)) => "malformed",
        Err(ApiError::Unprocessable(_)) => "schema",
        Err(ApiError::TooLarge(_)) => "too_large",
        Err(ApiError::Unavailable { .. }) => "unavailable",
        Err(_) => "error",
    };
    state.metrics.notification(label);
    outcome.map(|(status, body, _)| (status, body))
}

async fn receive_inner(
    state: &AppState,
    query: Result<Query<IngestQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>, &'static str), ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "request body is larger than {} bytes (ingest.max_body_bytes)",
                state.ingest.max_body_bytes
            ))
        } else {
            ApiError::BadRequest(e.body_text())
        }
    })?;
    let accepted = ingest::parse(&body, state.ingest.max_alerts)?;
    let n = &accepted.notification;

    if query.dry_run {
        let plan = state
            .pipeline
            .planner()
            .dry_run(accepted.notification)
            .await;
        return Ok((StatusCode::OK, Json(plan), "dry_run"));
    }

    // The body was valid JSON, hence valid UTF-8.
    let payload = std::str::from_utf8(&body)
        .map_err(|e| ApiError::BadRequest(format!("body is not UTF-8: {e}")))?;
    let inserted = state
        .store
        .insert_notification(
            NewNotification {
                received_at: now_ms(),
                dedup_key: accepted.dedup_key,
                receiver: &n.receiver,
                status: n.status.as_str(),
                group_key: &n.group_key,
                alert_count: n.alerts.len(),
                alertnames: n.alerts.iter().map(|a| a.alertname()).collect(),
                payload,
            },
            state.ingest.max_inbox,
        )
        .await?;
    state.metrics.alerts.inc_by(n.alerts.len() as u64);
    if !inserted.duplicate {
        state.wake.notify_one();
    }
    tracing::debug!(
        id = inserted.id,
        duplicate = inserted.duplicate,
        group_key = %n.group_key,
        alerts = n.alerts.len(),
        "Notification stored"
    );
    let label = if inserted.duplicate {
        "duplicate"
    } else {
        "stored"
    };
    Ok((
        StatusCode::OK,
        Json(json!({
            "id": inserted.id,
            "alerts": n.alerts.len(),
            "duplicate": inserted.duplicate,
        })),
        label,
    ))
}

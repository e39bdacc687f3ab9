//! `POST /api/v1/alerts`: the Alertmanager webhook.
//!
//! Validate, store, answer. No routing, enrichment or outbound call happens
//! here; the 200 means the notification is on disk.

use super::error::ApiError;
use super::openapi::{
    BadRequest, IngestAnswer, RequestTimeout, Stored, TooLarge, Unauthorized, Unavailable,
    Unprocessable, WebhookNotification,
};
use super::AppState;
use crate::clock::now_ms;
use crate::ingest;
use crate::store::NewNotification;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/alerts", post(receive))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct IngestQuery {
    /// Answer the plan (per alert: matched routes, actions, context, each
    /// action's effect) and store nothing.
    #[serde(default)]
    dry_run: bool,
}

/// The Alertmanager webhook: validate, store (on disk before the answer), answer.
#[utoipa::path(
    post,
    path = "/api/v1/alerts",
    operation_id = "receive_alerts",
    tag = "alerts",
    params(IngestQuery),
    request_body(content = WebhookNotification, description = "Alertmanager's webhook payload, version 4 (at most `ingest.max_body_bytes`, `ingest.max_alerts` alerts)"),
    responses(
        (status = 200, description = "Stored (committed to disk before this answer; `duplicate` for a redelivery within `ingest.dedup_window`), or the plan with `?dry_run=true`", body = IngestAnswer),
        BadRequest, Unauthorized, RequestTimeout, TooLarge, Unprocessable, Unavailable,
    )
)]
async fn receive(
    State(state): State<AppState>,
    query: Result<Query<IngestQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let outcome = receive_inner(&state, query, &headers, body).await;
    let label = match &outcome {
        Ok((_, label)) => *label,
        Err(ApiError::BadRequest(_)) => "malformed",
        Err(ApiError::Unprocessable(_)) => "schema",
        Err(ApiError::TooLarge(_)) => "too_large",
        Err(ApiError::RequestTimeout(_)) => "timeout",
        Err(ApiError::Unavailable { .. }) => "unavailable",
        Err(_) => "error",
    };
    state.metrics.notification(label);
    outcome.map(|(response, _)| response)
}

/// Reads the whole body: at most `max` bytes, within `server.body_read_timeout`.
///
/// A declared `Content-Length` over the limit is refused before the body is
/// touched, so a client that sent `Expect: 100-continue` gets 413 instead of
/// "100 Continue" (hyper sends that only when the body is first read).
async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let max = state.ingest.max_body_bytes;
    let too_large = || {
        ApiError::TooLarge(format!(
            "request body is larger than {max} bytes (ingest.max_body_bytes)"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let collect = async {
        let mut buf = Vec::with_capacity(declared.map_or(0, |n| n as usize));
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
            if buf.len() + chunk.len() > max {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    };
    match tokio::time::timeout(state.body_read_timeout, collect).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::RequestTimeout(format!(
            "the request body did not arrive within {} (server.body_read_timeout)",
            humantime::format_duration(state.body_read_timeout)
        ))),
    }
}

async fn receive_inner(
    state: &AppState,
    query: Result<Query<IngestQuery>, QueryRejection>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Response, &'static str), ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let body = read_body(state, headers, body).await?;
    let accepted = ingest::parse(&body, state.ingest.max_alerts)?;
    let n = &accepted.notification;

    if query.dry_run {
        let plan = state.planner.dry_run(accepted.notification).await;
        return Ok((Json(plan).into_response(), "dry_run"));
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
    let answer = Stored {
        id: inserted.id,
        alerts: n.alerts.len() as u64,
        duplicate: inserted.duplicate,
    };
    Ok((Json(answer).into_response(), label))
}

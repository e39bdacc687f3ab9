//! `/healthz`, `/readyz`, `/metrics`.

use super::error::ApiError;
use super::openapi::{Health, Unauthorized, Unavailable};
use super::AppState;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

pub fn metrics_router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "health",
    security(()),
    responses((status = 200, description = "The process answers", body = Health)),
)]
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the config is loaded (we are running) and the store commits a write.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "The store commits a write right now", body = Health),
        Unavailable,
    ),
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.check_writable().await?;
    Ok(Json(json!({"status": "ready"})))
}

/// OpenMetrics text; open unless `auth.protect_metrics: true`.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "health",
    security((), ("bearer" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The metrics", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        Unauthorized,
    ),
)]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state
        .metrics
        .inbox_depth
        .set(state.store.inbox_depth() as i64);
    match state.store.dead_letter_count().await {
        Ok(n) => {
            state.metrics.dead_letters.set(n as i64);
        }
        Err(e) => tracing::warn!(error = %e, "Cannot count dead letters for /metrics"),
    }
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

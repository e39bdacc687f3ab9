//! `GET /api/v1/notifications`, `GET /api/v1/notifications/{id}`,
//! `POST /api/v1/notifications/{id}/replay`.

use super::error::ApiError;
use super::AppState;
use crate::clock::now_ms;
use crate::ingest;
use crate::store::ListQuery;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

/// Page size of the lists when `limit` is not given.
pub(super) const DEFAULT_LIMIT: u32 = 50;
/// Largest page of the lists.
pub(super) const MAX_LIMIT: u32 = 500;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/notifications", get(list))
        .route("/api/v1/notifications/{id}", get(detail))
        .route("/api/v1/notifications/{id}/replay", post(replay))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    limit: Option<u32>,
    before: Option<i64>,
    status: Option<String>,
    alertname: Option<String>,
    state: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit: must be between 1 and {MAX_LIMIT}, got {limit}"
        )));
    }
    if let Some(s) = p
        .status
        .as_deref()
        .filter(|s| !matches!(*s, "firing" | "resolved"))
    {
        return Err(ApiError::BadRequest(format!(
            "status: must be firing or resolved, got {s:?}"
        )));
    }
    if let Some(s) = p
        .state
        .as_deref()
        .filter(|s| !matches!(*s, "pending" | "done"))
    {
        return Err(ApiError::BadRequest(format!(
            "state: must be pending or done, got {s:?}"
        )));
    }
    let rows = state
        .store
        .list(ListQuery {
            limit,
            before: p.before,
            status: p.status,
            alertname: p.alertname,
            state: p.state,
        })
        .await?;
    let next_before = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(Json(
        json!({"notifications": rows, "next_before": next_before}),
    ))
}

fn parse_id(id: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    id.map(|Path(id)| id)
        .map_err(|e| ApiError::BadRequest(format!("id: {}", e.body_text())))
}

async fn detail(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(id)?;
    let found = state.store.get(id).await?;
    let detail =
        found.ok_or_else(|| ApiError::NotFound(format!("no notification with id {id}")))?;
    Ok(Json(
        serde_json::to_value(detail).map_err(anyhow::Error::from)?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayParams {
    #[serde(default)]
    dry_run: bool,
}

async fn replay(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    params: Result<Query<ReplayParams>, QueryRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = parse_id(id)?;
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let not_found = || ApiError::NotFound(format!("no notification with id {id}"));
    if params.dry_run {
        let detail = state.store.get(id).await?.ok_or_else(not_found)?;
        let payload = serde_json::to_vec(&detail.payload).map_err(anyhow::Error::from)?;
        let accepted = ingest::parse(&payload, usize::MAX).map_err(anyhow::Error::from)?;
        return Ok((
            StatusCode::OK,
            Json(state.planner.dry_run(accepted.notification).await),
        ));
    }
    let round = state
        .store
        .replay(id, now_ms())
        .await?
        .ok_or_else(not_found)?;
    state.wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "round": round, "state": "pending"})),
    ))
}

//! `GET /api/v1/dead-letters`: action runs that gave up, in the latest round
//! of their notification, newest first. `POST /api/v1/notifications/{id}/replay`
//! sends them again.

use super::error::ApiError;
use super::notifications::{DEFAULT_LIMIT, MAX_LIMIT};
use super::openapi::{BadRequest, DeadLetterList, Unauthorized, Unavailable};
use super::AppState;
use crate::store::DeadLetterQuery;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/dead-letters", get(list))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListParams {
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// A run id: the previous page's `next_before`.
    before: Option<i64>,
}

/// Action runs that gave up, in the latest round of their notification,
/// newest first. A replay takes them off the list.
#[utoipa::path(
    get,
    path = "/api/v1/dead-letters",
    operation_id = "list_dead_letters",
    tag = "notifications",
    params(ListParams),
    responses(
        (status = 200, description = "A page of dead letters", body = DeadLetterList),
        BadRequest, Unauthorized, Unavailable,
    )
)]
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
    let rows = state
        .store
        .dead_letters(DeadLetterQuery {
            limit,
            before: p.before,
        })
        .await?;
    let next_before = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.run.id))
        .flatten();
    Ok(Json(
        json!({"dead_letters": rows, "next_before": next_before}),
    ))
}

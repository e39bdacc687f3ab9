//! `GET /api/v1/traffic`: current weights of every traffic target and the
//! recent decisions (`?target=`, `?limit=`).

use super::error::ApiError;
use super::openapi::{BadRequest, Traffic, Unauthorized, Unavailable};
use super::AppState;
use crate::act::traffic::policy::normalise;
use crate::store::DecisionQuery;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/traffic", get(traffic))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Only this experiment (a `traffic_targets` key).
    target: Option<String>,
    /// Most decisions answered (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// Current weights of every traffic target (normalised to percent, with the
/// last shift recorded on the target) and recent decisions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/traffic",
    operation_id = "get_traffic",
    tag = "traffic",
    params(Params),
    responses(
        (status = 200, description = "Targets and decisions", body = Traffic),
        BadRequest, Unauthorized, Unavailable,
    )
)]
async fn traffic(
    State(state): State<AppState>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = p.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit: must be between 1 and 500, got {limit}"
        )));
    }
    let mut targets = serde_json::Map::new();
    for (experiment, target) in state.targets.iter() {
        if p.target.as_deref().is_some_and(|t| t != experiment) {
            continue;
        }
        let mut value = match target.read().await {
            Ok(s) => json!({
                "target": target.describe(),
                "weights": normalise(&s.weights),
                "default": s.default,
                "last_shift": s.shifts.first(),
                "shifts": s.shifts,
            }),
            Err(e) => json!({"target": target.describe(), "error": e.to_string()}),
        };
        // The evidence guard's latest evaluation (since the router started).
        if let Some(e) = state.targets.evidence(experiment) {
            value["evidence"] = e;
        }
        targets.insert(experiment.to_owned(), value);
    }
    let decisions = state
        .store
        .decisions(DecisionQuery {
            target: p.target,
            limit,
            ..Default::default()
        })
        .await?;
    Ok(Json(json!({"targets": targets, "decisions": decisions})))
}

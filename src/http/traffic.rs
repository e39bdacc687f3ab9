//! `GET /api/v1/traffic`: current weights of every traffic target and the
//! recent decisions (`?target=`, `?limit=`).

use super::error::ApiError;
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    target: Option<String>,
    limit: Option<u32>,
}

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
        let value = match target.read().await {
            Ok(s) => json!({
                "target": target.describe(),
                "weights": normalise(&s.weights),
                "default": s.default,
                "last_shift": s.shifts.first(),
                "shifts": s.shifts,
            }),
            Err(e) => json!({"target": target.describe(), "error": e.to_string()}),
        };
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

//! HTTP: every route of the API. Each resource owns a `router()`; this file
//! merges them and adds the cross-cutting layers (auth, latency metric).

mod alerts;
pub mod auth;
mod dead_letters;
pub mod error;
mod health;
mod notifications;
mod traffic;

use crate::metrics::{HttpLabels, Metrics};
use crate::pipeline::Pipeline;
use crate::settings::IngestSettings;
use crate::store::Store;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub pipeline: Arc<Pipeline>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<auth::Authenticator>,
    pub ingest: Arc<IngestSettings>,
    /// Poked after a notification is stored, so the worker starts at once.
    pub wake: Arc<Notify>,
    /// The traffic targets, for `GET /api/v1/traffic`.
    pub targets: Arc<crate::act::traffic::Targets>,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(alerts::router(&state.ingest))
        .merge(notifications::router())
        .merge(traffic::router())
        .merge(dead_letters::router())
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require));
    let metrics = health::metrics_router().route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_for_metrics,
    ));
    Router::new()
        .merge(api)
        .merge(metrics)
        .merge(health::router())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_latency,
        ))
        .with_state(state)
}

async fn record_latency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    // The route template, not the raw path: ids must not become label values.
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    state
        .metrics
        .http_duration
        .get_or_create(&HttpLabels {
            method,
            path,
            status: response.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    response
}

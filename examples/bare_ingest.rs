//! The physical limit for the ingest benchmark: an axum handler that parses
//! and validates the webhook body exactly as the router does, then drops it.
//! No store, no auth, no metrics. See `scripts/bench/side-by-side.sh`.
//! It allocates with jemalloc, as the router does, so the comparison is of
//! the work done, not of the allocators.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

async fn receive(body: Bytes) -> (StatusCode, Json<Value>) {
    match mlops_alert_router::ingest::parse(&body, 1000) {
        Ok(a) => (
            StatusCode::OK,
            Json(json!({"id": 0, "alerts": a.notification.alerts.len(), "duplicate": false})),
        ),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": e.to_string()})),
        ),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9096".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("bare handler listening on {addr}");
    axum::serve(
        listener,
        Router::new().route("/api/v1/alerts", post(receive)),
    )
    .await
}

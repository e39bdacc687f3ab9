//! HTTP: every route of the API. Each resource owns a `router()`; this file
//! merges them and adds the cross-cutting layers (auth, latency metric).

mod alerts;
pub mod auth;
pub mod console;
mod dead_letters;
pub mod error;
mod health;
mod notifications;
pub mod openapi;
pub mod server;
mod traffic;

use crate::metrics::{HttpLabels, Metrics};
use crate::pipeline::Planner;
use crate::settings::IngestSettings;
use crate::store::Store;
use auth::{AuthLayer, Guard};
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, Uri};
use axum::response::Response;
use axum::Router;
use error::ApiError;
use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::Notify;
use tower::Layer;
use tower_service::Service;

/// What every handler can reach: one reference-counted [`AppContext`], so
/// the clones axum makes per request (one per middleware and extractor) each
/// cost one counter update rather than one per field.
#[derive(Clone)]
pub struct AppState(Arc<AppContext>);

impl AppState {
    pub fn new(context: AppContext) -> Self {
        Self(Arc::new(context))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppContext;

    fn deref(&self) -> &AppContext {
        &self.0
    }
}

/// The handlers' shared services and settings.
pub struct AppContext {
    pub store: Arc<dyn Store>,
    /// Route and enrich without acting: `?dry_run=true` and replay plans.
    pub planner: Arc<Planner>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<auth::Authenticator>,
    pub ingest: Arc<IngestSettings>,
    /// `server.body_read_timeout`: a request body must arrive within this.
    pub body_read_timeout: std::time::Duration,
    /// Poked after a notification is stored, so the worker starts at once.
    pub wake: Arc<Notify>,
    /// The traffic targets, for `GET /api/v1/traffic`.
    pub targets: Arc<crate::act::traffic::Targets>,
    /// The web console under `/console`; `None` with `ui.enabled: false`.
    pub console: Option<Arc<console::Console>>,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(alerts::router())
        .merge(notifications::router())
        .merge(traffic::router())
        .merge(dead_letters::router())
        .merge(openapi::router())
        .merge(
            state
                .console
                .clone()
                .map(console::router)
                .unwrap_or_default(),
        )
        .route_layer(AuthLayer::new(state.clone(), Guard::Api));
    let metrics =
        health::metrics_router().route_layer(AuthLayer::new(state.clone(), Guard::Metrics));
    Router::new()
        .merge(api)
        .merge(metrics)
        .merge(health::router())
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(LatencyLayer {
            metrics: state.metrics.clone(),
        })
        .with_state(state)
}

/// Records `http_request_duration_seconds` for every request, by method,
/// route template and status.
///
/// A plain tower layer rather than `axum::middleware::from_fn` (which clones
/// and boxes the inner service and boxes a future on every request).
#[derive(Clone)]
struct LatencyLayer {
    metrics: Arc<Metrics>,
}

impl<S> Layer<S> for LatencyLayer {
    type Service = Timed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timed {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
struct Timed<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request> for Timed<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = TimedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        // Bounded label values: a client can invent methods and paths, and each
        // new value would be a new series kept forever.
        let method = crate::metrics::method_label(request.method().as_str());
        // The route template, not the raw path: ids must not become label values.
        let path = match request.extensions().get::<MatchedPath>() {
            Some(p) => route_label(p.as_str()),
            None => Cow::Borrowed("unmatched"),
        };
        TimedFuture {
            inner: self.inner.call(request),
            started,
            method,
            path,
            metrics: self.metrics.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A route's response future, timed until it is ready.
    struct TimedFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
        method: &'static str,
        path: Cow<'static, str>,
        metrics: Arc<Metrics>,
    }
}

impl<F> Future for TimedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            this.metrics
                .http_duration
                .get_or_create(&HttpLabels {
                    method: this.method,
                    path: std::mem::take(this.path),
                    status: response.status().as_u16(),
                })
                .observe(this.started.elapsed().as_secs_f64());
        }
        Poll::Ready(result)
    }
}

/// The routes whose label is borrowed, not allocated, per request.
const HOT_ROUTES: [&str; 3] = ["/api/v1/alerts", "/healthz", "/readyz"];

/// The label value for a matched route template.
fn route_label(template: &str) -> Cow<'static, str> {
    match HOT_ROUTES.iter().find(|r| **r == template) {
        Some(r) => Cow::Borrowed(r),
        None => Cow::Owned(template.to_owned()),
    }
}

/// 404 for a path no route serves, as JSON like every error.
async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {:?} (routes: /api/v1/alerts, /api/v1/notifications, /api/v1/traffic, /api/v1/dead-letters, /api/v1/openapi.json, /console, /healthz, /readyz, /metrics)",
        clip(uri.path())
    ))
}

/// 405 for a known path with a method it does not serve (axum adds `Allow`).
async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "method {:?} is not allowed on {:?} (the Allow header lists those that are)",
        clip(method.as_str()),
        clip(uri.path())
    ))
}

/// At most 100 characters of client input echoed in an error.
fn clip(s: &str) -> &str {
    s.char_indices().nth(100).map_or(s, |(i, _)| &s[..i])
}

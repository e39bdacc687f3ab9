//! The web console under `/console`: server-rendered pages for the person on
//! call, on the API's port and behind the API's auth (the browser's Basic
//! prompt, or a bearer token).
//!
//! - experiments: weights per target now, a weight-over-time chart with each
//!   decision marked, the last decision with its reason and numbers;
//! - notifications: a filterable list; one notification with its alerts, every
//!   action run (attempts, errors, results) and its enrichment context;
//! - dead letters, each with a Replay button; replaying any notification shows
//!   the dry-run plan first and asks for a confirmation.
//!
//! HTML comes from minijinja templates compiled into the binary, auto-escaped
//! (every alert value is untrusted). No script at all; one small stylesheet
//! from the same origin; a Content-Security-Policy that forbids everything
//! else. The one mutating request (replay) needs a same-origin browser
//! request and a form token ([`csrf`]); `ui.read_only` refuses it outright.

mod chart;
pub mod csrf;

use crate::act::traffic::policy::{normalise, WeightMap};
use crate::act::traffic::Targets;
use crate::clock::now_ms;
use crate::ingest;
use crate::pipeline::{Planner, NOTIFICATION_RUN};
use crate::store::{ActionRun, DeadLetterQuery, DecisionQuery, ListQuery, Store, TrafficDecision};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{self, AUTHORIZATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use chrono::DateTime;
use minijinja::Environment;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// Rows per page of the lists.
const PAGE: u32 = 50;
/// Decisions drawn in an experiment's chart (the newest).
const CHART_DECISIONS: u32 = 500;
/// Decisions listed under an experiment's chart.
const LISTED_DECISIONS: usize = 20;

const CSS: &str = include_str!("templates/console.css");

/// What the console reads and the one thing it does (replay).
pub struct Console {
    store: Arc<dyn Store>,
    planner: Arc<Planner>,
    targets: Arc<Targets>,
    wake: Arc<Notify>,
    read_only: bool,
    csrf: csrf::Csrf,
    templates: Environment<'static>,
}

impl Console {
    /// Compiles the templates and draws the form-token key.
    pub fn new(
        store: Arc<dyn Store>,
        planner: Arc<Planner>,
        targets: Arc<Targets>,
        wake: Arc<Notify>,
        read_only: bool,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            store,
            planner,
            targets,
            wake,
            read_only,
            csrf: csrf::Csrf::new()
                .map_err(|e| anyhow::anyhow!("cannot draw the console's form key: {e}"))?,
            templates: templates()?,
        })
    }

    fn render(&self, name: &str, mut ctx: Value) -> Result<Response, ConsoleError> {
        ctx["read_only"] = json!(self.read_only);
        let html = self
            .templates
            .get_template(name)
            .and_then(|t| t.render(minijinja::value::Serde(&ctx)))
            .map_err(|e| ConsoleError::Internal(format!("rendering {name}: {e:#}")))?;
        Ok(html_response(StatusCode::OK, html))
    }

    /// The answer, or the error as a page.
    fn finish(&self, result: Result<Response, ConsoleError>) -> Response {
        match result {
            Ok(r) => r,
            Err(e) => {
                let status = e.status();
                let message = match &e {
                    ConsoleError::Internal(m) => {
                        tracing::error!(error = %m, "Console page failed");
                        "internal error (logged)".to_owned()
                    }
                    ConsoleError::BadRequest(m)
                    | ConsoleError::NotFound(m)
                    | ConsoleError::Forbidden(m)
                    | ConsoleError::Unavailable(m) => m.clone(),
                };
                let ctx = json!({
                    "status": status.as_u16(),
                    "reason": status.canonical_reason().unwrap_or(""),
                    "message": message,
                    "read_only": self.read_only,
                });
                let html = self
                    .templates
                    .get_template("error.html")
                    .and_then(|t| t.render(minijinja::value::Serde(&ctx)))
                    .unwrap_or_else(|_| format!("{status}"));
                html_response(status, html)
            }
        }
    }
}

fn templates() -> anyhow::Result<Environment<'static>> {
    let mut env = Environment::new();
    // Names end in .html: minijinja escapes every value for HTML.
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("macros.html", include_str!("templates/macros.html")),
        (
            "experiments.html",
            include_str!("templates/experiments.html"),
        ),
        (
            "notifications.html",
            include_str!("templates/notifications.html"),
        ),
        (
            "notification.html",
            include_str!("templates/notification.html"),
        ),
        ("replay.html", include_str!("templates/replay.html")),
        (
            "dead_letters.html",
            include_str!("templates/dead_letters.html"),
        ),
        ("error.html", include_str!("templates/error.html")),
    ] {
        env.add_template(name, source)
            .map_err(|e| anyhow::anyhow!("console template {name}: {e:#}"))?;
    }
    Ok(env)
}

/// Headers of every console page: HTML, never cached, nothing but our
/// stylesheet and same-origin forms allowed, not framed.
fn html_response(status: StatusCode, html: String) -> Response {
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// What a console page can fail with.
#[derive(Debug)]
enum ConsoleError {
    BadRequest(String),
    NotFound(String),
    Forbidden(String),
    Unavailable(String),
    Internal(String),
}

impl ConsoleError {
    fn status(&self) -> StatusCode {
        match self {
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::Forbidden(_) => StatusCode::FORBIDDEN,
            ConsoleError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::store::StoreError> for ConsoleError {
    fn from(e: crate::store::StoreError) -> Self {
        ConsoleError::Unavailable(e.to_string())
    }
}

/// The console's routes (mount behind the API's auth).
pub fn router<S: Clone + Send + Sync + 'static>(console: Arc<Console>) -> Router<S> {
    Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/console.css", get(css))
        .route("/console/experiments", get(experiments))
        .route("/console/notifications", get(notifications))
        .route("/console/notifications/{id}", get(notification))
        .route(
            "/console/notifications/{id}/replay",
            get(replay_preview).post(replay),
        )
        .route("/console/dead-letters", get(dead_letters))
        .with_state(console)
}

/// The console's home: the experiments.
#[utoipa::path(get, path = "/console", tag = "console", operation_id = "console_home",
    responses((status = 303, description = "To `/console/experiments`", headers(("Location" = String))), super::openapi::Unauthorized))]
async fn home() -> Redirect {
    Redirect::to("/console/experiments")
}

/// The console's stylesheet.
#[utoipa::path(get, path = "/console/console.css", tag = "console", operation_id = "console_css",
    responses((status = 200, description = "CSS", content_type = "text/css; charset=utf-8", body = String), super::openapi::Unauthorized))]
async fn css() -> Response {
    let mut r = CSS.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

// ---- helpers -----------------------------------------------------------------

/// Unix ms as `2026-12-03 10:50:27Z`.
pub(crate) fn fmt_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn fmt_opt(ms: Option<i64>) -> Option<String> {
    ms.map(fmt_ms)
}

/// At most 100 characters of client input echoed in an error.
fn clip(s: &str) -> &str {
    s.char_indices().nth(100).map_or(s, |(i, _)| &s[..i])
}

/// Only http(s) URLs become links: a `javascript:` URL in an alert would run
/// script when clicked, escaping or not.
fn safe_url(url: &str) -> Option<&str> {
    let lower = url.trim_start().to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://")).then_some(url)
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn identity(headers: &HeaderMap) -> Vec<u8> {
    headers
        .get(AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default()
}

/// An optional query parameter: absent or empty is `None`.
fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

fn parse_id(id: &str) -> Result<i64, ConsoleError> {
    id.parse::<i64>()
        .map_err(|_| ConsoleError::BadRequest(format!("not a notification id: {:?}", clip(id))))
}

fn parse_before(before: Option<String>) -> Result<Option<i64>, ConsoleError> {
    non_empty(before)
        .map(|b| {
            b.parse::<i64>()
                .map_err(|_| ConsoleError::BadRequest(format!("before: not an id: {:?}", clip(&b))))
        })
        .transpose()
}

/// `?k=v&…` of the non-empty pairs.
fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            s.append_pair(k, v);
        }
    }
    let s = s.finish();
    if s.is_empty() {
        s
    } else {
        format!("?{s}")
    }
}

/// Variant → percent, as rows (variant, percent).
fn weight_rows(w: &WeightMap) -> Vec<Value> {
    w.iter()
        .map(|(k, v)| json!({"variant": k, "percent": v}))
        .collect()
}

/// The enrichment context of a run or plan as rows: per enrichment its
/// query and either a scalar, a value per variant, or the error; then links.
fn context_view(ctx: Option<&Value>) -> Value {
    let Some(obj) = ctx.and_then(Value::as_object) else {
        return Value::Null;
    };
    let mut enrichments = Vec::new();
    let mut links = Vec::new();
    for (name, v) in obj {
        if name == "links" {
            for (kind, url) in v.as_object().into_iter().flatten() {
                let url = url.as_str().unwrap_or("");
                links.push(json!({"kind": kind, "url": url, "href": safe_url(url)}));
            }
            continue;
        }
        let query = v.get("query").and_then(Value::as_str);
        let error = v.get("error").map(|e| match e.as_str() {
            Some(s) => s.to_owned(),
            None => e.to_string(),
        });
        let value = v.get("value");
        let variants: Vec<Value> = value
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| json!({"variant": k, "value": scalar(v)}))
                    .collect()
            })
            .unwrap_or_default();
        enrichments.push(json!({
            "name": name,
            "query": query,
            "error": error,
            "variants": variants,
            "value": value.filter(|v| !v.is_object()).map(scalar),
        }));
    }
    json!({"enrichments": enrichments, "links": links})
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".to_owned(),
        Value::Number(n) => match n.as_f64() {
            // At most 4 decimals, without trailing zeros: 72.5, 0.9123.
            Some(f) if f.fract() != 0.0 => format!("{f:.4}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_owned(),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

// ---- experiments -------------------------------------------------------------

/// Experiments: weights now, the weight-over-time chart, the last decision.
#[utoipa::path(get, path = "/console/experiments", tag = "console", operation_id = "console_experiments",
    responses((status = 200, description = "The page", content_type = "text/html; charset=utf-8", body = String), super::openapi::Unauthorized, (status = 503, description = "The store cannot be read (an HTML page naming it)", content_type = "text/html; charset=utf-8", body = String)))]
async fn experiments(State(c): State<Arc<Console>>) -> Response {
    let r = experiments_page(&c).await;
    c.finish(r)
}

async fn experiments_page(c: &Console) -> Result<Response, ConsoleError> {
    let now = now_ms();
    let mut out = Vec::new();
    for (name, target) in c.targets.iter() {
        let decisions = c
            .store
            .decisions(DecisionQuery {
                target: Some(name.to_owned()),
                limit: CHART_DECISIONS,
                ..Default::default()
            })
            .await?;
        let (weights, default, last_shift, error) = match target.read().await {
            Ok(s) => (
                Some(normalise(&s.weights)),
                s.default,
                s.shifts.into_iter().next(),
                None,
            ),
            Err(e) => (None, None, None, Some(e.to_string())),
        };
        let chart = chart::build(&decisions, weights.as_ref(), now);
        out.push(json!({
            "name": name,
            "target": target.describe(),
            "weights": weights.as_ref().map(weight_rows),
            "default": default,
            "error": error,
            "last_shift": last_shift.map(|m| json!({"episode": m.episode, "at": m.at})),
            "chart": chart,
            "last": decisions.first().map(decision_view),
            "decisions": decisions.iter().take(LISTED_DECISIONS).map(decision_view).collect::<Vec<_>>(),
            "decision_count": decisions.len(),
        }));
    }
    c.render(
        "experiments.html",
        json!({"nav": "experiments", "experiments": out, "now": fmt_ms(now)}),
    )
}

/// A decision with its weights before and after, in percent, per variant.
fn decision_view(d: &TrafficDecision) -> Value {
    let before = d.before.as_ref().and_then(chart::percent);
    let after = d.after.as_ref().and_then(chart::percent);
    let mut variants: Vec<&String> = Vec::new();
    for w in [&before, &after].into_iter().flatten() {
        for k in w.keys() {
            if !variants.contains(&k) {
                variants.push(k);
            }
        }
    }
    let rows: Vec<Value> = variants
        .iter()
        .map(|v| {
            let b = before.as_ref().and_then(|w| w.get(*v)).copied();
            let a = after.as_ref().and_then(|w| w.get(*v)).copied();
            json!({
                "variant": v,
                "before": b,
                "after": a,
                "delta": b.zip(a).map(|(b, a)| format!("{:+}", i64::from(a) - i64::from(b))),
            })
        })
        .collect();
    json!({
        "id": d.id,
        "at": fmt_ms(d.at),
        "action": d.action,
        "decision": d.decision,
        "reason": d.reason,
        "episode": d.episode,
        "notification_id": d.notification_id,
        "rows": rows,
    })
}

// ---- notifications -----------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// `firing`, `resolved`, or empty for any.
    status: Option<String>,
    /// Only notifications with an alert of this name.
    alertname: Option<String>,
    /// `pending`, `done`, or empty for any.
    state: Option<String>,
    /// Only ids below this (the "Older" link).
    before: Option<String>,
}

/// The notifications, newest first, filtered.
#[utoipa::path(get, path = "/console/notifications", tag = "console", operation_id = "console_notifications",
    params(ListParams),
    responses((status = 200, description = "The page", content_type = "text/html; charset=utf-8", body = String), (status = 400, description = "A bad filter (an HTML page naming it)", content_type = "text/html; charset=utf-8", body = String), super::openapi::Unauthorized, (status = 503, description = "The store cannot be read (an HTML page naming it)", content_type = "text/html; charset=utf-8", body = String)))]
async fn notifications(
    State(c): State<Arc<Console>>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let r = notifications_page(&c, params.ok().map(|Query(p)| p)).await;
    c.finish(r)
}

async fn notifications_page(
    c: &Console,
    params: Option<ListParams>,
) -> Result<Response, ConsoleError> {
    let p = params.ok_or_else(|| ConsoleError::BadRequest("malformed query string".into()))?;
    let status = non_empty(p.status);
    let state = non_empty(p.state);
    let alertname = non_empty(p.alertname);
    if let Some(s) = status
        .as_deref()
        .filter(|s| !matches!(*s, "firing" | "resolved"))
    {
        return Err(ConsoleError::BadRequest(format!(
            "status: must be firing or resolved, got {:?}",
            clip(s)
        )));
    }
    if let Some(s) = state
        .as_deref()
        .filter(|s| !matches!(*s, "pending" | "done"))
    {
        return Err(ConsoleError::BadRequest(format!(
            "state: must be pending or done, got {:?}",
            clip(s)
        )));
    }
    let before = parse_before(p.before)?;
    let rows = c
        .store
        .list(ListQuery {
            limit: PAGE,
            before,
            status: status.clone(),
            alertname: alertname.clone(),
            state: state.clone(),
        })
        .await?;
    let next = (rows.len() == PAGE as usize)
        .then(|| rows.last().map(|r| r.id))
        .flatten()
        .map(|id| {
            let id = id.to_string();
            query_string(&[
                ("status", status.as_deref()),
                ("alertname", alertname.as_deref()),
                ("state", state.as_deref()),
                ("before", Some(&id)),
            ])
        });
    let rows: Vec<Value> = rows
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "received_at": fmt_ms(n.received_at),
                "receiver": n.receiver,
                "status": n.status,
                "alertnames": n.alertnames,
                "alerts": n.alerts,
                "state": n.state,
                "round": n.round,
                "duplicates": n.duplicates,
            })
        })
        .collect();
    c.render(
        "notifications.html",
        json!({
            "nav": "notifications",
            "rows": rows,
            "filter": {"status": status, "alertname": alertname, "state": state},
            "filtered": before.is_some(),
            "next": next,
        }),
    )
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DetailParams {
    /// The round a replay just started (announced on the page).
    replayed: Option<i64>,
}

/// One notification: alerts, action runs per round, enrichment context.
#[utoipa::path(get, path = "/console/notifications/{id}", tag = "console", operation_id = "console_notification",
    params(("id" = i64, Path, description = "The notification's id"), DetailParams),
    responses((status = 200, description = "The page", content_type = "text/html; charset=utf-8", body = String), (status = 400, description = "Not an id (an HTML page naming it)", content_type = "text/html; charset=utf-8", body = String), super::openapi::Unauthorized, (status = 404, description = "No such notification (an HTML page naming it)", content_type = "text/html; charset=utf-8", body = String), (status = 503, description = "The store cannot be read (an HTML page naming it)", content_type = "text/html; charset=utf-8", body = String)))]
async fn notification(
    State(c): State<Arc<Console>>,
    Path(id): Path<String>,
    params: Result<Query<DetailParams>, QueryRejection>,
) -> Response {
    let replayed = params.ok().and_then(|Query(p)| p.replayed);
    let r = notification_page(&c, &id, replayed).await;
    c.finish(r)
}

async fn notification_page(
    c: &Console,
    id: &str,
    replayed: Option<i64>,
) -> Result<Response, ConsoleError> {
    let id = parse_id(id)?;
    let detail = c
        .store
        .get(id)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("no notification with id {id}")))?;
    // The payload was validated when it arrived; parsing it again computes
    // the fingerprints the runs are keyed by.
    let parsed = serde_json::to_vec(&detail.payload)
        .ok()
        .and_then(|b| ingest::parse(&b, usize::MAX).ok())
        .map(|a| a.notification);
    let mut alertname_of: BTreeMap<String, String> = BTreeMap::new();
    let alerts: Vec<Value> = parsed
        .iter()
        .flat_map(|n| n.alerts.iter())
        .map(|a| {
            alertname_of.insert(a.fingerprint.clone(), a.alertname().to_owned());
            let ends = (a.ends_at != ingest::zero_time()).then(|| a.ends_at.to_rfc3339());
            json!({
                "fingerprint": a.fingerprint,
                "alertname": a.alertname(),
                "status": a.status.as_str(),
                "labels": a.labels.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
                "annotations": a.annotations.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
                "starts_at": a.starts_at.to_rfc3339(),
                "ends_at": ends,
                "generator_url": safe_url(&a.generator_url),
            })
        })
        .collect();
    let mut rounds: BTreeMap<i64, BTreeMap<String, Vec<Value>>> = BTreeMap::new();
    // The latest round is shown even before the worker created its runs
    // (right after a replay).
    rounds.entry(detail.summary.round).or_default();
    for run in &detail.action_runs {
        rounds
            .entry(run.round)
            .or_default()
            .entry(run.fingerprint.clone())
            .or_default()
            .push(run_view(run));
    }
    let rounds: Vec<Value> = rounds
        .into_iter()
        .rev()
        .map(|(round, groups)| {
            json!({
                "round": round,
                "latest": round == detail.summary.round,
                "groups": groups.into_iter().map(|(fp, runs)| json!({
                    "fingerprint": fp,
                    "scope": if fp == NOTIFICATION_RUN { "notification" } else { "alert" },
                    "alertname": alertname_of.get(&fp),
                    "runs": runs,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let s = &detail.summary;
    c.render(
        "notification.html",
        json!({
            "nav": "notifications",
            "n": {
                "id": s.id,
                "received_at": fmt_ms(s.received_at),
                "processed_at": fmt_opt(s.processed_at),
                "receiver": s.receiver,
                "status": s.status,
                "group_key": s.group_key,
                "alertnames": s.alertnames,
                "state": s.state,
                "round": s.round,
                "duplicates": s.duplicates,
            },
            "alerts": alerts,
            "rounds": rounds,
            "replayed": replayed,
            "payload": pretty(&detail.payload),
        }),
    )
}

fn run_view(r: &ActionRun) -> Value {
    json!({
        "id": r.id,
        "action": r.action,
        "type": r.action_type,
        "status": serde_json::to_value(r.status).unwrap_or(Value::Null),
        "attempts": r.attempts,
        "last_error": r.last_error,
        "first_attempt_at": fmt_opt(r.first_attempt_at),
        "last_attempt_at": fmt_opt(r.last_attempt_at),
        "finished_at": fmt_opt(r.finished_at),
        "next_attempt_at": fmt_opt(r.next_attempt_at),
        "duration_ms": r.duration_ms,
        "result": r.result.as_ref().map(pretty),
        "context": context_view(r.context.as_ref()),
    })
}

// ---- replay ------------------------------------------------------------------

/// The dry-run plan of a replay, and the confirmation form.
#[utoipa::path(get, path = "/console/notifications/{id}/replay", tag = "console", operation_id = "console_replay_preview",
    params(("id" = i64, Path, description = "The notification's id")),
    responses((status = 200, description = "The preview", content_type = "text/html; charset=utf-8", body = String), (status = 400, description = "Not an id (an HTML page naming it)", content_type = "text/html; charset=utf-8", body = String), super::openapi::Unauthorized, (status = 404, description = "No such notification (an HTML page naming it)", content_type = "text/html; charset=utf-8", body = String), (status = 503, description = "The store cannot be read (an HTML page naming it)", content_type = "text/html; charset=utf-8", body = String)))]
async fn replay_preview(
    State(c): State<Arc<Console>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let r = replay_preview_page(&c, &id, &headers).await;
    c.finish(r)
}

async fn replay_preview_page(
    c: &Console,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response, ConsoleError> {
    let id = parse_id(id)?;
    let detail = c
        .store
        .get(id)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("no notification with id {id}")))?;
    let payload = serde_json::to_vec(&detail.payload)
        .map_err(|e| ConsoleError::Internal(format!("payload of {id}: {e}")))?;
    let accepted = ingest::parse(&payload, usize::MAX)
        .map_err(|e| ConsoleError::Internal(format!("payload of {id}: {e}")))?;
    let plan = c.planner.dry_run(accepted.notification).await;
    let alerts: Vec<Value> = plan["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            json!({
                "fingerprint": a["fingerprint"],
                "alertname": a["labels"]["alertname"],
                "status": a["status"],
                "routes": a["routes"],
                "actions": a["actions"],
                "context": context_view(a.get("context")),
                "effects": a["effects"].as_object().into_iter().flatten()
                    .map(|(k, v)| json!({"action": k, "plan": pretty(v)}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let messages: Vec<Value> = plan["notification_actions"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| json!({"action": k, "plan": pretty(v)}))
        .collect();
    let token = c.csrf.token(&identity(headers), now_ms() / 1000);
    c.render(
        "replay.html",
        json!({
            "nav": "notifications",
            "n": {
                "id": detail.summary.id,
                "alertnames": detail.summary.alertnames,
                "status": detail.summary.status,
                "round": detail.summary.round,
                "state": detail.summary.state,
            },
            "alerts": alerts,
            "messages": messages,
            "truncated": plan.get("truncated"),
            "token": token,
        }),
    )
}

/// Replays the notification (the confirmation form's target).
#[utoipa::path(post, path = "/console/notifications/{id}/replay", tag = "console", operation_id = "console_replay",
    params(("id" = i64, Path, description = "The notification's id")),
    request_body(content = ReplayForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Replayed: to the notification's page, the new round announced", headers(("Location" = String))),
        (status = 400, description = "Not an id (an HTML page naming it)", content_type = "text/html; charset=utf-8", body = String), super::openapi::Unauthorized,
        (status = 403, description = "Read-only console, a cross-site request, or a missing/expired form token (an HTML page naming it)", content_type = "text/html; charset=utf-8", body = String), (status = 404, description = "No such notification (an HTML page naming it)", content_type = "text/html; charset=utf-8", body = String), (status = 503, description = "The store cannot commit (an HTML page naming it)", content_type = "text/html; charset=utf-8", body = String)))]
async fn replay(
    State(c): State<Arc<Console>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = replay_inner(&c, &id, &headers, &body).await;
    c.finish(r)
}

async fn replay_inner(
    c: &Console,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ConsoleError> {
    if c.read_only {
        return Err(ConsoleError::Forbidden(
            "the console is read-only (ui.read_only: true): replay with the API".into(),
        ));
    }
    csrf::same_origin(headers).map_err(ConsoleError::Forbidden)?;
    let token = url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if !c.csrf.verify(&token, &identity(headers), now_ms() / 1000) {
        return Err(ConsoleError::Forbidden(
            "the form has expired or did not come from this console: open the replay page again"
                .into(),
        ));
    }
    let id = parse_id(id)?;
    let round = c
        .store
        .replay(id, now_ms())
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("no notification with id {id}")))?;
    c.wake.notify_one();
    tracing::info!(id, round, "Notification replayed from the console");
    Ok(Redirect::to(&format!(
        "/console/notifications/{id}?replayed={round}#round-{round}"
    ))
    .into_response())
}

/// The replay confirmation form.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a documentation shape: the handler reads the form itself
pub struct ReplayForm {
    /// The token of the preview page's form.
    csrf: String,
}

// ---- dead letters ------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeadParams {
    /// Only run ids below this (the "Older" link).
    before: Option<String>,
}

/// Dead letters, each with Replay.
#[utoipa::path(get, path = "/console/dead-letters", tag = "console", operation_id = "console_dead_letters",
    params(DeadParams),
    responses((status = 200, description = "The page", content_type = "text/html; charset=utf-8", body = String), (status = 400, description = "A bad cursor (an HTML page naming it)", content_type = "text/html; charset=utf-8", body = String), super::openapi::Unauthorized, (status = 503, description = "The store cannot be read (an HTML page naming it)", content_type = "text/html; charset=utf-8", body = String)))]
async fn dead_letters(
    State(c): State<Arc<Console>>,
    params: Result<Query<DeadParams>, QueryRejection>,
) -> Response {
    let r = dead_letters_page(&c, params.ok().map(|Query(p)| p)).await;
    c.finish(r)
}

async fn dead_letters_page(
    c: &Console,
    params: Option<DeadParams>,
) -> Result<Response, ConsoleError> {
    let p = params.ok_or_else(|| ConsoleError::BadRequest("malformed query string".into()))?;
    let before = parse_before(p.before)?;
    let rows = c
        .store
        .dead_letters(DeadLetterQuery {
            limit: PAGE,
            before,
        })
        .await?;
    let next = (rows.len() == PAGE as usize)
        .then(|| rows.last().map(|r| r.run.id))
        .flatten();
    let rows: Vec<Value> = rows
        .iter()
        .map(|d| {
            json!({
                "notification_id": d.notification_id,
                "alertnames": d.alertnames,
                "notification_status": d.notification_status,
                "receiver": d.receiver,
                "run": run_view(&d.run),
                "round": d.run.round,
            })
        })
        .collect();
    c.render(
        "dead_letters.html",
        json!({"nav": "dead_letters", "rows": rows, "next": next, "paged": before.is_some()}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        templates().unwrap();
    }

    #[test]
    fn only_http_urls_become_links() {
        assert!(safe_url("https://grafana/d/x").is_some());
        assert!(safe_url("HTTP://x").is_some());
        assert!(safe_url("javascript:alert(1)").is_none());
        assert!(safe_url(" javascript:alert(1)").is_none());
        assert!(safe_url("data:text/html,x").is_none());
    }

    #[test]
    fn context_rows_show_values_per_variant_and_errors() {
        let v = context_view(Some(&json!({
            "accuracy": {"query": "q1", "value": {"a": 0.91234567, "b": 0.5}},
            "traffic": {"query": "q2", "value": 12},
            "broken": {"query": "q3", "error": "timeout"},
            "links": {"grafana": "https://g/x", "evil": "javascript:x"},
        })));
        let e = v["enrichments"].as_array().unwrap();
        let acc = e.iter().find(|e| e["name"] == "accuracy").unwrap();
        assert_eq!(
            acc["variants"][0],
            json!({"variant": "a", "value": "0.9123"})
        );
        let t = e.iter().find(|e| e["name"] == "traffic").unwrap();
        assert_eq!(t["value"], "12");
        let b = e.iter().find(|e| e["name"] == "broken").unwrap();
        assert_eq!(b["error"], "timeout");
        let links = v["links"].as_array().unwrap();
        assert!(links
            .iter()
            .any(|l| l["kind"] == "evil" && l["href"].is_null()));
    }

    #[test]
    fn alert_values_are_escaped_in_every_page() {
        let env = templates().unwrap();
        let evil = "<script>alert(1)</script>";
        let html = env
            .get_template("notifications.html")
            .unwrap()
            .render(minijinja::value::Serde(json!({
                "rows": [{"id": 1, "received_at": "t", "receiver": evil, "status": "firing",
                          "alertnames": [evil], "alerts": 1, "state": "done", "round": 0, "duplicates": 0}],
                "filter": {"alertname": evil},
            })))
            .unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
    }
}

//! `GET /api/v1/openapi.json`: the API's OpenAPI 3.1 document, generated at
//! compile time by utoipa from the handlers' `#[utoipa::path]` annotations,
//! their query structs (`IntoParams`) and the answer shapes below.
//!
//! The handlers answer `serde_json::Value`s built from the store's types, so
//! the shapes here are the documented contract; two checks keep them honest:
//! the unit test at the bottom serialises the store's real types and compares
//! their fields with these schemas, and `scripts/test-console.sh` runs
//! schemathesis against a live router (every answer must match the document).

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::collections::BTreeMap;
use std::sync::LazyLock;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

/// The document, built once: it only depends on the code.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    // Serialising a tree of plain maps, strings and numbers cannot fail.
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialise the OpenAPI document: {e}\"}}"))
});

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/api/v1/openapi.json", get(openapi_json))
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    operation_id = "openapi",
    responses(
        (status = 200, description = "This document", content_type = "application/json", body = Object),
        Unauthorized,
    )
)]
async fn openapi_json() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mlops-alert-router",
        description = "Receives Alertmanager webhooks, stores them durably, routes, enriches and acts \
(chat, webhooks, traffic shifts on Seldon/Istio/file targets).\n\n\
Every error is JSON `{\"error\": \"...\"}`, including 404 for a path no route serves and 405 \
(with `Allow`) for a method a path does not serve. Credentials (`auth.bearer_tokens`, \
`auth.basic_users`) are required on every `/api/v1` route when any is configured; `/healthz` and \
`/readyz` are always open, `/metrics` only with `auth.protect_metrics: true`.\n\n\
The status-code promise to Alertmanager (`POST /api/v1/alerts`): 200 means stored on disk; \
Alertmanager retries only 5xx, so every 4xx is final and nothing is stored for it; 503 (store \
cannot commit, inbox full) carries `Retry-After`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::alerts::receive,
        super::notifications::list,
        super::notifications::detail,
        super::notifications::replay,
        super::traffic::traffic,
        super::dead_letters::list,
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
        openapi_json,
        super::console::home,
        super::console::css,
        super::console::experiments,
        super::console::notifications,
        super::console::notification,
        super::console::replay_preview,
        super::console::replay,
        super::console::dead_letters,
    ),
    components(
        schemas(ErrorBody),
        responses(NotFoundResponse, MethodNotAllowedResponse),
    ),
    modifiers(&Security),
    security(("bearer" = []), ("basic" = [])),
    tags(
        (name = "alerts", description = "The Alertmanager webhook"),
        (name = "notifications", description = "Stored notifications, their action runs, replays"),
        (name = "traffic", description = "Traffic targets (A/B weights) and the decisions taken on them"),
        (name = "health", description = "Liveness, readiness, metrics"),
        (name = "meta", description = "This document"),
        (name = "console", description = "The web console's pages (HTML, `ui.enabled`); its one form replays a notification"),
    )
)]
pub struct ApiDoc;

/// The two ways to authenticate.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

// ---- errors -----------------------------------------------------------------

/// `{"error": "..."}`: every error the API answers.
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)] // a documentation shape: the handlers answer `json!({"error": …})`
pub struct ErrorBody {
    /// What is wrong, naming the field or parameter; never a secret.
    error: String,
}

/// 400: the request can never succeed as sent (malformed JSON with line and
/// column, a bad query parameter or path id).
#[derive(IntoResponses)]
#[response(status = 400)]
#[allow(dead_code)]
pub struct BadRequest(ErrorBody);

/// 401: missing or wrong credentials; `WWW-Authenticate` names the schemes
/// (`Bearer`, and `Basic` when basic users are configured).
#[derive(IntoResponses)]
#[response(status = 401, headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"mlops-alert-router\"`, and a `Basic` challenge when basic users are configured")))]
#[allow(dead_code)]
pub struct Unauthorized(ErrorBody);

/// 404: no such notification.
#[derive(IntoResponses)]
#[response(status = 404)]
#[allow(dead_code)]
pub struct NotFound(ErrorBody);

/// 408: the body did not arrive within `server.body_read_timeout` after the
/// head; the connection is closed. Alertmanager does not retry it.
#[derive(IntoResponses)]
#[response(status = 408, headers(("Connection" = String, description = "`close`")))]
#[allow(dead_code)]
pub struct RequestTimeout(ErrorBody);

/// 413: body over `ingest.max_body_bytes`, or more alerts than
/// `ingest.max_alerts`. A declared `Content-Length` over the limit is refused
/// before the body is read (no "100 Continue").
#[derive(IntoResponses)]
#[response(status = 413)]
#[allow(dead_code)]
pub struct TooLarge(ErrorBody);

/// 422: JSON, but not an Alertmanager v4 notification; the error names the
/// field (`version: expected "4"…`, `alerts[3].startsAt: not an RFC 3339
/// timestamp…`).
#[derive(IntoResponses)]
#[response(status = 422)]
#[allow(dead_code)]
pub struct Unprocessable(ErrorBody);

/// 503: the store cannot commit right now (lock, full or failing disk), or
/// more than `ingest.max_inbox` notifications wait. Try again after
/// `Retry-After` seconds; never 429.
#[derive(IntoResponses)]
#[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait: 30 when the inbox is full, else 5")))]
#[allow(dead_code)]
pub struct Unavailable(ErrorBody);

/// 404 for a path no route serves (any path not in this document).
#[derive(utoipa::ToResponse)]
#[response(
    description = "No route serves this path",
    content_type = "application/json"
)]
#[allow(dead_code)]
pub struct NotFoundResponse(ErrorBody);

/// 405 for a method a documented path does not serve; `Allow` lists those it does.
#[derive(utoipa::ToResponse)]
#[response(
    description = "The path exists, the method does not; `Allow` lists the methods it serves",
    content_type = "application/json"
)]
#[allow(dead_code)]
pub struct MethodNotAllowedResponse(ErrorBody);

// ---- shapes of the answers ---------------------------------------------------
//
// Documentation shapes: the handlers serialise the store's types (see the
// test at the bottom), never these.
#[allow(dead_code)]
mod shapes {
    use super::*;
    use serde::Serialize;
    use serde_json::Value;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;

    /// `firing` or `resolved`.
    #[derive(ToSchema, Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Status {
        Firing,
        Resolved,
    }

    /// `pending` until every action run of the latest round is final, then `done`.
    #[derive(ToSchema, Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum NotificationState {
        Pending,
        Done,
    }

    /// `pending` (not attempted yet, or waiting for a retry), `succeeded`, or
    /// `dead` (gave up: permanent error, or out of attempts).
    #[derive(ToSchema, Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum RunStatus {
        Pending,
        Succeeded,
        Dead,
    }

    /// The webhook payload version Alertmanager sends.
    #[derive(ToSchema, Serialize)]
    pub enum WebhookVersion {
        #[serde(rename = "4")]
        V4,
    }

    /// One alert of an Alertmanager webhook notification.
    #[derive(ToSchema, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct WebhookAlert {
        pub status: Status,
        #[schema(value_type = Labels)]
        pub labels: BTreeMap<String, String>,
        #[schema(value_type = Option<Labels>, nullable = false)]
        pub annotations: Option<BTreeMap<String, String>>,
        #[schema(format = DateTime)]
        pub starts_at: String,
        /// `0001-01-01T00:00:00Z` while firing.
        #[schema(format = DateTime, nullable = false)]
        pub ends_at: Option<String>,
        #[serde(rename = "generatorURL")]
        #[schema(nullable = false)]
        pub generator_url: Option<String>,
        /// Computed from the labels (as Alertmanager does) when missing.
        #[schema(nullable = false)]
        pub fingerprint: Option<String>,
    }

    /// Alertmanager's webhook notification, payload version 4. Unknown fields
    /// are accepted; optional fields may be missing (not null).
    #[derive(ToSchema, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct WebhookNotification {
        pub version: WebhookVersion,
        pub receiver: String,
        pub status: Status,
        pub group_key: String,
        #[schema(min_items = 1)]
        pub alerts: Vec<WebhookAlert>,
        #[schema(value_type = Option<Labels>, nullable = false)]
        pub group_labels: Option<BTreeMap<String, String>>,
        #[schema(value_type = Option<Labels>, nullable = false)]
        pub common_labels: Option<BTreeMap<String, String>>,
        #[schema(value_type = Option<Labels>, nullable = false)]
        pub common_annotations: Option<BTreeMap<String, String>>,
        #[serde(rename = "externalURL")]
        #[schema(nullable = false)]
        pub external_url: Option<String>,
        /// Alerts Alertmanager left out (`max_alerts` on its receiver).
        #[schema(nullable = false)]
        pub truncated_alerts: Option<u64>,
    }

    /// Label (or annotation) name → value. Names may be any UTF-8 but empty
    /// or with NUL.
    pub struct Labels;

    impl utoipa::PartialSchema for Labels {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
                .property_names(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .pattern(Some("^[^\\u0000]+$")),
                ))
                .into()
        }
    }

    impl ToSchema for Labels {}

    /// The notification is on disk (committed before this answer).
    #[derive(ToSchema, Serialize)]
    pub struct Stored {
        pub id: i64,
        pub alerts: u64,
        /// True when the same notification arrived within `ingest.dedup_window`
        /// (Alertmanager's retry, an HA peer's copy): stored and processed once.
        pub duplicate: bool,
    }

    /// What one alert would go through: matched routes, actions, the
    /// enrichment context (each rendered query with its value or error) and
    /// what each alert-scoped action would do.
    #[derive(ToSchema, Serialize)]
    pub struct PlannedAlert {
        pub fingerprint: String,
        pub status: Status,
        pub labels: BTreeMap<String, String>,
        /// Config paths of the matched routes, in match order.
        pub routes: Vec<String>,
        pub actions: Vec<String>,
        pub context: Value,
        /// Action name → what it would do (a traffic shift: the decision and
        /// the exact change; a log action: the line).
        pub effects: BTreeMap<String, Value>,
    }

    /// The dry-run plan: nothing is stored or changed.
    #[derive(ToSchema, Serialize)]
    pub struct Plan {
        pub dry_run: bool,
        pub alerts: Vec<PlannedAlert>,
        /// Notification-scoped action (chat) → what it would send.
        pub notification_actions: BTreeMap<String, Value>,
        /// Why alerts Alertmanager truncated are still missing.
        pub truncated: Option<String>,
    }

    /// The answer of `POST /api/v1/alerts`: stored, or the plan with `?dry_run=true`.
    #[derive(ToSchema, Serialize)]
    #[serde(untagged)]
    pub enum IngestAnswer {
        Stored(Stored),
        Plan(Plan),
    }

    /// A row of the notification list.
    #[derive(ToSchema, Serialize)]
    pub struct NotificationSummary {
        pub id: i64,
        #[schema(format = DateTime)]
        pub received_at: String,
        pub receiver: String,
        pub status: Status,
        pub group_key: String,
        pub alerts: u32,
        pub alertnames: Vec<String>,
        pub state: NotificationState,
        /// Redeliveries acknowledged as duplicates.
        pub duplicates: u32,
        /// 0, then +1 per replay.
        pub round: i64,
        #[schema(format = DateTime)]
        pub processed_at: Option<String>,
    }

    #[derive(ToSchema, Serialize)]
    pub struct NotificationList {
        pub notifications: Vec<NotificationSummary>,
        /// The `before` of the next (older) page; null on the last page.
        pub next_before: Option<i64>,
    }

    /// One action run: per round, per alert fingerprint (empty for a
    /// notification-scoped run such as chat), per action.
    #[derive(ToSchema, Serialize)]
    pub struct ActionRun {
        pub id: i64,
        pub round: i64,
        pub fingerprint: String,
        pub action: String,
        #[serde(rename = "type")]
        pub action_type: String,
        pub status: RunStatus,
        pub attempts: u32,
        pub last_error: Option<String>,
        #[schema(format = DateTime)]
        pub next_attempt_at: Option<String>,
        #[schema(format = DateTime)]
        pub first_attempt_at: Option<String>,
        #[schema(format = DateTime)]
        pub last_attempt_at: Option<String>,
        #[schema(format = DateTime)]
        pub finished_at: Option<String>,
        pub duration_ms: Option<i64>,
        /// What the action did (message id, decision, status code…).
        pub result: Option<Value>,
        /// The enrichment context of the last attempt.
        pub context: Option<Value>,
    }

    /// One notification: the payload as received and every action run.
    #[derive(ToSchema, Serialize)]
    pub struct NotificationDetail {
        pub id: i64,
        #[schema(format = DateTime)]
        pub received_at: String,
        pub receiver: String,
        pub status: Status,
        pub group_key: String,
        pub alerts: u32,
        pub alertnames: Vec<String>,
        pub state: NotificationState,
        pub duplicates: u32,
        pub round: i64,
        #[schema(format = DateTime)]
        pub processed_at: Option<String>,
        /// The body as received.
        pub payload: Value,
        pub action_runs: Vec<ActionRun>,
    }

    /// A replay started: a new round of action runs.
    #[derive(ToSchema, Serialize)]
    pub struct Replayed {
        pub id: i64,
        pub round: i64,
        /// Always `pending`: the worker picks it up at once.
        pub state: String,
    }

    /// A dead run in the latest round of its notification.
    #[derive(ToSchema, Serialize)]
    pub struct DeadLetter {
        pub notification_id: i64,
        pub receiver: String,
        pub group_key: String,
        pub notification_status: Status,
        pub alertnames: Vec<String>,
        pub id: i64,
        pub round: i64,
        pub fingerprint: String,
        pub action: String,
        #[serde(rename = "type")]
        pub action_type: String,
        pub status: RunStatus,
        pub attempts: u32,
        pub last_error: Option<String>,
        #[schema(format = DateTime)]
        pub next_attempt_at: Option<String>,
        #[schema(format = DateTime)]
        pub first_attempt_at: Option<String>,
        #[schema(format = DateTime)]
        pub last_attempt_at: Option<String>,
        #[schema(format = DateTime)]
        pub finished_at: Option<String>,
        pub duration_ms: Option<i64>,
        pub result: Option<Value>,
        /// Always null here: see the notification's detail.
        pub context: Option<Value>,
    }

    #[derive(ToSchema, Serialize)]
    pub struct DeadLetterList {
        pub dead_letters: Vec<DeadLetter>,
        /// The `before` of the next (older) page; null on the last page.
        pub next_before: Option<i64>,
    }

    /// The last shift the router applied, as recorded on the target itself.
    #[derive(ToSchema, Serialize)]
    pub struct ShiftMark {
        pub episode: String,
        pub before: BTreeMap<String, u32>,
        pub after: BTreeMap<String, u32>,
        pub at: String,
    }

    /// A traffic target now: its weights, or why they cannot be read.
    #[derive(ToSchema, Serialize)]
    pub struct TargetState {
        /// What and where, e.g. `file ./data/weights.yaml`.
        pub target: String,
        /// Variant → percent (normalised to sum to 100).
        pub weights: Option<BTreeMap<String, u32>>,
        /// The default (baseline) variant.
        pub default: Option<String>,
        pub last_shift: Option<ShiftMark>,
        /// Set instead of the weights when the target cannot be read.
        pub error: Option<String>,
    }

    /// One decision of a traffic-shift action.
    #[derive(ToSchema, Serialize)]
    pub struct TrafficDecision {
        pub id: i64,
        #[schema(format = DateTime)]
        pub at: String,
        pub action: String,
        /// The `traffic_targets` key (the experiment).
        pub target: String,
        /// (action, target, alert fingerprint, startsAt).
        pub episode: String,
        pub fingerprint: String,
        pub notification_id: i64,
        /// shifted, restored, blocked, cooldown, rate_limited, noop, deferred,
        /// failed, dry_run, held, …
        pub decision: String,
        /// Weights before (variant → weight).
        pub before: Option<Value>,
        /// Weights after (variant → weight).
        pub after: Option<Value>,
        pub reason: String,
    }

    #[derive(ToSchema, Serialize)]
    pub struct Traffic {
        /// Experiment (`traffic_targets` key) → its target now.
        pub targets: BTreeMap<String, TargetState>,
        /// Newest first.
        pub decisions: Vec<TrafficDecision>,
    }

    /// `{"status": "ok"}` / `{"status": "ready"}`.
    #[derive(ToSchema, Serialize)]
    pub struct Health {
        pub status: String,
    }
}

pub use shapes::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store;
    use serde_json::{json, Value};
    use std::collections::BTreeSet;

    fn doc() -> Value {
        serde_json::from_str(&DOCUMENT).unwrap()
    }

    fn properties(doc: &Value, schema: &str) -> BTreeSet<String> {
        doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no schema {schema}"))
            .keys()
            .cloned()
            .collect()
    }

    fn keys(v: &impl serde::Serialize) -> BTreeSet<String> {
        serde_json::to_value(v)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    fn run() -> store::ActionRun {
        store::ActionRun {
            id: 1,
            round: 0,
            fingerprint: "f".into(),
            action: "a".into(),
            action_type: "log".into(),
            status: store::RunStatus::Dead,
            attempts: 1,
            last_error: None,
            next_attempt_at: None,
            first_attempt_at: Some(0),
            last_attempt_at: None,
            finished_at: None,
            duration_ms: None,
            result: None,
            context: None,
        }
    }

    fn summary() -> store::NotificationSummary {
        store::NotificationSummary {
            id: 1,
            received_at: 0,
            receiver: "r".into(),
            status: "firing".into(),
            group_key: "g".into(),
            alerts: 1,
            alertnames: vec![],
            state: "done".into(),
            duplicates: 0,
            round: 0,
            processed_at: None,
        }
    }

    /// A field added to (or removed from) a store type the API serialises
    /// must be documented (or dropped) here too.
    #[test]
    fn documented_shapes_have_exactly_the_fields_the_store_types_serialise() {
        let doc = doc();
        assert_eq!(keys(&run()), properties(&doc, "ActionRun"));
        assert_eq!(keys(&summary()), properties(&doc, "NotificationSummary"));
        let detail = store::NotificationDetail {
            summary: summary(),
            payload: json!({}),
            action_runs: vec![],
        };
        assert_eq!(keys(&detail), properties(&doc, "NotificationDetail"));
        let dead = store::DeadLetter {
            notification_id: 1,
            receiver: "r".into(),
            group_key: "g".into(),
            notification_status: "firing".into(),
            alertnames: vec![],
            run: run(),
        };
        assert_eq!(keys(&dead), properties(&doc, "DeadLetter"));
        let decision = store::TrafficDecision {
            id: 1,
            at: 0,
            action: "a".into(),
            target: "t".into(),
            episode: "e".into(),
            fingerprint: "f".into(),
            notification_id: 1,
            decision: "noop".into(),
            before: None,
            after: None,
            reason: "r".into(),
        };
        assert_eq!(keys(&decision), properties(&doc, "TrafficDecision"));
        let mark = crate::act::traffic::target::ShiftMark {
            episode: "e".into(),
            before: Default::default(),
            after: Default::default(),
            at: "t".into(),
        };
        assert_eq!(keys(&mark), properties(&doc, "ShiftMark"));
    }

    #[test]
    fn every_route_is_documented_with_the_error_contract() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let expected = [
            ("/api/v1/alerts", "post"),
            ("/api/v1/notifications", "get"),
            ("/api/v1/notifications/{id}", "get"),
            ("/api/v1/notifications/{id}/replay", "post"),
            ("/console/notifications/{id}/replay", "post"),
            ("/api/v1/traffic", "get"),
            ("/api/v1/dead-letters", "get"),
            ("/api/v1/openapi.json", "get"),
            ("/console", "get"),
            ("/console/console.css", "get"),
            ("/console/experiments", "get"),
            ("/console/notifications", "get"),
            ("/console/notifications/{id}", "get"),
            ("/console/notifications/{id}/replay", "get"),
            ("/console/dead-letters", "get"),
            ("/healthz", "get"),
            ("/readyz", "get"),
            ("/metrics", "get"),
        ];
        let distinct: BTreeSet<&str> = expected.iter().map(|(p, _)| *p).collect();
        assert_eq!(paths.len(), distinct.len(), "{:?}", paths.keys());
        for (path, method) in expected {
            let op = &paths[path][method];
            assert!(op.is_object(), "{method} {path} is not documented");
            let responses = op["responses"].as_object().unwrap();
            if path.starts_with("/api/v1") || path.starts_with("/console") {
                assert!(responses.contains_key("401"), "{path}: no 401");
            }
        }
        let alerts = &paths["/api/v1/alerts"]["post"]["responses"];
        for code in ["200", "400", "401", "408", "413", "422", "503"] {
            assert!(alerts.get(code).is_some(), "POST /api/v1/alerts: no {code}");
        }
        assert!(alerts["503"]["headers"]["Retry-After"].is_object());
        assert!(alerts["401"]["headers"]["WWW-Authenticate"].is_object());
        // Open routes say so.
        assert_eq!(paths["/healthz"]["get"]["security"], json!([{}]));
    }
}

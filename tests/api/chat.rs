//! Chat and webhook actions against wiremock: the JSON each platform
//! documents, delivery semantics (2xx only, 429 + Retry-After, 5xx, timeouts,
//! permanent 4xx → dead letter), size limits, templates, and secrets that
//! never leak.

use crate::helpers::*;
use mlops_alert_router::settings::Settings;
use mlops_alert_router::worker::Outcome;
use serde_json::{json, Value};
use std::time::Duration;
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// Settings whose route sends every alert to the one action `chat`, configured by `yaml`.
fn settings_with(dir: &std::path::Path, yaml: &str) -> Settings {
    let mut s = test_settings(dir);
    s.worker.enabled = false;
    s.actions.insert(
        "chat".into(),
        serde_yaml::from_str(yaml).expect("action yaml"),
    );
    s.route = serde_yaml::from_str("{actions: [chat]}").unwrap();
    s
}

async fn chat_app(yaml: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(settings_with(dir.path(), yaml)).await;
    (app, dir)
}

async fn chat_run(app: &TestApp, id: i64) -> Value {
    let mut chat = app.action_runs(id, "chat").await;
    assert_eq!(chat.len(), 1, "one run per notification: {chat:#?}");
    chat.remove(0)
}

fn body_of(r: &Request) -> Value {
    serde_json::from_slice(&r.body).expect("JSON body")
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap_or_default()
}

/// Makes every waiting retry due now (the wall clock cannot be advanced).
fn make_due(app: &TestApp) {
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    conn.execute_batch(
        "UPDATE action_runs SET next_attempt_at = 0 WHERE status = 'pending';
         UPDATE notifications SET next_attempt_at = 0 WHERE state = 'pending';",
    )
    .unwrap();
}

fn ms(t: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

// ---------------------------------------------------------------- platforms

#[tokio::test]
async fn slack_webhook_gets_block_kit_in_a_severity_coloured_attachment() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T1/B1/x"))
        .and(header("content-type", "application/json; charset=utf-8"))
        .and(body_partial_json(
            json!({"attachments": [{"color": "#E01E5A"}]}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&server)
        .await;
    let (app, _dir) = chat_app(&format!(
        "{{type: slack, url: '{}/services/T1/B1/x'}}",
        server.uri()
    ))
    .await;
    let id = app
        .post(fixture("accuracy-firing-both-variants.json"))
        .await;
    app.drain().await;

    let run = chat_run(&app, id).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["type"], "slack");
    assert_eq!(run["result"]["alerts"], 2);
    let body = body_of(&requests(&server).await[0]);
    assert_eq!(
        body["text"],
        "🔴 FIRING: ModelAccuracyDegraded · financial-ab-test-experiment"
    );
    let blocks = body["attachments"][0]["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    let sections: Vec<&str> = blocks
        .iter()
        .filter(|b| b["type"] == "section")
        .map(|b| {
            assert_eq!(b["text"]["type"], "mrkdwn");
            b["text"]["text"].as_str().unwrap()
        })
        .collect();
    let all = sections.join("\n");
    assert!(
        all.contains(
            "2 firing · severity critical · variants baseline-predictor, enhanced-predictor"
        ),
        "{all}"
    );
    assert!(
        all.contains("*ModelAccuracyDegraded* · enhanced-predictor · critical"),
        "{all}"
    );
    assert!(
        all.contains("Model accuracy degraded for baseline-predictor"),
        "{all}"
    );
    // `&` is an entity in mrkdwn, URLs included.
    assert!(
        all.contains(
            "<http://vm:19190/graph?g0.expr=ab_test_model_accuracy+%3C+55&amp;g0.tab=1|Graph>"
        ),
        "{all}"
    );
    app.stop().await;
}

#[tokio::test]
async fn slack_bot_updates_the_groups_message_and_replies_in_its_thread_when_resolved() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(header("authorization", "Bearer xoxb-test-token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "channel": "C0123", "ts": "1700000000.000100"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.update"))
        .and(header("authorization", "Bearer xoxb-test-token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "channel": "C0123", "ts": "1700000000.000100"})),
        )
        .mount(&server)
        .await;
    let (app, _dir) = chat_app(&format!(
        "{{type: slack, token: xoxb-test-token, channel: '#ml-alerts', api_url: '{}/api'}}",
        server.uri()
    ))
    .await;

    let firing = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    let run = chat_run(&app, firing).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["result"]["posted"], "1700000000.000100");

    let resolved = app.post(fixture("accuracy-resolved.json")).await;
    app.drain().await;
    let run = chat_run(&app, resolved).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["result"]["updated"], "1700000000.000100");

    let calls: Vec<(String, Value)> = requests(&server)
        .await
        .iter()
        .map(|r| (r.url.path().to_owned(), body_of(r)))
        .collect();
    let paths: Vec<&str> = calls.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/chat.postMessage",
            "/api/chat.update",
            "/api/chat.postMessage"
        ]
    );
    assert_eq!(calls[0].1["channel"], "#ml-alerts");
    assert!(calls[0].1.get("thread_ts").is_none());
    // The update names the channel id Slack answered with, and the message's ts.
    assert_eq!(calls[1].1["channel"], "C0123");
    assert_eq!(calls[1].1["ts"], "1700000000.000100");
    assert_eq!(calls[1].1["attachments"][0]["color"], "#2EB67D");
    assert_eq!(calls[2].1["thread_ts"], "1700000000.000100");
    assert!(calls[2].1["text"]
        .as_str()
        .unwrap()
        .starts_with("🟢 RESOLVED"));

    // Resolved closed it: the next firing of the group starts a new message.
    let mut again = fixture_json("accuracy-firing.json");
    again["alerts"][0]["startsAt"] = json!("2026-11-27T03:00:00Z");
    app.post(again.to_string()).await;
    app.drain().await;
    let last = requests(&server).await.pop().unwrap();
    assert_eq!(last.url.path(), "/api/chat.postMessage");
    assert!(body_of(&last).get("thread_ts").is_none());
    app.stop().await;
}

#[tokio::test]
async fn a_slack_api_error_is_permanent_unless_slack_says_retry() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": false, "error": "channel_not_found"})),
        )
        .mount(&server)
        .await;
    let (app, _dir) = chat_app(&format!(
        "{{type: slack, token: xoxb-t, channel: C404, api_url: '{}/api'}}",
        server.uri()
    ))
    .await;
    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    let run = chat_run(&app, id).await;
    assert_eq!(run["status"], "dead");
    assert_eq!(run["attempts"], 1);
    assert_eq!(
        run["last_error"],
        "Slack chat.postMessage: channel_not_found"
    );
    app.stop().await;
}

#[tokio::test]
async fn teams_gets_an_adaptive_card_and_202_is_success() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/workflows/abc/triggers/manual/paths/invoke"))
        .and(query_param("sig", "s3cr3t"))
        .and(body_partial_json(json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {"type": "AdaptiveCard", "version": "1.4"},
            }],
        })))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    let (app, _dir) = chat_app(&format!(
        "{{type: msteams, url: '{}/workflows/abc/triggers/manual/paths/invoke?sig=s3cr3t'}}",
        server.uri()
    ))
    .await;
    let id = app.post(fixture("server-down-firing.json")).await;
    app.drain().await;
    let run = chat_run(&app, id).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["result"]["status"], 202);
    let body = body_of(&requests(&server).await[0]);
    let card = &body["attachments"][0]["content"];
    assert_eq!(
        card["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    assert_eq!(card["body"][0]["type"], "Container");
    assert_eq!(card["body"][0]["style"], "attention");
    assert!(card["body"][0]["items"][0]["text"]
        .as_str()
        .unwrap()
        .contains("FIRING: ModelServerDown"));
    app.stop().await;
}

#[tokio::test]
async fn mattermost_gets_text_and_a_coloured_attachment() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/xyz"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    let (app, _dir) = chat_app(&format!(
        "{{type: mattermost, url: '{}/hooks/xyz', channel: ml-alerts, username: alert-router}}",
        server.uri()
    ))
    .await;
    let id = app.post(fixture("accuracy-partially-resolved.json")).await;
    app.drain().await;
    assert_eq!(chat_run(&app, id).await["status"], "succeeded");
    let body = body_of(&requests(&server).await[0]);
    assert_eq!(body["channel"], "ml-alerts");
    assert_eq!(body["username"], "alert-router");
    assert!(body["text"].as_str().unwrap().starts_with("**"));
    let att = &body["attachments"][0];
    assert!(att["color"].as_str().unwrap().starts_with('#'));
    assert!(att["fallback"].as_str().is_some());
    let text = att["text"].as_str().unwrap();
    assert!(text.contains("1 firing, 1 resolved"), "{text}");
    assert!(text.contains("Resolved 20"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn discord_gets_embeds_with_fields_and_pings_nobody() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/webhooks/123/tok"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let (app, _dir) = chat_app(&format!(
        "{{type: discord, url: '{}/api/webhooks/123/tok'}}",
        server.uri()
    ))
    .await;
    let id = app
        .post(fixture("accuracy-firing-both-variants.json"))
        .await;
    app.drain().await;
    assert_eq!(chat_run(&app, id).await["status"], "succeeded");
    let body = body_of(&requests(&server).await[0]);
    assert_eq!(body["allowed_mentions"], json!({"parse": []}));
    let embed = &body["embeds"][0];
    assert_eq!(embed["color"], 0xE01E5A);
    assert!(embed["title"]
        .as_str()
        .unwrap()
        .contains("ModelAccuracyDegraded"));
    let fields = embed["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 2);
    assert_eq!(fields[0]["inline"], false);
    assert!(fields[1]["name"]
        .as_str()
        .unwrap()
        .contains("enhanced-predictor"));
    app.stop().await;
}

#[tokio::test]
async fn google_chat_threads_every_notification_of_a_group_together() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/spaces/AAA/messages"))
        .and(query_param("key", "k"))
        .and(query_param("token", "t"))
        .and(query_param(
            "messageReplyOption",
            "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD",
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"name": "spaces/AAA/messages/1"})),
        )
        .expect(2)
        .mount(&server)
        .await;
    let (app, _dir) = chat_app(&format!(
        "{{type: google_chat, url: '{}/v1/spaces/AAA/messages?key=k&token=t'}}",
        server.uri()
    ))
    .await;
    app.post(fixture("accuracy-firing.json")).await;
    app.post(fixture("accuracy-resolved.json")).await;
    app.drain().await;
    let bodies: Vec<Value> = requests(&server).await.iter().map(body_of).collect();
    assert_eq!(bodies.len(), 2);
    let key = bodies[0]["thread"]["threadKey"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(key.starts_with("mlops-alert-router-"));
    assert_eq!(
        bodies[1]["thread"]["threadKey"],
        key.as_str(),
        "same group, same thread"
    );
    let card = &bodies[0]["cardsV2"][0];
    assert_eq!(card["cardId"], "alert-notification");
    assert!(card["card"]["header"]["title"]
        .as_str()
        .unwrap()
        .contains("FIRING"));
    assert!(
        card["card"]["sections"][0]["widgets"][0]["textParagraph"]["text"]
            .as_str()
            .unwrap()
            .contains("<font color=\"#E01E5A\">")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_webhook_sends_its_templated_json_with_method_and_headers() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/retrain"))
        .and(header("x-api-key", "k-123"))
        .and(header("authorization", "Bearer argo-token"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let yaml = format!(
        r#"
type: webhook
url: '{}/retrain'
method: PUT
headers: {{X-Api-Key: k-123}}
bearer_token: argo-token
template: |
  {{"experiment": {{{{ experiment }}}}, "variants": {{{{ variants | tojson }}}},
   "first": {{{{ alerts[0].summary }}}}, "status": {{{{ status }}}}}}
"#,
        server.uri()
    );
    let (app, _dir) = chat_app(&yaml).await;
    let id = app.post(fixture("latency-firing-unicode.json")).await;
    app.drain().await;
    let run = chat_run(&app, id).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let body = body_of(&requests(&server).await[0]);
    let payload = fixture_json("latency-firing-unicode.json");
    assert_eq!(body["status"], "firing");
    assert_eq!(
        body["first"],
        payload["alerts"][0]["annotations"]["summary"]
    );
    assert!(body["variants"].is_array());
    app.stop().await;
}

#[tokio::test]
async fn a_webhook_without_template_posts_the_notification_view() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let (app, _dir) = chat_app(&format!("{{type: webhook, url: '{}/hook'}}", server.uri())).await;
    app.post(fixture("accuracy-firing-both-variants.json"))
        .await;
    app.drain().await;
    let body = body_of(&requests(&server).await[0]);
    assert_eq!(body["version"], "1");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["omitted"], 0);
    assert_eq!(body["alerts"].as_array().unwrap().len(), 2);
    assert_eq!(body["alerts"][1]["variant"], "enhanced-predictor");
    assert!(body["alerts"][0]["links"]["silence"].is_string());
    app.stop().await;
}

/// A truncated group whose rest cannot be fetched (no `alertmanager.url`, or
/// Alertmanager unreachable) says how many alerts exist, on the wire.
#[tokio::test]
async fn a_truncated_group_that_cannot_be_completed_says_n_shown_of_m() {
    // A port nothing listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for alertmanager in [
        None,
        Some(format!("{{url: 'http://{closed}', timeout: 2s}}")),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .expect(1)
            .mount(&server)
            .await;
        let dir = tempfile::tempdir().unwrap();
        let mut settings = settings_with(
            dir.path(),
            &format!("{{type: slack, url: '{}/hook'}}", server.uri()),
        );
        settings.alertmanager = alertmanager
            .as_deref()
            .map(|y| serde_yaml::from_str(y).unwrap());
        let app = spawn_app_with(settings).await;
        let id = app.post(fixture("cpu-firing-truncated.json")).await;
        app.drain().await;
        let run = chat_run(&app, id).await;
        assert_eq!(run["status"], "succeeded", "{alertmanager:?}: {run:#}");
        let body = body_of(&requests(&server).await[0]).to_string();
        assert!(
            body.contains("2 firing shown of 5 — 3 more not sent by Alertmanager"),
            "{alertmanager:?}: {body}"
        );
        app.stop().await;
    }
}

// ---------------------------------------------------------------- delivery

#[tokio::test]
async fn a_429_waits_at_least_its_retry_after_then_delivers() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "120"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    let (app, _dir) = chat_app(&format!("{{type: slack, url: '{}/hook'}}", server.uri())).await;
    let id = app.post(fixture("accuracy-firing.json")).await;

    assert_eq!(
        app.worker.try_execute_task().await.unwrap(),
        Outcome::Completed
    );
    // Not due again for two minutes: nothing to do now.
    assert_eq!(app.worker.try_execute_task().await.unwrap(), Outcome::Empty);
    let run = chat_run(&app, id).await;
    assert_eq!(run["status"], "pending");
    assert_eq!(run["attempts"], 1);
    assert!(
        run["last_error"].as_str().unwrap().starts_with("HTTP 429"),
        "{run:#}"
    );
    let waited = ms(&run["next_attempt_at"]) - ms(&run["last_attempt_at"]);
    assert!(waited >= 120_000, "retry after {waited} ms: {run:#}");

    make_due(&app);
    app.drain().await;
    let run = chat_run(&app, id).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["attempts"], 2);
    assert_eq!(requests(&server).await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn three_500s_then_the_fourth_attempt_delivers() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream sad"))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let (app, _dir) = chat_app(&format!("{{type: discord, url: '{}/hook'}}", server.uri())).await;
    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    let run = chat_run(&app, id).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["attempts"], 4);
    assert_eq!(
        run["last_error"],
        format!(
            "HTTP 500 Internal Server Error (POST {}/<redacted>): upstream sad",
            server.uri()
        )
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .contains("action_runs_total{action=\"chat\",type=\"discord\",outcome=\"failed\"} 3"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let (app, _dir) = chat_app(&format!(
        "{{type: mattermost, url: '{}/hook', timeout: 200ms}}",
        server.uri()
    ))
    .await;
    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    let run = chat_run(&app, id).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["attempts"], 2);
    assert_eq!(
        run["last_error"],
        format!("no answer within 200ms (POST {}/<redacted>)", server.uri())
    );
    app.stop().await;
}

#[tokio::test]
async fn permanent_4xx_is_dead_at_once_and_listed_as_a_dead_letter() {
    for status in [400u16, 413] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_string("invalid_blocks"))
            .mount(&server)
            .await;
        let (app, _dir) = chat_app(&format!("{{type: slack, url: '{}/hook'}}", server.uri())).await;
        let id = app.post(fixture("accuracy-firing.json")).await;
        app.drain().await;
        let run = chat_run(&app, id).await;
        assert_eq!(run["status"], "dead", "{status}: {run:#}");
        assert_eq!(run["attempts"], 1, "{status}: not retried");
        assert!(run["last_error"]
            .as_str()
            .unwrap()
            .starts_with(&format!("HTTP {status}")));
        assert_eq!(requests(&server).await.len(), 1);

        let dead = app.get_json("/api/v1/dead-letters").await;
        let list = dead["dead_letters"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{dead:#}");
        assert_eq!(list[0]["notification_id"], id);
        assert_eq!(list[0]["action"], "chat");
        assert_eq!(list[0]["type"], "slack");
        assert_eq!(list[0]["status"], "dead");
        assert_eq!(list[0]["alertnames"], json!(["ModelAccuracyDegraded"]));
        let metrics = app.get("/metrics").await.text().await.unwrap();
        assert!(metrics.contains("dead_letters 1"), "{metrics}");
        assert!(metrics
            .contains("action_runs_total{action=\"chat\",type=\"slack\",outcome=\"dead\"} 1"));
        app.stop().await;
    }
}

#[tokio::test]
async fn dead_letters_are_newest_first_paginated_and_leave_once_replayed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let (app, _dir) = chat_app(&format!("{{type: msteams, url: '{}/gone'}}", server.uri())).await;
    let mut ids = Vec::new();
    for name in [
        "accuracy-firing.json",
        "server-down-firing.json",
        "latency-firing-unicode.json",
    ] {
        ids.push(app.post(fixture(name)).await);
    }
    app.drain().await;
    let page = app.get_json("/api/v1/dead-letters?limit=2").await;
    let got: Vec<i64> = page["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["notification_id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [ids[2], ids[1]]);
    let next = page["next_before"].as_i64().unwrap();
    let rest = app
        .get_json(&format!("/api/v1/dead-letters?limit=2&before={next}"))
        .await;
    assert_eq!(rest["dead_letters"][0]["notification_id"], ids[0]);
    assert!(rest["next_before"].is_null());
    assert_eq!(app.get("/api/v1/dead-letters?limit=0").await.status(), 400);

    // The webhook is back: replay sends it again, and it leaves the list.
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    let r = app
        .client
        .post(format!(
            "{}/api/v1/notifications/{}/replay",
            app.address, ids[0]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    app.drain().await;
    let after = app.get_json("/api/v1/dead-letters").await;
    assert_eq!(
        after["dead_letters"].as_array().unwrap().len(),
        2,
        "{after:#}"
    );
    assert_eq!(requests(&server).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn dead_letters_need_the_same_credentials_as_the_rest_of_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.auth.bearer_tokens = vec![mlops_alert_router::secret::Secret::new("api-token")];
    let app = spawn_app_with(settings).await;
    assert_eq!(app.get("/api/v1/dead-letters").await.status(), 401);
    let r = app
        .client
        .get(format!("{}/api/v1/dead-letters", app.address))
        .bearer_auth("api-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn an_actions_own_max_attempts_and_max_age_win_over_the_workers() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let (app, _dir) = chat_app(&format!(
        "{{type: slack, url: '{}/hook', max_attempts: 2}}",
        server.uri()
    ))
    .await;
    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    let run = chat_run(&app, id).await;
    assert_eq!(run["status"], "dead");
    assert_eq!(run["attempts"], 2);
    assert_eq!(
        run["last_error"],
        format!(
            "gave up after 2 attempts: HTTP 503 Service Unavailable (POST {}/<redacted>)",
            server.uri()
        )
    );
    app.stop().await;

    // A Retry-After beyond max_age: the retry would be too late, so it is dead now.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3600"))
        .mount(&server)
        .await;
    let (app, _dir) = chat_app(&format!(
        "{{type: slack, url: '{}/hook', max_age: 10m}}",
        server.uri()
    ))
    .await;
    let id = app.post(fixture("accuracy-firing.json")).await;
    app.drain().await;
    let run = chat_run(&app, id).await;
    assert_eq!(run["status"], "dead", "{run:#}");
    assert_eq!(run["attempts"], 1);
    assert!(
        run["last_error"]
            .as_str()
            .unwrap()
            .contains("over max_age 10m"),
        "{run:#}"
    );
    app.stop().await;
}

// ---------------------------------------------------------------- limits

/// A notification of `n` alerts of one group, with long annotations.
fn storm(n: usize) -> String {
    let mut body = fixture_json("accuracy-firing.json");
    let alert = body["alerts"][0].clone();
    body["alerts"] = (0..n)
        .map(|i| {
            let mut a = alert.clone();
            a["labels"]["instance"] = json!(format!("10.0.{}.{}:8080", i / 256, i % 256));
            a["labels"]["model_name"] = json!(format!("variant-{i}"));
            a["annotations"]["description"] = json!("ünïcødé ".repeat(80));
            a["fingerprint"] = json!(format!("{i:016x}"));
            a
        })
        .collect();
    body.to_string()
}

fn text_chars(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

fn more_line(text: &str) -> Option<usize> {
    let start = text.find("… and ")?;
    text[start + "… and ".len()..]
        .split(' ')
        .next()?
        .parse()
        .ok()
}

#[tokio::test]
async fn a_500_alert_notification_stays_within_every_platforms_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.worker.enabled = false;
    let url = "http://127.0.0.1:9/hook";
    for (name, kind) in [
        ("slack", "slack"),
        ("teams", "msteams"),
        ("mm", "mattermost"),
        ("discord", "discord"),
        ("gchat", "google_chat"),
        ("hook", "webhook"),
    ] {
        settings.actions.insert(
            name.into(),
            serde_yaml::from_str(&format!("{{type: {kind}, url: '{url}'}}")).unwrap(),
        );
    }
    settings.route =
        serde_yaml::from_str("{actions: [slack, teams, mm, discord, gchat, hook]}").unwrap();
    let app = spawn_app_with(settings).await;
    let plan: Value = app.plan(storm(500)).await;
    let plans = &plan["notification_actions"];
    for name in ["slack", "teams", "mm", "discord", "gchat", "hook"] {
        let p = &plans[name];
        let shown = p["alerts"].as_u64().unwrap() as usize;
        assert!(shown >= 1, "{name} shows nothing: {p:#}");
        assert_eq!(
            p["omitted"].as_u64().unwrap() as usize,
            500 - shown,
            "{name}"
        );
        let text = p["body"].to_string();
        if shown < 500 && name != "hook" {
            assert_eq!(
                more_line(&text),
                Some(500 - shown),
                "{name}: no '… and N more alerts'"
            );
        }
    }
    // Slack: ≤ 50 blocks, ≤ 3000 characters per section text.
    let blocks = plans["slack"]["body"]["attachments"][0]["blocks"]
        .as_array()
        .unwrap();
    assert!(blocks.len() <= 50);
    assert!(blocks
        .iter()
        .all(|b| text_chars(&b["text"]["text"]) <= 3000));
    // Teams: the payload under ~28 KB.
    assert!(plans["teams"]["body"].to_string().len() <= 28_000);
    // Mattermost: a post of at most 16383 characters.
    let mm = &plans["mm"]["body"];
    assert!(text_chars(&mm["text"]) + text_chars(&mm["attachments"][0]["text"]) <= 16_383);
    // Discord: ≤ 10 embeds, ≤ 25 fields each, description ≤ 4096, 6000 in all.
    let embeds = plans["discord"]["body"]["embeds"].as_array().unwrap();
    assert!(embeds.len() <= 10);
    let mut total = 0;
    for e in embeds {
        let fields = e["fields"].as_array().unwrap();
        assert!(fields.len() <= 25);
        assert!(text_chars(&e["description"]) <= 4096);
        total += text_chars(&e["title"])
            + text_chars(&e["description"])
            + text_chars(&e["footer"]["text"]);
        total += fields
            .iter()
            .map(|f| text_chars(&f["name"]) + text_chars(&f["value"]))
            .sum::<usize>();
    }
    assert!(total <= 6000, "{total}");
    // Google Chat: a message under 32,000 bytes, ≤ 100 widgets.
    let gchat = &plans["gchat"]["body"];
    assert!(gchat.to_string().len() <= 32_000);
    // The plan shows the URL redacted.
    for name in ["slack", "teams", "mm", "discord", "gchat", "hook"] {
        assert_eq!(plans[name]["url"], "<redacted>", "{name}");
    }
    assert!(!plan.to_string().contains("127.0.0.1:9"));
    app.stop().await;
}

// ---------------------------------------------------------------- templates

#[tokio::test]
async fn a_custom_template_replaces_the_text_and_a_broken_one_falls_back_to_the_default() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_with(
        dir.path(),
        &format!(
            "{{type: mattermost, url: '{}/good', template: '{{{{ status | upper }}}} {{% for a in alerts %}}{{{{ a.variant }}}} {{% endfor %}}'}}",
            server.uri()
        ),
    );
    // Division by zero only fails when rendered: it passes check-config.
    settings.actions.insert(
        "broken".into(),
        serde_yaml::from_str(&format!(
            "{{type: mattermost, url: '{}/broken', template: '{{{{ 1 / 0 }}}}'}}",
            server.uri()
        ))
        .unwrap(),
    );
    settings.route = serde_yaml::from_str("{actions: [chat, broken]}").unwrap();
    let app = spawn_app_with(settings).await;
    let id = app
        .post(fixture("accuracy-firing-both-variants.json"))
        .await;
    app.drain().await;
    let mut bodies = std::collections::BTreeMap::new();
    for r in requests(&server).await {
        bodies.insert(r.url.path().to_owned(), body_of(&r));
    }
    assert_eq!(
        bodies["/good"]["text"],
        "FIRING baseline-predictor enhanced-predictor "
    );
    // The broken template's message is the default one, never nothing.
    let fallback = &bodies["/broken"];
    assert!(fallback["attachments"][0]["text"]
        .as_str()
        .unwrap()
        .contains("2 firing"));
    let detail = app.get_json(&format!("/api/v1/notifications/{id}")).await;
    let broken = detail["action_runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "broken")
        .unwrap()
        .clone();
    assert_eq!(broken["status"], "succeeded");
    assert!(broken["result"]["template_error"]
        .as_str()
        .unwrap()
        .contains("template error"));
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("chat_template_errors_total{action=\"broken\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("chat_template_errors_total{action=\"chat\"} 0"),
        "{metrics}"
    );
    app.stop().await;
}

fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Settings, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    Settings::load_with_env(
        Some(&path),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .map_err(|e| e.to_string())
}

#[test]
fn config_errors_name_the_action_key() {
    let cases = [
        (
            "actions: {notify: {type: slack, url: 'https://h/x', template: '{% for %}'}}\nroute: {actions: [notify]}",
            "actions.notify.template: syntax error",
        ),
        (
            "actions: {notify: {type: msteams, url: 'https://h/x', template: '{{ status | shout }}'}}\nroute: {actions: [notify]}",
            "actions.notify.template: unknown filter",
        ),
        (
            "actions: {notify: {type: discord}}\nroute: {actions: [notify]}",
            "actions.notify.url: url or url_file is required",
        ),
        (
            "actions: {notify: {type: google_chat, url_file: /nonexistent/hook}}\nroute: {actions: [notify]}",
            "actions.notify.url_file: cannot read /nonexistent/hook",
        ),
        (
            "actions: {notify: {type: slack, url: 'ftp://h/x'}}\nroute: {actions: [notify]}",
            "actions.notify.url: must be an http:// or https:// URL",
        ),
        (
            "actions: {notify: {type: slack, token: xoxb-1}}\nroute: {actions: [notify]}",
            "actions.notify.channel: required with token",
        ),
        (
            "actions: {notify: {type: webhook, url: 'https://h/x', template: '{\"a\": {{ status }}'}}\nroute: {actions: [notify]}",
            "actions.notify.template: does not render valid JSON",
        ),
        (
            "actions: {notify: {type: mattermost, url: 'https://h/x', rate_limit: {per_second: 0, burst: 1}}}\nroute: {actions: [notify]}",
            "actions.notify.rate_limit: per_second must be",
        ),
        (
            "actions: {notify: {type: slack, url: 'https://h/x', colour: red}}\nroute: {actions: [notify]}",
            "actions.notify: unknown field `colour`",
        ),
    ];
    for (yaml, want) in cases {
        let err = load(yaml, &[]).unwrap_err();
        assert!(err.contains(want), "{yaml}\n→ {err}\n(wanted {want})");
    }
}

#[test]
fn secrets_come_from_files_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("url");
    std::fs::write(&file, "https://hooks.example/services/T/B/from-file\n").unwrap();
    let s = load(
        &format!(
            "actions: {{team_chat: {{type: slack, url_file: {}}}, pager: {{type: webhook, url: 'https://x/'}}, on-call: {{type: webhook, url: 'https://x/'}}}}\nroute: {{actions: [team_chat]}}",
            file.display()
        ),
        &[
            ("MLOPS_ALERT_ROUTER__ACTIONS__PAGER__URL", "https://pager.example/env-hook"),
            // A hyphenated action name keeps its hyphen in the variable's name.
            ("MLOPS_ALERT_ROUTER__ACTIONS__ON-CALL__URL", "https://oncall.example/env-hook"),
        ],
    )
    .unwrap();
    let yaml = s.to_redacted_yaml();
    assert!(
        !yaml.contains("from-file") && !yaml.contains("env-hook"),
        "{yaml}"
    );
    let debug = format!("{:?}", s.actions);
    assert!(
        !debug.contains("from-file") && !debug.contains("env-hook"),
        "{debug}"
    );
    match &s.actions["team_chat"] {
        mlops_alert_router::act::ActionConfig::Slack(c) => {
            assert_eq!(
                c.url.as_ref().unwrap().expose(),
                "https://hooks.example/services/T/B/from-file"
            )
        }
        other => panic!("{other:?}"),
    }
    match &s.actions["on-call"] {
        mlops_alert_router::act::ActionConfig::Webhook(c) => {
            assert_eq!(
                c.url.as_ref().unwrap().expose(),
                "https://oncall.example/env-hook"
            )
        }
        other => panic!("{other:?}"),
    }
    match &s.actions["pager"] {
        mlops_alert_router::act::ActionConfig::Webhook(c) => {
            assert_eq!(
                c.url.as_ref().unwrap().expose(),
                "https://pager.example/env-hook"
            )
        }
        other => panic!("{other:?}"),
    }
}

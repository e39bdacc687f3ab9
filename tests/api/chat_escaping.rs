//! Hostile alerts: labels, annotations, alert names, enrichment values and
//! errors a remote side answered, full of mentions, links and markup, sent
//! to every platform. In every field a platform interprets, nothing of it
//! may mention, link or format; the router's own links still work.

use crate::helpers::*;
use mlops_alert_router::act::{ActionConfig, ActionContext, ActionRun, AlertInput};
use mlops_alert_router::enrich::{Context, Enriched, LinkSettings};
use mlops_alert_router::settings::Settings;
use mlops_alert_router::store::RunStatus;
use mlops_alert_router::worker::Outcome;
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Everything a chat platform might read as a mention, link or markup.
const HOSTILE: &str = "<!channel> <!here> <!everyone> <@U123> <#C42|general> <!subteam^S1> \
@channel @all @here @everyone <users/all> <users/123> <@&987> <#555> <at>Jane</at> \
[click](https://evil.example) ![img](https://evil.example/i.png) <https://evil.example|x> \
*bold* **strong** _it_ ~s~ ~~del~~ `code` ```block``` ||spoiler|| <b>html</b> <a href=\"https://evil.example\">a</a> \
&amp; &lt;!channel&gt; \u{200B}@\u{2060}here 🔥 日本語";

/// A summary whose lines would each start a list, a quote or a heading.
const LINES: &str = "- item\n> quote\n1. first\n# heading\n-# small\n+ plus\n@here line";

fn hostile_payload() -> Value {
    let long = "<!channel> [x](https://evil.example) ".repeat(200);
    let alert = |name: &str, variant: &str, runbook: &str| {
        json!({
            "status": "firing",
            "labels": {
                "alertname": name,
                "severity": "critical",
                "experiment": HOSTILE,
                "model_name": variant,
                "team": HOSTILE,
            },
            "annotations": {
                "summary": format!("{HOSTILE}\n{LINES}"),
                "description": long,
                "runbook_url": runbook,
            },
            "startsAt": "2026-11-27T01:02:34.255Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example/graph?g0.expr=up%7Bjob%3D%22x%22%7D+%3D%3D+0&g0.tab=1",
        })
    };
    json!({
        "version": "4",
        "receiver": HOSTILE,
        "status": "firing",
        "groupKey": format!("{{}}:{{alertname=\"{HOSTILE}\"}}"),
        "groupLabels": {"alertname": HOSTILE},
        "commonLabels": {"alertname": HOSTILE, "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "alerts": [
            alert(HOSTILE, "<@U999> *candidate*", "https://runbooks.example/r?q=<!channel>|x&a=(b)"),
            alert(&format!("{HOSTILE}{}", "x".repeat(600)), "@here_base_", "javascript:alert(document.cookie)"),
        ],
    })
}

/// Keys whose strings a platform shows as text (and may interpret).
const TEXT_KEYS: &[&str] = &[
    "text",
    "fallback",
    "title",
    "subtitle",
    "description",
    "name",
    "value",
    "header",
];

/// Every (path, text) of `v` under a text key.
fn texts(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}/{k}");
                match x {
                    Value::String(s) if TEXT_KEYS.contains(&k.as_str()) => out.push((p, s.clone())),
                    _ => texts(x, &p, out),
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                texts(x, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// `needle` occurs in `s` other than right after a backslash (CommonMark's
/// escape makes it literal text).
fn live(s: &str, needle: &str) -> bool {
    s.match_indices(needle)
        .any(|(i, _)| !s[..i].ends_with('\\'))
}

/// Lines outside code blocks.
fn prose_lines(s: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in s.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push(line);
        }
    }
    out
}

/// The router's own link targets (percent-encoded labels inside them are
/// part of a URL, not text) cut out of `s`.
fn without_router_urls(s: &str) -> String {
    const OWN: &[&str] = &[
        "http://alertmanager.example/",
        "https://grafana.example/",
        "http://prometheus.example/",
        "https://runbooks.example/",
    ];
    let mut out = s.to_owned();
    for prefix in OWN {
        while let Some(i) = out.find(prefix) {
            let end = out[i..]
                .find(|c: char| matches!(c, '|' | ')' | '"' | '>' | '…') || c.is_whitespace())
                .map_or(out.len(), |e| i + e);
            out.replace_range(i..end, "URL");
        }
    }
    out
}

/// Asserts that no field of `body` mentions, links or formats from a value.
fn assert_defused(kind: &str, body: &Value) {
    let mut fields = Vec::new();
    texts(body, "", &mut fields);
    let fields: Vec<(String, String)> = fields
        .into_iter()
        .map(|(p, s)| (p, without_router_urls(&s)))
        .collect();
    assert!(!fields.is_empty(), "{kind}: {body:#}");
    // Everywhere: no mention of any platform.
    let mentions = [
        "<!channel>",
        "<!here>",
        "<!everyone>",
        "<@U123>",
        "<@U999>",
        "<#C42",
        "<!subteam",
        "@channel",
        "@all",
        "@here",
        "@everyone",
        "<users/all>",
        "<users/123>",
        "<@&987>",
        "<#555>",
        "<at>",
    ];
    // Everywhere: no link or tag from a value.
    let links = [
        "<https://evil",
        "<b>html",
        "<a href=\"https://evil",
        "javascript:",
    ];
    // Everywhere: no formatting (each platform has a subset of these).
    let formats = ["*bold*", "**strong**", "_it_", "~s~", "~~del~~", "`code`"];
    for (path, s) in &fields {
        for bad in mentions.iter().chain(&links).chain(&formats) {
            assert!(!live(s, bad), "{kind} {path}: {bad:?} survived in {s:?}");
        }
        // Markdown links and images, spoilers: not Slack or card markup, but
        // nowhere live either except Slack mrkdwn and Google Chat card HTML,
        // which do not render them.
        if !matches!(kind, "slack" | "google_chat") {
            for bad in ["[click](", "[img](", "||spoiler||", "```block```"] {
                assert!(!live(s, bad), "{kind} {path}: {bad:?} survived in {s:?}");
            }
            // No line of a value starts a list, quote or heading.
            for line in prose_lines(s) {
                for marker in [
                    "- item",
                    "> quote",
                    "1. first",
                    "# heading",
                    "-# small",
                    "+ plus",
                ] {
                    assert!(
                        !line.starts_with(marker),
                        "{kind} {path}: a line starts with {marker:?}: {s:?}"
                    );
                }
            }
        }
        // A cut text never ends inside an escape sequence.
        if let Some(body) = s.strip_suffix('…') {
            let backslashes = body.len() - body.trim_end_matches('\\').len();
            assert!(backslashes % 2 == 0, "{kind} {path}: cut after a backslash");
            if let Some(i) = body.rfind('&') {
                assert!(
                    !body[i + 1..]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '#'),
                    "{kind} {path}: cut inside an entity: {:?}",
                    &body[i..]
                );
            }
        }
    }
}

/// The router's own links in each platform's syntax, for the first alert.
fn assert_router_links(kind: &str, body: &Value) {
    let all = body.to_string();
    let (graph, runbook) = match kind {
        "slack" => (
            "<http://prometheus.example/graph?g0.expr=up%7Bjob%3D%22x%22%7D+%3D%3D+0&amp;g0.tab=1|Graph>",
            "<https://runbooks.example/r?q=%3C!channel%3E%7Cx&amp;a=%28b%29|Runbook>",
        ),
        "google_chat" => (
            "<a href=\\\"http://prometheus.example/graph?g0.expr=up%7Bjob%3D%22x%22%7D+%3D%3D+0&amp;g0.tab=1\\\">Graph</a>",
            "<a href=\\\"https://runbooks.example/r?q=%3C!channel%3E%7Cx&amp;a=%28b%29\\\">Runbook</a>",
        ),
        _ => (
            "[Graph](http://prometheus.example/graph?g0.expr=up%7Bjob%3D%22x%22%7D+%3D%3D+0&g0.tab=1)",
            "[Runbook](https://runbooks.example/r?q=%3C!channel%3E%7Cx&a=%28b%29)",
        ),
    };
    assert!(all.contains(graph), "{kind}: no {graph} in {all}");
    assert!(all.contains(runbook), "{kind}: no {runbook} in {all}");
    // The silence link carries every (here: huge) label: within Slack's
    // 3000 characters per section and Discord's 1024 per field it is left
    // out (the other links are kept whole).
    if !matches!(kind, "slack" | "discord") {
        assert!(
            all.contains("http://alertmanager.example/#/silences/new?filter="),
            "{kind}: no silence link"
        );
    }
}

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

/// Posts the hostile notification to a router whose one action is `yaml`,
/// runs it, and returns the body the platform received.
async fn deliver(yaml_for: impl Fn(&str) -> String) -> Value {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "ts": "1.2"})))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(settings_with(dir.path(), &yaml_for(&server.uri()))).await;
    let r: Value = app
        .post_alerts(hostile_payload().to_string())
        .await
        .json()
        .await
        .unwrap();
    let id = r["id"].as_i64().expect("stored");
    for _ in 0..20 {
        if app.worker.try_execute_task().await.unwrap() == Outcome::Empty {
            break;
        }
    }
    let detail = app.get_json(&format!("/api/v1/notifications/{id}")).await;
    let run = detail["action_runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "chat")
        .cloned()
        .unwrap();
    assert_eq!(run["status"], "succeeded", "{run:#}");
    // Huge values: fewer alerts may fit, never none.
    assert!(run["result"]["alerts"].as_u64() >= Some(1), "{run:#}");
    let requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), 1);
    let body = serde_json::from_slice(&requests[0].body).unwrap();
    app.stop().await;
    body
}

#[tokio::test]
async fn hostile_values_reach_no_platform_as_mentions_links_or_markup() {
    for kind in ["slack", "msteams", "mattermost", "discord", "google_chat"] {
        let body = deliver(|uri| format!("{{type: {kind}, url: '{uri}/hook'}}")).await;
        let mut fields = Vec::new();
        texts(&body, "", &mut fields);
        assert!(fields.len() >= 3, "{kind}: {body:#}");
        assert_defused(kind, &body);
        assert_router_links(kind, &body);
        match kind {
            "slack" => {
                // The top-level text is what notifications show: a ping there pings the channel.
                let text = body["text"].as_str().unwrap();
                assert!(text.contains("&lt;!channel&gt;"), "{text}");
                let blocks = body["attachments"][0]["blocks"].as_array().unwrap();
                for b in blocks.iter().filter(|b| b["type"] == "section") {
                    assert_eq!(b["text"]["verbatim"], true, "{b}");
                }
            }
            "discord" => assert_eq!(body["allowed_mentions"], json!({"parse": []})),
            "mattermost" => {
                let text = body["attachments"][0]["text"].as_str().unwrap();
                assert!(text.contains("\\[click\\](https://evil.example)"), "{text}");
                assert!(text.contains("@\u{200B}channel"), "{text}");
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn slack_bot_messages_are_escaped_the_same() {
    let body =
        deliver(|uri| format!("{{type: slack, token: xoxb-t, channel: C1, api_url: '{uri}/api'}}"))
            .await;
    assert_defused("slack", &body);
    assert_router_links("slack", &body);
}

#[tokio::test]
async fn templates_escape_values_unless_the_author_says_safe() {
    let template = r#"{{ alertname }} | {{ alertname | safe }} | {% for a in alerts %}{{ link("Graph", a.links.graph) }} {{ link("Runbook", a.links.runbook) }};{% endfor %}"#;
    for kind in ["slack", "msteams", "mattermost", "discord", "google_chat"] {
        let body = deliver(|uri| {
            format!(
                "{{type: {kind}, url: '{uri}/hook', template: '{}'}}",
                template.replace('\'', "''")
            )
        })
        .await;
        let all = body.to_string();
        // The `| safe` half is the author's choice: raw.
        assert!(all.contains("<!channel> <!here>"), "{kind}: {all}");
        // The escaped half is defused: cut the safe part out and check the rest.
        let text = match kind {
            "slack" => body["attachments"][0]["blocks"][0]["text"]["text"].clone(),
            "msteams" => body["attachments"][0]["content"]["body"][1]["text"].clone(),
            "discord" => body["embeds"][0]["description"].clone(),
            _ => body["text"].clone(),
        };
        let text = text.as_str().unwrap();
        let mut parts = text.splitn(3, " | ");
        let escaped = parts.next().unwrap().to_owned();
        let _safe = parts.next().unwrap();
        let rest = parts.next().unwrap().to_owned();
        assert_defused(
            kind,
            &json!({"text": escaped, "links": {"text": rest.clone()}}),
        );
        // link(): the platform's link for http(s) URLs, the bare text otherwise.
        let graph = match kind {
            "slack" => "<http://prometheus.example/graph?g0.expr=up%7Bjob%3D%22x%22%7D+%3D%3D+0&amp;g0.tab=1|Graph>",
            "google_chat" => "<http://prometheus.example/graph?g0.expr=up%7Bjob%3D%22x%22%7D+%3D%3D+0&g0.tab=1|Graph>",
            _ => "[Graph](http://prometheus.example/graph?g0.expr=up%7Bjob%3D%22x%22%7D+%3D%3D+0&g0.tab=1)",
        };
        assert!(rest.contains(graph), "{kind}: {rest}");
        assert!(
            rest.contains(" Runbook;"),
            "{kind}: javascript: is no link: {rest}"
        );
    }
}

#[tokio::test]
async fn webhook_bodies_carry_values_as_json_data() {
    let body = deliver(|uri| format!("{{type: webhook, url: '{uri}/hook'}}")).await;
    // Data, not markup: the exact values, JSON-encoded.
    assert_eq!(body["alertname"], HOSTILE);
    assert_eq!(body["receiver"], HOSTILE);
    assert_eq!(body["alerts"][0]["labels"]["team"], HOSTILE);
    let body = deliver(|uri| {
        format!(
            "{{type: webhook, url: '{uri}/hook', template: '{{\"name\": {{{{ alertname }}}}, \"team\": {{{{ alerts[0].labels.team }}}}}}'}}"
        )
    })
    .await;
    assert_eq!(body, json!({"name": HOSTILE, "team": HOSTILE}));
}

fn map(pairs: &[(&str, f64)]) -> Enriched {
    Enriched::Map {
        query: String::new(),
        values: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

/// Enrichment values keyed by hostile variants, a hostile enrichment error,
/// and alert-scoped runs whose remote errors and reasons are hostile: the
/// parts of a message that do not come from the payload.
#[tokio::test]
async fn hostile_enrichment_and_remote_errors_are_escaped_too() {
    let n = mlops_alert_router::ingest::parse(hostile_payload().to_string().as_bytes(), 10_000)
        .unwrap()
        .notification;
    let contexts: Vec<Context> = n
        .alerts
        .iter()
        .map(|alert| {
            let mut c = Context::default();
            c.values.insert(
                "accuracy".into(),
                map(&[(HOSTILE, 51.2), ("<@U999> *candidate*", 72.5)]),
            );
            c.values.insert(
                "error_rate".into(),
                Enriched::Error {
                    query: String::new(),
                    error: format!("Prometheus answered 400: {HOSTILE}"),
                },
            );
            c.values.insert(
                format!("custom {HOSTILE}"),
                map(&[("<@U999> *candidate*", 1.0)]),
            );
            c.links = LinkSettings {
                grafana_url: Some("https://grafana.example".into()),
                dashboard_uid: "mlops-ab-testing".into(),
                alertmanager_url: None,
            }
            .for_alert(&n, alert);
            c
        })
        .collect();
    let run = |action: &str,
               kind: &str,
               status: RunStatus,
               error: Option<String>,
               result: Option<Value>| ActionRun {
        id: 1,
        round: 0,
        fingerprint: String::new(),
        action: action.into(),
        action_type: kind.into(),
        status,
        attempts: 3,
        last_error: error,
        next_attempt_at: None,
        first_attempt_at: None,
        last_attempt_at: None,
        finished_at: None,
        duration_ms: None,
        result,
        context: None,
    };
    let outcomes = [
        run(
            "rollback",
            "traffic_shift",
            RunStatus::Succeeded,
            None,
            Some(json!({
                "decision": "blocked",
                "target": HOSTILE,
                "reason": format!("guard: {HOSTILE}"),
                "before": {HOSTILE: 30},
                "after": {HOSTILE: 0},
            })),
        ),
        run(
            "page",
            "webhook",
            RunStatus::Dead,
            Some(format!("HTTP 400: {HOSTILE}")),
            None,
        ),
    ];
    for kind in ["slack", "msteams", "mattermost", "discord", "google_chat"] {
        let config: ActionConfig =
            serde_yaml::from_str(&format!("{{type: {kind}, url: 'https://chat.example/h'}}"))
                .unwrap();
        let deps = mlops_alert_router::act::ActionDeps::offline(std::sync::Arc::new(
            mlops_alert_router::metrics::Metrics::new(),
        ));
        let action = config.build("notify", &deps).unwrap();
        let ctx = ActionContext {
            notification_id: 7,
            notification: &n,
            alerts: n
                .alerts
                .iter()
                .zip(&contexts)
                .map(|(alert, context)| AlertInput {
                    alert,
                    context,
                    outcomes: outcomes.iter().collect(),
                })
                .collect(),
            attempt: 1,
            store: None,
            metrics: None,
        };
        let plan = action.plan(&ctx).await;
        let body = &plan["body"];
        assert_defused(kind, body);
        let all = body.to_string();
        assert!(all.contains("Prometheus answered 400"), "{kind}: {all}");
        assert!(all.contains("HTTP 400"), "{kind}: {all}");
        insta::assert_json_snapshot!(format!("hostile__{kind}"), body);
    }
}

//! The chat renderers (`act::chat`): every platform's message for a
//! notification whose labels, annotations and enrichment values are fuzzed.
//!
//! Input: byte 0 chooses the status and the number of alerts (1..=8), byte 1
//! which actions use a custom template; the rest, split at NUL, is a list of
//! strings (lossy UTF-8) taken in turn (cycling) for label names and values,
//! annotations, receiver, groupKey, URLs, enrichment values and links.
//!
//! Each action is asked for its dry-run plan (the public path that renders
//! the exact body it would send). Properties:
//! - no panic, no render error, the body serialises to JSON that parses back
//!   to the same value;
//! - a custom template never fails on a value (chat text is plain text;
//!   a webhook template writes every `{{ … }}` as a JSON value);
//! - the body is within the platform's documented hard limits (Slack:
//!   50 blocks, 3000 characters a section, 150 a header; Discord: 10 embeds,
//!   title 256, description 4096, 25 fields of 256/1024, footer 2048, 6000
//!   in all, content 2000; Teams: 28 KB; Google Chat: 32,000 bytes, text
//!   4096; Mattermost: a post of 16,383 characters).

use mlops_alert_router::act::traffic::{kube::ClientSource, Targets};
use mlops_alert_router::act::{Action, ActionConfig, ActionContext, ActionDeps, AlertInput};
use mlops_alert_router::enrich::{Context, Enriched};
use mlops_alert_router::metrics::Metrics;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// True when `ROUTER_FUZZ_KNOWN` lists `bug` (a bug known to be open,
/// tolerated while the rest is measured): `limits-<kind>` skips that
/// platform's limit checks.
fn known(bug: &str) -> bool {
    static KNOWN: OnceLock<Vec<String>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            std::env::var("ROUTER_FUZZ_KNOWN")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .iter()
        .any(|k| k == bug)
}

const KINDS: &[&str] = &[
    "slack",
    "msteams",
    "mattermost",
    "discord",
    "google_chat",
    "webhook",
];

const CHAT_TEMPLATE: &str = "{{ title }} ({{ status }}, {{ severity }})\n\
{% for a in alerts %}- {{ a.alertname }} {{ a.variant }}: {{ a.summary }} {{ a.labels }} {{ a.annotations }}\n{% endfor %}\
{% if omitted %}and {{ omitted }} more{% endif %}";

const WEBHOOK_TEMPLATE: &str = r#"{"title": {{ title }}, "labels": {{ common_labels }},
"alerts": [{% for a in alerts %}{"name": {{ a.alertname }}, "labels": {{ a.labels }}, "summary": {{ a.summary }}, "context": {{ a.context }}}{% if not loop.last %},{% endif %}{% endfor %}],
"omitted": {{ omitted }}}"#;

struct Actions {
    /// (kind, custom template?, action)
    all: Vec<(&'static str, bool, Arc<dyn Action>)>,
    runtime: tokio::runtime::Runtime,
}

fn actions() -> &'static Actions {
    static ACTIONS: OnceLock<Actions> = OnceLock::new();
    ACTIONS.get_or_init(|| {
        let deps = ActionDeps {
            store: None,
            metrics: Arc::new(Metrics::new()),
            targets: Arc::new(Targets::build(
                &BTreeMap::new(),
                &ClientSource { api_url: None },
            )),
            clock: Arc::new(|| 0),
            tls: Default::default(),
        };
        let mut all = Vec::new();
        for kind in KINDS {
            for custom in [false, true] {
                let mut config =
                    json!({"type": kind, "url": "http://127.0.0.1:9/hooks/T000/B000/XXXX"});
                if custom {
                    config["template"] = json!(if *kind == "webhook" {
                        WEBHOOK_TEMPLATE
                    } else {
                        CHAT_TEMPLATE
                    });
                }
                let config: ActionConfig =
                    serde_json::from_value(config).expect("a valid action config");
                if let Err(e) = config.validate() {
                    panic!("{kind} config refused: {e:?}");
                }
                all.push((
                    *kind,
                    custom,
                    config
                        .build(kind, &deps)
                        .expect("a buildable action config"),
                ));
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        Actions { all, runtime }
    })
}

/// The fuzzed strings, taken in turn.
struct Strings<'a> {
    fields: Vec<std::borrow::Cow<'a, str>>,
    next: usize,
}

impl Strings<'_> {
    fn take(&mut self) -> String {
        let s = self.fields[self.next % self.fields.len()].to_string();
        self.next += 1;
        s
    }
}

pub fn check(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let (flags, templates, rest) = (data[0], data[1], &data[2..]);
    let mut s = Strings {
        fields: rest
            .split(|&b| b == 0)
            .map(String::from_utf8_lossy)
            .collect(),
        next: 0,
    };
    let resolved = flags & 1 == 1;
    let count = 1 + usize::from((flags >> 1) & 7);
    let status = if resolved { "resolved" } else { "firing" };

    let mut alerts = Vec::new();
    for _ in 0..count {
        let mut labels = BTreeMap::new();
        for name in [
            "alertname",
            "severity",
            "experiment",
            "model_name",
            "variant",
        ] {
            labels.insert(name.to_owned(), s.take());
        }
        let name = s.take();
        labels.insert(name, s.take());
        let mut annotations = BTreeMap::new();
        for name in ["summary", "description", "runbook_url"] {
            annotations.insert(name.to_owned(), s.take());
        }
        alerts.push(json!({
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": "2026-11-27T01:02:34.255Z",
            "endsAt": if resolved { "2026-11-27T02:02:34Z" } else { "0001-01-01T00:00:00Z" },
            "generatorURL": s.take(),
        }));
    }
    let first_labels = alerts[0]["labels"].clone();
    let body = json!({
        "version": "4",
        "status": status,
        "receiver": s.take(),
        "groupKey": s.take(),
        "groupLabels": {"alertname": first_labels["alertname"], "experiment": first_labels["experiment"]},
        "commonLabels": first_labels,
        "commonAnnotations": {"summary": s.take()},
        "externalURL": s.take(),
        "alerts": alerts,
    });
    let bytes = serde_json::to_vec(&body).expect("a JSON value serialises");
    let Ok(accepted) = mlops_alert_router::ingest::parse(&bytes, 64) else {
        return;
    };
    let n = &accepted.notification;

    let contexts: Vec<Context> = n
        .alerts
        .iter()
        .map(|_| {
            let mut c = Context::default();
            let variant = s.take();
            let number = |s: &str| s.len() as f64 / 7.0 - 3.0;
            c.values.insert(
                "accuracy".into(),
                Enriched::Map {
                    query: s.take(),
                    values: BTreeMap::from([
                        (variant.clone(), number(&variant)),
                        (s.take(), f64::NAN),
                    ]),
                },
            );
            let t = s.take();
            c.values.insert(
                "traffic_share".into(),
                Enriched::Number {
                    query: t.clone(),
                    value: number(&t),
                },
            );
            c.values.insert(
                s.take(),
                Enriched::Text {
                    query: s.take(),
                    value: s.take(),
                },
            );
            c.values.insert(
                "p95_latency".into(),
                Enriched::Error {
                    query: s.take(),
                    error: s.take(),
                },
            );
            c.links.insert("grafana".into(), s.take());
            c.links.insert(s.take(), s.take());
            c
        })
        .collect();

    let acts = actions();
    for (i, (kind, custom, action)) in acts.all.iter().enumerate() {
        if *custom && templates & (1 << (i / 2)) == 0 {
            continue;
        }
        let ctx = ActionContext {
            notification_id: 1,
            notification: n,
            alerts: n
                .alerts
                .iter()
                .zip(&contexts)
                .map(|(alert, context)| AlertInput {
                    alert,
                    context,
                    outcomes: Vec::new(),
                })
                .collect(),
            attempt: 1,
            store: None,
            metrics: None,
        };
        let plan = acts.runtime.block_on(action.plan(&ctx));
        assert!(plan.get("error").is_none(), "{kind}: plan error {plan}");
        assert!(
            plan.get("template_error").is_none(),
            "{kind}: the custom template failed on a value: {}",
            plan["template_error"]
        );
        let body = &plan["body"];
        assert!(body.is_object(), "{kind}: no body in {plan}");
        let text = serde_json::to_string(body).expect("a body serialises");
        // (Not compared with `body`: serde_json's default float parsing
        // may differ in the last digit.)
        let back: Value = serde_json::from_str(&text).expect("a body is valid JSON");
        assert!(back.is_object(), "{kind}: the body is not a JSON object");
        if !known(&format!("limits-{kind}")) {
            within_limits(kind, body, text.len(), *custom);
        }
    }
}

fn chars(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

fn within_limits(kind: &str, body: &Value, bytes: usize, custom: bool) {
    let kind_label = if custom {
        format!("{kind} (custom template)")
    } else {
        kind.to_owned()
    };
    let _ = &kind_label;
    match kind {
        "slack" => {
            let blocks = body["attachments"][0]["blocks"]
                .as_array()
                .map_or(&[][..], Vec::as_slice);
            assert!(blocks.len() <= 50, "slack: {} blocks", blocks.len());
            for b in blocks {
                let limit = if b["type"] == "header" { 150 } else { 3000 };
                assert!(
                    chars(&b["text"]["text"]) <= limit,
                    "slack: a {} block of {} characters",
                    b["type"],
                    chars(&b["text"]["text"])
                );
                for e in b["elements"].as_array().into_iter().flatten() {
                    assert!(
                        chars(&e["text"]) <= 3000,
                        "slack: a context element over 3000"
                    );
                }
            }
            assert!(chars(&body["text"]) <= 40_000, "slack: text over 40,000");
        }
        "discord" => {
            assert!(
                chars(&body["content"]) <= 2000,
                "discord: content over 2000"
            );
            let embeds = body["embeds"].as_array().map_or(&[][..], Vec::as_slice);
            assert!(embeds.len() <= 10, "discord: {} embeds", embeds.len());
            let mut total = 0;
            for e in embeds {
                let fields = e["fields"].as_array().map_or(&[][..], Vec::as_slice);
                assert!(chars(&e["title"]) <= 256, "discord: title over 256");
                assert!(
                    chars(&e["description"]) <= 4096,
                    "discord: description over 4096"
                );
                assert!(fields.len() <= 25, "discord: {} fields", fields.len());
                assert!(
                    chars(&e["footer"]["text"]) <= 2048,
                    "discord: footer over 2048"
                );
                total += chars(&e["title"])
                    + chars(&e["description"])
                    + chars(&e["footer"]["text"])
                    + chars(&e["author"]["name"]);
                for f in fields {
                    assert!(chars(&f["name"]) <= 256, "discord: field name over 256");
                    assert!(chars(&f["value"]) <= 1024, "discord: field value over 1024");
                    total += chars(&f["name"]) + chars(&f["value"]);
                }
            }
            assert!(total <= 6000, "discord: {total} characters across embeds");
        }
        "msteams" => assert!(bytes <= 28 * 1024, "msteams: {bytes} bytes"),
        "google_chat" => {
            assert!(bytes <= 32_000, "google_chat: {bytes} bytes");
            assert!(chars(&body["text"]) <= 4096, "google_chat: text over 4096");
        }
        "mattermost" => {
            let attachments: usize = body["attachments"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| chars(&a["text"]) + chars(&a["fallback"]))
                .sum();
            assert!(
                chars(&body["text"]) + attachments <= 16_383,
                "{kind_label}: a post of {} + {attachments} characters (over 16,383)",
                chars(&body["text"])
            );
        }
        _ => {}
    }
}

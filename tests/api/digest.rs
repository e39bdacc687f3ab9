//! Chat digests: a storm to each chat platform (wiremock, at the platform's
//! default rate, held by a responder that answers 429 to anything faster)
//! becomes a few digests; every notification's chat run succeeds exactly
//! once, alone or naming a digest that arrived; and end to end from a real
//! Alertmanager, firing then resolved.

use crate::components::{eventually, free_port, Alertmanager};
use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Answers like the platform, but 429 (`Retry-After: 1`) to a request over
/// the rate: a token bucket of `per_second` and `burst` + 1 (one request of
/// slack for network jitter). The router paces itself, so it sees none.
struct Paced {
    per_second: f64,
    capacity: f64,
    state: Mutex<(f64, Option<Instant>)>,
    refused: Arc<Mutex<u32>>,
    answer: Value,
}

impl Respond for Paced {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap();
        let (tokens, last) = *st;
        let tokens = match last {
            None => self.capacity,
            Some(t) => {
                (tokens + now.duration_since(t).as_secs_f64() * self.per_second).min(self.capacity)
            }
        };
        if tokens < 1.0 {
            *st = (tokens, Some(now));
            *self.refused.lock().unwrap() += 1;
            return ResponseTemplate::new(429).insert_header("retry-after", "1");
        }
        *st = (tokens - 1.0, Some(now));
        if self.answer.is_null() {
            ResponseTemplate::new(200).set_body_string("ok")
        } else {
            ResponseTemplate::new(200).set_body_json(self.answer.clone())
        }
    }
}

/// A mock chat platform at `per_second`/`burst`; returns it and its 429 count.
async fn platform(per_second: f64, burst: u32, answer: Value) -> (MockServer, Arc<Mutex<u32>>) {
    let server = MockServer::start().await;
    let refused = Arc::new(Mutex::new(0));
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Paced {
            per_second,
            capacity: f64::from(burst) + 1.0,
            state: Mutex::new((0.0, None)),
            refused: refused.clone(),
            answer,
        })
        .mount(&server)
        .await;
    (server, refused)
}

/// A notification of its own group, marked so a message of its own can be found.
fn notification(i: usize, status: &str) -> String {
    let labels = json!({"alertname": "ModelAccuracyDegraded", "experiment": "storm-exp",
                        "model_name": "enhanced-predictor", "severity": if i.is_multiple_of(10) { "critical" } else { "warning" },
                        "pod": format!("storm-{i}")});
    json!({
        "receiver": "router", "status": status, "version": "4",
        "groupKey": format!("{{}}:{{pod=\"storm-{i}\"}}"),
        "groupLabels": {"pod": format!("storm-{i}")},
        "commonLabels": labels, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
        "alerts": [{"status": status, "labels": labels,
                    "annotations": {"summary": format!("marker-{i}-end")},
                    "startsAt": "2026-11-27T01:03:18Z",
                    "endsAt": if status == "resolved" { "2026-11-27T02:03:18Z" } else { "0001-01-01T00:00:00Z" },
                    "generatorURL": "http://prometheus:9090/graph", "fingerprint": format!("{i:016x}")}],
    })
    .to_string()
}

/// The app with one action `chat` (`yaml`) and its worker running.
async fn storm_app(yaml: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = test_settings(dir.path());
    s.actions.insert(
        "chat".into(),
        serde_yaml::from_str(yaml).expect("action yaml"),
    );
    s.route = serde_yaml::from_str("{actions: [chat]}").unwrap();
    (spawn_app_with(s).await, dir)
}

/// Posts every body at once; returns the stored ids.
async fn post_all(app: &TestApp, bodies: Vec<String>) -> Vec<i64> {
    let posts = bodies.into_iter().map(|b| async move {
        let r: Value = app.post_alerts(b).await.json().await.unwrap();
        r["id"].as_i64().expect("stored")
    });
    futures_util::future::join_all(posts).await
}

/// Waits until every notification is done; returns each one's chat run.
async fn chat_runs(app: &TestApp, ids: &[i64]) -> BTreeMap<i64, Vec<Value>> {
    let mut out = BTreeMap::new();
    for &id in ids {
        let detail = app.wait_for(id, is_done).await;
        let runs: Vec<Value> = detail["action_runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "chat")
            .cloned()
            .collect();
        out.insert(id, runs);
    }
    out
}

/// What the platform received: digest ids (with the notifications each
/// says it covers) and the bodies of the other messages.
fn received(requests: &[Request]) -> (BTreeMap<String, u64>, Vec<String>) {
    let title = regex::Regex::new(r"STORM(?: \(continued\))?: (\d+) notifications?").unwrap();
    // Markdown platforms escape the `#`.
    let id = regex::Regex::new(r"digest (chat\\*#\d+)").unwrap();
    let mut digests = BTreeMap::new();
    let mut singles = Vec::new();
    for r in requests {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        match (title.captures(&body), id.captures(&body)) {
            (Some(n), Some(d)) => {
                digests.insert(d[1].replace('\\', ""), n[1].parse().unwrap());
            }
            _ if r.url.path().ends_with("chat.update") => panic!("an update is a digest's: {body}"),
            _ => singles.push(body),
        }
    }
    (digests, singles)
}

/// Every notification's chat run succeeded once: sent alone (its marker in
/// exactly one message of its own) or through a digest that arrived; and
/// the platform saw no request faster than its rate.
async fn check_storm(
    app: &TestApp,
    server: &MockServer,
    refused: &Mutex<u32>,
    ids: &[i64],
    status: &str,
) -> usize {
    let runs = chat_runs(app, ids).await;
    let requests = server.received_requests().await.unwrap();
    let (digests, singles) = received(&requests);
    let mut through_digest = 0;
    let mut alone = BTreeSet::new();
    for (id, runs) in &runs {
        assert_eq!(runs.len(), 1, "one chat run per notification: {runs:#?}");
        let run = &runs[0];
        assert_eq!(run["status"], "succeeded", "{run:#}");
        assert_eq!(
            run["attempts"], 1,
            "no retry: the router kept to the rate: {run:#}"
        );
        match run["result"]["digest"]["id"].as_str() {
            Some(d) => {
                assert!(
                    digests.contains_key(d),
                    "digest {d} of #{id} arrived: {digests:?}"
                );
                through_digest += 1;
            }
            None => {
                alone.insert(*id);
            }
        }
    }
    assert!(!digests.is_empty(), "a storm produces digests");
    assert_eq!(
        singles.len(),
        alone.len(),
        "one message per notification sent alone"
    );
    // Which notification each single message is: by its marker (index = id order).
    let index: BTreeMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    for id in &alone {
        let marker = format!("marker-{}-end", index[id]);
        let n = singles.iter().filter(|b| b.contains(&marker)).count();
        assert_eq!(n, 1, "#{id} sent alone exactly once");
    }
    assert!(
        alone.len() < ids.len() / 2,
        "mostly digested: {} alone of {}",
        alone.len(),
        ids.len()
    );
    assert_eq!(
        *refused.lock().unwrap(),
        0,
        "no request faster than the platform's rate"
    );
    let word = if status == "firing" {
        "ALERT STORM"
    } else {
        "RESOLVED STORM"
    };
    assert!(
        requests
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains(word)),
        "a {word} digest"
    );
    through_digest
}

async fn storm_to(yaml_of: impl Fn(&str) -> String, per_second: f64, burst: u32, answer: Value) {
    let (server, refused) = platform(per_second, burst, answer).await;
    let (app, _dir) = storm_app(&yaml_of(&server.uri())).await;
    let ids = post_all(&app, (0..100).map(|i| notification(i, "firing")).collect()).await;
    let digested = check_storm(&app, &server, &refused, &ids, "firing").await;
    assert!(digested > 50);
    // The digest counts and its metrics agree with the runs.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(&format!(
            "chat_digested_notifications_total{{action=\"chat\"}} {digested}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("chat_queued_messages{action=\"chat\"}"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_storm_to_a_slack_webhook_becomes_digests_within_its_rate() {
    storm_to(
        |u| format!("{{type: slack, url: '{u}/services/x'}}"),
        1.0,
        3,
        Value::Null,
    )
    .await;
}

#[tokio::test]
async fn a_storm_to_teams_becomes_digests_within_its_rate() {
    storm_to(
        |u| format!("{{type: msteams, url: '{u}/workflows/x'}}"),
        1.0,
        3,
        Value::Null,
    )
    .await;
}

#[tokio::test]
async fn a_storm_to_mattermost_becomes_digests_within_its_rate() {
    storm_to(
        |u| format!("{{type: mattermost, url: '{u}/hooks/x'}}"),
        5.0,
        10,
        Value::Null,
    )
    .await;
}

#[tokio::test]
async fn a_storm_to_discord_becomes_digests_within_its_rate() {
    storm_to(
        |u| format!("{{type: discord, url: '{u}/api/webhooks/1/x'}}"),
        2.5,
        5,
        Value::Null,
    )
    .await;
}

#[tokio::test]
async fn a_storm_to_google_chat_becomes_digests_within_its_rate() {
    storm_to(
        |u| format!("{{type: google_chat, url: '{u}/v1/spaces/x/messages'}}"),
        1.0,
        1,
        Value::Null,
    )
    .await;
}

#[tokio::test]
async fn a_storm_to_a_slack_bot_is_one_digest_kept_current_with_chat_update() {
    let answer = json!({"ok": true, "ts": "1700000000.000100", "channel": "C1"});
    let (server, refused) = platform(1.0, 3, answer).await;
    let (app, _dir) = storm_app(&format!(
        "{{type: slack, token: xoxb-test, channel: '#ml', api_url: '{}/api'}}",
        server.uri()
    ))
    .await;
    let ids = post_all(&app, (0..100).map(|i| notification(i, "firing")).collect()).await;
    check_storm(&app, &server, &refused, &ids, "firing").await;
    let runs = chat_runs(&app, &ids).await;
    let digests: BTreeSet<String> = runs
        .values()
        .filter_map(|r| r[0]["result"]["digest"]["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        digests.len(),
        1,
        "the storm is one digest, updated: {digests:?}"
    );
    for r in runs
        .values()
        .filter(|r| r[0]["result"]["digest"].is_object())
    {
        assert_eq!(r[0]["result"]["digest"]["message"], "1700000000.000100");
        assert!(matches!(
            r[0]["result"]["digest"]["mode"].as_str(),
            Some("posted" | "updated")
        ));
    }
    let requests = server.received_requests().await.unwrap();
    let posts = requests
        .iter()
        .filter(|r| r.url.path() == "/api/chat.postMessage")
        .count();
    let updates: Vec<&Request> = requests
        .iter()
        .filter(|r| r.url.path() == "/api/chat.update")
        .collect();
    assert!(posts < 10, "{posts} posts");
    // The last update (if any) covers the whole storm's digested notifications.
    if let Some(last) = updates.last() {
        let body: Value = serde_json::from_slice(&last.body).unwrap();
        assert_eq!(body["ts"], "1700000000.000100");
        assert_eq!(body["channel"], "C1");
    }
    app.stop().await;
}

#[test]
fn digest_settings_are_checked_with_their_key_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "actions:\n  hook: {type: webhook, url: 'http://127.0.0.1:9/x', digest: {enabled: true}}\n  \
         chat: {type: slack, url: 'http://127.0.0.1:9/x', digest: {after: 2m, max_items: 0}}\n\
         route: {actions: [hook, chat]}\n",
    )
    .unwrap();
    let err = mlops_alert_router::settings::Settings::load_with_env(Some(&path), Vec::new())
        .unwrap_err()
        .to_string();
    for want in [
        "actions.hook.digest.enabled: a webhook sends every notification",
        "actions.chat.digest.after: must be between 1s and 30s, got 2m",
        "actions.chat.digest.max_items: must be between 1 and 50, got 0",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
}

#[tokio::test]
async fn a_storm_from_a_real_alertmanager_is_digested_firing_then_resolved() {
    let (server, refused) = platform(1.0, 3, Value::Null).await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = test_settings(dir.path());
    let port = free_port();
    s.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    s.actions.insert(
        "chat".into(),
        serde_yaml::from_str(&format!(
            "{{type: slack, url: '{}/services/x'}}",
            server.uri()
        ))
        .unwrap(),
    );
    s.route = serde_yaml::from_str("{actions: [chat]}").unwrap();
    let app = spawn_app_with(s).await;
    let am = Alertmanager::start(&format!(
        "route:\n  receiver: router\n  group_by: [pod]\n  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 1h\n\
         receivers:\n  - name: router\n    webhook_configs:\n      - url: http://127.0.0.1:{port}/api/v1/alerts\n        send_resolved: true\n"
    ))
    .await;
    let n = 60;
    let alerts = |ends: Option<String>| -> Vec<Value> {
        (0..n)
            .map(|i| {
                let mut a = json!({"labels": {"alertname": "ModelServerDown", "pod": format!("mlserver-{i}"),
                                              "severity": "critical", "experiment": "storm-exp"},
                                   "annotations": {"summary": format!("marker-{i}-end")}});
                if let Some(e) = &ends {
                    a["endsAt"] = json!(e);
                }
                a
            })
            .collect()
    };
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&alerts(None))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let firing = eventually(
        60,
        "every group's firing notification, acted on",
        || async {
            let list = app
                .get_json("/api/v1/notifications?limit=500&status=firing")
                .await;
            let rows = list["notifications"].as_array().unwrap().clone();
            (rows.len() == n && rows.iter().all(|r| r["state"] == "done")).then_some(rows)
        },
    )
    .await;
    let mut ids: Vec<i64> = firing.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    ids.sort();
    let runs = chat_runs(&app, &ids).await;
    let digested = runs
        .values()
        .filter(|r| r[0]["result"]["digest"].is_object())
        .count();
    assert!(
        runs.values()
            .all(|r| r.len() == 1 && r[0]["status"] == "succeeded"),
        "{runs:#?}"
    );
    assert!(digested > n / 2, "{digested} of {n} digested");

    // The storm ends: every alert resolved at once.
    let now = chrono::Utc::now().to_rfc3339();
    let r = client
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&alerts(Some(now)))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let resolved = eventually(
        60,
        "every group's resolved notification, acted on",
        || async {
            let list = app
                .get_json("/api/v1/notifications?limit=500&status=resolved")
                .await;
            let rows = list["notifications"].as_array().unwrap().clone();
            (rows.len() == n && rows.iter().all(|r| r["state"] == "done")).then_some(rows)
        },
    )
    .await;
    let ids: Vec<i64> = resolved.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    let runs = chat_runs(&app, &ids).await;
    assert!(
        runs.values()
            .all(|r| r.len() == 1 && r[0]["status"] == "succeeded"),
        "{runs:#?}"
    );
    let requests = server.received_requests().await.unwrap();
    assert!(
        requests
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("RESOLVED STORM")),
        "the resolved storm is summarised the same way"
    );
    assert_eq!(
        *refused.lock().unwrap(),
        0,
        "no request faster than Slack's rate"
    );
    app.stop().await;
    drop(am);
}

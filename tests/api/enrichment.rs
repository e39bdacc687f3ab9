use crate::components::*;
use crate::helpers::*;
use mlops_alert_router::metrics::Metrics;
use mlops_alert_router::pipeline::Planner;
use mlops_alert_router::settings::Settings;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const EXPERIMENT: &str = "financial-ab-test-experiment";

fn example_settings(prometheus_url: &str) -> Settings {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/mlops.yaml");
    let mut s = Settings::load_with_env(Some(&path), Vec::new()).unwrap();
    s.prometheus.as_mut().unwrap().url = prometheus_url.to_owned();
    s.alertmanager = None;
    // No cluster here: the example's Seldon rollback becomes a log line.
    s.actions.insert(
        "rollback".into(),
        serde_yaml::from_str("{type: log}").unwrap(),
    );
    s
}

fn notification(
    name: &str,
    f: impl FnOnce(&mut Value),
) -> mlops_alert_router::ingest::Notification {
    let mut v = fixture_json(name);
    f(&mut v);
    mlops_alert_router::ingest::parse(&serde_json::to_vec(&v).unwrap(), 10_000)
        .unwrap()
        .notification
}

fn close(a: &Value, b: f64, tolerance: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() <= tolerance)
}

#[tokio::test]
async fn example_enrichments_give_per_variant_context_from_real_prometheus() {
    let exporter = Exporter::start(EXPERIMENT).await;
    let prom = Prometheus::start(std::slice::from_ref(&exporter.target)).await;
    // rate() needs two scrapes.
    prom.wait_for_series("rate(ab_test_requests_total[5m]) > 0", 3)
        .await;

    let planner =
        Planner::from_settings(&example_settings(&prom.url), Arc::new(Metrics::new())).unwrap();
    let plan = planner
        .dry_run(notification("accuracy-firing.json", |_| {}))
        .await;
    let alert = &plan["alerts"][0];
    assert_eq!(
        alert["actions"],
        json!(["oncall-webhook", "rollback", "notify-ml"])
    );
    let ctx = &alert["context"];
    assert_eq!(
        ctx["accuracy"]["value"],
        json!({"baseline-predictor": 72.5, "enhanced-predictor": 51.2}),
        "{ctx:#}"
    );
    assert!(ctx["accuracy"]["query"]
        .as_str()
        .unwrap()
        .contains(&format!("experiment=\"{EXPERIMENT}\"")));
    let share = &ctx["traffic_share"]["value"];
    assert!(
        close(&share["baseline-predictor"], 70.0, 1.0)
            && close(&share["enhanced-predictor"], 30.0, 1.0),
        "{ctx:#}"
    );
    let errors = &ctx["error_rate"]["value"];
    assert!(
        close(&errors["enhanced-predictor"], 10.0, 0.5)
            && close(&errors["baseline-predictor"], 0.0, 0.01),
        "{ctx:#}"
    );
    let p95 = &ctx["p95_latency"]["value"];
    assert!(
        p95["baseline-predictor"].as_f64().unwrap() <= 0.1,
        "{ctx:#}"
    );
    let slow = p95["enhanced-predictor"].as_f64().unwrap();
    assert!(slow > 0.2 && slow <= 0.5, "{ctx:#}");
    assert_eq!(
        ctx["net_business_value"]["value"],
        json!({"baseline-predictor": 12.0, "enhanced-predictor": -25.0})
    );
    assert!(ctx["links"]["silence"]
        .as_str()
        .unwrap()
        .contains("/#/silences/new?filter="));
    assert!(ctx["links"]["graph"]
        .as_str()
        .unwrap()
        .starts_with("http://vm:19190/graph"));
}

#[tokio::test]
async fn a_label_value_cannot_inject_promql() {
    let exporter = Exporter::start(EXPERIMENT).await;
    let prom = Prometheus::start(std::slice::from_ref(&exporter.target)).await;
    prom.wait_for_series("ab_test_model_accuracy", 2).await;

    let mut settings = example_settings(&prom.url);
    settings.enrichments.insert(
        "total_accuracy".into(),
        serde_yaml::from_str(
            r#"{query: 'sum(ab_test_model_accuracy{experiment="{{ labels.experiment }}"})'}"#,
        )
        .unwrap(),
    );
    let route = settings
        .route
        .routes
        .iter_mut()
        .find(|r| r.enrich.contains(&"accuracy".to_string()))
        .unwrap();
    route.enrich.push("total_accuracy".into());
    let planner = Planner::from_settings(&settings, Arc::new(Metrics::new())).unwrap();

    let honest = planner
        .dry_run(notification("accuracy-firing.json", |_| {}))
        .await;
    assert_eq!(
        honest["alerts"][0]["context"]["total_accuracy"]["value"],
        json!(123.7)
    );

    let evil = r#"x"} or vector(1) or {a=""#;
    let plan = planner
        .dry_run(notification("accuracy-firing.json", |v| {
            v["alerts"][0]["labels"]["experiment"] = evil.into();
        }))
        .await;
    let ctx = &plan["alerts"][0]["context"];
    // Injected, `vector(1)` would answer 1 (and a series keyed ""); escaped, the
    // whole value is one label value that matches nothing.
    assert_eq!(ctx["accuracy"]["value"], json!({}), "{ctx:#}");
    assert_eq!(
        ctx["total_accuracy"]["error"], "no data: the query returned no series",
        "{ctx:#}"
    );
    assert_eq!(
        ctx["total_accuracy"]["query"],
        r#"sum(ab_test_model_accuracy{experiment="x\"} or vector(1) or {a=\""})"#
    );
}

/// A counting stand-in for Prometheus: answers every query with one series
/// per variant after `delay`, and counts requests per query.
async fn counting_prometheus(delay: Duration) -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let app = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::get(move || {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                axum::Json(
                    json!({"status": "success", "data": {"resultType": "vector", "result": [
                    {"metric": {"model_name": "baseline-predictor"}, "value": [1, "70"]},
                    {"metric": {"model_name": "enhanced-predictor"}, "value": [1, "30"]}]}}),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, count)
}

#[tokio::test]
async fn a_storm_of_alerts_makes_one_query_per_distinct_rendered_expression() {
    // The stand-in answers slowly, so all 1,000 lookups overlap the first request.
    let (url, count) = counting_prometheus(Duration::from_millis(300)).await;
    let metrics = Arc::new(Metrics::new());
    let planner =
        Arc::new(Planner::from_settings(&example_settings(&url), metrics.clone()).unwrap());
    let n = notification("accuracy-firing.json", |_| {});
    let alert = n.alerts[0].clone();
    let routed = planner.route_alert(&alert);
    assert_eq!(routed.enrich.len(), 5);
    let lookups = (0..1000).map(|_| planner.context(&routed, &n, &alert));
    let contexts = futures_util::future::join_all(lookups).await;
    assert!(contexts.iter().all(|c| c.failed().is_empty()));
    assert_eq!(
        count.load(Ordering::SeqCst),
        5,
        "one request per distinct query"
    );
    let text = metrics.encode();
    assert!(
        text.contains("enrichment_queries_total{outcome=\"success\"} 5"),
        "{text}"
    );
    assert!(text.contains("enrichment_cache_hits_total 4995"), "{text}");
}

#[tokio::test]
async fn a_thousand_alert_notification_queries_each_expression_once() {
    let (url, count) = counting_prometheus(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let example = example_settings(&url);
    let mut settings = test_settings(dir.path());
    settings.prometheus = example.prometheus;
    settings.enrichments = example.enrichments;
    settings.actions = example.actions;
    settings.route = example.route;
    let sink = chat_sink().await;
    point_chat_actions_at(&mut settings.actions, &sink.uri());
    let app = spawn_app_with(settings).await;
    let mut body = fixture_json("accuracy-firing.json");
    let alert = body["alerts"][0].clone();
    body["alerts"] = (0..1000)
        .map(|i| {
            let mut a = alert.clone();
            a["labels"]["instance"] = format!("10.0.0.{i}:8080").into();
            a["fingerprint"] = format!("{i:016x}").into();
            a
        })
        .collect();
    let r: Value = app
        .post_alerts(body.to_string())
        .await
        .json()
        .await
        .unwrap();
    let detail = app.wait_for(r["id"].as_i64().unwrap(), is_done).await;
    // rollback and notify-ml per alert, and one on-call page for the group.
    assert_eq!(detail["action_runs"].as_array().unwrap().len(), 2001);
    assert_eq!(count.load(Ordering::SeqCst), 5);
    app.stop().await;
}

#[tokio::test]
async fn prometheus_failures_are_recorded_in_the_context_and_the_alert_still_flows() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let cases: Vec<(&str, ResponseTemplate, &str)> = vec![
        (
            "500",
            ResponseTemplate::new(500).set_body_string("boom"),
            "HTTP 500",
        ),
        (
            "garbage",
            ResponseTemplate::new(200).set_body_string("<html>"),
            "not a query result",
        ),
        (
            "query error",
            ResponseTemplate::new(422).set_body_json(
                json!({"status": "error", "errorType": "execution", "error": "too many samples"}),
            ),
            "too many samples",
        ),
        (
            "slow",
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(5))
                .set_body_json(json!({})),
            "prometheus did not answer: no answer within 200ms (GET http://127.0.0.1:",
        ),
    ];
    for (name, response, needle) in cases {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/api/v1/query"))
            .respond_with(response)
            .mount(&server)
            .await;
        let dir = tempfile::tempdir().unwrap();
        let example = example_settings(&server.uri());
        let mut settings = test_settings(dir.path());
        settings.prometheus = example.prometheus;
        settings.prometheus.as_mut().unwrap().timeout = Duration::from_millis(200);
        settings.enrichments = example.enrichments;
        settings.actions = example.actions;
        settings.route = example.route;
        let sink = chat_sink().await;
        point_chat_actions_at(&mut settings.actions, &sink.uri());
        let app = spawn_app_with(settings).await;

        let plan: Value = app.plan(fixture("accuracy-firing.json")).await;
        let error = plan["alerts"][0]["context"]["accuracy"]["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(error.contains(needle), "{name}: {plan:#}");

        let r: Value = app
            .post_alerts(fixture("accuracy-firing.json"))
            .await
            .json()
            .await
            .unwrap();
        let detail = app.wait_for(r["id"].as_i64().unwrap(), is_done).await;
        for run in detail["action_runs"].as_array().unwrap() {
            assert_eq!(run["status"], "succeeded", "{name}: the alert still flows");
            if run["fingerprint"] == "" {
                // A notification-scoped run (the on-call page) records no per-alert context.
                continue;
            }
            assert!(
                run["context"]["accuracy"]["error"]
                    .as_str()
                    .unwrap()
                    .contains(needle),
                "{name}: {run:#}"
            );
        }
        let metrics = app.get("/metrics").await.text().await.unwrap();
        let outcome = if name == "slow" { "timeout" } else { "error" };
        assert!(
            metrics.contains(&format!(
                "enrichment_queries_total{{outcome=\"{outcome}\"}}"
            )),
            "{name}: {metrics}"
        );
        assert!(
            metrics.contains("enrichment_failures_total{enrichment=\"accuracy\"}"),
            "{name}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn prometheus_down_is_an_error_in_the_context_not_a_stuck_alert() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let planner =
        Planner::from_settings(&example_settings(&closed), Arc::new(Metrics::new())).unwrap();
    let plan = planner
        .dry_run(notification("accuracy-firing.json", |_| {}))
        .await;
    let ctx = &plan["alerts"][0]["context"];
    for name in [
        "accuracy",
        "traffic_share",
        "p95_latency",
        "error_rate",
        "net_business_value",
    ] {
        assert!(
            ctx[name]["error"].as_str().unwrap().contains("unreachable"),
            "{ctx:#}"
        );
        assert!(ctx[name]["query"].as_str().unwrap().contains(EXPERIMENT));
    }
}

#[test]
fn enrichment_config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    for (yaml, want) in [
        ("enrichments: {a: {query: up}}\n", "prometheus.url: required when enrichments are configured"),
        (
            "prometheus: {url: 'http://p:9090'}\nenrichments: {a: {query: 'sum({{ labels.m }})'}}\n",
            "enrichments.a.query: every {{ … }} must be inside a double-quoted PromQL string",
        ),
        (
            "prometheus: {url: 'http://p:9090'}\nenrichments: {a: {query: up}}\nroute:\n  routes:\n    - {matchers: ['x=\"1\"'], enrich: [a, b]}\n",
            "route.routes[0].enrich[1]: unknown enrichment \"b\"",
        ),
        ("prometheus: {url: 'not a url'}\n", "prometheus.url: \"not a url\" is not a URL"),
        (
            "prometheus: {url: 'http://p:9090', max_series: 0, max_response_bytes: 10}\n",
            "prometheus.max_series: must be at least 1",
        ),
        (
            "prometheus: {url: 'http://p:9090', max_response_bytes: 10}\n",
            "prometheus.max_response_bytes: must be at least 1024",
        ),
    ] {
        std::fs::write(&file, yaml).unwrap();
        let err = Settings::load_with_env(Some(&file), Vec::new()).unwrap_err().to_string();
        assert!(err.contains(want), "{want:?} not in {err}");
    }
}

#[tokio::test]
async fn a_truncated_notification_is_completed_from_a_real_alertmanager() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    let port = free_port();
    settings.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let am = Alertmanager::start(&format!(
        "route:\n  receiver: router\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1m\n\
         receivers:\n  - name: router\n    webhook_configs:\n      - url: http://127.0.0.1:{port}/api/v1/alerts\n        max_alerts: 2\n        send_resolved: true\n"
    ))
    .await;
    settings.alertmanager = Some(serde_yaml::from_str(&format!("{{url: '{}'}}", am.url)).unwrap());
    // A chat message of the completed group counts every alert.
    let chat = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&chat)
        .await;
    settings.actions.insert(
        "chat".into(),
        serde_yaml::from_str(&format!("{{type: slack, url: '{}/hook'}}", chat.uri())).unwrap(),
    );
    settings.route = serde_yaml::from_str("{actions: [log, chat]}").unwrap();
    let app = spawn_app_with(settings).await;

    let alerts: Vec<Value> = (0..5)
        .map(|i| json!({"labels": {"alertname": "HighModelServerCPU", "pod": format!("mlserver-{i}"), "namespace": "financial-inference"},
                        "annotations": {"summary": format!("CPU of mlserver-{i}")}}))
        .collect();
    let r = reqwest::Client::new()
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&alerts)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let id = eventually(30, "the truncated notification", || async {
        let list = app.get_json("/api/v1/notifications").await;
        list["notifications"][0]["id"].as_i64()
    })
    .await;
    let detail = app.wait_for(id, is_done).await;
    assert_eq!(detail["payload"]["truncatedAlerts"], 3);
    assert_eq!(detail["payload"]["alerts"].as_array().unwrap().len(), 2);
    let mut pods: Vec<String> = detail["action_runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "log")
        .map(|r| r["fingerprint"].as_str().unwrap().to_owned())
        .collect();
    pods.sort();
    pods.dedup();
    assert_eq!(
        pods.len(),
        5,
        "all five alerts of the group were routed: {detail:#}"
    );
    let sent = chat.received_requests().await.unwrap_or_default();
    let message = String::from_utf8_lossy(&sent[0].body).into_owned();
    assert!(message.contains("\"text\":\"5 firing"), "{message}");
    assert!(!message.contains("shown of"), "{message}");
    app.stop().await;
}

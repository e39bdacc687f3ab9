//! The web console (`/console`) and the OpenAPI document, over real HTTP:
//! auth, the cross-site protection of replay, read-only and disabled modes,
//! escaping of alert values. (The browser test, scripts/test-console.sh,
//! drives the same pages in chromium.)

use crate::helpers::*;
use mlops_alert_router::secret::Secret;
use mlops_alert_router::settings::BasicUser;
use serde_json::Value;

/// A client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn page(app: &TestApp, path: &str) -> (u16, String) {
    let r = app.get(path).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The form token of the replay page of `id`.
async fn token(app: &TestApp, id: i64) -> String {
    let (status, html) = page(app, &format!("/console/notifications/{id}/replay")).await;
    assert_eq!(status, 200, "{html}");
    let start = html.find("name=\"csrf\" value=\"").expect("a form token") + 19;
    let end = start + html[start..].find('"').unwrap();
    html[start..end].to_owned()
}

async fn stored(app: &TestApp, body: String) -> i64 {
    let r = app.post_alerts(body).await;
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    app.wait_for(id, is_done).await;
    id
}

#[tokio::test]
async fn console_and_openapi_need_the_api_credentials_and_offer_the_basic_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.auth.bearer_tokens = vec![Secret::new("console-token")];
    settings.auth.basic_users = vec![BasicUser {
        username: "oncall".into(),
        password: Some(Secret::new("hunter2")),
        password_file: None,
    }];
    let app = spawn_app_with(settings).await;
    for path in ["/console/experiments", "/api/v1/openapi.json"] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 401, "{path}");
        let challenges: Vec<_> = r
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert!(
            challenges.iter().any(|c| c.starts_with("Basic ")),
            "{path}: {challenges:?}"
        );
    }
    let r = app
        .client
        .get(format!("{}/console/experiments", app.address))
        .basic_auth("oncall", Some("hunter2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    let html = r.text().await.unwrap();
    // The embedded default's experiment (its weights file is missing here).
    assert!(html.contains("financial-ab-test-experiment"), "{html}");
    let doc: Value = app
        .client
        .get(format!("{}/api/v1/openapi.json", app.address))
        .bearer_auth("console-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/alerts"]["post"]["responses"]["503"].is_object());
    app.stop().await;
}

#[tokio::test]
async fn console_replay_needs_a_same_origin_request_and_the_form_token() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path())).await;
    let id = stored(&app, fixture("accuracy-firing.json")).await;
    let token = token(&app, id).await;
    let client = no_redirects();
    let url = format!("{}/console/notifications/{id}/replay", app.address);
    let origin = app.address.clone();
    let refused = [
        // No token, a wrong one, one for another form key.
        client.post(&url).header("origin", &origin).body(""),
        client
            .post(&url)
            .header("origin", &origin)
            .body(format!("csrf={}x", token)),
        // The right token from another site.
        client
            .post(&url)
            .header("origin", "http://evil.example")
            .body(format!("csrf={token}")),
        client
            .post(&url)
            .header("sec-fetch-site", "cross-site")
            .body(format!("csrf={token}")),
    ];
    for (i, request) in refused.into_iter().enumerate() {
        let r = request
            .header("content-type", "application/x-www-form-urlencoded")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "request #{i}");
    }
    let detail = app.get_json(&format!("/api/v1/notifications/{id}")).await;
    assert_eq!(detail["round"], 0, "a refused replay started nothing");

    let r = client
        .post(&url)
        .header("origin", &origin)
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        format!("/console/notifications/{id}?replayed=1#round-1").as_str()
    );
    let detail = app
        .wait_for(id, |d| {
            d["round"] == 1
                && d["action_runs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["round"] == 1 && r["status"] == "succeeded")
        })
        .await;
    assert_eq!(detail["round"], 1);
    let (_, html) = page(&app, &format!("/console/notifications/{id}")).await;
    assert!(html.contains("Round 1 (latest)"), "{html}");
    app.stop().await;
}

#[tokio::test]
async fn a_read_only_console_shows_everything_and_refuses_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.ui.read_only = true;
    let app = spawn_app_with(settings).await;
    let id = stored(&app, fixture("accuracy-firing.json")).await;
    let (status, html) = page(&app, &format!("/console/notifications/{id}/replay")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Dry-run plan") && html.contains("read-only"));
    assert!(!html.contains("<form method=\"post\""), "{html}");
    let r = no_redirects()
        .post(format!("{}/console/notifications/{id}/replay", app.address))
        .body("csrf=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        app.get_json(&format!("/api/v1/notifications/{id}")).await["round"],
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_disabled_console_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.ui.enabled = false;
    let app = spawn_app_with(settings).await;
    let r = app.get("/console/experiments").await;
    assert_eq!(r.status(), 404);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    assert_eq!(app.get("/api/v1/notifications").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn alert_values_are_escaped_and_only_http_links_are_links() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path())).await;
    let mut body = fixture_json("accuracy-firing.json");
    let evil = "<script>alert(1)</script>\"'";
    body["alerts"][0]["labels"]["alertname"] = evil.into();
    body["alerts"][0]["annotations"]["summary"] = evil.into();
    body["alerts"][0]["generatorURL"] = "javascript:alert(1)".into();
    body["receiver"] = evil.into();
    let id = stored(&app, body.to_string()).await;
    for path in [
        format!("/console/notifications/{id}"),
        format!("/console/notifications/{id}/replay"),
        "/console/notifications".to_owned(),
        format!("/console/notifications?alertname={}", "%3Cscript%3E"),
    ] {
        let (status, html) = page(&app, &path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!html.contains("<script"), "{path}: {html}");
        assert!(!html.contains("href=\"javascript:"), "{path}: {html}");
    }
    let (_, html) = page(&app, &format!("/console/notifications/{id}")).await;
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "{html}"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_console_input_gets_a_page_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(dir.path())).await;
    for (path, status, says) in [
        (
            "/console/notifications?status=burning",
            400,
            "status: must be firing or resolved",
        ),
        ("/console/notifications?before=x", 400, "before: not an id"),
        ("/console/notifications/abc", 400, "not a notification id"),
        (
            "/console/notifications/999",
            404,
            "no notification with id 999",
        ),
        (
            "/console/notifications/999/replay",
            404,
            "no notification with id 999",
        ),
    ] {
        let (got, html) = page(&app, path).await;
        assert_eq!(got, status, "{path}");
        assert!(html.contains(says), "{path}: {html}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_notification_page_shows_the_enrichment_context_per_variant_from_real_prometheus() {
    use crate::components::{Exporter, Prometheus};
    let exporter = Exporter::start("financial-ab-test-experiment").await;
    let prom = Prometheus::start(std::slice::from_ref(&exporter.target)).await;
    prom.wait_for_series("rate(ab_test_requests_total[5m]) > 0", 3)
        .await;
    let sink = chat_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/mlops.yaml");
    let mut settings =
        mlops_alert_router::settings::Settings::load_with_env(Some(&example), Vec::new()).unwrap();
    let test = test_settings(dir.path());
    settings.server = test.server;
    settings.storage = test.storage;
    settings.worker = test.worker;
    settings.prometheus.as_mut().unwrap().url = prom.url.clone();
    settings.alertmanager = None;
    // No cluster here: the example's Seldon rollback becomes a log line.
    settings.actions.insert(
        "rollback".into(),
        serde_yaml::from_str("{type: log}").unwrap(),
    );
    point_chat_actions_at(&mut settings.actions, &sink.uri());
    let app = spawn_app_with(settings).await;
    let id = stored(&app, fixture("accuracy-firing.json")).await;
    let (status, html) = page(&app, &format!("/console/notifications/{id}")).await;
    assert_eq!(status, 200);
    // The accuracy enrichment, one row per variant, with the exporter's values.
    for needle in [
        "Enrichment context",
        "<th scope=\"row\" rowspan=\"2\">accuracy</th><td>baseline-predictor</td><td class=\"num\">72.5</td>",
        "<td>enhanced-predictor</td><td class=\"num\">51.2</td>",
        "net_business_value",
    ] {
        assert!(html.contains(needle), "{needle:?} not in {html}");
    }
    app.stop().await;
}

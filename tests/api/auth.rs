use crate::helpers::*;
use mlops_alert_router::secret::Secret;
use mlops_alert_router::settings::BasicUser;

async fn protected_app(dir: &std::path::Path, protect_metrics: bool) -> TestApp {
    let mut settings = test_settings(dir);
    settings.auth.bearer_tokens = vec![Secret::new("s3cret-token"), Secret::new("next-token")];
    settings.auth.basic_users = vec![BasicUser {
        username: "alertmanager".into(),
        password: Some(Secret::new("hunter2")),
        password_file: None,
    }];
    settings.auth.protect_metrics = protect_metrics;
    spawn_app_with(settings).await
}

#[tokio::test]
async fn valid_bearer_tokens_and_basic_users_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let app = protected_app(dir.path(), false).await;
    let url = format!("{}/api/v1/alerts", app.address);
    for (i, request) in [
        app.client.post(&url).bearer_auth("s3cret-token"),
        app.client.post(&url).bearer_auth("next-token"),
        app.client
            .post(&url)
            .basic_auth("alertmanager", Some("hunter2")),
    ]
    .into_iter()
    .enumerate()
    {
        let mut body = fixture_json("accuracy-firing.json");
        body["groupKey"] = format!("group-{i}").into();
        let r = request.body(body.to_string()).send().await.unwrap();
        assert_eq!(r.status(), 200, "credential #{i}");
    }
    let r = app
        .client
        .get(format!("{}/api/v1/notifications", app.address))
        .bearer_auth("next-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn missing_or_wrong_credentials_get_401_with_a_challenge_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = protected_app(dir.path(), false).await;
    let url = format!("{}/api/v1/alerts", app.address);
    for request in [
        app.client.post(&url),
        app.client.post(&url).bearer_auth("s3cret-token-but-longer"),
        app.client.post(&url).bearer_auth("s3cret-toke"),
        app.client
            .post(&url)
            .basic_auth("alertmanager", Some("hunter3")),
        app.client
            .post(&url)
            .header("authorization", "s3cret-token"),
    ] {
        let r = request
            .body(fixture("accuracy-firing.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let challenges: Vec<_> = r
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert!(
            challenges.iter().any(|c| c.starts_with("Bearer")),
            "{challenges:?}"
        );
        assert!(
            challenges.iter().any(|c| c.starts_with("Basic")),
            "{challenges:?}"
        );
        let body = r.text().await.unwrap();
        assert!(!body.contains("s3cret"), "{body}");
    }
    for path in ["/api/v1/notifications", "/api/v1/notifications/1"] {
        assert_eq!(app.get(path).await.status(), 401, "{path}");
    }
    // Health and metrics stay open; nothing got stored.
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("notifications_received_total{outcome=\"unauthorized\"} 5"),
        "{text}"
    );
    assert!(
        text.contains("notifications_received_total{outcome=\"stored\"} 0"),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn metrics_can_require_credentials_too() {
    let dir = tempfile::tempdir().unwrap();
    let app = protected_app(dir.path(), true).await;
    assert_eq!(app.get("/metrics").await.status(), 401);
    let r = app
        .client
        .get(format!("{}/metrics", app.address))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await;
}

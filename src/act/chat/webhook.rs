//! `type: webhook`: any HTTP endpoint (an Argo Events webhook source that
//! starts retraining, a paging bridge). One request per notification; the
//! body is the notification's [`View`] as JSON, or a `template` rendering
//! JSON in which every `{{ … }}` is a JSON value. `method`, `headers` and a
//! `bearer_token` are configurable; header values are secrets.

use super::limits::{fit, json_bytes};
use super::render::View;
use super::template::ChatTemplate;
use super::transport::Delivery;
use super::{chat_config, checked, parse_url, resolve_secret, validate_url, Platform, RateLimit};
use crate::act::{Action, ActionContext, ActionError, RetryLimits, Scope};
use crate::secret::{Secret, REDACTED};
use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use url::Url;

/// The method of the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Post,
    Put,
    Patch,
}

fn default_max_body_bytes() -> usize {
    1024 * 1024
}

chat_config! {
    /// `actions.<name>` with `type: webhook`.
    WebhookConfig {
        /// The endpoint (a secret: URLs often carry a token).
        url,
        #[serde(default)]
        method: HttpMethod,
        /// Extra request headers; values are secrets (redacted everywhere).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, Secret>,
        /// Sent as `Authorization: Bearer …`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bearer_token: Option<Secret>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bearer_token_file: Option<PathBuf>,
        /// Alerts are left out of the body (`omitted` counts them) above this size.
        #[serde(default = "default_max_body_bytes")]
        max_body_bytes: usize,
    }
}

impl Platform for WebhookConfig {
    /// Reads `url_file`, `bearer_token_file`, `template_file`.
    fn resolve_files(&mut self, key: &str) -> Result<(), String> {
        resolve_secret(&mut self.url, &self.url_file, key, "url")?;
        resolve_secret(
            &mut self.bearer_token,
            &self.bearer_token_file,
            key,
            "bearer_token",
        )?;
        self.resolve_template(key)
    }

    /// Offline checks; errors are relative to `actions.<name>`.
    fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        validate_url(
            self.url.as_ref(),
            self.url_file.as_deref(),
            "url",
            &mut errors,
        );
        if let Err(e) = headers(self) {
            errors.push(e);
        }
        if self.max_body_bytes < 1024 {
            errors.push("max_body_bytes: must be at least 1024".into());
        }
        if self.digest.as_ref().is_some_and(|d| d.enabled) {
            errors.push("digest.enabled: a webhook sends every notification (its consumer may need each one); digests are for chat types".into());
        }
        self.shared()
            .validate(super::template::Escaping::Json, &mut errors);
        checked(errors)
    }

    fn build(
        &self,
        name: &str,
        tls: &crate::outbound::CaPolicy,
        _metrics: &std::sync::Arc<crate::metrics::Metrics>,
    ) -> Result<std::sync::Arc<dyn Action>, String> {
        Ok(std::sync::Arc::new(WebhookAction::new(name, self, tls)?))
    }
}

/// The configured headers (values marked sensitive, so they are never logged).
fn headers(c: &WebhookConfig) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in &c.headers {
        let key = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("headers.{name}: not a valid header name"))?;
        let mut v = HeaderValue::from_str(value.expose())
            .map_err(|_| format!("headers.{name}: not a valid header value"))?;
        v.set_sensitive(true);
        map.insert(key, v);
    }
    if let Some(token) = &c.bearer_token {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose().trim()))
            .map_err(|_| "bearer_token: not a valid header value".to_owned())?;
        v.set_sensitive(true);
        map.insert(AUTHORIZATION, v);
    }
    Ok(map)
}

struct Ready {
    url: Url,
    headers: HeaderMap,
    template: Option<ChatTemplate>,
    delivery: Delivery,
}

/// The webhook action.
pub struct WebhookAction {
    name: String,
    config: WebhookConfig,
    ready: Ready,
}

impl WebhookAction {
    /// Builds from validated config; a problem is an error relative to
    /// `actions.<name>`, and stops startup.
    pub fn new(
        name: &str,
        config: &WebhookConfig,
        tls: &crate::outbound::CaPolicy,
    ) -> Result<Self, String> {
        Ok(Self {
            name: name.to_owned(),
            config: config.clone(),
            ready: Self::ready(config, tls)?,
        })
    }

    fn ready(c: &WebhookConfig, tls: &crate::outbound::CaPolicy) -> Result<Ready, String> {
        let secret = c
            .url
            .as_ref()
            .ok_or_else(|| "url: url or url_file is required".to_owned())?;
        let url = parse_url(secret).map_err(|e| format!("url: {e}"))?;
        let shared = c.shared();
        let mut secrets = Delivery::url_secrets(secret.expose().trim());
        secrets.extend(c.headers.values().map(|v| v.expose().to_owned()));
        secrets.extend(c.bearer_token.iter().map(|t| t.expose().trim().to_owned()));
        Ok(Ready {
            url,
            headers: headers(c)?,
            template: shared.compile(super::template::Escaping::Json)?,
            delivery: Delivery::new(
                tls,
                shared.timeout,
                shared.rate_limit.unwrap_or(RateLimit {
                    per_second: 10.0,
                    burst: 10,
                }),
                secrets,
            )?,
        })
    }

    /// The body: the template's JSON, else the default, with as many alerts as fit.
    fn compose(&self, ctx: &ActionContext<'_>) -> (&Ready, Value, usize, usize, Option<String>) {
        let ready = &self.ready;
        let view = View::build(ctx.notification_id, ctx.notification, &ctx.alerts);
        let n = view.alerts.len();
        let max = self.config.max_body_bytes;
        let mut template_error = None;
        if let Some(t) = &ready.template {
            let render = |k: usize| {
                t.render(&view, k).and_then(|text| {
                    serde_json::from_str::<Value>(&text)
                        .map_err(|e| format!("template error: the body is not JSON: {e}"))
                })
            };
            match fit(n, render, |b| json_bytes(b) <= max) {
                Ok((body, k)) => return (ready, body, k, n - k, None),
                Err(e) => {
                    tracing::warn!(action = %self.name, error = %e, "Webhook template failed; sending the default body");
                    if let Some(m) = ctx.metrics {
                        m.template_error(&self.name);
                    }
                    template_error = Some(e);
                }
            }
        }
        let whole = serde_json::to_value(&view).unwrap_or(Value::Null);
        let body_with = |k: usize| {
            let mut body = whole.clone();
            if let Some(alerts) = body["alerts"].as_array_mut() {
                alerts.truncate(k);
            }
            body["omitted"] = json!(n - k);
            body["version"] = json!("1");
            Ok::<_, std::convert::Infallible>(body)
        };
        let (body, k) = match fit(n, body_with, |b| json_bytes(b) <= max) {
            Ok(found) => found,
            Err(never) => match never {},
        };
        (ready, body, k, n - k, template_error)
    }
}

fn method(m: HttpMethod) -> reqwest::Method {
    match m {
        HttpMethod::Post => reqwest::Method::POST,
        HttpMethod::Put => reqwest::Method::PUT,
        HttpMethod::Patch => reqwest::Method::PATCH,
    }
}

#[async_trait]
impl Action for WebhookAction {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn scope(&self) -> Scope {
        Scope::Notification
    }

    fn retry_limits(&self) -> RetryLimits {
        self.config.shared().limits
    }

    async fn execute(&self, ctx: &ActionContext<'_>) -> Result<Value, ActionError> {
        let (ready, body, shown, omitted, template_error) = self.compose(ctx);
        let reply = ready
            .delivery
            .send(
                method(self.config.method),
                ready.url.clone(),
                &ready.headers,
                &body,
            )
            .await?;
        let mut result = json!({
            "type": "webhook",
            "status": reply.status,
            "alerts": shown,
            "omitted": omitted,
            "bytes": json_bytes(&body),
        });
        if let Some(e) = template_error {
            result["template_error"] = json!(e);
        }
        Ok(result)
    }

    async fn plan(&self, ctx: &ActionContext<'_>) -> Value {
        let (ready, body, shown, omitted, template_error) = self.compose(ctx);
        let headers: BTreeMap<&str, &str> = ready
            .headers
            .keys()
            .map(|k| (k.as_str(), REDACTED))
            .collect();
        let mut plan = json!({
            "type": "webhook",
            "method": method(self.config.method).as_str(),
            "url": REDACTED,
            "headers": headers,
            "alerts": shown,
            "omitted": omitted,
            "body": body,
        });
        if let Some(e) = template_error {
            plan["template_error"] = json!(e);
        }
        plan
    }
}

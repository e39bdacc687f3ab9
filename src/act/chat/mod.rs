//! Chat actions (Slack, Microsoft Teams, Mattermost, Discord, Google Chat)
//! and the generic webhook: one message per Alertmanager notification.
//!
//! Each is notification-scoped: it runs once per notification, after the
//! alert-scoped actions (a traffic shift), and says what they did. The parts:
//!
//! - [`render`]: the platform-neutral [`render::View`] of a notification and
//!   markup helpers; [`template`]: custom minijinja templates;
//! - [`limits`]: cutting at a character boundary and at alert boundaries;
//! - [`transport`]: the HTTP request, status classification (2xx only is
//!   success; 429/5xx/network retryable; other 4xx permanent), `Retry-After`,
//!   the per-destination rate limit, secrets scrubbed from errors;
//! - one file per platform with its config and its JSON (a `Format`);
//!   [`slack`] also has the bot-token mode that updates a group's message.

pub mod digest;
mod discord;
mod google_chat;
pub mod limits;
mod mattermost;
mod msteams;
pub mod render;
pub mod slack;
pub mod template;
pub mod transport;
pub mod webhook;

pub use discord::DiscordConfig;
pub use google_chat::GoogleChatConfig;
pub use mattermost::MattermostConfig;
pub use msteams::MsTeamsConfig;
pub use slack::SlackConfig;
pub use webhook::WebhookConfig;

use crate::act::{Action, ActionContext, ActionError, RetryLimits, Scope};
use crate::secret::{Secret, REDACTED};
use async_trait::async_trait;
use limits::{fit, more_alerts};
use render::{Dialect, Markup, View};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use template::{ChatTemplate, Escaping};
use transport::Delivery;
use url::Url;

/// The `type`s implemented here (metrics declare their template-error series).
pub const KINDS: &[&str] = &[
    "slack",
    "msteams",
    "mattermost",
    "discord",
    "google_chat",
    "webhook",
];

/// `actions.<name>.rate_limit`: requests per second to the destination, and
/// how many may go at once after a quiet spell. Over it, delivery waits.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Declares a chat action's config struct: the destination `url` (a
/// secret, documented by the platform) and `url_file`, its own fields, then
/// the fields every chat action has (template, timeout, rate limit, retry
/// limits); and the shared accessors ([`ChatFields`]).
/// `deny_unknown_fields` rules out `#[serde(flatten)]`, hence a macro.
macro_rules! chat_config {
    ($(#[$meta:meta])* $name:ident {
        $(#[$umeta:meta])* url,
        $($(#[$fmeta:meta])* $field:ident : $ty:ty,)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(#[$umeta])*
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub url: Option<crate::secret::Secret>,
            /// `url` from a file.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub url_file: Option<std::path::PathBuf>,
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Custom message (minijinja); the default message when absent.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub template: Option<String>,
            /// The template, from a file (read when the config loads).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub template_file: Option<std::path::PathBuf>,
            /// Per request.
            #[serde(default = "crate::act::chat::default_timeout", with = "crate::conf::duration")]
            pub timeout: std::time::Duration,
            /// Default: the platform's documented limit.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub rate_limit: Option<crate::act::chat::RateLimit>,
            /// A digest instead of a queue when a storm outruns the rate
            /// limit (`digest.rs`); default: on for chat, off for webhook.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub digest: Option<crate::act::chat::digest::DigestConfig>,
            /// Overrides `worker.max_attempts`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub max_attempts: Option<u32>,
            /// Overrides `worker.max_age`.
            #[serde(default, with = "crate::conf::opt_duration", skip_serializing_if = "Option::is_none")]
            pub max_age: Option<std::time::Duration>,
            /// `template_file`'s content, once read.
            #[serde(skip)]
            pub(crate) template_source: Option<String>,
        }

        impl $name {
            fn shared(&self) -> crate::act::chat::Shared<'_> {
                crate::act::chat::Shared {
                    template: self.template.as_deref().or(self.template_source.as_deref()),
                    template_key: if self.template.is_some() { "template" } else { "template_file" },
                    timeout: self.timeout,
                    rate_limit: self.rate_limit,
                    digest: self.digest.as_ref(),
                    limits: crate::act::RetryLimits {
                        max_attempts: self.max_attempts,
                        max_age: self.max_age,
                    },
                }
            }

            fn resolve_template(&mut self, key: &str) -> Result<(), String> {
                crate::act::chat::resolve_template(
                    &self.template,
                    &self.template_file,
                    &mut self.template_source,
                    key,
                )
            }
        }

        impl crate::act::chat::ChatFields for $name {
            fn shared(&self) -> crate::act::chat::Shared<'_> {
                $name::shared(self)
            }

            fn url(&self) -> Option<&crate::secret::Secret> {
                self.url.as_ref()
            }

            fn url_file(&self) -> Option<&std::path::Path> {
                self.url_file.as_deref()
            }
        }
    };
}
pub(crate) use chat_config;

/// Implements [`Platform`] for a platform that only POSTs its [`Format`]
/// to its `url`: read `url_file` and the template file, check the URL and
/// the shared fields, build a [`PostAction`].
macro_rules! post_platform {
    ($name:ident) => {
        impl crate::act::chat::Platform for $name {
            fn resolve_files(&mut self, key: &str) -> Result<(), String> {
                crate::act::chat::resolve_secret(&mut self.url, &self.url_file, key, "url")?;
                self.resolve_template(key)
            }

            fn validate(&self) -> Result<(), Vec<String>> {
                let mut errors = Vec::new();
                crate::act::chat::validate_common(
                    self,
                    crate::act::chat::template::Escaping::Chat(
                        <Self as crate::act::chat::Format>::DIALECT,
                    ),
                    &mut errors,
                );
                crate::act::chat::checked(errors)
            }

            fn build(
                &self,
                name: &str,
                tls: &crate::outbound::CaPolicy,
                metrics: &std::sync::Arc<crate::metrics::Metrics>,
            ) -> Result<std::sync::Arc<dyn crate::act::Action>, String> {
                Ok(std::sync::Arc::new(crate::act::chat::PostAction::new(
                    name, self, tls, metrics,
                )?))
            }
        }
    };
}
pub(crate) use post_platform;

/// One chat platform (or the generic webhook) as the action config sees
/// it. A new platform is one file (its config through `chat_config!`, its
/// `Format` and `post_platform!`, or its own action) and one
/// [`crate::act::ActionConfig`] arm.
pub trait Platform: Send + Sync {
    /// Reads the `*_file` secrets and the template file; errors name the
    /// key below `key` (`actions.<name>`).
    fn resolve_files(&mut self, key: &str) -> Result<(), String>;
    /// Offline checks; errors are relative to `actions.<name>`.
    fn validate(&self) -> Result<(), Vec<String>>;
    /// The runtime action; an error is relative to `actions.<name>`.
    /// `metrics` get the digest queue's series.
    fn build(
        &self,
        name: &str,
        tls: &crate::outbound::CaPolicy,
        metrics: &Arc<crate::metrics::Metrics>,
    ) -> Result<std::sync::Arc<dyn Action>, String>;
}

/// The fields every chat config has (`chat_config!` implements it).
pub(crate) trait ChatFields {
    /// The shared fields, borrowed.
    fn shared(&self) -> Shared<'_>;
    /// The destination URL (a secret).
    fn url(&self) -> Option<&Secret>;
    /// Where `url` is read from.
    fn url_file(&self) -> Option<&std::path::Path>;
}

/// The checks every chat config shares: `url` set and valid, the shared
/// fields (template, timeout, rate limit, retry limits).
pub(crate) fn validate_common<C: ChatFields>(
    config: &C,
    escaping: Escaping,
    errors: &mut Vec<String>,
) {
    validate_url(config.url(), config.url_file(), "url", errors);
    config.shared().validate(escaping, errors);
}

/// `Ok` without errors.
pub(crate) fn checked(errors: Vec<String>) -> Result<(), Vec<String>> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The fields every chat action shares, borrowed.
pub(crate) struct Shared<'a> {
    pub template: Option<&'a str>,
    pub template_key: &'static str,
    pub timeout: Duration,
    pub rate_limit: Option<RateLimit>,
    pub digest: Option<&'a digest::DigestConfig>,
    pub limits: RetryLimits,
}

impl Shared<'_> {
    /// Offline checks of the shared fields.
    fn validate(&self, escaping: Escaping, errors: &mut Vec<String>) {
        if let Some(source) = self.template {
            if let Err(e) = ChatTemplate::compile(source, escaping) {
                errors.push(format!("{}: {e}", self.template_key));
            }
        }
        if self.timeout.is_zero() {
            errors.push("timeout: must be greater than 0".into());
        }
        if self.rate_limit.is_some_and(|r| r.quota().is_none()) {
            errors.push("rate_limit: per_second must be in (0, 1e6] and burst at least 1".into());
        }
        if let Some(d) = self.digest {
            d.validate(errors);
        }
        if self.limits.max_attempts == Some(0) {
            errors.push("max_attempts: must be at least 1".into());
        }
        if self.limits.max_age.is_some_and(|d| d.is_zero()) {
            errors.push("max_age: must be greater than 0".into());
        }
    }

    fn compile(&self, escaping: Escaping) -> Result<Option<ChatTemplate>, String> {
        self.template
            .map(|t| ChatTemplate::compile(t, escaping))
            .transpose()
            .map_err(|e| format!("{}: {e}", self.template_key))
    }
}

/// Reads `template_file` (refusing both `template` and `template_file`).
pub(crate) fn resolve_template(
    inline: &Option<String>,
    file: &Option<PathBuf>,
    source: &mut Option<String>,
    key: &str,
) -> Result<(), String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!(
            "{key}.template: set either template or template_file, not both"
        )),
        (None, Some(path)) => {
            *source = Some(crate::conf::read_file(
                path,
                &format!("{key}.template_file"),
            )?);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Reads a `<name>_file` secret into `<name>` (refusing both). Surrounding
/// whitespace (a file's trailing newline) is dropped.
pub(crate) fn resolve_secret(
    value: &mut Option<Secret>,
    file: &Option<PathBuf>,
    key: &str,
    name: &str,
) -> Result<(), String> {
    match (&value, file) {
        (Some(_), Some(_)) => Err(format!(
            "{key}.{name}: set either {name} or {name}_file, not both"
        )),
        (None, Some(path)) => {
            let text = crate::conf::read_file(path, &format!("{key}.{name}_file"))?;
            *value = Some(Secret::new(text.trim()));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Checks a secret URL without ever printing it.
pub(crate) fn validate_url(
    value: Option<&Secret>,
    file: Option<&std::path::Path>,
    name: &str,
    errors: &mut Vec<String>,
) {
    match value {
        None if file.is_none() => errors.push(format!("{name}: {name} or {name}_file is required")),
        None => {}
        Some(url) => {
            if let Err(e) = parse_url(url) {
                errors.push(format!("{name}: {e}"));
            }
        }
    }
}

/// Parses a secret URL; the error does not contain it.
pub(crate) fn parse_url(url: &Secret) -> Result<Url, String> {
    let u = Url::parse(url.expose().trim()).map_err(|e| format!("not a valid URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    Ok(u)
}

/// A platform's message JSON and its limits.
pub(crate) trait Format: ChatFields + Send + Sync + 'static {
    /// The config `type`.
    const KIND: &'static str;
    /// The platform's documented rate per destination.
    const DEFAULT_RATE: RateLimit;
    /// Most characters of a custom template's text.
    const TEXT_LIMIT: usize;
    /// The markup a custom template's text is in (and its values escaped for).
    const DIALECT: Dialect;

    /// Query parameters added to the URL.
    fn extra_query(&self) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }
    /// The default message with the first `shown` alerts.
    fn default_body(&self, view: &View, shown: usize) -> Value;
    /// A custom template's text in the platform's frame.
    fn text_body(&self, view: &View, text: &Markup) -> Value;
    /// True when `body` is within the platform's limits.
    fn fits(&self, body: &Value) -> bool;
}

/// A message ready to send, and how it was made.
pub(crate) struct Composed {
    pub body: Value,
    pub shown: usize,
    pub omitted: usize,
    pub template_error: Option<String>,
}

impl Composed {
    fn summary(&self, kind: &str) -> Value {
        let mut v = json!({
            "type": kind,
            "alerts": self.shown,
            "omitted": self.omitted,
            "bytes": limits::json_bytes(&self.body),
        });
        if let Some(e) = &self.template_error {
            v["template_error"] = json!(e);
        }
        v
    }
}

/// The message for `view`: the custom template's text if it renders, else
/// the default; cut at alert boundaries to the platform's limits.
pub(crate) fn compose<F: Format>(
    action: &str,
    format: &F,
    template: Option<&ChatTemplate>,
    view: &View,
    metrics: Option<&crate::metrics::Metrics>,
) -> Composed {
    let n = view.alerts.len();
    let mut template_error = None;
    if let Some(t) = template {
        let build = |k: usize| {
            t.render_markup(view, k).map(|text| {
                let text = if k < n {
                    text.trim_end()
                        .then(&Markup::lit("\n"))
                        .then(&F::DIALECT.text(&more_alerts(n - k)))
                } else {
                    text
                };
                let text = text.clip(F::TEXT_LIMIT);
                let body = format.text_body(view, &text);
                (text, body)
            })
        };
        match fit(n, build, |(text, body)| {
            text.chars() <= F::TEXT_LIMIT && format.fits(body)
        }) {
            Ok(((_, body), shown)) => {
                return Composed {
                    body,
                    shown,
                    omitted: n - shown,
                    template_error: None,
                }
            }
            Err(e) => {
                tracing::warn!(action, error = %e, "Message template failed; sending the default message");
                if let Some(m) = metrics {
                    m.template_error(action);
                }
                template_error = Some(e);
            }
        }
    }
    let built = fit(
        n,
        |k| Ok::<_, std::convert::Infallible>(format.default_body(view, k)),
        |b| format.fits(b),
    );
    let (body, shown) = match built {
        Ok(found) => found,
        Err(never) => match never {},
    };
    Composed {
        body,
        shown,
        omitted: n - shown,
        template_error,
    }
}

/// What the action was built into: everything needed to send, or why it cannot.
struct Ready {
    url: Url,
    template: Option<ChatTemplate>,
    delivery: Arc<Delivery>,
    /// The destination's queue, when digests are on.
    queue: Option<digest::DigestQueue>,
}

/// A chat action that POSTs one JSON message to a secret webhook URL.
pub(crate) struct PostAction<F: Format> {
    name: String,
    format: F,
    limits: RetryLimits,
    ready: Ready,
}

impl<F: Format + Clone> PostAction<F> {
    /// Builds from validated config; a problem (unset URL) is an error
    /// relative to `actions.<name>`, and stops startup.
    pub(crate) fn new(
        name: &str,
        config: &F,
        tls: &crate::outbound::CaPolicy,
        metrics: &Arc<crate::metrics::Metrics>,
    ) -> Result<Self, String> {
        let shared = config.shared();
        Ok(Self {
            name: name.to_owned(),
            format: config.clone(),
            limits: shared.limits,
            ready: Self::ready(name, config, tls, metrics)?,
        })
    }

    fn ready(
        name: &str,
        config: &F,
        tls: &crate::outbound::CaPolicy,
        metrics: &Arc<crate::metrics::Metrics>,
    ) -> Result<Ready, String> {
        let shared = config.shared();
        let secret = config
            .url()
            .ok_or_else(|| "url: url or url_file is required".to_owned())?;
        let mut url = parse_url(secret).map_err(|e| format!("url: {e}"))?;
        for (k, v) in config.extra_query() {
            url.query_pairs_mut().append_pair(k, v);
        }
        let rate = shared.rate_limit.unwrap_or(F::DEFAULT_RATE);
        let delivery = Arc::new(Delivery::new(
            tls,
            shared.timeout,
            rate,
            Delivery::url_secrets(secret.expose().trim()),
        )?);
        let digest = digest::DigestConfig::effective(shared.digest, true);
        let queue = digest.enabled.then(|| {
            let sink = digest::PostSink {
                action: name.to_owned(),
                format: config.clone(),
                url: url.clone(),
                delivery: delivery.clone(),
                config: digest.clone(),
            };
            digest::DigestQueue::new(
                name,
                digest.clone(),
                rate.per_second,
                Arc::new(sink),
                Some(metrics.clone()),
            )
        });
        Ok(Ready {
            url,
            template: shared.compile(Escaping::Chat(F::DIALECT))?,
            delivery,
            queue,
        })
    }

    fn compose(&self, ctx: &ActionContext<'_>) -> (&Ready, Composed) {
        let ready = &self.ready;
        let view = View::build(ctx.notification_id, ctx.notification, &ctx.alerts);
        let composed = compose(
            &self.name,
            &self.format,
            ready.template.as_ref(),
            &view,
            ctx.metrics,
        );
        (ready, composed)
    }
}

#[async_trait]
impl<F: Format + Clone> Action for PostAction<F> {
    fn kind(&self) -> &'static str {
        F::KIND
    }

    fn scope(&self) -> Scope {
        Scope::Notification
    }

    fn retry_limits(&self) -> RetryLimits {
        self.limits
    }

    fn queues(&self) -> bool {
        self.ready.queue.is_some()
    }

    async fn execute(&self, ctx: &ActionContext<'_>) -> Result<Value, ActionError> {
        let ready = &self.ready;
        // In a storm the message waits for its turn, or goes out in a digest
        // (composed only when it is sent: a storm's waiting messages stay small).
        let _turn = match &ready.queue {
            Some(queue) => {
                let view = View::build(ctx.notification_id, ctx.notification, &ctx.alerts);
                let entry = digest::Entry::from_view(&view, queue.config().max_items);
                match queue.wait_turn(entry).await {
                    digest::Turn::Send(guard) => Some(guard),
                    digest::Turn::Digested(result) => return result,
                }
            }
            None => None,
        };
        let (ready, composed) = self.compose(ctx);
        let reply = ready
            .delivery
            .send(
                reqwest::Method::POST,
                ready.url.clone(),
                &Default::default(),
                &composed.body,
            )
            .await?;
        tracing::debug!(action = %self.name, kind = F::KIND, status = reply.status, "Chat message delivered");
        let mut result = composed.summary(F::KIND);
        result["status"] = json!(reply.status);
        Ok(result)
    }

    async fn plan(&self, ctx: &ActionContext<'_>) -> Value {
        let (_, composed) = self.compose(ctx);
        let mut plan = composed.summary(F::KIND);
        plan["method"] = json!("POST");
        plan["url"] = json!(REDACTED);
        let query: serde_json::Map<String, Value> = self
            .format
            .extra_query()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect();
        if !query.is_empty() {
            plan["query"] = Value::Object(query);
        }
        plan["body"] = composed.body;
        plan
    }
}

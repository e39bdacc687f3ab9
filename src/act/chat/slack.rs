//! `type: slack`: an incoming webhook (`url`), or a bot token (`token` +
//! `channel`) with `chat.postMessage`/`chat.update`: the group's message is
//! kept per (action, channel, groupKey); a later notification of the group
//! updates it to the group's current state and adds a thread reply, and the
//! resolved notification closes it (the next firing starts a new message).
//!
//! Message: Block Kit inside a coloured attachment. Limits: 50 blocks, 3000
//! characters per section, a header of 150, and about 12,000 characters in
//! all (Slack answers `msg_blocks_too_long` above, though no block is over).

use super::digest::{
    render as render_digest, DigestConfig, DigestQueue, DigestSink, Entry, Heading, Posted,
    Summary, Turn,
};
use super::limits::{chars, more_alerts};
use super::render::{
    alert_text_within, escape_each, line_marker, lookalike, router_text, table_text, Dialect,
    Markup, View, ZWSP,
};
use super::transport::Delivery;
use super::{
    chat_config, checked, compose, resolve_secret, validate_url, Format, Platform, PostAction,
    RateLimit,
};
use crate::act::{Action, ActionContext, ActionError, RetryLimits, Scope};
use crate::outbound::CaPolicy;
use crate::secret::{Secret, REDACTED};
use crate::store::{ChatThread, ChatThreadKey};
use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use url::Url;

const SECTION_CHARS: usize = 3000;
const HEADER_CHARS: usize = 150;
const MAX_BLOCKS: usize = 50;
const TOTAL_CHARS: usize = 12_000;

fn default_api_url() -> String {
    "https://slack.com/api".into()
}

chat_config! {
    /// `actions.<name>` with `type: slack`.
    SlackConfig {
        /// Incoming webhook URL (a secret).
        url,
        /// Bot token (`xoxb-…`, a secret): bot mode, with `channel`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<Secret>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_file: Option<PathBuf>,
        /// Channel id or name for bot mode.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        /// Web API base URL (tests point it at a mock).
        #[serde(default = "default_api_url")]
        api_url: String,
    }
}

impl Platform for SlackConfig {
    /// Reads `url_file`, `token_file`, `template_file`.
    fn resolve_files(&mut self, key: &str) -> Result<(), String> {
        resolve_secret(&mut self.url, &self.url_file, key, "url")?;
        resolve_secret(&mut self.token, &self.token_file, key, "token")?;
        self.resolve_template(key)
    }

    /// Offline checks; errors are relative to `actions.<name>`.
    fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        let bot = self.token.is_some() || self.token_file.is_some();
        let hook = self.url.is_some() || self.url_file.is_some();
        match (hook, bot) {
            (true, true) => errors.push(
                "url: set url (incoming webhook) or token (bot), not both".into(),
            ),
            (false, false) => errors.push(
                "url: url or url_file (incoming webhook), or token or token_file with channel (bot), is required".into(),
            ),
            (true, false) => {
                validate_url(self.url.as_ref(), self.url_file.as_deref(), "url", &mut errors);
                if self.channel.is_some() {
                    errors.push("channel: only with token (an incoming webhook posts to its own channel)".into());
                }
            }
            (false, true) => {
                if self.channel.as_deref().is_none_or(|c| c.trim().is_empty()) {
                    errors.push("channel: required with token".into());
                }
                if Url::parse(&self.api_url).is_err() {
                    errors.push(format!("api_url: {:?} is not a URL", self.api_url));
                }
            }
        }
        self.shared()
            .validate(super::template::Escaping::Chat(Dialect::Slack), &mut errors);
        checked(errors)
    }

    /// The incoming-webhook action, or the bot with a token.
    fn build(
        &self,
        name: &str,
        tls: &CaPolicy,
        metrics: &Arc<crate::metrics::Metrics>,
    ) -> Result<Arc<dyn Action>, String> {
        Ok(if self.token.is_some() || self.token_file.is_some() {
            Arc::new(SlackBot::new(name, self, tls, metrics)?)
        } else {
            Arc::new(PostAction::new(name, self, tls, metrics)?)
        })
    }
}

/// A value as mrkdwn: `&`, `<`, `>` as entities, so no `<!channel>`,
/// `<!here>`, `<@U…>`, `<#C…>` or `<url|text>` survives; `*`, `~`, backtick
/// and an edge `_` as look-alikes (Slack has no escape for them); a
/// zero-width space after `@` (no `@channel`) and before a line's leading
/// `>` (no quote). Applied to every mrkdwn field and the top-level `text`
/// and `fallback`; the `plain_text` header gets [`Markup::plain`].
pub fn escape(s: &str) -> String {
    escape_each(s, |out, ch| {
        if line_marker(ch) && ch.c == '>' {
            out.push(ZWSP);
        }
        match ch.c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' => {
                out.push('@');
                out.push(ZWSP);
            }
            c => out.push(lookalike(ch).unwrap_or(c)),
        }
    })
}

/// A mrkdwn section; `verbatim`: Slack links no bare URL or channel name
/// and parses no mention in it (the router's own `<url|text>` still work).
fn section(text: &Markup) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text, "verbatim": true}})
}

fn attachment_body(view: &View, blocks: Vec<Value>) -> Value {
    // `text` is what notifications and screen readers show: mrkdwn, escaped.
    let title = Dialect::Slack.text(&view.title).clip(SECTION_CHARS);
    json!({
        "text": title,
        "attachments": [{
            "color": view.colour,
            "fallback": title,
            "blocks": blocks,
        }],
    })
}

impl Format for SlackConfig {
    const KIND: &'static str = "slack";
    // Slack: about one message per second per channel, short bursts tolerated.
    const DEFAULT_RATE: RateLimit = RateLimit {
        per_second: 1.0,
        burst: 3,
    };
    const TEXT_LIMIT: usize = SECTION_CHARS;
    const DIALECT: Dialect = Dialect::Slack;

    fn default_body(&self, view: &View, shown: usize) -> Value {
        let d = Dialect::Slack;
        let mut blocks = vec![json!({
            "type": "header",
            // plain_text renders no markup, but whether it decodes entities is
            // undocumented: neutralised, it reads right either way.
            "text": {"type": "plain_text", "text": Markup::plain(&view.title).clip(HEADER_CHARS), "emoji": true},
        })];
        let mut head = vec![d.text(&view.summary)];
        head.extend(router_text(view, d));
        blocks.push(section(&Markup::join(head, "\n\n").clip(SECTION_CHARS)));
        for t in &view.tables {
            blocks.push(section(&table_text(t, d).clip(SECTION_CHARS)));
        }
        blocks.push(json!({"type": "divider"}));
        // Alerts share sections (up to 3000 characters each): more fit in 50 blocks.
        let mut current = Markup::default();
        for a in &view.alerts[..shown] {
            let text = alert_text_within(a, d, SECTION_CHARS);
            if !current.is_empty() && current.chars() + 2 + text.chars() > SECTION_CHARS {
                blocks.push(section(&std::mem::take(&mut current)));
            }
            if !current.is_empty() {
                current.push_lit("\n\n");
            }
            current.push(&text);
        }
        if !current.is_empty() {
            blocks.push(section(&current));
        }
        if shown < view.alerts.len() {
            blocks.push(json!({
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": d.text(&more_alerts(view.alerts.len() - shown)), "verbatim": true}],
            }));
        }
        attachment_body(view, blocks)
    }

    fn text_body(&self, view: &View, text: &Markup) -> Value {
        attachment_body(view, vec![section(text)])
    }

    fn fits(&self, body: &Value) -> bool {
        let Some(blocks) = body["attachments"][0]["blocks"].as_array() else {
            return false;
        };
        let mut total = 0;
        for b in blocks {
            let texts = std::iter::once(&b["text"]["text"]).chain(
                b["elements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| &e["text"]),
            );
            for t in texts.filter_map(Value::as_str) {
                let n = chars(t);
                if n > SECTION_CHARS {
                    return false;
                }
                total += n;
            }
        }
        blocks.len() <= MAX_BLOCKS && total <= TOTAL_CHARS
    }
}

/// Bot mode: Web API calls with a token.
pub struct SlackBot {
    name: String,
    config: SlackConfig,
    ready: BotReady,
}

struct BotReady {
    api: Arc<Api>,
    channel: String,
    template: Option<super::template::ChatTemplate>,
    /// The channel's queue, when digests are on.
    queue: Option<DigestQueue>,
}

/// The Web API with the bot's token, under the channel's rate limit.
struct Api {
    base: Url,
    headers: HeaderMap,
    delivery: Delivery,
}

/// Web API errors worth retrying (`ok: false` comes with HTTP 200).
const RETRYABLE_API_ERRORS: &[&str] = &[
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

impl SlackBot {
    fn new(
        name: &str,
        config: &SlackConfig,
        tls: &CaPolicy,
        metrics: &Arc<crate::metrics::Metrics>,
    ) -> Result<Self, String> {
        Ok(Self {
            name: name.to_owned(),
            config: config.clone(),
            ready: Self::ready(name, config, tls, metrics)?,
        })
    }

    fn ready(
        name: &str,
        config: &SlackConfig,
        tls: &CaPolicy,
        metrics: &Arc<crate::metrics::Metrics>,
    ) -> Result<BotReady, String> {
        let token = config
            .token
            .as_ref()
            .ok_or_else(|| "token: token or token_file is required".to_owned())?;
        let channel = config
            .channel
            .clone()
            .ok_or_else(|| "channel: required with token".to_owned())?;
        let mut api = Url::parse(config.api_url.trim_end_matches('/'))
            .map_err(|e| format!("api_url: {e}"))?;
        if !api.path().ends_with('/') {
            api.set_path(&format!("{}/", api.path()));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose().trim()))
            .map_err(|_| "token: not a valid header value".to_owned())?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let shared = config.shared();
        let rate = shared.rate_limit.unwrap_or(SlackConfig::DEFAULT_RATE);
        let api = Arc::new(Api {
            base: api,
            headers,
            delivery: Delivery::new(
                tls,
                shared.timeout,
                rate,
                vec![token.expose().trim().to_owned()],
            )?,
        });
        let digest = DigestConfig::effective(shared.digest, true);
        let queue = digest.enabled.then(|| {
            let sink = BotSink {
                action: name.to_owned(),
                config: config.clone(),
                api: api.clone(),
                channel: channel.clone(),
                digest: digest.clone(),
            };
            DigestQueue::new(
                name,
                digest.clone(),
                rate.per_second,
                Arc::new(sink),
                Some(metrics.clone()),
            )
        });
        Ok(BotReady {
            api,
            channel,
            template: shared.compile(super::template::Escaping::Chat(Dialect::Slack))?,
            queue,
        })
    }

    /// One Web API call; `ok: false` is an error (retryable or not by its code).
    async fn call(&self, ready: &BotReady, method: &str, body: &Value) -> Result<Value, ApiError> {
        ready.api.call(method, body).await
    }
}

impl Api {
    /// One Web API call; `ok: false` is an error (retryable or not by its code).
    async fn call(&self, method: &str, body: &Value) -> Result<Value, ApiError> {
        let url = self
            .base
            .join(method)
            .map_err(|e| ApiError::Other(ActionError::Permanent(format!("api_url: {e}"))))?;
        let reply = self
            .delivery
            .send(reqwest::Method::POST, url, &self.headers, body)
            .await
            .map_err(ApiError::Other)?;
        let answer: Value = serde_json::from_str(&reply.body).map_err(|_| {
            ApiError::Other(ActionError::Retryable {
                message: format!("{method}: the answer is not JSON"),
                retry_after: None,
            })
        })?;
        if answer["ok"] == true {
            return Ok(answer);
        }
        let code = answer["error"]
            .as_str()
            .unwrap_or("unknown_error")
            .to_owned();
        Err(ApiError::Slack(method.to_owned(), code))
    }
}

/// A failed Web API call.
enum ApiError {
    /// `ok: false` with this method and error code.
    Slack(String, String),
    /// HTTP or network.
    Other(ActionError),
}

impl From<ApiError> for ActionError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Slack(method, code) if RETRYABLE_API_ERRORS.contains(&code.as_str()) => {
                ActionError::Retryable {
                    message: format!("Slack {method}: {code}"),
                    retry_after: None,
                }
            }
            ApiError::Slack(method, code) => {
                ActionError::Permanent(format!("Slack {method}: {code}"))
            }
            ApiError::Other(e) => e,
        }
    }
}

fn store_error(e: crate::store::StoreError) -> ActionError {
    ActionError::Retryable {
        message: format!("cannot read or record the group's Slack message: {e}"),
        retry_after: None,
    }
}

#[async_trait]
impl Action for SlackBot {
    fn kind(&self) -> &'static str {
        "slack"
    }

    fn scope(&self) -> Scope {
        Scope::Notification
    }

    fn retry_limits(&self) -> RetryLimits {
        self.config.shared().limits
    }

    fn queues(&self) -> bool {
        self.ready.queue.is_some()
    }

    async fn execute(&self, ctx: &ActionContext<'_>) -> Result<Value, ActionError> {
        let ready = &self.ready;
        let view = View::build(ctx.notification_id, ctx.notification, &ctx.alerts);
        // In a storm the message waits for its turn, or goes out in the
        // channel's digest (which chat.update keeps current).
        let _turn = match &ready.queue {
            Some(queue) => {
                let entry = Entry::from_view(&view, queue.config().max_items);
                match queue.wait_turn(entry).await {
                    Turn::Send(guard) => Some(guard),
                    Turn::Digested(result) => return result,
                }
            }
            None => None,
        };
        let composed = compose(
            &self.name,
            &self.config,
            ready.template.as_ref(),
            &view,
            ctx.metrics,
        );
        let resolved = view.status == "resolved";
        let key = ChatThreadKey {
            action: self.name.clone(),
            channel: ready.channel.clone(),
            group_key: ctx.notification.group_key.clone(),
        };
        let open = match ctx.store {
            Some(store) => store
                .chat_thread(key.clone())
                .await
                .map_err(store_error)?
                .filter(|t| !t.resolved),
            None => None,
        };
        let mut result = composed.summary("slack");
        result["mode"] = json!("bot");
        let (channel_id, ts) = match open {
            Some(thread) => {
                let mut update = composed.body.clone();
                update["channel"] = json!(thread.channel_id);
                update["ts"] = json!(thread.message_id);
                match self.call(ready, "chat.update", &update).await {
                    Ok(_) => {
                        let mut reply = composed.body.clone();
                        reply["channel"] = json!(thread.channel_id);
                        reply["thread_ts"] = json!(thread.message_id);
                        let answer = self.call(ready, "chat.postMessage", &reply).await?;
                        result["updated"] = json!(thread.message_id);
                        result["reply"] = answer["ts"].clone();
                        (thread.channel_id, thread.message_id)
                    }
                    // Deleted meanwhile: start over with a new message.
                    Err(ApiError::Slack(_, code))
                        if code == "message_not_found" || code == "cant_update_message" =>
                    {
                        self.post(ready, &composed.body, &mut result).await?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => self.post(ready, &composed.body, &mut result).await?,
        };
        if let Some(store) = ctx.store {
            store
                .save_chat_thread(ChatThread {
                    key,
                    channel_id,
                    message_id: ts,
                    resolved,
                    updated_at: crate::clock::now_ms(),
                })
                .await
                .map_err(store_error)?;
        }
        Ok(result)
    }

    async fn plan(&self, ctx: &ActionContext<'_>) -> Value {
        let ready = &self.ready;
        let view = View::build(ctx.notification_id, ctx.notification, &ctx.alerts);
        let composed = compose(
            &self.name,
            &self.config,
            ready.template.as_ref(),
            &view,
            None,
        );
        let mut body = composed.body.clone();
        body["channel"] = json!(ready.channel);
        let mut plan = composed.summary("slack");
        plan["mode"] = json!("bot");
        plan["method"] = json!("POST");
        plan["url"] = json!(ready
            .api
            .base
            .join("chat.postMessage")
            .map(|u| u.to_string())
            .unwrap_or_default());
        plan["headers"] = json!({"authorization": REDACTED});
        plan["note"] = json!("if the group has an open message, chat.update replaces it and chat.postMessage replies in its thread");
        plan["body"] = body;
        plan
    }
}

impl SlackBot {
    /// Posts a new message; returns (channel id, ts).
    async fn post(
        &self,
        ready: &BotReady,
        body: &Value,
        result: &mut Value,
    ) -> Result<(String, String), ActionError> {
        let mut body = body.clone();
        body["channel"] = json!(ready.channel);
        let answer = self.call(ready, "chat.postMessage", &body).await?;
        let ts = answer["ts"].as_str().unwrap_or_default().to_owned();
        let channel = answer["channel"]
            .as_str()
            .unwrap_or(&ready.channel)
            .to_owned();
        result["posted"] = json!(ts);
        Ok((channel, ts))
    }
}

/// The bot's digests: posted with `chat.postMessage`, kept current during a
/// storm with `chat.update` (a deleted digest is posted again).
struct BotSink {
    action: String,
    config: SlackConfig,
    api: Arc<Api>,
    channel: String,
    digest: DigestConfig,
}

#[async_trait]
impl DigestSink for BotSink {
    fn kind(&self) -> &'static str {
        "slack"
    }

    async fn post(&self, s: &Summary, h: &Heading) -> Result<Posted, ActionError> {
        let mut body = render_digest(&self.config, &self.action, s, h, &self.digest);
        body["channel"] = json!(self.channel);
        let answer = self.api.call("chat.postMessage", &body).await?;
        Ok(Posted {
            message: answer["ts"].as_str().map(str::to_owned),
            channel: Some(
                answer["channel"]
                    .as_str()
                    .unwrap_or(&self.channel)
                    .to_owned(),
            ),
            status: 200,
        })
    }

    async fn update(
        &self,
        posted: &Posted,
        s: &Summary,
        h: &Heading,
    ) -> Option<Result<Posted, ActionError>> {
        let ts = posted.message.as_ref()?;
        let mut body = render_digest(&self.config, &self.action, s, h, &self.digest);
        body["channel"] = json!(posted.channel.as_deref().unwrap_or(&self.channel));
        body["ts"] = json!(ts);
        Some(match self.api.call("chat.update", &body).await {
            Ok(_) => Ok(posted.clone()),
            // Deleted meanwhile: post the storm's digest again.
            Err(ApiError::Slack(_, code))
                if code == "message_not_found" || code == "cant_update_message" =>
            {
                self.post(s, h).await
            }
            Err(e) => Err(e.into()),
        })
    }
}

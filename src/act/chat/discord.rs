//! `type: discord`: a channel webhook with embeds. The first embed carries
//! the title, colour and summary (router actions, variant tables); alerts are
//! fields, 25 per embed, continued in further embeds. Mentions in label
//! values are never pinged (`allowed_mentions: {parse: []}`).
//!
//! Limits: 10 embeds; per embed a title of 256, a description of 4096, 25
//! fields (name 256, value 1024), a footer of 2048; 6000 characters across
//! all embeds; `content` 2000.

use super::limits::{chars, more_alerts};
use super::render::{
    alert_body_within, alert_heading_plain, backslash_markdown, router_text, table_text, Dialect,
    Markup, View,
};
use super::{chat_config, post_platform, Format, RateLimit};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

const MAX_EMBEDS: usize = 10;
const MAX_FIELDS: usize = 25;
const TITLE_CHARS: usize = 256;
const DESCRIPTION_CHARS: usize = 4096;
const FIELD_NAME_CHARS: usize = 256;
const FIELD_VALUE_CHARS: usize = 1024;
const TOTAL_CHARS: usize = 6000;

chat_config! {
    /// `actions.<name>` with `type: discord`.
    DiscordConfig {
        /// The webhook URL (a secret: it contains the webhook's token).
        url,
        /// Overrides the webhook's name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        avatar_url: Option<String>,
    }
}

post_platform!(DiscordConfig);

/// A value as Discord Markdown: backslash escapes for every character that
/// could start markup (`**bold**`, `[x](y)` masked links, `||spoiler||`,
/// `# heading`, `<@id>`, `<@&role>`, `<#channel>`, `<t:…>`), and a
/// zero-width space after `@` (no `@everyone`, `@here`) and after `<`, and
/// before a line's list marker (`-# subtext` included). The body also says
/// `allowed_mentions: {parse: []}`, so nothing pings even if one got through.
pub fn escape(s: &str) -> String {
    backslash_markdown(s, &['<'])
}

impl DiscordConfig {
    fn frame(&self, embeds: Vec<Value>) -> Value {
        let mut body = json!({"embeds": embeds, "allowed_mentions": {"parse": []}});
        if let Some(u) = &self.username {
            body["username"] = json!(u);
        }
        if let Some(u) = &self.avatar_url {
            body["avatar_url"] = json!(u);
        }
        body
    }
}

impl Format for DiscordConfig {
    const KIND: &'static str = "discord";
    // Discord: 5 requests per 2 seconds per webhook.
    const DEFAULT_RATE: RateLimit = RateLimit {
        per_second: 2.5,
        burst: 5,
    };
    const TEXT_LIMIT: usize = DESCRIPTION_CHARS;
    const DIALECT: Dialect = Dialect::Discord;

    fn default_body(&self, view: &View, shown: usize) -> Value {
        let d = Dialect::Discord;
        let mut description = vec![d.text(&view.summary)];
        description.extend(router_text(view, d));
        description.extend(view.tables.iter().map(|t| table_text(t, d)));
        let fields: Vec<Value> = view.alerts[..shown]
            .iter()
            .map(|a| {
                json!({
                    // Field names: markup rendered by some clients only, so neutralised.
                    "name": alert_heading_plain(a).clip(FIELD_NAME_CHARS),
                    "value": alert_body_within(a, d, FIELD_VALUE_CHARS),
                    "inline": false,
                })
            })
            .collect();
        let mut chunks = fields.chunks(MAX_FIELDS);
        let mut embeds = vec![json!({
            "title": Markup::plain(&view.title).clip(TITLE_CHARS),
            "color": view.tone.rgb(),
            "description": Markup::join(description, "\n\n").clip(DESCRIPTION_CHARS),
            "fields": chunks.next().unwrap_or_default(),
        })];
        embeds.extend(chunks.map(|c| json!({"color": view.tone.rgb(), "fields": c})));
        if shown < view.alerts.len() {
            if let Some(last) = embeds.last_mut() {
                last["footer"] =
                    json!({"text": Markup::plain(&more_alerts(view.alerts.len() - shown))});
            }
        }
        self.frame(embeds)
    }

    fn text_body(&self, view: &View, text: &Markup) -> Value {
        self.frame(vec![json!({
            "title": Markup::plain(&view.title).clip(TITLE_CHARS),
            "color": view.tone.rgb(),
            "description": text,
        })])
    }

    fn fits(&self, body: &Value) -> bool {
        let Some(embeds) = body["embeds"].as_array() else {
            return false;
        };
        let len = |v: &Value| v.as_str().map_or(0, chars);
        let mut total = 0;
        for e in embeds {
            let fields = e["fields"].as_array().map_or(&[][..], Vec::as_slice);
            if len(&e["title"]) > TITLE_CHARS
                || len(&e["description"]) > DESCRIPTION_CHARS
                || fields.len() > MAX_FIELDS
            {
                return false;
            }
            total += len(&e["title"]) + len(&e["description"]) + len(&e["footer"]["text"]);
            for f in fields {
                if len(&f["name"]) > FIELD_NAME_CHARS || len(&f["value"]) > FIELD_VALUE_CHARS {
                    return false;
                }
                total += len(&f["name"]) + len(&f["value"]);
            }
        }
        embeds.len() <= MAX_EMBEDS && total <= TOTAL_CHARS
    }
}

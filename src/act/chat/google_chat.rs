//! `type: google_chat`: a space's incoming webhook with a cardsV2 card, every
//! notification of a group in one thread: `thread.threadKey` (from the
//! groupKey) and `messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD`.
//!
//! Limits: a message holds 32,000 bytes (we keep under 30,000), text 4096
//! characters, a card 100 widgets.

use super::limits::{chars, json_bytes, more_alerts};
use super::render::{
    alert_text, escape_each, lookalike, neutralise, table_text, Dialect, Markup, View, ZWSP,
};
use super::{chat_config, post_platform, Format, RateLimit};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const MAX_BYTES: usize = 30_000;
const TEXT_CHARS: usize = 4096;
const MAX_WIDGETS: usize = 100;

fn yes() -> bool {
    true
}

chat_config! {
    /// `actions.<name>` with `type: google_chat`.
    GoogleChatConfig {
        /// The space webhook URL (a secret: it carries key and token).
        url,
        /// One thread per Alertmanager group (else every message starts its own).
        #[serde(default = "yes")]
        thread_per_group: bool,
    }
}

post_platform!(GoogleChatConfig);

impl GoogleChatConfig {
    fn threaded(&self, view: &View, mut body: Value) -> Value {
        if self.thread_per_group {
            body["thread"] = json!({ "threadKey": thread_key(&view.group_key) });
        }
        body
    }
}

/// A stable, opaque thread key per group (groupKeys hold quotes and braces).
pub fn thread_key(group_key: &str) -> String {
    let digest = Sha256::digest(group_key.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("mlops-alert-router-{hex}")
}

/// A value as card text (HTML subset): `&`, `<`, `>`, `"` as entities, so
/// no tag, link or `<users/all>` survives; newlines as `<br>`; a zero-width
/// space after `@`; `*`, `~`, backtick and an edge `_` as look-alikes (in
/// case a client applies text-message formatting to cards too).
pub fn escape(s: &str) -> String {
    escape_each(s, |out, ch| match ch.c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\n' => out.push_str("<br>"),
        '\r' => {}
        '@' => {
            out.push('@');
            out.push(ZWSP);
        }
        c => out.push(lookalike(ch).unwrap_or(c)),
    })
}

/// A value as text-message markup (custom templates): it has no escape, so
/// the value is neutralised: `*`, `_` at a word's edge, `~` and backtick
/// become look-alikes, and a zero-width space follows `<` (no `<users/all>`,
/// `<users/…>` or `<url|text>`) and `@`, and precedes a line's list marker.
pub fn escape_text(s: &str) -> String {
    neutralise(s)
}

fn paragraph(text: &Markup) -> Value {
    json!({"textParagraph": {"text": text.clip(TEXT_CHARS)}})
}

impl Format for GoogleChatConfig {
    const KIND: &'static str = "google_chat";
    // Google Chat: about one message per second per space.
    const DEFAULT_RATE: RateLimit = RateLimit {
        per_second: 1.0,
        burst: 1,
    };
    const TEXT_LIMIT: usize = TEXT_CHARS;
    const DIALECT: Dialect = Dialect::GoogleText;

    fn extra_query(&self) -> Vec<(&'static str, &'static str)> {
        if self.thread_per_group {
            vec![("messageReplyOption", "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD")]
        } else {
            Vec::new()
        }
    }

    fn default_body(&self, view: &View, shown: usize) -> Value {
        let d = Dialect::GoogleCard;
        // The colour is the router's (`&'static str`), never a value.
        let colour = Markup::lit("<font color=\"")
            .then(&Markup::lit(view.colour))
            .then(&Markup::lit("\">"));
        let status = colour
            .then(&d.bold(&d.text(&view.status.to_uppercase())))
            .then(&Markup::lit("</font> · "))
            .then(&d.text(&view.summary));
        let mut sections = vec![json!({"widgets": [paragraph(&status)]})];
        if !view.router_actions.is_empty() {
            let lines: Vec<Markup> = view
                .router_actions
                .iter()
                .map(|l| Markup::lit("• ").then(&d.text(l)))
                .collect();
            sections.push(
                json!({"header": "Router", "widgets": [paragraph(&Markup::join(lines, "<br>"))]}),
            );
        }
        for t in &view.tables {
            sections.push(json!({"widgets": [paragraph(&table_text(t, d))]}));
        }
        let mut alerts: Vec<Value> = view.alerts[..shown]
            .iter()
            .map(|a| paragraph(&alert_text(a, d)))
            .collect();
        if shown < view.alerts.len() {
            alerts.push(paragraph(&d.text(&more_alerts(view.alerts.len() - shown))));
        }
        if !alerts.is_empty() {
            sections.push(json!({"header": "Alerts", "widgets": alerts}));
        }
        self.threaded(
            view,
            json!({
                "cardsV2": [{
                    "cardId": "alert-notification",
                    "card": {
                        // Headers render no markup (neutralised all the same).
                        "header": {"title": Markup::plain(&view.title).clip(200), "subtitle": Markup::plain(&view.summary).clip(200)},
                        "sections": sections,
                    },
                }],
            }),
        )
    }

    fn text_body(&self, view: &View, text: &Markup) -> Value {
        self.threaded(view, json!({ "text": text }))
    }

    fn fits(&self, body: &Value) -> bool {
        let sections = body["cardsV2"][0]["card"]["sections"].as_array();
        let widgets: usize = sections
            .into_iter()
            .flatten()
            .map(|s| s["widgets"].as_array().map_or(0, Vec::len))
            .sum();
        json_bytes(body) <= MAX_BYTES
            && widgets <= MAX_WIDGETS
            && body["text"].as_str().map_or(0, chars) <= TEXT_CHARS
    }
}

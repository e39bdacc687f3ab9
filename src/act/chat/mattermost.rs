//! `type: mattermost`: an incoming webhook. The message is a bold title line
//! and a coloured attachment with the details in Markdown (tables included).
//!
//! Limits: a post holds 16,383 characters; attachments are held to about
//! 7,900 in all by the server, so their text stays under 7,000.

use super::limits::{chars, more_alerts};
use super::render::{alert_text, router_text, Dialect, View};
use super::{chat_config, resolve_secret, validate_url, Format, RateLimit, Shared};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::PathBuf;

const POST_CHARS: usize = 16_383;
const ATTACHMENT_CHARS: usize = 7_000;

chat_config! {
    /// `actions.<name>` with `type: mattermost`.
    MattermostConfig {
        /// The incoming webhook URL (a secret).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<Secret>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url_file: Option<PathBuf>,
        /// Post to this channel instead of the webhook's own (if the webhook allows it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        /// Shown as the poster (if the server allows overriding it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        icon_url: Option<String>,
    }
}

impl MattermostConfig {
    /// Reads `url_file`, `template_file`.
    pub fn resolve_files(&mut self, key: &str) -> Result<(), String> {
        resolve_secret(&mut self.url, &self.url_file, key, "url")?;
        self.resolve_template(key)
    }

    /// Offline checks; errors are relative to `actions.<name>`.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        validate_url(&self.url, &self.url_file, "url", &mut errors);
        self.shared().validate(false, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn frame(&self, mut body: Value) -> Value {
        for (k, v) in [
            ("channel", &self.channel),
            ("username", &self.username),
            ("icon_url", &self.icon_url),
        ] {
            if let Some(v) = v {
                body[k] = json!(v);
            }
        }
        body
    }
}

/// A GitHub-flavoured table (Mattermost renders them).
fn table(t: &super::render::VariantTable, d: Dialect) -> String {
    let cell = |s: &str| d.esc(s);
    let title = if t.experiment.is_empty() {
        d.bold("Variants")
    } else {
        d.bold(&format!("Variants · {}", d.esc(&t.experiment)))
    };
    // A table needs a blank line above it.
    let mut lines = vec![title, String::new()];
    if !t.rows.is_empty() {
        let head: Vec<String> = std::iter::once("variant".to_owned())
            .chain(t.columns.iter().map(|c| cell(c)))
            .collect();
        lines.push(format!("| {} |", head.join(" | ")));
        let align: Vec<&str> = std::iter::once(":--")
            .chain(t.columns.iter().map(|_| "--:"))
            .collect();
        lines.push(format!("|{}|", align.join("|")));
        for r in &t.rows {
            let name = if r.affected {
                format!("{} ⚠", d.bold(&cell(&r.variant)))
            } else {
                cell(&r.variant)
            };
            let cells: Vec<String> = std::iter::once(name)
                .chain(r.cells.iter().map(|c| cell(c)))
                .collect();
            lines.push(format!("| {} |", cells.join(" | ")));
        }
        if !t.notes.is_empty() {
            // Else the first note would read as a table row.
            lines.push(String::new());
        }
    }
    lines.extend(t.notes.iter().map(|n| format!("⚠ {}", d.esc(n))));
    lines.join("\n")
}

impl Format for MattermostConfig {
    const KIND: &'static str = "mattermost";
    // The server's default API rate limit is 10 per second.
    const DEFAULT_RATE: RateLimit = RateLimit {
        per_second: 5.0,
        burst: 10,
    };
    const TEXT_LIMIT: usize = POST_CHARS;

    fn shared(&self) -> Shared<'_> {
        MattermostConfig::shared(self)
    }

    fn url(&self) -> Option<&Secret> {
        self.url.as_ref()
    }

    fn default_body(&self, view: &View, shown: usize) -> Value {
        let d = Dialect::Markdown;
        let mut parts = vec![d.esc(&view.summary)];
        parts.extend(router_text(view, d));
        parts.extend(view.tables.iter().map(|t| table(t, d)));
        parts.extend(view.alerts[..shown].iter().map(|a| alert_text(a, d)));
        if shown < view.alerts.len() {
            parts.push(more_alerts(view.alerts.len() - shown));
        }
        self.frame(json!({
            "text": d.bold(&d.esc(&view.title)),
            "attachments": [{
                "fallback": view.title,
                "color": view.colour,
                "text": parts.join("\n\n"),
            }],
        }))
    }

    fn text_body(&self, _view: &View, text: &str) -> Value {
        self.frame(json!({ "text": text }))
    }

    fn fits(&self, body: &Value) -> bool {
        let text = chars(body["text"].as_str().unwrap_or(""));
        let attachment = body["attachments"][0]["text"].as_str().map_or(0, chars)
            + body["attachments"][0]["fallback"].as_str().map_or(0, chars);
        attachment <= ATTACHMENT_CHARS && text + attachment <= POST_CHARS
    }
}

//! `type: mattermost`: an incoming webhook. The message is a bold title line
//! and a coloured attachment with the details in Markdown (tables included).
//!
//! Limits: a post holds 16,383 characters; attachments are held to about
//! 7,900 in all by the server, so their text stays under 7,000.

use super::limits::{chars, more_alerts};
use super::render::{
    alert_text, backslash_markdown, router_text, table_title, Dialect, Markup, VariantTable, View,
};
use super::{chat_config, post_platform, Format, RateLimit};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

const POST_CHARS: usize = 16_383;
const ATTACHMENT_CHARS: usize = 7_000;
/// The bold title line and the notification fallback, at most.
const TITLE_CHARS: usize = 1_000;
const FALLBACK_CHARS: usize = 300;

chat_config! {
    /// `actions.<name>` with `type: mattermost`.
    MattermostConfig {
        /// The incoming webhook URL (a secret).
        url,
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

post_platform!(MattermostConfig);

impl MattermostConfig {
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

/// A value as Mattermost Markdown: backslash escapes for every character
/// that could start markup (`*bold*`, `[x](y)`, `![x](y)`, `<url>`, `~~x~~`,
/// `# heading`, tables' `|`), and a zero-width space after `@` (no `@all`,
/// `@channel`, `@here`, `@user`), after `~` (no `~channel` link) and before
/// a line's list marker.
pub fn escape(s: &str) -> String {
    backslash_markdown(s, &['~'])
}

/// A GitHub-flavoured table (Mattermost renders them).
fn table(t: &VariantTable, d: Dialect) -> Markup {
    // A cell is one line, whatever a value holds.
    let cell = |s: &str| d.text(&s.replace(['\n', '\r'], " "));
    // A table needs a blank line above it.
    let mut lines = vec![table_title(t, d), Markup::default()];
    if !t.rows.is_empty() {
        let head: Vec<Markup> = std::iter::once(Markup::lit("variant"))
            .chain(t.columns.iter().map(|c| cell(c)))
            .collect();
        lines.push(
            Markup::lit("| ")
                .then(&Markup::join(head, " | "))
                .then(&Markup::lit(" |")),
        );
        let align: Vec<Markup> = std::iter::once(Markup::lit(":--"))
            .chain(t.columns.iter().map(|_| Markup::lit("--:")))
            .collect();
        lines.push(
            Markup::lit("|")
                .then(&Markup::join(align, "|"))
                .then(&Markup::lit("|")),
        );
        for r in &t.rows {
            let name = if r.affected {
                // The alerting variants; in a resolved message, the resolved ones.
                let mark = if t.firing { " ⚠" } else { " ✓" };
                d.bold(&cell(&r.variant)).then(&Markup::lit(mark))
            } else {
                cell(&r.variant)
            };
            let cells: Vec<Markup> = std::iter::once(name)
                .chain(r.cells.iter().map(|c| cell(c)))
                .collect();
            lines.push(
                Markup::lit("| ")
                    .then(&Markup::join(cells, " | "))
                    .then(&Markup::lit(" |")),
            );
        }
        if !t.notes.is_empty() {
            // Else the first note would read as a table row.
            lines.push(Markup::default());
        }
    }
    lines.extend(t.notes.iter().map(|n| Markup::lit("⚠ ").then(&d.text(n))));
    Markup::join(lines, "\n")
}

impl Format for MattermostConfig {
    const KIND: &'static str = "mattermost";
    // The server's default API rate limit is 10 per second.
    const DEFAULT_RATE: RateLimit = RateLimit {
        per_second: 5.0,
        burst: 10,
    };
    const TEXT_LIMIT: usize = POST_CHARS;
    const DIALECT: Dialect = Dialect::Mattermost;

    fn default_body(&self, view: &View, shown: usize) -> Value {
        let d = Dialect::Mattermost;
        let mut parts = vec![d.text(&view.summary)];
        parts.extend(router_text(view, d));
        parts.extend(view.tables.iter().map(|t| table(t, d)));
        parts.extend(view.alerts[..shown].iter().map(|a| alert_text(a, d)));
        if shown < view.alerts.len() {
            parts.push(d.text(&more_alerts(view.alerts.len() - shown)));
        }
        // Clipped whatever the alerts shown: a title or summary built from huge
        // label values alone must not take the post over its limits (found by
        // the chat_render fuzz target).
        self.frame(json!({
            "text": d.bold(&d.text(&view.title).clip(TITLE_CHARS)),
            "attachments": [{
                // Shown in notifications, markup unknown: neutralised.
                "fallback": Markup::plain(&view.title).clip(FALLBACK_CHARS),
                "color": view.colour,
                "text": Markup::join(parts, "\n\n").clip(ATTACHMENT_CHARS - FALLBACK_CHARS),
            }],
        }))
    }

    fn text_body(&self, _view: &View, text: &Markup) -> Value {
        self.frame(json!({ "text": text }))
    }

    fn fits(&self, body: &Value) -> bool {
        let text = chars(body["text"].as_str().unwrap_or(""));
        let attachment = body["attachments"][0]["text"].as_str().map_or(0, chars)
            + body["attachments"][0]["fallback"].as_str().map_or(0, chars);
        attachment <= ATTACHMENT_CHARS && text + attachment <= POST_CHARS
    }
}

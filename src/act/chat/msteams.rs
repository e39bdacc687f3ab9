//! `type: msteams`: a Teams Workflows webhook ("When a Teams webhook request
//! is received") posting an Adaptive Card. The retired Office 365 connectors
//! took MessageCards; Workflows take only Adaptive Cards, wrapped in a
//! `message` with one attachment. Workflows answer 202 Accepted.
//!
//! Limit: about 28 KB per message; we keep the JSON under 24,000 bytes and
//! say `charset=utf-8` (without it the body is counted as UTF-16).

use super::limits::{json_bytes, more_alerts};
use super::render::{alert_heading, alert_when, neutralise, Dialect, Markup, VariantTable, View};
use super::{chat_config, post_platform, Format, RateLimit};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

const MAX_BYTES: usize = 24_000;

chat_config! {
    /// `actions.<name>` with `type: msteams`.
    MsTeamsConfig {
        /// The workflow's webhook URL (a secret).
        url,
    }
}

post_platform!(MsTeamsConfig);

/// A value as TextBlock text. Adaptive Card Markdown has no escape, so the
/// value is neutralised: `*`, `_` at a word's edge, `~` and backtick become
/// look-alikes, a zero-width space breaks `[x](y)` links, `<at>` tags and
/// `@` mentions, and list markers at a line's start.
pub fn escape(s: &str) -> String {
    neutralise(s)
}

fn text(s: &Markup) -> Value {
    json!({"type": "TextBlock", "text": s, "wrap": true, "spacing": "None"})
}

fn subtle(s: &Markup) -> Value {
    json!({"type": "TextBlock", "text": s, "wrap": true, "isSubtle": true, "spacing": "None"})
}

fn card(view: &View, mut body: Vec<Value>) -> Value {
    let d = Dialect::Teams;
    let mut all = vec![json!({
        "type": "Container",
        "style": view.tone.teams_style(),
        "bleed": true,
        "items": [
            {"type": "TextBlock", "text": d.text(&view.title), "weight": "Bolder", "size": "Medium", "wrap": true},
            subtle(&d.text(&view.summary)),
        ],
    })];
    all.append(&mut body);
    // What notifications, screen readers and clients that cannot show the
    // card read: plain text, neutralised.
    let summary = Markup::plain(&format!("{} — {}", view.title, view.summary)).clip(300);
    json!({
        "type": "message",
        "summary": summary,
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "fallbackText": summary,
                "msteams": {"width": "Full"},
                "body": all,
            },
        }],
    })
}

/// A variant table as one ColumnSet with one Column per field, each column
/// the field's title then one single-line TextBlock per variant: every
/// TextBlock has the same height and spacing, so the rows line up across
/// columns (Adaptive Card 1.4 has no table; 1.5's `Table` does not render
/// on every Teams client). The alerting variants' row is bold, in the
/// attention colour (a resolved message: the resolved ones, in green).
fn table(t: &VariantTable) -> Vec<Value> {
    let d = Dialect::Teams;
    let title = super::render::table_title(t, d);
    let mut out =
        vec![json!({"type": "TextBlock", "text": title, "wrap": true, "separator": true})];
    if !t.rows.is_empty() {
        // The alerting variants in red; in a resolved message, the resolved ones in green.
        let colour = if t.firing { "Attention" } else { "Good" };
        let cell = |text: Markup, strong: bool| {
            let mut block =
                json!({"type": "TextBlock", "text": text, "wrap": false, "spacing": "Small"});
            if strong {
                block["weight"] = json!("Bolder");
                block["color"] = json!(colour);
            }
            block
        };
        let column = |i: usize, head: Markup, cells: Vec<(Markup, bool)>| {
            let items: Vec<Value> = std::iter::once(cell(d.bold(&head), false))
                .chain(cells.into_iter().map(|(c, strong)| cell(c, strong)))
                .collect();
            json!({"type": "Column", "width": if i == 0 { "stretch" } else { "auto" }, "items": items})
        };
        let mut columns = vec![column(
            0,
            Markup::lit("variant"),
            t.rows
                .iter()
                .map(|r| (d.text(&r.variant), r.affected))
                .collect(),
        )];
        for (i, title) in t.columns.iter().enumerate() {
            columns.push(column(
                i + 1,
                d.text(title),
                t.rows
                    .iter()
                    .map(|r| {
                        let v = r.cells.get(i).map_or("", String::as_str);
                        (d.text(v), r.affected)
                    })
                    .collect(),
            ));
        }
        out.push(json!({"type": "ColumnSet", "spacing": "Small", "columns": columns}));
    }
    out.extend(
        t.notes
            .iter()
            .map(|n| subtle(&Markup::lit("⚠ ").then(&d.text(n)))),
    );
    out
}

impl Format for MsTeamsConfig {
    const KIND: &'static str = "msteams";
    // Workflows (Power Automate) throttle per flow; stay well below.
    const DEFAULT_RATE: RateLimit = RateLimit {
        per_second: 1.0,
        burst: 3,
    };
    const TEXT_LIMIT: usize = 15_000;
    const DIALECT: Dialect = Dialect::Teams;

    fn default_body(&self, view: &View, shown: usize) -> Value {
        let d = Dialect::Teams;
        let mut body = Vec::new();
        if !view.router_actions.is_empty() {
            body.push(
                json!({"type": "TextBlock", "text": d.bold(&Markup::lit("Router")), "wrap": true, "separator": true}),
            );
            body.extend(
                view.router_actions
                    .iter()
                    .map(|l| text(&Markup::lit("• ").then(&d.text(l)))),
            );
        }
        for t in &view.tables {
            body.extend(table(t));
        }
        for a in &view.alerts[..shown] {
            let mut items =
                vec![json!({"type": "TextBlock", "text": alert_heading(a, d), "wrap": true})];
            if !a.summary.is_empty() {
                items.push(text(&d.text(&a.summary)));
            }
            if !a.description.is_empty() {
                items.push(subtle(&d.text(&a.description)));
            }
            items.push(subtle(&alert_when(a, d)));
            body.push(json!({"type": "Container", "separator": true, "items": items}));
        }
        if shown < view.alerts.len() {
            body.push(subtle(&d.text(&more_alerts(view.alerts.len() - shown))));
        }
        card(view, body)
    }

    fn text_body(&self, view: &View, t: &Markup) -> Value {
        card(view, vec![text(t)])
    }

    fn fits(&self, body: &Value) -> bool {
        json_bytes(body) <= MAX_BYTES
    }
}

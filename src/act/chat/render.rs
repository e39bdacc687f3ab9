//! The message, platform-neutral: what is wrong (status, severity, alert,
//! experiment, variants), how each variant is doing (the enrichment context),
//! what the router did about it (the alert-scoped runs of the same
//! notification), and where to look (links). Formats turn a [`View`] into a
//! platform's JSON; custom templates see it as their variables.

use super::limits::clip;
use crate::act::AlertInput;
use crate::ingest::{AlertStatus, Labels, Notification};
use crate::store::{ActionRun, RunStatus};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Longest summary annotation shown per alert.
const SUMMARY_CHARS: usize = 300;
/// Longest description annotation shown per alert.
const DESCRIPTION_CHARS: usize = 500;
/// Router outcome lines shown at most (deduplicated first).
const MAX_ROUTER_LINES: usize = 10;
/// Experiments with a variant table at most.
const MAX_TABLES: usize = 3;

/// How alarming the notification is: drives the colour everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Critical,
    Warning,
    Info,
    Resolved,
}

impl Tone {
    fn of(severity: &str) -> Self {
        match severity.to_ascii_lowercase().as_str() {
            "critical" | "page" | "error" | "high" => Tone::Critical,
            "warning" | "warn" | "medium" => Tone::Warning,
            _ => Tone::Info,
        }
    }

    fn rank(self) -> u8 {
        match self {
            Tone::Critical => 3,
            Tone::Warning => 2,
            Tone::Info => 1,
            Tone::Resolved => 0,
        }
    }

    /// `#rrggbb`.
    pub fn hex(self) -> &'static str {
        match self {
            Tone::Critical => "#E01E5A",
            Tone::Warning => "#ECB22E",
            Tone::Info => "#36C5F0",
            Tone::Resolved => "#2EB67D",
        }
    }

    /// The colour as an integer (Discord).
    pub fn rgb(self) -> u32 {
        u32::from_str_radix(&self.hex()[1..], 16).unwrap_or(0)
    }

    /// An Adaptive Card container style / text colour.
    pub fn teams_style(self) -> &'static str {
        match self {
            Tone::Critical => "attention",
            Tone::Warning => "warning",
            Tone::Info => "accent",
            Tone::Resolved => "good",
        }
    }

    fn dot(self) -> &'static str {
        match self {
            Tone::Critical => "🔴",
            Tone::Warning => "🟠",
            Tone::Info => "🔵",
            Tone::Resolved => "🟢",
        }
    }
}

/// One notification as a message sees it (and a template's variables).
#[derive(Debug, Clone, Serialize)]
pub struct View {
    pub notification_id: i64,
    /// `firing` or `resolved` (the notification's status).
    pub status: &'static str,
    #[serde(skip)]
    pub tone: Tone,
    /// `#rrggbb` of the tone.
    pub colour: &'static str,
    /// One plain line: status, alert name, experiment.
    pub title: String,
    /// One plain line: counts, severity, variants.
    pub summary: String,
    pub alertname: String,
    pub experiment: String,
    /// Highest severity among the firing alerts (else the first alert's).
    pub severity: String,
    /// The variants (`model_name`) the alerts are about, in payload order.
    pub variants: Vec<String>,
    pub firing: usize,
    pub resolved: usize,
    pub receiver: String,
    pub group_key: String,
    pub group_labels: Labels,
    pub common_labels: Labels,
    pub common_annotations: Labels,
    pub external_url: String,
    /// What the router did in this notification, one line each.
    pub router_actions: Vec<String>,
    /// Per experiment, each variant's numbers from enrichment.
    pub tables: Vec<VariantTable>,
    pub alerts: Vec<AlertView>,
}

/// One alert.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub status: &'static str,
    #[serde(skip)]
    pub tone: Tone,
    pub alertname: String,
    pub severity: String,
    /// The `model_name` label ("" when absent).
    pub variant: String,
    pub experiment: String,
    pub summary: String,
    /// "" when it only repeats the summary.
    pub description: String,
    /// `2026-11-27 01:03:18 UTC`.
    pub starts_at: String,
    pub ends_at: Option<String>,
    pub fingerprint: String,
    pub labels: Labels,
    pub annotations: Labels,
    /// `dashboard`, `graph`, `silence`, `runbook` when known.
    pub links: BTreeMap<String, String>,
    /// `context.<enrichment>` values (a number, a map variant → number, or `{"error": …}`).
    pub context: Value,
    /// This alert's alert-scoped runs of the notification.
    pub outcomes: Vec<OutcomeView>,
}

/// What one alert-scoped action did.
#[derive(Debug, Clone, Serialize)]
pub struct OutcomeView {
    pub action: String,
    #[serde(rename = "type")]
    pub action_type: String,
    pub status: RunStatus,
    /// One human line ("traffic shift: enhanced-predictor 30 → 0").
    pub text: String,
    pub result: Option<Value>,
}

/// The variants of one experiment with their numbers.
#[derive(Debug, Clone, Serialize)]
pub struct VariantTable {
    pub experiment: String,
    /// Column titles after the variant column.
    pub columns: Vec<String>,
    pub rows: Vec<VariantRow>,
    /// Enrichments without a value, and why.
    pub notes: Vec<String>,
}

/// One variant's row.
#[derive(Debug, Clone, Serialize)]
pub struct VariantRow {
    pub variant: String,
    /// An alert of the notification is about this variant.
    pub affected: bool,
    pub cells: Vec<String>,
}

/// Enrichments with a known meaning: (context name, column title, unit).
const KNOWN_METRICS: &[(&str, &str, Unit)] = &[
    ("accuracy", "accuracy", Unit::Percent),
    ("traffic_share", "share", Unit::Percent),
    ("p95_latency", "p95", Unit::Seconds),
    ("error_rate", "errors", Unit::Percent),
    ("net_business_value", "value", Unit::Plain),
];

#[derive(Debug, Clone, Copy)]
enum Unit {
    Percent,
    Seconds,
    Plain,
}

fn format_number(v: &Value, unit: Unit) -> String {
    let Some(x) = v.as_f64() else {
        // "NaN", "+Inf" as Prometheus writes them; anything else is unknown.
        return v.as_str().map_or_else(|| "–".to_owned(), str::to_owned);
    };
    match unit {
        Unit::Percent => format!("{x:.1}%"),
        Unit::Seconds if x.abs() < 1.0 => format!("{:.0} ms", x * 1000.0),
        Unit::Seconds => format!("{x:.2} s"),
        Unit::Plain if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Unit::Plain => {
            let s = format!("{x:.2}");
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
    }
}

fn label<'a>(labels: &'a Labels, name: &str) -> &'a str {
    labels.get(name).map(String::as_str).unwrap_or("")
}

fn time(t: &chrono::DateTime<chrono::FixedOffset>) -> String {
    t.with_timezone(&chrono::Utc)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// The distinct non-empty values, in order; at most 3 then "+N".
fn summarise(values: impl Iterator<Item = String>) -> String {
    let mut distinct: Vec<String> = Vec::new();
    for v in values.filter(|v| !v.is_empty()) {
        if !distinct.contains(&v) {
            distinct.push(v);
        }
    }
    match distinct.len() {
        0..=3 => distinct.join(", "),
        n => format!("{} +{}", distinct[..3].join(", "), n - 3),
    }
}

impl View {
    /// The view of the alerts routed to one action, with their contexts and outcomes.
    pub fn build(notification_id: i64, n: &Notification, inputs: &[AlertInput<'_>]) -> Self {
        let alerts: Vec<AlertView> = inputs.iter().map(alert_view).collect();
        let firing = alerts.iter().filter(|a| a.status == "firing").count();
        let resolved = alerts.len() - firing;
        let status = n.status.as_str();
        let top = alerts
            .iter()
            .filter(|a| a.status == "firing")
            .max_by_key(|a| a.tone.rank());
        let severity = top
            .or(alerts.first())
            .map(|a| a.severity.clone())
            .unwrap_or_default();
        let tone = match (n.status, top) {
            (AlertStatus::Resolved, _) | (_, None) => Tone::Resolved,
            (AlertStatus::Firing, Some(a)) => a.tone,
        };
        let pick = |name: &str, each: &dyn Fn(&AlertView) -> String| {
            let common = label(&n.common_labels, name);
            let grouped = label(&n.group_labels, name);
            if !common.is_empty() {
                common.to_owned()
            } else if !grouped.is_empty() {
                grouped.to_owned()
            } else {
                summarise(alerts.iter().map(each))
            }
        };
        let alertname = pick("alertname", &|a| a.alertname.clone());
        let experiment = pick("experiment", &|a| a.experiment.clone());
        let mut variants: Vec<String> = Vec::new();
        for a in &alerts {
            if !a.variant.is_empty() && !variants.contains(&a.variant) {
                variants.push(a.variant.clone());
            }
        }
        let mut title = format!(
            "{} {}: {}",
            tone.dot(),
            status.to_uppercase(),
            if alertname.is_empty() {
                "alerts"
            } else {
                &alertname
            }
        );
        if !experiment.is_empty() {
            title.push_str(" · ");
            title.push_str(&experiment);
        }
        let mut summary = match (firing, resolved) {
            (f, 0) => format!("{f} firing"),
            (0, r) => format!("{r} resolved"),
            (f, r) => format!("{f} firing, {r} resolved"),
        };
        if !severity.is_empty() {
            summary.push_str(&format!(" · severity {severity}"));
        }
        if !variants.is_empty() {
            let noun = if variants.len() == 1 {
                "variant"
            } else {
                "variants"
            };
            summary.push_str(&format!(
                " · {noun} {}",
                summarise(variants.iter().cloned())
            ));
        }
        let mut router_actions: Vec<String> = Vec::new();
        for o in alerts.iter().flat_map(|a| &a.outcomes) {
            if !router_actions.contains(&o.text) {
                router_actions.push(o.text.clone());
            }
        }
        if router_actions.len() > MAX_ROUTER_LINES {
            let more = router_actions.len() - (MAX_ROUTER_LINES - 1);
            router_actions.truncate(MAX_ROUTER_LINES - 1);
            router_actions.push(format!("… and {more} more"));
        }
        let tables = variant_tables(&alerts);
        Self {
            notification_id,
            status,
            tone,
            colour: tone.hex(),
            title,
            summary,
            alertname,
            experiment,
            severity,
            variants,
            firing,
            resolved,
            receiver: n.receiver.clone(),
            group_key: n.group_key.clone(),
            group_labels: n.group_labels.clone(),
            common_labels: n.common_labels.clone(),
            common_annotations: n.common_annotations.clone(),
            external_url: n.external_url.clone(),
            router_actions,
            tables,
            alerts,
        }
    }
}

fn alert_view(input: &AlertInput<'_>) -> AlertView {
    let a = input.alert;
    let severity = label(&a.labels, "severity").to_owned();
    let tone = match a.status {
        AlertStatus::Resolved => Tone::Resolved,
        AlertStatus::Firing => Tone::of(&severity),
    };
    let summary = a
        .annotations
        .get("summary")
        .or_else(|| a.annotations.get("message"))
        .map(|s| clip(s.trim(), SUMMARY_CHARS))
        .unwrap_or_default();
    let description = a
        .annotations
        .get("description")
        .map(|s| clip(s.trim(), DESCRIPTION_CHARS))
        .filter(|d| *d != summary)
        .unwrap_or_default();
    let variant = label(&a.labels, "model_name").to_owned();
    AlertView {
        status: a.status.as_str(),
        tone,
        alertname: a.alertname().to_owned(),
        severity,
        experiment: label(&a.labels, "experiment").to_owned(),
        summary,
        description,
        starts_at: time(&a.starts_at),
        ends_at: (a.status == AlertStatus::Resolved).then(|| time(&a.ends_at)),
        fingerprint: a.fingerprint.clone(),
        labels: a.labels.clone(),
        annotations: a.annotations.clone(),
        links: input.context.links.clone(),
        context: input.context.template_value(),
        outcomes: input
            .outcomes
            .iter()
            .map(|run| OutcomeView {
                action: run.action.clone(),
                action_type: run.action_type.clone(),
                status: run.status,
                text: outcome_text(run, &variant),
                result: run.result.clone(),
            })
            .collect(),
        variant,
    }
}

/// One line saying what an alert-scoped run did.
pub fn outcome_text(run: &ActionRun, variant: &str) -> String {
    let error = run
        .last_error
        .as_deref()
        .map(|e| clip(e, 120))
        .unwrap_or_default();
    if run.action_type == "traffic_shift" {
        if let Some(result) = run.result.as_ref().filter(|r| r.is_object()) {
            return shift_text(result, variant);
        }
        return match run.status {
            RunStatus::Pending if error.is_empty() => "traffic shift: pending".to_owned(),
            RunStatus::Pending => format!("traffic shift: retrying ({error})"),
            RunStatus::Dead => format!("traffic shift failed: {error}"),
            RunStatus::Succeeded => "traffic shift: done".to_owned(),
        };
    }
    let status = match run.status {
        RunStatus::Pending => "pending",
        RunStatus::Succeeded => "succeeded",
        RunStatus::Dead => "failed",
    };
    if run.status == RunStatus::Succeeded || error.is_empty() {
        format!("{}: {status}", run.action)
    } else {
        format!("{}: {status} ({error})", run.action)
    }
}

fn weight(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
        None => "?".to_owned(),
    }
}

/// `traffic_shift` result → "traffic shift: enhanced-predictor 30 → 0, baseline-predictor 70 → 100 (target)".
fn shift_text(r: &Value, variant: &str) -> String {
    let decision = r["decision"].as_str().unwrap_or("unknown");
    let reason = r["reason"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(|s| clip(s, 160));
    let mut changes: Vec<(bool, String)> = Vec::new();
    if let (Some(before), Some(after)) = (r["before"].as_object(), r["after"].as_object()) {
        for (name, b) in before {
            let a = after.get(name).unwrap_or(&Value::Null);
            if weight(a) != weight(b) {
                changes.push((
                    name == variant,
                    format!("{name} {} → {}", weight(b), weight(a)),
                ));
            }
        }
        for (name, a) in after.iter().filter(|(k, _)| !before.contains_key(*k)) {
            changes.push((name == variant, format!("{name} 0 → {}", weight(a))));
        }
    }
    // The alert's own variant first.
    changes.sort_by_key(|(own, _)| !own);
    let changes: Vec<String> = changes.into_iter().map(|(_, c)| c).collect();
    let changes = changes.join(", ");
    let because = |prefix: &str| match &reason {
        Some(reason) => format!("{prefix}: {reason}"),
        None => prefix.to_owned(),
    };
    let mut line = match decision {
        "shifted" if !changes.is_empty() => format!("traffic shift: {changes}"),
        "dry_run" if !changes.is_empty() => format!("traffic shift (dry run): {changes}"),
        "shifted" => because("traffic shift"),
        "dry_run" => because("traffic shift (dry run)"),
        "blocked" => because("traffic shift blocked"),
        "cooldown" => because("traffic shift skipped (cooldown)"),
        "noop" => because("traffic shift: no change"),
        "deferred" => because("traffic shift deferred"),
        "failed" => because("traffic shift failed"),
        other => because(&format!("traffic shift: {other}")),
    };
    if let Some(target) = r["target"].as_str().filter(|t| !t.is_empty()) {
        line.push_str(&format!(" ({target})"));
    }
    line
}

/// Per experiment (at most [`MAX_TABLES`]), the variants' enrichment values,
/// merged over the experiment's alerts (the first value of each wins).
fn variant_tables(alerts: &[AlertView]) -> Vec<VariantTable> {
    let mut experiments: Vec<&str> = Vec::new();
    for a in alerts {
        if !experiments.contains(&a.experiment.as_str()) {
            experiments.push(&a.experiment);
        }
    }
    let mut tables = Vec::new();
    for experiment in experiments {
        let members: Vec<&AlertView> = alerts
            .iter()
            .filter(|a| a.experiment == experiment)
            .collect();
        let mut values: BTreeMap<&str, &Value> = BTreeMap::new();
        for a in &members {
            let Some(ctx) = a.context.as_object() else {
                continue;
            };
            for (name, v) in ctx.iter().filter(|(k, _)| *k != "links") {
                let is_error = v.get("error").is_some();
                match values.get(name.as_str()) {
                    Some(old) if old.get("error").is_none() || is_error => {}
                    _ => {
                        values.insert(name, v);
                    }
                }
            }
        }
        let is_map = |v: &Value| v.is_object() && v.get("error").is_none();
        let mut columns: Vec<(String, &Value, Unit)> = Vec::new();
        let mut notes = Vec::new();
        for (name, title, unit) in KNOWN_METRICS {
            match values.get(name) {
                Some(v) if is_map(v) => columns.push(((*title).to_owned(), v, *unit)),
                Some(v) => {
                    if let Some(e) = v.get("error").and_then(Value::as_str) {
                        notes.push(format!("{name} unavailable: {}", clip(e, 120)));
                    }
                }
                None => {}
            }
        }
        for (name, v) in &values {
            let known = KNOWN_METRICS.iter().any(|(k, _, _)| k == name);
            if !known && is_map(v) {
                columns.push(((*name).to_owned(), v, Unit::Plain));
            }
        }
        if columns.is_empty() && notes.is_empty() {
            continue;
        }
        // The variants still firing; in a resolved notification, the ones it is about.
        let any_firing = members.iter().any(|a| a.status == "firing");
        let affected: Vec<&str> = members
            .iter()
            .filter(|a| a.status == "firing" || !any_firing)
            .map(|a| a.variant.as_str())
            .filter(|v| !v.is_empty())
            .collect();
        let mut variants: Vec<String> = columns
            .iter()
            .filter_map(|(_, v, _)| v.as_object())
            .flat_map(|m| m.keys().cloned())
            .chain(affected.iter().map(|v| (*v).to_owned()))
            .collect();
        variants.sort();
        variants.dedup();
        let rows = variants
            .into_iter()
            .map(|variant| VariantRow {
                affected: affected.contains(&variant.as_str()),
                cells: columns
                    .iter()
                    .map(|(_, v, unit)| format_number(&v[variant.as_str()], *unit))
                    .collect(),
                variant,
            })
            .collect();
        tables.push(VariantTable {
            experiment: experiment.to_owned(),
            columns: columns.into_iter().map(|(t, _, _)| t).collect(),
            rows,
            notes,
        });
        if tables.len() == MAX_TABLES {
            break;
        }
    }
    tables
}

/// A markup flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Slack mrkdwn: `*bold*`, `<url|text>`, `&<>` as entities.
    Slack,
    /// CommonMark-like (Mattermost, Discord): `**bold**`, `[text](url)`, backslash escapes.
    Markdown,
    /// Adaptive Card TextBlock markdown: `**bold**`, `[text](url)`, no escapes.
    Teams,
    /// Google Chat card text: `<b>`, `<a href>`, HTML entities.
    Html,
}

impl Dialect {
    /// `s` as literal text.
    pub fn esc(self, s: &str) -> String {
        match self {
            Dialect::Slack => s
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;"),
            Dialect::Markdown => {
                let mut out = String::with_capacity(s.len());
                for c in s.chars() {
                    if matches!(
                        c,
                        '\\' | '*' | '_' | '`' | '~' | '[' | ']' | '<' | '>' | '|'
                    ) {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out
            }
            Dialect::Teams => s.to_owned(),
            Dialect::Html => s
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\n', "<br>"),
        }
    }

    /// Bold (of already escaped text).
    pub fn bold(self, s: &str) -> String {
        match self {
            Dialect::Slack => format!("*{s}*"),
            Dialect::Markdown | Dialect::Teams => format!("**{s}**"),
            Dialect::Html => format!("<b>{s}</b>"),
        }
    }

    /// A link with (plain) text.
    pub fn link(self, text: &str, url: &str) -> String {
        match self {
            Dialect::Slack => format!("<{}|{}>", self.esc(url).replace('|', "%7C"), self.esc(text)),
            Dialect::Markdown | Dialect::Teams => format!(
                "[{}]({})",
                self.esc(text),
                url.replace(' ', "%20").replace(')', "%29")
            ),
            Dialect::Html => format!("<a href=\"{}\">{}</a>", self.esc(url), self.esc(text)),
        }
    }

    fn line_break(self) -> &'static str {
        match self {
            Dialect::Html => "<br>",
            _ => "\n",
        }
    }
}

/// The links of an alert in a fixed order, "Dashboard · Graph · Silence · Runbook".
pub fn links_line(links: &BTreeMap<String, String>, d: Dialect) -> String {
    [
        ("dashboard", "Dashboard"),
        ("graph", "Graph"),
        ("silence", "Silence"),
        ("runbook", "Runbook"),
    ]
    .iter()
    .filter_map(|(key, text)| links.get(*key).map(|url| d.link(text, url)))
    .collect::<Vec<_>>()
    .join(" · ")
}

/// The first line of an alert without markup (where none renders).
pub fn alert_heading_plain(a: &AlertView) -> String {
    let parts: Vec<&str> = [a.alertname.as_str(), &a.variant, &a.severity]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    format!("{} {}", a.tone.dot(), parts.join(" · "))
}

/// The first line of an alert: dot, name, variant, severity.
pub fn alert_heading(a: &AlertView, d: Dialect) -> String {
    let mut parts = vec![d.bold(&d.esc(&a.alertname))];
    if !a.variant.is_empty() {
        parts.push(d.esc(&a.variant));
    }
    if !a.severity.is_empty() {
        parts.push(d.esc(&a.severity));
    }
    format!("{} {}", a.tone.dot(), parts.join(" · "))
}

/// The rest of an alert: summary, description, when, links.
pub fn alert_body(a: &AlertView, d: Dialect) -> String {
    let mut lines = Vec::new();
    if !a.summary.is_empty() {
        lines.push(d.esc(&a.summary));
    }
    if !a.description.is_empty() {
        lines.push(d.esc(&a.description));
    }
    let mut when = match &a.ends_at {
        Some(end) => format!("Resolved {end} (since {})", a.starts_at),
        None => format!("Since {}", a.starts_at),
    };
    let links = links_line(&a.links, d);
    if !links.is_empty() {
        when.push_str(" · ");
        when.push_str(&links);
    }
    lines.push(when);
    lines.join(d.line_break())
}

/// Heading and body of an alert.
pub fn alert_text(a: &AlertView, d: Dialect) -> String {
    format!(
        "{}{}{}",
        alert_heading(a, d),
        d.line_break(),
        alert_body(a, d)
    )
}

/// The router's outcome lines as a bulleted list.
pub fn router_text(view: &View, d: Dialect) -> Option<String> {
    if view.router_actions.is_empty() {
        return None;
    }
    let mut lines = vec![d.bold("Router")];
    lines.extend(
        view.router_actions
            .iter()
            .map(|l| format!("• {}", d.esc(l))),
    );
    Some(lines.join(d.line_break()))
}

/// A variant table as an aligned monospace block (Slack, Markdown), or as
/// one line per variant (Html).
pub fn table_text(t: &VariantTable, d: Dialect) -> String {
    let title = if t.experiment.is_empty() {
        d.bold("Variants")
    } else {
        d.bold(&format!("Variants · {}", d.esc(&t.experiment)))
    };
    let mut out = vec![title];
    if d == Dialect::Html {
        for row in &t.rows {
            let name = if row.affected {
                format!("<b>{}</b> (alerting)", d.esc(&row.variant))
            } else {
                d.esc(&row.variant)
            };
            let cells: Vec<String> = t
                .columns
                .iter()
                .zip(&row.cells)
                .map(|(c, v)| format!("{} {}", d.esc(c), d.esc(v)))
                .collect();
            out.push(format!("{name}: {}", cells.join(" · ")));
        }
    } else if !t.rows.is_empty() {
        let mut grid: Vec<Vec<String>> = vec![std::iter::once("  variant".to_owned())
            .chain(t.columns.iter().cloned())
            .collect()];
        for row in &t.rows {
            let marker = if row.affected { "> " } else { "  " };
            grid.push(
                std::iter::once(format!("{marker}{}", row.variant))
                    .chain(row.cells.iter().cloned())
                    .collect(),
            );
        }
        let widths: Vec<usize> = (0..grid[0].len())
            .map(|i| grid.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let lines: Vec<String> = grid
            .iter()
            .map(|r| {
                r.iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_owned()
            })
            .collect();
        let block = lines.join("\n");
        // Slack parses entities even in code blocks; Markdown code is literal.
        let block = if d == Dialect::Slack {
            d.esc(&block)
        } else {
            block
        };
        out.push(format!("```\n{block}\n```"));
    }
    out.extend(t.notes.iter().map(|n| format!("⚠ {}", d.esc(n))));
    out.join(d.line_break())
}

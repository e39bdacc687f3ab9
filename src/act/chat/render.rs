//! The message, platform-neutral: what is wrong (status, severity, alert,
//! experiment, variants), how each variant is doing (the enrichment context),
//! what the router did about it (the alert-scoped runs of the same
//! notification), and where to look (links). Formats turn a [`View`] into a
//! platform's JSON; custom templates see it as their variables.

use super::limits::clip;
use crate::act::traffic::{Decision, TrafficResult};
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
/// Rows of a variant table (an experiment has a few variants; an enrichment
/// may answer up to `prometheus.max_series`).
const MAX_ROWS: usize = 20;
/// The message title and summary line, the names in a table: label values
/// can be any length, and every platform has a size limit.
const TITLE_CHARS: usize = 300;
const SUMMARY_LINE_CHARS: usize = 600;
const NAME_CHARS: usize = 100;

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
    /// Alerts of the group that Alertmanager left out (`truncatedAlerts`)
    /// and the router could not fetch; 0 when the group is whole.
    pub truncated_alerts: u64,
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
    /// An alert of this experiment still fires: the affected rows are the
    /// alerting variants (else they are the resolved ones).
    pub firing: bool,
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
        let mut summary = counts(firing, resolved, n.truncated_alerts);
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
        let title = clip(&title, TITLE_CHARS);
        let summary = clip(&summary, SUMMARY_LINE_CHARS);
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
            truncated_alerts: n.truncated_alerts,
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

/// "2 firing", "1 firing, 1 resolved"; with alerts Alertmanager did not send
/// (`truncated`), "2 firing shown of 5 — 3 more not sent by Alertmanager".
fn counts(firing: usize, resolved: usize, truncated: u64) -> String {
    let shown = match (firing, resolved) {
        (f, 0) => format!("{f} firing"),
        (0, r) => format!("{r} resolved"),
        (f, r) => format!("{f} firing, {r} resolved"),
    };
    if truncated == 0 {
        return shown;
    }
    let total = (firing + resolved) as u64 + truncated;
    format!("{shown} shown of {total} — {truncated} more not sent by Alertmanager")
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
                text: outcome_text(run, &variant, a.status == AlertStatus::Resolved),
                result: run.result.clone(),
            })
            .collect(),
        variant,
    }
}

/// One line saying what an alert-scoped run did; `resolved`: the run was
/// for a resolved alert (what happened to traffic on resolve).
pub fn outcome_text(run: &ActionRun, variant: &str, resolved: bool) -> String {
    let shift = run.action_type == "traffic_shift";
    // A traffic decision's reason (why deferred, why failed) is worth more room.
    let error = run
        .last_error
        .as_deref()
        .map(|e| clip(e, if shift { 160 } else { 120 }))
        .unwrap_or_default();
    if shift {
        if let Some(result) = run.result.as_ref().filter(|r| r.is_object()) {
            return match TrafficResult::from_value(result) {
                Some(r) => shift_text(&r, variant, resolved),
                None => unknown_shift_text(result),
            };
        }
        // A deferred decision is a retryable error: "deferred: <reason>".
        return match run.status {
            RunStatus::Pending if error.is_empty() => "traffic shift: pending".to_owned(),
            RunStatus::Pending => match error.strip_prefix("deferred: ") {
                Some(reason) => format!("traffic shift deferred (will retry): {reason}"),
                None => format!("traffic shift: retrying ({error})"),
            },
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

/// The weights a `traffic_shift` result changed, the alert's own variant
/// first: "enhanced-predictor 30 → 0, baseline-predictor 70 → 100".
fn weight_changes(r: &TrafficResult, variant: &str) -> String {
    let mut changes: Vec<(bool, String)> = Vec::new();
    if let (Some(before), Some(after)) = (&r.before, &r.after) {
        for (name, b) in before {
            let a = after
                .get(name)
                .map_or_else(|| "?".to_owned(), u32::to_string);
            if a != b.to_string() {
                changes.push((name == variant, format!("{name} {b} → {a}")));
            }
        }
        for (name, a) in after.iter().filter(|(k, _)| !before.contains_key(*k)) {
            changes.push((name == variant, format!("{name} 0 → {a}")));
        }
    }
    changes.sort_by_key(|(own, _)| !own);
    let changes: Vec<String> = changes.into_iter().map(|(_, c)| c).collect();
    changes.join(", ")
}

/// A `traffic_shift` result as one line, a wording for each [`Decision`]:
/// "traffic shifted: enhanced-predictor 30 → 0, baseline-predictor 70 → 100
/// (financial-ab-test-experiment)".
fn shift_text(r: &TrafficResult, variant: &str, resolved: bool) -> String {
    // "resolved; weights changed since the shift" reads "on resolve: weights …".
    let reason = Some(r.reason.as_str())
        .map(|s| s.strip_prefix("resolved; ").unwrap_or(s))
        .filter(|s| !s.is_empty())
        .map(|s| clip(s, 160));
    let changes = weight_changes(r, variant);
    let with = |prefix: &str, detail: Option<&str>| match detail.filter(|d| !d.is_empty()) {
        Some(detail) => format!("{prefix}: {detail}"),
        None => prefix.to_owned(),
    };
    let either = if changes.is_empty() {
        reason.as_deref()
    } else {
        Some(changes.as_str())
    };
    let would = (!changes.is_empty()).then(|| format!("would set {changes}"));
    let mut line = match r.decision {
        Decision::Shifted => with("traffic shifted", either),
        Decision::Restored => with("traffic restored", either),
        Decision::DryRun if resolved => with(
            "traffic restore dry run, nothing changed",
            would.as_deref().or(reason.as_deref()),
        ),
        Decision::DryRun => with(
            "traffic shift dry run, nothing changed",
            would.as_deref().or(reason.as_deref()),
        ),
        Decision::Held => "traffic held (on_resolve: hold): weights kept as they are".to_owned(),
        Decision::Noop if resolved => with("traffic unchanged on resolve", reason.as_deref()),
        Decision::Noop => with("traffic unchanged", reason.as_deref()),
        Decision::Blocked => with("traffic shift blocked", reason.as_deref()),
        Decision::Cooldown => with("traffic shift skipped (cooldown)", reason.as_deref()),
        Decision::RateLimited => with(
            "traffic shift skipped (max_shifts_per_hour)",
            reason.as_deref(),
        ),
        Decision::Deferred => with("traffic shift deferred (will retry)", reason.as_deref()),
        Decision::Failed => with("traffic shift failed", reason.as_deref()),
    };
    if let Some(target) = Some(r.target.as_str()).filter(|t| !t.is_empty()) {
        line.push_str(&format!(" ({target})"));
    }
    line
}

/// A result whose decision this version does not know (written by a newer
/// one): its name, reason and target.
fn unknown_shift_text(r: &Value) -> String {
    let decision = r["decision"].as_str().unwrap_or("unknown");
    let mut line = format!("traffic shift: {decision}");
    let reason = r["reason"].as_str();
    let reason = reason.map(|s| s.strip_prefix("resolved; ").unwrap_or(s));
    if let Some(reason) = reason.filter(|s| !s.is_empty()) {
        line.push_str(&format!(": {}", clip(reason, 160)));
    }
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
        if variants.len() > MAX_ROWS {
            notes.push(format!(
                "{} more variants not shown",
                variants.len() - MAX_ROWS
            ));
            // The affected variants first, so they are never the ones cut.
            variants.sort_by_key(|v| !affected.contains(&v.as_str()));
            variants.truncate(MAX_ROWS);
            variants.sort();
        }
        let rows = variants
            .into_iter()
            .map(|variant| VariantRow {
                affected: affected.contains(&variant.as_str()),
                cells: columns
                    .iter()
                    .map(|(_, v, unit)| {
                        clip(&format_number(&v[variant.as_str()], *unit), NAME_CHARS)
                    })
                    .collect(),
                variant: clip(&variant, NAME_CHARS),
            })
            .collect();
        tables.push(VariantTable {
            experiment: clip(experiment, NAME_CHARS),
            columns: columns
                .into_iter()
                .map(|(t, _, _)| clip(&t, NAME_CHARS))
                .collect(),
            rows,
            firing: any_firing,
            notes,
        });
        if tables.len() == MAX_TABLES {
            break;
        }
    }
    tables
}

// ---------------------------------------------------------------- markup
//
// Every value in a [`View`] that came from outside (labels, annotations,
// alert names, receiver, groupKey, enrichment values and errors, errors a
// remote side answered) is text, never markup. A platform renderer builds its
// interpreted fields from [`Markup`] only, and the only ways to turn a value
// into `Markup` escape it for the platform ([`Dialect::text`],
// [`Dialect::code_block`]) or neutralise it ([`Markup::plain`]); the
// router's own markup (bold, its links) comes from `&'static str` literals
// and [`Dialect::bold`] / [`Dialect::link`]; a custom template's output is
// `Markup` because its formatter escapes every value it interpolates
// ([`Markup::from_escaping_template`], `template.rs`).

/// ZERO WIDTH SPACE: invisible, breaks `@all`, `<users/all>`, `](`, `||`.
pub const ZWSP: char = '\u{200B}';

/// Text in a platform's markup, safe to put into a field the platform
/// interprets. There is no `From<String>`: see the section comment above.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Markup(String);

impl std::fmt::Display for Markup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Markup {
    /// The router's own text (a literal: it cannot hold a value).
    pub fn lit(s: &'static str) -> Self {
        Self(s.to_owned())
    }

    /// A value for a field whose markup is unknown or none (Discord field
    /// names, card headers, notification fallbacks): neutralised so that it
    /// reads the same whether the field interprets markup or not.
    pub fn plain(s: &str) -> Self {
        Self(neutralise(s))
    }

    /// The output of a custom template whose `{{ … }}` values the template's
    /// auto-escape formatter escaped for the platform (`template.rs`).
    pub(super) fn from_escaping_template(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Characters (what the platforms count).
    pub fn chars(&self) -> usize {
        self.0.chars().count()
    }

    pub fn push(&mut self, other: &Markup) {
        self.0.push_str(&other.0);
    }

    pub fn push_lit(&mut self, s: &'static str) {
        self.0.push_str(s);
    }

    /// Without trailing whitespace.
    pub fn trim_end(&self) -> Self {
        Self(self.0.trim_end().to_owned())
    }

    /// `self` followed by `other`.
    pub fn then(mut self, other: &Markup) -> Self {
        self.push(other);
        self
    }

    /// The parts with `sep` between them.
    pub fn join(parts: impl IntoIterator<Item = Markup>, sep: &'static str) -> Self {
        let mut out = String::new();
        for (i, p) in parts.into_iter().enumerate() {
            if i > 0 {
                out.push_str(sep);
            }
            out.push_str(&p.0);
        }
        Self(out)
    }

    /// At most `max` characters, ending in "…" when cut; never inside a
    /// character, an escape sequence (`&amp;`, `\*`) or the router's own
    /// tag or link (`<https://…|Graph>`, `[Graph](https://…)`, `<a …>`).
    pub fn clip(&self, max: usize) -> Self {
        if max == 0 {
            return Self::default();
        }
        if self.0.char_indices().nth(max).is_none() {
            return self.clone();
        }
        // Room for the ellipsis: keep at most max - 1 characters.
        let end = self
            .0
            .char_indices()
            .nth(max - 1)
            .map_or(self.0.len(), |(i, _)| i);
        Self(format!("{}…", safe_end(&self.0[..end])))
    }
}

/// `s` without a half escape sequence or half tag at its end.
fn safe_end(s: &str) -> &str {
    let mut s = s;
    loop {
        let before = s.len();
        s = safe_end_once(s);
        if s.len() == before {
            return s;
        }
    }
}

fn safe_end_once(mut s: &str) -> &str {
    // A backslash escape cut before its character.
    let backslashes = s.len() - s.trim_end_matches('\\').len();
    if backslashes % 2 == 1 {
        s = &s[..s.len() - 1];
    }
    // An entity cut before its `;`: `&am`.
    if let Some(i) = s.rfind('&') {
        let tail = &s[i + 1..];
        if tail.len() < 8 && tail.chars().all(|c| c.is_ascii_alphanumeric() || c == '#') {
            s = &s[..i];
        }
    }
    // A tag or Slack link of the router's cut before its `>` (a value's `<`
    // is an entity, backslash-escaped or followed by a zero-width space).
    if let Some(i) = s.rfind('<') {
        let escaped = s[..i].ends_with('\\') || s[i + 1..].starts_with(ZWSP);
        if !escaped && !s[i..].contains('>') {
            s = &s[..i];
        }
    }
    // A Markdown link of the router's cut inside its `(…)` (its URL has no
    // whitespace; a value's `](` is escaped, or followed by more text).
    if let Some(i) = s.rfind("](") {
        if !s[i..].contains(|c: char| c == ')' || c.is_whitespace()) {
            if let Some(open) = s[..i].rfind('[').filter(|&o| !s[..o].ends_with('\\')) {
                s = &s[..open];
            }
        }
    }
    s
}

/// One character of a value being escaped, with its neighbours.
#[derive(Debug, Clone, Copy)]
pub struct Ch {
    pub c: char,
    pub prev: Option<char>,
    pub next: Option<char>,
    /// Only spaces or tabs before it on its line (a list or quote marker here counts).
    pub line_start: bool,
    /// At a line's start, the first digit of `12. ` or `12) ` (an ordered list marker).
    pub list_number: bool,
}

/// A character that would make its line a list item, heading, quote or
/// underline: `- x`, `+ x`, `# x`, `-# x`, `> x`, `1. x`, `===`.
pub fn line_marker(ch: Ch) -> bool {
    if !ch.line_start {
        return false;
    }
    match ch.c {
        '>' => true,
        '-' | '+' | '=' | '#' => ch
            .next
            .is_none_or(|n| matches!(n, ' ' | '\t' | '\n' | '\r' | '#') || n == ch.c),
        _ => ch.list_number,
    }
}

/// Walks `s`; `each` appends the escaped form of each character.
pub fn escape_each(s: &str, mut each: impl FnMut(&mut String, Ch)) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + s.len() / 8 + 4);
    let mut line_start = true;
    for (i, &c) in chars.iter().enumerate() {
        let list_number = line_start && c.is_ascii_digit() && {
            let mut rest = chars[i..].iter().skip_while(|d| d.is_ascii_digit());
            matches!(rest.next(), Some('.' | ')'))
                && matches!(rest.next(), None | Some(' ' | '\t' | '\n' | '\r'))
        };
        let ch = Ch {
            c,
            prev: i.checked_sub(1).map(|j| chars[j]),
            next: chars.get(i + 1).copied(),
            line_start,
            list_number,
        };
        each(&mut out, ch);
        line_start = matches!(c, '\n' | '\r') || (line_start && matches!(c, ' ' | '\t'));
    }
    out
}

/// A formatting character no escape neutralises, as a look-alike: `*` `∗`,
/// `~` `∼`, backtick `ˋ` always; `_` `ˍ` at a word's edge (where it could
/// open or close emphasis; `model_name` keeps its underscore).
pub fn lookalike(ch: Ch) -> Option<char> {
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    match ch.c {
        '*' => Some('∗'),
        '~' => Some('∼'),
        '`' => Some('ˋ'),
        '_' if !(word(ch.prev) && word(ch.next)) => Some('ˍ'),
        _ => None,
    }
}

/// For markup without an escape mechanism (Teams TextBlocks, Google Chat
/// text messages) and fields whose markup is unknown: formatting characters
/// become look-alikes ([`lookalike`]), a zero-width space follows every `@`
/// (no mention), `<` (no tag, mention or `<url|text>` link), `]` before `(`
/// (no Markdown link or image) and `|` before `|` (no spoiler), and precedes
/// a line's list, heading or quote marker.
pub fn neutralise(s: &str) -> String {
    escape_each(s, |out, ch| {
        if line_marker(ch) {
            out.push(ZWSP);
        }
        match lookalike(ch) {
            Some(l) => out.push(l),
            None => out.push(ch.c),
        }
        if matches!(ch.c, '@' | '<')
            || (ch.c == ']' && ch.next == Some('('))
            || (ch.c == '|' && ch.next == Some('|'))
        {
            out.push(ZWSP);
        }
    })
}

/// CommonMark's backslash escapes for every character that could start
/// markup or an entity (Mattermost, Discord), a zero-width space after `@` and after each
/// of `break_after`, and before a line's list marker (`-`, `+`, `1.`).
pub fn backslash_markdown(s: &str, break_after: &[char]) -> String {
    escape_each(s, |out, ch| {
        // `#` and `>` get a backslash below.
        if line_marker(ch) && !matches!(ch.c, '#' | '>') {
            out.push(ZWSP);
        }
        if matches!(
            ch.c,
            '\\' | '*' | '_' | '`' | '~' | '[' | ']' | '<' | '>' | '|' | '#' | '&'
        ) {
            out.push('\\');
        }
        out.push(ch.c);
        if ch.c == '@' || break_after.contains(&ch.c) {
            out.push(ZWSP);
        }
    })
}

/// A URL the router links to: http(s) only, and every character that could
/// end a link in any dialect (`|`, `>`, `)`, `]`, quotes, spaces)
/// percent-encoded. None for anything else (`javascript:`, not a URL).
pub fn link_target(url: &str) -> Option<String> {
    let u = url::Url::parse(url.trim()).ok()?;
    if !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    let mut out = String::with_capacity(u.as_str().len());
    for c in u.as_str().chars() {
        match c {
            '|' => out.push_str("%7C"),
            '(' => out.push_str("%28"),
            ')' => out.push_str("%29"),
            '[' => out.push_str("%5B"),
            ']' => out.push_str("%5D"),
            '<' => out.push_str("%3C"),
            '>' => out.push_str("%3E"),
            '"' => out.push_str("%22"),
            '\'' => out.push_str("%27"),
            '`' => out.push_str("%60"),
            '\\' => out.push_str("%5C"),
            '*' => out.push_str("%2A"),
            ' ' => out.push_str("%20"),
            c => out.push(c),
        }
    }
    Some(out)
}

/// A markup flavour: which `escape` a value goes through, and how the
/// router writes bold, links and line breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Slack mrkdwn: `*bold*`, `<url|text>`, `&<>` as entities.
    Slack,
    /// Mattermost Markdown: `**bold**`, `[text](url)`, backslash escapes.
    Mattermost,
    /// Discord Markdown: `**bold**`, `[text](url)`, backslash escapes.
    Discord,
    /// Adaptive Card TextBlock Markdown: `**bold**`, `[text](url)`, no escapes.
    Teams,
    /// Google Chat card text: `<b>`, `<a href>`, HTML entities.
    GoogleCard,
    /// Google Chat text message: `*bold*`, `<url|text>`, no escapes.
    GoogleText,
}

impl Dialect {
    /// `s` (a value from outside) escaped: the platform file's `escape`.
    pub fn escape(self, s: &str) -> String {
        match self {
            Dialect::Slack => super::slack::escape(s),
            Dialect::Mattermost => super::mattermost::escape(s),
            Dialect::Discord => super::discord::escape(s),
            Dialect::Teams => super::msteams::escape(s),
            Dialect::GoogleCard => super::google_chat::escape(s),
            Dialect::GoogleText => super::google_chat::escape_text(s),
        }
    }

    /// `s` as literal text in this dialect.
    pub fn text(self, s: &str) -> Markup {
        Markup(self.escape(s))
    }

    /// Bold.
    pub fn bold(self, m: &Markup) -> Markup {
        match self {
            Dialect::Slack | Dialect::GoogleText => Markup(format!("*{m}*")),
            Dialect::Mattermost | Dialect::Discord | Dialect::Teams => Markup(format!("**{m}**")),
            Dialect::GoogleCard => Markup(format!("<b>{m}</b>")),
        }
    }

    /// A link of the router's; `None` when `url` is not an http(s) URL.
    pub fn link(self, text: &Markup, url: &str) -> Option<Markup> {
        let url = link_target(url)?;
        Some(Markup(match self {
            Dialect::Slack => format!("<{}|{text}>", url.replace('&', "&amp;")),
            Dialect::GoogleText => format!("<{url}|{text}>"),
            Dialect::Mattermost | Dialect::Discord | Dialect::Teams => format!("[{text}]({url})"),
            Dialect::GoogleCard => {
                format!("<a href=\"{}\">{text}</a>", url.replace('&', "&amp;"))
            }
        }))
    }

    /// Between lines.
    pub fn line_break(self) -> &'static str {
        match self {
            Dialect::GoogleCard => "<br>",
            _ => "\n",
        }
    }

    /// `s` as a monospace block (where the dialect has one): only what could
    /// end the block, mention or format is changed, one character for one,
    /// so columns stay aligned.
    pub fn code_block(self, s: &str) -> Markup {
        // Literal in a code block, but not in every client; and no ``` ends it.
        let inner = |entities: bool| {
            escape_each(s, |out, ch| match ch.c {
                '&' if entities => out.push_str("&amp;"),
                '<' if entities => out.push_str("&lt;"),
                '>' if entities => out.push_str("&gt;"),
                c => {
                    out.push(lookalike(ch).unwrap_or(c));
                    if matches!(c, '@' | '<')
                        || (c == ']' && ch.next == Some('('))
                        || (c == '|' && ch.next == Some('|'))
                    {
                        out.push(ZWSP);
                    }
                }
            })
        };
        match self {
            // Slack parses entities even in code blocks.
            Dialect::Slack => Markup(format!("```\n{}\n```", inner(true))),
            Dialect::Mattermost | Dialect::Discord | Dialect::GoogleText => {
                Markup(format!("```\n{}\n```", inner(false)))
            }
            Dialect::Teams | Dialect::GoogleCard => Markup::join(
                s.lines().map(|l| self.text(l)).collect::<Vec<_>>(),
                self.line_break(),
            ),
        }
    }
}

/// The links of an alert in a fixed order, "Dashboard · Graph · Runbook ·
/// Silence" (the silence link carries every label: longest, so last).
pub fn links_line(links: &BTreeMap<String, String>, d: Dialect) -> Markup {
    Markup::join(link_list(links, d), " · ")
}

fn link_list(links: &BTreeMap<String, String>, d: Dialect) -> Vec<Markup> {
    [
        ("dashboard", "Dashboard"),
        ("graph", "Graph"),
        ("runbook", "Runbook"),
        ("silence", "Silence"),
    ]
    .iter()
    .filter_map(|(key, text)| {
        links
            .get(*key)
            .and_then(|url| d.link(&Markup::lit(text), url))
    })
    .collect()
}

/// The first line of an alert for a field whose markup is unknown.
pub fn alert_heading_plain(a: &AlertView) -> Markup {
    let parts: Vec<&str> = [a.alertname.as_str(), &a.variant, &a.severity]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    Markup::plain(&format!("{} {}", a.tone.dot(), parts.join(" · ")))
}

/// The first line of an alert: dot, name, variant, severity.
pub fn alert_heading(a: &AlertView, d: Dialect) -> Markup {
    let mut parts = vec![d.bold(&d.text(&a.alertname))];
    if !a.variant.is_empty() {
        parts.push(d.text(&a.variant));
    }
    if !a.severity.is_empty() {
        parts.push(d.text(&a.severity));
    }
    Markup::lit(a.tone.dot())
        .then(&Markup::lit(" "))
        .then(&Markup::join(parts, " · "))
}

/// When an alert started (and ended), then its links.
pub fn alert_when(a: &AlertView, d: Dialect) -> Markup {
    alert_when_within(a, d, usize::MAX)
}

/// [`alert_when`] with only the links (in order) that keep it within `max`
/// characters.
fn alert_when_within(a: &AlertView, d: Dialect, max: usize) -> Markup {
    let when = match &a.ends_at {
        Some(end) => format!("Resolved {end} (since {})", a.starts_at),
        None => format!("Since {}", a.starts_at),
    };
    let mut when = d.text(&when);
    for link in link_list(&a.links, d) {
        if when.chars() + 3 + link.chars() <= max {
            when.push_lit(" · ");
            when.push(&link);
        }
    }
    when
}

/// The rest of an alert: summary, description, when, links.
pub fn alert_body(a: &AlertView, d: Dialect) -> Markup {
    let mut lines = Vec::new();
    if !a.summary.is_empty() {
        lines.push(d.text(&a.summary));
    }
    if !a.description.is_empty() {
        lines.push(d.text(&a.description));
    }
    lines.push(alert_when(a, d));
    Markup::join(lines, d.line_break())
}

/// Heading and body of an alert.
pub fn alert_text(a: &AlertView, d: Dialect) -> Markup {
    Markup::join([alert_heading(a, d), alert_body(a, d)], d.line_break())
}

/// [`alert_body`] within `max` characters: when the summary and description
/// make it too long, they are cut first, so the when-and-links line stays
/// whole, with the links that fit in half of `max` (in order: a silence
/// link carrying huge labels goes first).
pub fn alert_body_within(a: &AlertView, d: Dialect, max: usize) -> Markup {
    let when = alert_when_within(a, d, max / 2);
    let mut lines = Vec::new();
    if !a.summary.is_empty() {
        lines.push(d.text(&a.summary));
    }
    if !a.description.is_empty() {
        lines.push(d.text(&a.description));
    }
    let text = Markup::join(lines, d.line_break());
    let sep = d.line_break().chars().count();
    let whole = text.chars() + sep + when.chars();
    if !text.is_empty() && whole > max && when.chars() <= max / 2 {
        let room = max - sep - when.chars();
        return Markup::join([text.clip(room), when], d.line_break());
    }
    alert_body(a, d).clip(max)
}

/// [`alert_text`] within `max` characters, cut as [`alert_body_within`].
pub fn alert_text_within(a: &AlertView, d: Dialect, max: usize) -> Markup {
    let heading = alert_heading(a, d);
    let sep = d.line_break().chars().count();
    if heading.chars() + sep >= max / 2 {
        return alert_text(a, d).clip(max);
    }
    let body = alert_body_within(a, d, max - heading.chars() - sep);
    Markup::join([heading, body], d.line_break())
}

/// The router's outcome lines as a bulleted list.
pub fn router_text(view: &View, d: Dialect) -> Option<Markup> {
    if view.router_actions.is_empty() {
        return None;
    }
    let mut lines = vec![d.bold(&Markup::lit("Router"))];
    lines.extend(
        view.router_actions
            .iter()
            .map(|l| Markup::lit("• ").then(&d.text(l))),
    );
    Some(Markup::join(lines, d.line_break()))
}

/// "Variants" or "Variants · <experiment>", bold.
pub fn table_title(t: &VariantTable, d: Dialect) -> Markup {
    if t.experiment.is_empty() {
        d.bold(&Markup::lit("Variants"))
    } else {
        d.bold(&Markup::lit("Variants · ").then(&d.text(&t.experiment)))
    }
}

/// A variant table as an aligned monospace block (Slack, Markdown), or as
/// one line per variant (Google Chat cards).
pub fn table_text(t: &VariantTable, d: Dialect) -> Markup {
    let mut out = vec![table_title(t, d)];
    if d == Dialect::GoogleCard {
        for row in &t.rows {
            let mut name = d.text(&row.variant);
            if row.affected {
                let state = if t.firing {
                    " (alerting)"
                } else {
                    " (resolved)"
                };
                name = d.bold(&name).then(&Markup::lit(state));
            }
            let cells: Vec<Markup> = t
                .columns
                .iter()
                .zip(&row.cells)
                .map(|(c, v)| d.text(&format!("{c} {v}")))
                .collect();
            out.push(
                name.then(&Markup::lit(": "))
                    .then(&Markup::join(cells, " · ")),
            );
        }
    } else if !t.rows.is_empty() {
        // One line per row, whatever a value holds.
        let flat = |s: &str| s.replace(['\n', '\r'], " ");
        let mut grid: Vec<Vec<String>> = vec![std::iter::once("  variant".to_owned())
            .chain(t.columns.iter().map(|c| flat(c)))
            .collect()];
        for row in &t.rows {
            let marker = if row.affected { "> " } else { "  " };
            grid.push(
                std::iter::once(format!("{marker}{}", flat(&row.variant)))
                    .chain(row.cells.iter().map(|c| flat(c)))
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
        out.push(d.code_block(&lines.join("\n")));
    }
    out.extend(t.notes.iter().map(|n| Markup::lit("⚠ ").then(&d.text(n))));
    Markup::join(out, d.line_break())
}

#[cfg(test)]
mod escape_tests {
    use super::*;

    const Z: char = ZWSP;

    fn esc(d: Dialect, s: &str) -> String {
        d.escape(s)
    }

    #[test]
    fn slack_entities_lookalikes_and_no_mentions() {
        let d = Dialect::Slack;
        assert_eq!(esc(d, "<!channel>"), "&lt;!channel&gt;");
        assert_eq!(
            esc(d, "<@U123> <#C1|x>"),
            "&lt;@\u{200B}U123&gt; &lt;#C1|x&gt;"
        );
        assert_eq!(
            esc(d, "<https://evil|x>"),
            "&lt;https://evil|x&gt;",
            "no <url|text> link"
        );
        // Already escaped text stays what it was: a literal "&amp;".
        assert_eq!(esc(d, "&amp; &lt;"), "&amp;amp; &amp;lt;");
        assert_eq!(esc(d, "*bold* ~s~ `code`"), "∗bold∗ ∼s∼ ˋcodeˋ");
        assert_eq!(esc(d, "_it_ model_name __x"), "ˍitˍ model_name ˍˍx");
        assert_eq!(esc(d, "@channel @here"), format!("@{Z}channel @{Z}here"));
        assert_eq!(
            esc(d, "> quote\nok > no"),
            format!("{Z}&gt; quote\nok &gt; no")
        );
        assert_eq!(esc(d, "🔥 日本語 é"), "🔥 日本語 é");
    }

    #[test]
    fn mattermost_and_discord_backslash_escape_and_break_mentions() {
        for d in [Dialect::Mattermost, Dialect::Discord] {
            assert_eq!(
                esc(d, "[click](https://evil.example)"),
                "\\[click\\](https://evil.example)"
            );
            assert_eq!(esc(d, "![i](x)"), "!\\[i\\](x)");
            assert_eq!(
                esc(d, "**b** _i_ ~~s~~ `c`").replace(Z, ""),
                "\\*\\*b\\*\\* \\_i\\_ \\~\\~s\\~\\~ \\`c\\`"
            );
            assert_eq!(
                esc(d, "@all @channel @here @everyone"),
                format!("@{Z}all @{Z}channel @{Z}here @{Z}everyone")
            );
            assert_eq!(esc(d, "a\\b"), "a\\\\b");
            assert_eq!(
                esc(d, "# h\n- li\n1. n").replace(Z, "Z"),
                "\\# h\nZ- li\nZ1. n"
            );
            assert_eq!(esc(d, "a|b"), "a\\|b");
        }
        // Mattermost: no ~channel link.
        assert_eq!(
            esc(Dialect::Mattermost, "~town-square"),
            format!("\\~{Z}town-square")
        );
        // Discord: no <@id>, <@&role>, <#channel>.
        assert_eq!(
            esc(Dialect::Discord, "<@123> <@&9> <#7>"),
            format!("\\<{Z}@{Z}123\\> \\<{Z}@{Z}\\&9\\> \\<{Z}\\#7\\>")
        );
    }

    #[test]
    fn teams_and_google_text_neutralise_without_an_escape() {
        for d in [Dialect::Teams, Dialect::GoogleText] {
            assert_eq!(
                esc(d, "[click](https://evil.example)"),
                format!("[click]{Z}(https://evil.example)")
            );
            assert_eq!(esc(d, "**b** _i_ ~s~ `c`"), "∗∗b∗∗ ˍiˍ ∼s∼ ˋcˋ");
            assert_eq!(esc(d, "<at>x</at>"), format!("<{Z}at>x<{Z}/at>"));
            assert_eq!(
                esc(d, "<users/all> <https://e|x>"),
                format!("<{Z}users/all> <{Z}https://e|x>")
            );
            assert_eq!(esc(d, "@all"), format!("@{Z}all"));
            assert_eq!(
                esc(d, "- li\n  * li\n1. n"),
                format!("{Z}- li\n  ∗ li\n{Z}1. n")
            );
            assert_eq!(esc(d, "||spoiler||"), format!("|{Z}|spoiler|{Z}|"));
            assert_eq!(esc(d, "model_name 🔥 é"), "model_name 🔥 é");
        }
    }

    #[test]
    fn google_cards_use_html_entities() {
        let d = Dialect::GoogleCard;
        assert_eq!(esc(d, "<users/all>"), "&lt;users/all&gt;");
        assert_eq!(
            esc(d, "<a href=\"x\">y</a>"),
            "&lt;a href=&quot;x&quot;&gt;y&lt;/a&gt;"
        );
        assert_eq!(esc(d, "a\r\nb & c"), "a<br>b &amp; c");
        assert_eq!(esc(d, "&amp;"), "&amp;amp;");
    }

    #[test]
    fn the_routers_links_are_http_only_with_their_delimiters_encoded() {
        assert_eq!(link_target("javascript:alert(1)"), None);
        assert_eq!(link_target("not a url"), None);
        assert_eq!(
            link_target("https://x.example/a b|c)d]e>f?q=(1)&r=<2>").as_deref(),
            Some("https://x.example/a%20b%7Cc%29d%5De%3Ef?q=%281%29&r=%3C2%3E")
        );
        let t = Markup::lit("Graph");
        let url = "https://p.example/graph?g0.expr=a>1&g0.tab=1";
        assert_eq!(
            Dialect::Slack.link(&t, url).unwrap().as_str(),
            "<https://p.example/graph?g0.expr=a%3E1&amp;g0.tab=1|Graph>"
        );
        assert_eq!(
            Dialect::Mattermost.link(&t, url).unwrap().as_str(),
            "[Graph](https://p.example/graph?g0.expr=a%3E1&g0.tab=1)"
        );
        assert_eq!(
            Dialect::GoogleCard.link(&t, url).unwrap().as_str(),
            "<a href=\"https://p.example/graph?g0.expr=a%3E1&amp;g0.tab=1\">Graph</a>"
        );
        assert!(Dialect::Teams.link(&t, "file:///etc/passwd").is_none());
    }

    /// True when `m` ends inside an escape sequence or one of the router's tags.
    fn cut_badly(m: &str) -> bool {
        let body = m.strip_suffix('…').unwrap_or(m);
        let trailing = body.len() - body.trim_end_matches('\\').len();
        let half_entity = body.rfind('&').is_some_and(|i| {
            body[i + 1..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '#')
        });
        let half_tag = body.rfind('<').is_some_and(|i| {
            !body[i..].contains('>')
                && !body[..i].ends_with('\\')
                && !body[i + 1..].starts_with(ZWSP)
        });
        trailing % 2 == 1 || half_entity || half_tag
    }

    #[test]
    fn clipping_escaped_text_never_cuts_an_escape_sequence_or_a_link() {
        let hostile = "a&b<c>*d* 🔥é_日本_ @all [x](y) \\ <!here> &amp;";
        let dialects = [
            Dialect::Slack,
            Dialect::Mattermost,
            Dialect::Discord,
            Dialect::Teams,
            Dialect::GoogleCard,
            Dialect::GoogleText,
        ];
        for d in dialects {
            let mut m = d.text(hostile);
            m.push_lit(" · ");
            m.push(
                &d.link(&Markup::lit("Graph"), "https://p.example/g?a=1&b=2")
                    .unwrap(),
            );
            m.push(&d.text(hostile));
            let n = m.chars();
            for max in 0..=n + 1 {
                let c = m.clip(max);
                assert!(c.chars() <= max, "{d:?} {max}: {c}");
                assert!(!cut_badly(c.as_str()), "{d:?} {max}: {c}");
                if max >= n {
                    assert_eq!(c, m);
                }
            }
        }
        // Slack: the cut lands before the entity, not inside it.
        assert_eq!(Dialect::Slack.text("ab&").clip(5).as_str(), "ab…");
        assert_eq!(Dialect::Slack.text("ab&").clip(7).as_str(), "ab&amp;");
        assert_eq!(Dialect::Mattermost.text("ab*c").clip(4).as_str(), "ab…");
        assert_eq!(
            Markup::lit("x <https://a.example|Graph>").clip(10).as_str(),
            "x …"
        );
        assert_eq!(
            Markup::lit("x [Graph](https://a.example)")
                .clip(12)
                .as_str(),
            "x …"
        );
        // Multi-byte characters at the limit.
        assert_eq!(Dialect::Slack.text("🔥🔥🔥").clip(2).as_str(), "🔥…");
    }

    #[test]
    fn a_long_summary_is_cut_before_the_links_are() {
        let body = r#"{"version":"4","receiver":"r","status":"firing","groupKey":"{}:{}",
          "alerts":[{"status":"firing","startsAt":"2026-01-01T00:00:00Z","fingerprint":"0",
            "labels":{"alertname":"A"},"annotations":{"summary":"SUMMARY","description":"DESCRIPTION"}}]}"#
            .replace("SUMMARY", &"*s* ".repeat(100))
            .replace("DESCRIPTION", &"&d& ".repeat(200));
        let n: crate::ingest::Notification = serde_json::from_str(&body).unwrap();
        let links = [
            ("graph", "https://p.example/g?x=1&y=2"),
            ("runbook", "https://r.example/rb"),
            (
                "silence",
                &format!("https://am.example/#/s?f={}", "x".repeat(2000)),
            ),
        ];
        let context = crate::enrich::Context {
            links: links
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        };
        let inputs = [crate::act::AlertInput {
            alert: &n.alerts[0],
            context: &context,
            outcomes: Vec::new(),
        }];
        let view = View::build(0, &n, &inputs);
        for d in [Dialect::Slack, Dialect::Discord, Dialect::Teams] {
            let m = alert_body_within(&view.alerts[0], d, 1024);
            assert!(m.chars() <= 1024, "{d:?}");
            // The graph and runbook links are whole; the huge silence link is left out.
            let tail = m.as_str().lines().last().unwrap();
            assert!(tail.starts_with("Since "), "{d:?}: {tail}");
            assert!(
                tail.contains("Graph") && tail.contains("Runbook"),
                "{d:?}: {tail}"
            );
            assert!(!tail.contains("Silence"), "{d:?}: {tail}");
            assert!(m.as_str().contains('…'), "{d:?}: the text was cut");
            let t = alert_text_within(&view.alerts[0], d, 1024);
            assert!(t.chars() <= 1024 && t.as_str().ends_with(tail), "{d:?}");
        }
    }
}

#[cfg(test)]
mod message_tests {
    use super::*;
    use serde_json::json;

    fn view_of(body: &str, truncated: u64) -> View {
        let mut n: Notification = serde_json::from_str(body).unwrap();
        n.truncated_alerts = truncated;
        let context = crate::enrich::Context::default();
        let inputs: Vec<AlertInput<'_>> = n
            .alerts
            .iter()
            .map(|alert| AlertInput {
                alert,
                context: &context,
                outcomes: Vec::new(),
            })
            .collect();
        View::build(1, &n, &inputs)
    }

    #[test]
    fn a_truncated_group_says_how_many_alerts_it_has() {
        let firing = include_str!("../../../tests/fixtures/cpu-firing-truncated.json");
        let resolved = include_str!("../../../tests/fixtures/cpu-resolved-truncated.json");
        let v = view_of(firing, 3);
        assert_eq!(v.truncated_alerts, 3);
        assert!(
            v.summary
                .starts_with("2 firing shown of 5 — 3 more not sent by Alertmanager · "),
            "{}",
            v.summary
        );
        let v = view_of(resolved, 1);
        assert!(
            v.summary
                .starts_with("2 resolved shown of 3 — 1 more not sent by Alertmanager"),
            "{}",
            v.summary
        );
        // Completed (or never truncated): the plain count.
        let v = view_of(firing, 0);
        assert!(v.summary.starts_with("2 firing · "), "{}", v.summary);
        assert!(!v.summary.contains("shown of"));
        assert_eq!(
            counts(2, 1, 4),
            "2 firing, 1 resolved shown of 7 — 4 more not sent by Alertmanager"
        );
    }

    /// A representative result of each decision, as `traffic_shift` records it.
    fn result(decision: &str) -> Value {
        let before = json!({"baseline-predictor": 70, "enhanced-predictor": 30});
        let (before, after, reason) = match decision {
            "shifted" => (before, json!({"baseline-predictor": 100, "enhanced-predictor": 0}), "enhanced-predictor is alerting: moved up to 30 points to baseline-predictor"),
            "restored" => (json!({"baseline-predictor": 100, "enhanced-predictor": 0}), before, "resolved; weights restored to before the shift"),
            "dry_run" => (before, json!({"baseline-predictor": 100, "enhanced-predictor": 0}), "dry run: would move enhanced-predictor → baseline-predictor"),
            "blocked" => (before, Value::Null, "guard `context.accuracy[to] >= 55` is false"),
            "cooldown" => (before, Value::Null, "last change 180s ago, cooldown 10m"),
            "rate_limited" => (before, Value::Null, "3 changes in the last hour (max_shifts_per_hour 3)"),
            "noop" => (Value::Null, Value::Null, "already shifted for this episode"),
            "deferred" => (before, Value::Null, "guard `context.accuracy[to] >= 55` cannot be evaluated (undefined value); failed enrichments: [accuracy]"),
            "failed" => (Value::Null, Value::Null, "unknown destination variant \"shadow\" in file ./data/weights.yaml"),
            "held" => (Value::Null, Value::Null, "resolved; on_resolve: hold keeps the weights"),
            other => panic!("no wording test for the decision {other:?}: add one (and its wording in shift_text)"),
        };
        json!({"decision": decision, "target": "financial-ab-test-experiment", "before": before, "after": after, "reason": reason})
    }

    #[test]
    fn every_traffic_decision_reads_as_its_own_meaningful_line() {
        // (decision, firing alert?) → what the line must say.
        let expected: &[(&str, bool, &str)] = &[
            ("shifted", true, "traffic shifted: enhanced-predictor 30 → 0, baseline-predictor 70 → 100"),
            ("restored", false, "traffic restored: enhanced-predictor 0 → 30, baseline-predictor 100 → 70"),
            ("dry_run", true, "traffic shift dry run, nothing changed: would set enhanced-predictor 30 → 0, baseline-predictor 70 → 100"),
            ("dry_run", false, "traffic restore dry run, nothing changed: would set enhanced-predictor 30 → 0, baseline-predictor 70 → 100"),
            ("blocked", true, "traffic shift blocked: guard `context.accuracy[to] >= 55` is false"),
            ("cooldown", true, "traffic shift skipped (cooldown): last change 180s ago, cooldown 10m"),
            ("rate_limited", true, "traffic shift skipped (max_shifts_per_hour): 3 changes in the last hour (max_shifts_per_hour 3)"),
            ("noop", true, "traffic unchanged: already shifted for this episode"),
            ("noop", false, "traffic unchanged on resolve: already shifted for this episode"),
            ("deferred", true, "traffic shift deferred (will retry): guard"),
            ("failed", true, "traffic shift failed: unknown destination variant \"shadow\""),
            ("held", false, "traffic held (on_resolve: hold): weights kept as they are"),
        ];
        for kind in Decision::ALL.map(Decision::as_str) {
            assert!(
                expected.iter().any(|(d, _, _)| *d == kind),
                "no expected wording for the decision {kind:?}"
            );
        }
        let mut seen: Vec<String> = Vec::new();
        for (decision, firing, want) in expected {
            let r = TrafficResult::from_value(&result(decision)).unwrap();
            let line = shift_text(&r, "enhanced-predictor", !firing);
            assert!(line.starts_with(want), "{decision}: {line}");
            assert!(
                line.ends_with(" (financial-ab-test-experiment)"),
                "{decision}: {line}"
            );
            assert!(
                !line.starts_with(&format!("traffic shift: {decision}")),
                "{decision} has only the generic wording: {line}"
            );
            assert!(
                !seen.contains(&line),
                "{decision}: same line as another decision: {line}"
            );
            seen.push(line);
        }
        // An unknown decision still says what it is.
        assert_eq!(
            unknown_shift_text(&json!({"decision": "teleported"})),
            "traffic shift: teleported"
        );
    }

    #[test]
    fn a_deferred_run_says_it_will_retry_and_why() {
        let run = ActionRun {
            id: 1,
            round: 0,
            fingerprint: "f".into(),
            action: "rollback".into(),
            action_type: "traffic_shift".into(),
            status: RunStatus::Pending,
            attempts: 1,
            last_error: Some(
                "deferred: guard `g` cannot be evaluated (x); failed enrichments: [accuracy]"
                    .into(),
            ),
            next_attempt_at: None,
            first_attempt_at: None,
            last_attempt_at: None,
            finished_at: None,
            duration_ms: None,
            result: None,
            context: None,
        };
        assert_eq!(
            outcome_text(&run, "enhanced-predictor", false),
            "traffic shift deferred (will retry): guard `g` cannot be evaluated (x); failed enrichments: [accuracy]"
        );
        let run = ActionRun {
            status: RunStatus::Dead,
            last_error: Some("unknown experiment \"x\": no traffic_targets entry".into()),
            ..run
        };
        assert_eq!(
            outcome_text(&run, "enhanced-predictor", false),
            "traffic shift failed: unknown experiment \"x\": no traffic_targets entry"
        );
    }
}

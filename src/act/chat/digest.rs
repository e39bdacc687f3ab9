//! Digests: one message per destination instead of a queue that drains for
//! minutes when an alert storm outruns the destination's rate limit.
//!
//! # How it works
//!
//! **Backlog.** Every chat action with a digest has one [`DigestQueue`] for
//! its destination (a Slack channel, a Teams flow, a webhook URL: one action
//! is one destination, and its rate limit is per action). A notification's
//! chat run does not send its message on its own: it joins the queue and
//! waits for its turn. The backlog of a destination is the number of
//! messages waiting in its queue, i.e. waiting on its rate limiter; it is the
//! `chat_queued_messages{action}` gauge.
//!
//! **When a digest replaces the queue.** One task per queue hands out the
//! turns. Before each turn it counts the waiting messages: when more are
//! waiting than the destination can send within `digest.after` at its rate
//! (`floor(rate_limit.per_second × after)`, at least 1: Slack's default
//! 1/s × 5 s = 5), every waiting message joins one digest, sent as one
//! message; otherwise the oldest waiting message gets its turn and is sent
//! as usual (the rate limiter still paces it). So no message waits much
//! longer than `after` plus one send, whatever the storm.
//!
//! **Recorded as delivered.** When the digest is delivered (2xx), every run
//! it covers succeeds with a result naming it: `{"digest": {"id":
//! "ml-slack#3", "mode": "posted", "message": "<Slack ts or null>",
//! "notifications": 512, ...}}`, and `GET /api/v1/notifications/{id}` shows
//! it. When the digest fails, every run it covers fails with that error and
//! is retried like any failed run (it joins the queue again); nothing is
//! marked delivered that was not. The digest names the notification ids it
//! covers, and where to read them.
//!
//! **The storm.** After a digest the destination is in a storm until its
//! queue has been empty for `after`. During the storm every message that
//! arrives joins a digest, never one message per group: where the platform
//! can edit a message (Slack bot mode, `chat.update`) the storm's digest is
//! updated in place with the storm's totals so far; elsewhere a follow-up
//! digest is posted ("continued", with the storm's totals so far), at most
//! one every `after`, so a long storm is a few messages. When the
//! alerts resolve, Alertmanager's resolved notifications are a storm of
//! their own and are summarised the same way (a digest of resolved alerts).
//!
//! **What a digest says.** How many notifications and alerts, firing and
//! resolved; counts by alert name, severity and experiment (the largest
//! first); the worst `max_items` alerts in full (firing before resolved,
//! critical first); what the router did (traffic shifts, blocked shifts and
//! the other decisions, and its distinct outcome lines); the ids of the
//! notifications it covers and where to read them (`digest.link`, the
//! router's base URL, links the notifications API; without it the path is
//! named). It is rendered through each platform's own frame and escaping
//! ([`Markup`], [`Format::text_body`], [`Format::fits`]), the alerts shown
//! cut until it fits the platform's limits.
//!
//! **Configuration** (`actions.<name>.digest`): `enabled` (default true for
//! the chat types, false for `webhook`, whose consumers may need every
//! notification), `after` (default 5s, between 1s and 30s: a message never
//! waits long enough to outlive the worker's lease) and `max_items` (alerts
//! shown in full, default 10, 1 to 50), `link` (optional base URL).

use super::limits::{clip, fit, more_alerts};
use super::render::{alert_text_within, AlertView, Dialect, Markup, Tone, View};
use super::transport::Delivery;
use super::Format;
use crate::act::ActionError;
use crate::metrics::{ActionLabels, Metrics};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Shortest `digest.after`.
pub const MIN_AFTER: Duration = Duration::from_secs(1);
/// Longest `digest.after`: a queued message must be sent (alone or in a
/// digest) well within the worker's lease.
pub const MAX_AFTER: Duration = Duration::from_secs(30);
/// Most alerts shown in full.
pub const MAX_ITEMS: usize = 50;
/// Names shown per breakdown (by alert name, severity, experiment).
const MAX_NAMES: usize = 8;
/// Distinct router outcome lines shown.
const MAX_ROUTER_LINES: usize = 5;
/// Characters per alert shown in full.
const ALERT_CHARS: usize = 700;

fn default_true() -> bool {
    true
}

fn default_after() -> Duration {
    Duration::from_secs(5)
}

fn default_max_items() -> usize {
    10
}

/// `actions.<name>.digest`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DigestConfig {
    /// Digest this destination's backlog.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A digest replaces the queue when more is waiting than the
    /// destination can send within this delay at its rate.
    #[serde(default = "default_after", with = "crate::conf::duration")]
    pub after: Duration,
    /// Alerts shown in full in a digest (the worst first).
    #[serde(default = "default_max_items")]
    pub max_items: usize,
    /// The router's base URL as people reach it (`https://router.example`):
    /// the digest links the notifications it covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl Default for DigestConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            after: default_after(),
            max_items: default_max_items(),
            link: None,
        }
    }
}

impl DigestConfig {
    /// The effective setting: `configured`, else on for chat, off for `webhook`.
    pub fn effective(configured: Option<&DigestConfig>, default_on: bool) -> DigestConfig {
        configured.cloned().unwrap_or_else(|| DigestConfig {
            enabled: default_on,
            ..DigestConfig::default()
        })
    }

    /// Offline checks; errors name the key below `actions.<name>`.
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.after < MIN_AFTER || self.after > MAX_AFTER {
            errors.push(format!(
                "digest.after: must be between {} and {}, got {}",
                humantime::format_duration(MIN_AFTER),
                humantime::format_duration(MAX_AFTER),
                humantime::format_duration(self.after)
            ));
        }
        if !(1..=MAX_ITEMS).contains(&self.max_items) {
            errors.push(format!(
                "digest.max_items: must be between 1 and {MAX_ITEMS}, got {}",
                self.max_items
            ));
        }
        if let Some(link) = &self.link {
            match url::Url::parse(link) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => errors.push(format!(
                    "digest.link: {link:?} is not an http:// or https:// URL"
                )),
            }
        }
    }

    /// Waiting messages above which a digest replaces the queue: what the
    /// destination sends within `after` at `per_second` (at least 1).
    pub fn threshold(&self, per_second: f64) -> usize {
        let n = (per_second * self.after.as_secs_f64()).floor();
        if n.is_finite() && n >= 1.0 {
            n.min(1e9) as usize
        } else {
            1
        }
    }
}

// ----------------------------------------------------------- aggregation

/// What one notification contributes to a digest (built from its [`View`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Entry {
    pub notification_id: i64,
    pub firing: u64,
    pub resolved: u64,
    /// Alerts Alertmanager left out and the router could not fetch.
    pub truncated: u64,
    pub by_alertname: BTreeMap<String, u64>,
    pub by_severity: BTreeMap<String, u64>,
    pub by_experiment: BTreeMap<String, u64>,
    /// Traffic decisions by name (`shifted`, `blocked`, …).
    pub decisions: BTreeMap<String, u64>,
    /// The router's outcome lines.
    pub router: Vec<String>,
    /// The worst alerts, at most `max_items`, worst first.
    #[serde(skip)]
    pub worst: Vec<AlertView>,
}

/// Worst first: firing before resolved, then critical, warning, info, then
/// the longest firing (earliest start).
fn badness(a: &AlertView) -> (u8, u8, std::cmp::Reverse<&str>) {
    let firing = u8::from(a.status == "firing");
    let rank = match a.tone {
        Tone::Critical => 3,
        Tone::Warning => 2,
        Tone::Info => 1,
        Tone::Resolved => 0,
    };
    (firing, rank, std::cmp::Reverse(a.starts_at.as_str()))
}

fn keep_worst(alerts: &mut Vec<AlertView>, max: usize) {
    alerts.sort_by(|a, b| badness(b).cmp(&badness(a)));
    alerts.truncate(max);
}

fn named(v: &str) -> String {
    if v.is_empty() {
        "(none)".to_owned()
    } else {
        v.to_owned()
    }
}

impl Entry {
    /// The digest's view of one notification's message.
    pub fn from_view(view: &View, max_items: usize) -> Self {
        let mut e = Entry {
            notification_id: view.notification_id,
            truncated: view.truncated_alerts,
            router: view.router_actions.clone(),
            ..Entry::default()
        };
        for a in &view.alerts {
            if a.status == "firing" {
                e.firing += 1;
            } else {
                e.resolved += 1;
            }
            *e.by_alertname.entry(named(&a.alertname)).or_default() += 1;
            *e.by_severity.entry(named(&a.severity)).or_default() += 1;
            *e.by_experiment.entry(named(&a.experiment)).or_default() += 1;
            for o in a
                .outcomes
                .iter()
                .filter(|o| o.action_type == "traffic_shift")
            {
                if let Some(d) = o.result.as_ref().and_then(|r| r["decision"].as_str()) {
                    *e.decisions.entry(d.to_owned()).or_default() += 1;
                }
            }
        }
        // Only what a digest shows of an alert is kept: a storm's waiting
        // entries stay small.
        let mut worst: Vec<&AlertView> = view.alerts.iter().collect();
        worst.sort_by(|a, b| badness(b).cmp(&badness(a)));
        e.worst = worst
            .into_iter()
            .take(max_items)
            .map(|a| AlertView {
                labels: Default::default(),
                annotations: Default::default(),
                context: Value::Null,
                outcomes: Vec::new(),
                ..a.clone()
            })
            .collect();
        e
    }
}

/// Several notifications, added up.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub notifications: u64,
    pub alerts: u64,
    pub firing: u64,
    pub resolved: u64,
    pub truncated: u64,
    /// The notifications covered, ascending.
    pub ids: Vec<i64>,
    pub by_alertname: BTreeMap<String, u64>,
    pub by_severity: BTreeMap<String, u64>,
    pub by_experiment: BTreeMap<String, u64>,
    pub decisions: BTreeMap<String, u64>,
    pub router: Vec<String>,
    #[serde(skip)]
    pub worst: Vec<AlertView>,
    /// Most alerts kept in `worst`.
    #[serde(skip)]
    max_items: usize,
}

fn add_all(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

impl Summary {
    pub fn new(max_items: usize) -> Self {
        Self {
            max_items,
            ..Self::default()
        }
    }

    pub fn add(&mut self, e: &Entry) {
        self.notifications += 1;
        self.alerts += e.firing + e.resolved;
        self.firing += e.firing;
        self.resolved += e.resolved;
        self.truncated += e.truncated;
        if let Err(i) = self.ids.binary_search(&e.notification_id) {
            self.ids.insert(i, e.notification_id);
        }
        add_all(&mut self.by_alertname, &e.by_alertname);
        add_all(&mut self.by_severity, &e.by_severity);
        add_all(&mut self.by_experiment, &e.by_experiment);
        add_all(&mut self.decisions, &e.decisions);
        for line in &e.router {
            if self.router.len() < MAX_ROUTER_LINES * 4 && !self.router.contains(line) {
                self.router.push(line.clone());
            }
        }
        self.worst.extend(e.worst.iter().cloned());
        keep_worst(&mut self.worst, self.max_items);
    }

    pub fn merge(&mut self, other: &Summary) {
        self.notifications += other.notifications;
        self.alerts += other.alerts;
        self.firing += other.firing;
        self.resolved += other.resolved;
        self.truncated += other.truncated;
        for id in &other.ids {
            if let Err(i) = self.ids.binary_search(id) {
                self.ids.insert(i, *id);
            }
        }
        add_all(&mut self.by_alertname, &other.by_alertname);
        add_all(&mut self.by_severity, &other.by_severity);
        add_all(&mut self.by_experiment, &other.by_experiment);
        add_all(&mut self.decisions, &other.decisions);
        for line in &other.router {
            if self.router.len() < MAX_ROUTER_LINES * 4 && !self.router.contains(line) {
                self.router.push(line.clone());
            }
        }
        self.worst.extend(other.worst.iter().cloned());
        keep_worst(&mut self.worst, self.max_items);
    }

    /// The colour: the worst firing alert's, else resolved.
    pub fn tone(&self) -> Tone {
        self.worst
            .iter()
            .find(|a| a.status == "firing")
            .map_or(Tone::Resolved, |a| a.tone)
    }
}

/// `#1–#512` (or `#7`, or `#1, #5, #9`): the notifications covered, compact.
pub fn id_ranges(ids: &[i64], max_parts: usize) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            format!("#{}", ids[i])
        } else {
            format!("#{}–#{}", ids[i], ids[j])
        });
        i = j + 1;
    }
    if parts.len() > max_parts {
        let more = parts.len() - max_parts;
        parts.truncate(max_parts);
        parts.push(format!("+{more} more ranges"));
    }
    parts.join(", ")
}

/// "ModelAccuracyDegraded 300 · HighLatency 200 · +3 more": the largest first.
fn breakdown(counts: &BTreeMap<String, u64>) -> String {
    let mut v: Vec<(&String, &u64)> = counts.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let shown: Vec<String> = v
        .iter()
        .take(MAX_NAMES)
        .map(|(k, n)| format!("{} {n}", clip(k, 60)))
        .collect();
    let mut s = shown.join(" · ");
    if v.len() > MAX_NAMES {
        s.push_str(&format!(" · +{} more", v.len() - MAX_NAMES));
    }
    s
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The wording of a traffic decision count.
fn decision_words(decision: &str, n: u64) -> String {
    match decision {
        "shifted" => plural(n, "traffic shift", "traffic shifts"),
        "blocked" => plural(n, "blocked shift", "blocked shifts"),
        "restored" => plural(n, "traffic restore", "traffic restores"),
        "cooldown" => format!("{n} skipped (cooldown)"),
        "rate_limited" => format!("{n} skipped (max_shifts_per_hour)"),
        "dry_run" => plural(n, "dry run", "dry runs"),
        "failed" => plural(n, "failed shift", "failed shifts"),
        "deferred" => format!("{n} deferred"),
        "noop" => format!("{n} unchanged"),
        "held" => format!("{n} held"),
        other => format!("{n} {other}"),
    }
}

// ------------------------------------------------------------- rendering

/// Which digest of a storm this is.
#[derive(Debug, Clone, Serialize)]
pub struct Heading {
    /// `<action>#<n>`: named in the message and in every run it covers.
    pub id: String,
    /// 1 for the storm's first digest.
    pub part: u32,
    /// The storm's totals so far, when this is a follow-up (part > 1).
    #[serde(skip)]
    pub storm: Option<Summary>,
}

/// The notifications API for `ids` under the router's base URL.
fn api_url(base: &str, ids: &[i64]) -> Option<String> {
    let (first, last) = (ids.first()?, ids.last()?);
    let mut u = url::Url::parse(base).ok()?;
    let path = format!("{}/api/v1/notifications", u.path().trim_end_matches('/'));
    u.set_path(&path);
    u.query_pairs_mut()
        .append_pair("before", &(last + 1).to_string())
        .append_pair("limit", &(last - first + 1).min(500).to_string());
    Some(u.to_string())
}

/// The frame a platform puts around the digest text (title, colour).
fn frame(s: &Summary, h: &Heading, action: &str) -> View {
    let tone = s.tone();
    let status = if s.firing > 0 { "firing" } else { "resolved" };
    let what = if s.firing > 0 {
        "ALERT STORM"
    } else {
        "RESOLVED STORM"
    };
    // A follow-up carries the storm's totals; an updated digest is the storm.
    let cont = if h.storm.is_some() && h.part > 1 {
        " (continued)"
    } else {
        ""
    };
    let title = format!(
        "{} {what}{cont}: {}, {}",
        match tone {
            Tone::Critical => "🔴",
            Tone::Warning => "🟠",
            Tone::Info => "🔵",
            Tone::Resolved => "🟢",
        },
        plural(s.notifications, "notification", "notifications"),
        plural(s.alerts, "alert", "alerts"),
    );
    let summary = format!(
        "{} firing, {} resolved · digest {} of notifications {}",
        s.firing,
        s.resolved,
        h.id,
        id_ranges(&s.ids, 3)
    );
    View {
        notification_id: s.ids.first().copied().unwrap_or(0),
        status,
        tone,
        colour: tone.hex(),
        title: clip(&title, 300),
        summary: clip(&summary, 600),
        alertname: String::new(),
        experiment: String::new(),
        severity: String::new(),
        variants: Vec::new(),
        firing: s.firing as usize,
        resolved: s.resolved as usize,
        truncated_alerts: s.truncated,
        receiver: String::new(),
        // Google Chat threads by group: the digests of one action share a thread.
        group_key: format!("digest:{action}"),
        group_labels: Default::default(),
        common_labels: Default::default(),
        common_annotations: Default::default(),
        external_url: String::new(),
        router_actions: Vec::new(),
        tables: Vec::new(),
        alerts: Vec::new(),
    }
}

/// The digest's text in dialect `d`, with the first `shown` worst alerts.
pub fn text(s: &Summary, h: &Heading, config: &DigestConfig, d: Dialect, shown: usize) -> Markup {
    let br = d.line_break();
    let para = if d == Dialect::GoogleCard {
        "<br><br>"
    } else {
        "\n\n"
    };
    let mut blocks: Vec<Markup> = Vec::new();
    // Where the platform's frame around a text has no title of its own.
    if matches!(
        d,
        Dialect::Mattermost | Dialect::GoogleText | Dialect::GoogleCard
    ) {
        blocks.push(d.bold(&d.text(&frame(s, h, "").title)));
    }
    let mut head = d.text(&format!(
        "{} ({}: {} firing, {} resolved{}) arrived faster than this destination's rate limit allows: one digest instead of {} messages.",
        plural(s.notifications, "notification", "notifications"),
        plural(s.alerts, "alert", "alerts"),
        s.firing,
        s.resolved,
        if s.truncated > 0 { format!(", {} more not sent by Alertmanager", s.truncated) } else { String::new() },
        s.notifications,
    ));
    if let Some(storm) = h.storm.as_ref().filter(|_| h.part > 1) {
        head = head.then(&Markup::lit(" ")).then(&d.text(&format!(
            "Storm so far: {} in {} digests, {} ({} firing, {} resolved).",
            plural(storm.notifications, "notification", "notifications"),
            h.part,
            plural(storm.alerts, "alert", "alerts"),
            storm.firing,
            storm.resolved
        )));
    }
    blocks.push(head);
    let mut counts = Vec::new();
    for (title, map) in [
        ("By alert", &s.by_alertname),
        ("By severity", &s.by_severity),
        ("By experiment", &s.by_experiment),
    ] {
        if !map.is_empty() {
            counts.push(
                d.bold(&Markup::lit(title))
                    .then(&Markup::lit(": "))
                    .then(&d.text(&breakdown(map))),
            );
        }
    }
    if !counts.is_empty() {
        blocks.push(Markup::join(counts, br));
    }
    if !s.decisions.is_empty() || !s.router.is_empty() {
        let mut lines = vec![d.bold(&Markup::lit("Router"))];
        if !s.decisions.is_empty() {
            let mut v: Vec<(&String, &u64)> = s.decisions.iter().collect();
            // Shifts and blocked shifts first: what changed traffic, what was refused.
            v.sort_by_key(|(k, n)| (!matches!(k.as_str(), "shifted" | "blocked"), u64::MAX - **n));
            let words: Vec<String> = v.iter().map(|(k, n)| decision_words(k, **n)).collect();
            lines.push(d.text(&words.join(" · ")));
        }
        for line in s.router.iter().take(MAX_ROUTER_LINES) {
            lines.push(Markup::lit("• ").then(&d.text(line)));
        }
        if s.router.len() > MAX_ROUTER_LINES {
            lines.push(d.text(&format!("… and {} more", s.router.len() - MAX_ROUTER_LINES)));
        }
        blocks.push(Markup::join(lines, br));
    }
    let shown = shown.min(s.worst.len());
    if shown > 0 {
        let mut lines = vec![d.bold(&Markup::lit("Worst alerts (critical first)"))];
        for a in &s.worst[..shown] {
            lines.push(alert_text_within(a, d, ALERT_CHARS));
        }
        let rest = s.alerts.saturating_sub(shown as u64);
        if rest > 0 {
            lines.push(d.text(&more_alerts(rest as usize)));
        }
        blocks.push(Markup::join(lines, br));
    }
    let ids = id_ranges(&s.ids, 5);
    let mut rest = d
        .bold(&Markup::lit("Everything else"))
        .then(&Markup::lit(": "))
        .then(&d.text(&format!(
            "notifications {ids}, each recorded as delivered through digest {}; ",
            h.id
        )));
    match config.link.as_deref().and_then(|b| api_url(b, &s.ids)) {
        Some(url) => {
            let link = d.link(&Markup::lit("the notifications API"), &url);
            rest = match link {
                Some(l) => rest.then(&Markup::lit("read them in ")).then(&l),
                None => rest.then(&d.text("GET /api/v1/notifications/{id} on the router")),
            };
        }
        None => rest = rest.then(&d.text("GET /api/v1/notifications/{id} on the router")),
    }
    blocks.push(rest);
    Markup::join(blocks, para)
}

/// The digest as the platform's message: its frame around [`text`], with as
/// many of the worst alerts as fit the platform's limits.
pub(crate) fn render<F: Format>(
    format: &F,
    action: &str,
    s: &Summary,
    h: &Heading,
    config: &DigestConfig,
) -> Value {
    let view = frame(s, h, action);
    // Cut alerts, never the counts or the way to the rest: the text is
    // clipped only when even no alert in full is over the limit.
    let build = |k: usize| {
        let t = text(s, h, config, F::DIALECT, k);
        let whole = t.chars() <= F::TEXT_LIMIT;
        let body = format.text_body(&view, &t.clip(F::TEXT_LIMIT));
        Ok::<_, std::convert::Infallible>((whole, body))
    };
    match fit(s.worst.len(), build, |(whole, b)| *whole && format.fits(b)) {
        Ok(((_, body), _)) => body,
        Err(never) => match never {},
    }
}

// ------------------------------------------------------------------ queue

/// A digest as the platform received it.
#[derive(Debug, Clone, Default)]
pub struct Posted {
    /// The platform's id of the message (Slack `ts`), when it has one.
    pub message: Option<String>,
    /// Where it is (Slack channel id).
    pub channel: Option<String>,
    /// The destination's HTTP status.
    pub status: u16,
}

/// Sends digests to one destination (each platform's action implements it).
#[async_trait::async_trait]
pub(crate) trait DigestSink: Send + Sync + 'static {
    /// The config `type`.
    fn kind(&self) -> &'static str;
    /// Posts a new digest message.
    async fn post(&self, s: &Summary, h: &Heading) -> Result<Posted, ActionError>;
    /// Replaces `posted` with the storm's digest so far; `None` when the
    /// platform cannot edit a message (then a follow-up is posted).
    async fn update(
        &self,
        _posted: &Posted,
        _s: &Summary,
        _h: &Heading,
    ) -> Option<Result<Posted, ActionError>> {
        None
    }
}

/// The digest sink of a webhook-style platform: one POST of the platform's
/// message (its frame around the digest text) to the action's URL, through
/// the action's own rate limiter.
pub(crate) struct PostSink<F: Format> {
    pub action: String,
    pub format: F,
    pub url: url::Url,
    pub delivery: Arc<Delivery>,
    pub config: DigestConfig,
}

#[async_trait::async_trait]
impl<F: Format + Clone> DigestSink for PostSink<F> {
    fn kind(&self) -> &'static str {
        F::KIND
    }

    async fn post(&self, s: &Summary, h: &Heading) -> Result<Posted, ActionError> {
        let body = render(&self.format, &self.action, s, h, &self.config);
        let reply = self
            .delivery
            .send(
                reqwest::Method::POST,
                self.url.clone(),
                &Default::default(),
                &body,
            )
            .await?;
        Ok(Posted {
            message: None,
            channel: None,
            status: reply.status,
        })
    }
}

/// What a message waiting in the queue is told.
pub enum Turn {
    /// Send your own message now; drop the guard when done.
    Send(TurnGuard),
    /// Your notification went out in a digest (the run's result), or the
    /// digest failed (the run's error).
    Digested(Result<Value, ActionError>),
}

/// Held while a message is being sent on its own; the queue hands out the
/// next turn when it is dropped.
pub struct TurnGuard(#[allow(dead_code)] Option<oneshot::Sender<()>>);

struct Job {
    entry: Entry,
    reply: oneshot::Sender<Turn>,
}

/// Counters a queue reports (the metrics read them).
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Messages waiting now.
    pub queued: AtomicU64,
    /// Digests delivered.
    pub digests: AtomicU64,
    /// Notifications delivered through a digest.
    pub digested: AtomicU64,
}

/// One destination's queue and the task that hands out its turns.
pub struct DigestQueue {
    action: String,
    config: DigestConfig,
    threshold: usize,
    sink: Arc<dyn DigestSink>,
    stats: Arc<QueueStats>,
    metrics: Option<Arc<Metrics>>,
    sender: Mutex<Option<mpsc::UnboundedSender<Job>>>,
}

/// Where a queue reports: its own counters and the router's metrics.
#[derive(Clone)]
struct Report {
    action: String,
    stats: Arc<QueueStats>,
    metrics: Option<Arc<Metrics>>,
}

impl Report {
    fn label(&self) -> ActionLabels {
        ActionLabels {
            action: self.action.clone(),
        }
    }

    fn queued(&self, n: usize) {
        self.stats.queued.store(n as u64, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.chat_queued.get_or_create(&self.label()).set(n as i64);
        }
    }

    fn digest(&self, notifications: usize) {
        self.stats.digests.fetch_add(1, Ordering::Relaxed);
        self.stats
            .digested
            .fetch_add(notifications as u64, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.chat_digests.get_or_create(&self.label()).inc();
            m.chat_digested
                .get_or_create(&self.label())
                .inc_by(notifications as u64);
        }
    }
}

fn copy_error(e: &ActionError) -> ActionError {
    match e {
        ActionError::Retryable {
            message,
            retry_after,
        } => ActionError::Retryable {
            message: format!("digest not delivered: {message}"),
            retry_after: *retry_after,
        },
        ActionError::Permanent(m) => ActionError::Permanent(format!("digest not delivered: {m}")),
    }
}

impl DigestQueue {
    /// A queue for action `action` sending digests through `sink`, at a
    /// destination that takes `per_second` messages.
    pub(crate) fn new(
        action: &str,
        config: DigestConfig,
        per_second: f64,
        sink: Arc<dyn DigestSink>,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        Self {
            action: action.to_owned(),
            threshold: config.threshold(per_second),
            config,
            sink,
            stats: Arc::new(QueueStats::default()),
            metrics,
            sender: Mutex::new(None),
        }
    }

    /// The queue's counters.
    pub fn stats(&self) -> Arc<QueueStats> {
        self.stats.clone()
    }

    pub fn config(&self) -> &DigestConfig {
        &self.config
    }

    /// Waiting messages above which a digest is sent.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Joins the queue with one notification's message; resolves when it
    /// is this message's turn, or when it went out in a digest.
    pub async fn wait_turn(&self, entry: Entry) -> Turn {
        let (reply, answer) = oneshot::channel();
        let job = Job { entry, reply };
        let sent = {
            // A poisoned lock only means a panic elsewhere; the sender is still usable.
            let mut guard = self.sender.lock().unwrap_or_else(|p| p.into_inner());
            // The task ends with its runtime (tests run one per test): start another.
            let tx = match guard.as_ref().filter(|tx| !tx.is_closed()) {
                Some(tx) => tx.clone(),
                None => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    tokio::spawn(run_queue(
                        rx,
                        self.config.clone(),
                        self.threshold,
                        self.sink.clone(),
                        Report {
                            action: self.action.clone(),
                            stats: self.stats.clone(),
                            metrics: self.metrics.clone(),
                        },
                    ));
                    *guard = Some(tx.clone());
                    tx
                }
            };
            tx.send(job).is_ok()
        };
        if !sent {
            return Turn::Send(TurnGuard(None));
        }
        // The task is gone (shutdown): send alone, as without a digest.
        answer.await.unwrap_or(Turn::Send(TurnGuard(None)))
    }
}

/// The storm a destination is in: its digests so far.
struct Storm {
    part: u32,
    id: String,
    total: Summary,
    posted: Option<Posted>,
    /// When its last digest went out.
    sent_at: Option<tokio::time::Instant>,
}

async fn run_queue(
    mut rx: mpsc::UnboundedReceiver<Job>,
    config: DigestConfig,
    threshold: usize,
    sink: Arc<dyn DigestSink>,
    report: Report,
) {
    let action = report.action.clone();
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut pending: VecDeque<Job> = VecDeque::new();
    let mut storm: Option<Storm> = None;
    loop {
        if pending.is_empty() {
            report.queued(0);
            let next = if storm.is_some() {
                // The storm ends after `after` without a waiting message.
                match tokio::time::timeout(config.after, rx.recv()).await {
                    Ok(job) => job,
                    Err(_) => {
                        storm = None;
                        continue;
                    }
                }
            } else {
                rx.recv().await
            };
            match next {
                Some(job) => pending.push_back(job),
                None => return,
            }
        }
        while let Ok(job) = rx.try_recv() {
            pending.push_back(job);
        }
        // A run that gave up waiting (shutdown) is not sent or counted.
        pending.retain(|j| !j.reply.is_closed());
        report.queued(pending.len());
        if pending.is_empty() {
            continue;
        }
        if storm.is_none() && pending.len() <= threshold {
            let Some(job) = pending.pop_front() else {
                continue;
            };
            let (done, finished) = oneshot::channel();
            if job.reply.send(Turn::Send(TurnGuard(Some(done)))).is_ok() {
                // Err: the guard was dropped, which is "done" too.
                let _ = finished.await;
            }
            continue;
        }
        // A platform that cannot edit gets a follow-up at most every
        // `after`: what arrives meanwhile joins it (a storm is a few
        // messages, not one a second).
        if let Some(Storm {
            posted: Some(Posted { message: None, .. }),
            sent_at: Some(at),
            ..
        }) = &storm
        {
            tokio::time::sleep_until(*at + config.after).await;
            while let Ok(job) = rx.try_recv() {
                pending.push_back(job);
            }
            pending.retain(|j| !j.reply.is_closed());
            report.queued(pending.len());
            if pending.is_empty() {
                continue;
            }
        }
        let jobs: Vec<Job> = pending.drain(..).collect();
        let mut batch = Summary::new(config.max_items);
        for j in &jobs {
            batch.add(&j.entry);
        }
        let s = storm.get_or_insert_with(|| Storm {
            part: 0,
            id: String::new(),
            total: Summary::new(config.max_items),
            posted: None,
            sent_at: None,
        });
        let mut total = s.total.clone();
        total.merge(&batch);
        let part = s.part + 1;
        let seq = SEQ.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("{action}#{seq}");
        // Where the platform edits messages, the storm's digest is updated
        // with the storm's totals; elsewhere a follow-up says what is new.
        let updated = match &s.posted {
            Some(posted) => {
                let h = Heading {
                    id: s.id.clone(),
                    part,
                    storm: None,
                };
                sink.update(posted, &total, &h)
                    .await
                    .map(|r| r.map(|p| (p, "updated", s.id.clone())))
            }
            None => None,
        };
        let outcome = match updated {
            Some(r) => r,
            None => {
                let h = Heading {
                    id: id.clone(),
                    part,
                    storm: (part > 1).then(|| total.clone()),
                };
                sink.post(&batch, &h).await.map(|p| {
                    let mode = if part > 1 { "follow_up" } else { "posted" };
                    (p, mode, id.clone())
                })
            }
        };
        match outcome {
            Ok((posted, mode, digest_id)) => {
                report.digest(jobs.len());
                tracing::info!(
                    action = %action,
                    digest = %digest_id,
                    mode,
                    notifications = jobs.len(),
                    storm_notifications = total.notifications,
                    "Chat digest delivered instead of a queue"
                );
                let result = json!({
                    "type": sink.kind(),
                    "status": posted.status,
                    "digest": {
                        "id": digest_id,
                        "mode": mode,
                        "message": posted.message,
                        "channel": posted.channel,
                        "notifications": batch.notifications,
                        "alerts": batch.alerts,
                        "storm_notifications": total.notifications,
                    },
                });
                if mode != "updated" {
                    s.id = digest_id;
                }
                s.posted = Some(posted);
                s.sent_at = Some(tokio::time::Instant::now());
                s.part = part;
                s.total = total;
                for j in jobs {
                    let _ = j.reply.send(Turn::Digested(Ok(result.clone())));
                }
            }
            Err(e) => {
                tracing::warn!(action = %action, error = %e, notifications = jobs.len(), "Chat digest failed; its runs will be retried");
                if s.part == 0 {
                    storm = None;
                }
                for j in jobs {
                    let _ = j.reply.send(Turn::Digested(Err(copy_error(&e))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::chat::render::OutcomeView;
    use crate::store::RunStatus;

    fn alert(name: &str, severity: &str, experiment: &str, status: &'static str) -> AlertView {
        let tone = match (status, severity) {
            ("resolved", _) => Tone::Resolved,
            (_, "critical") => Tone::Critical,
            (_, "warning") => Tone::Warning,
            _ => Tone::Info,
        };
        AlertView {
            status,
            tone,
            alertname: name.into(),
            severity: severity.into(),
            variant: "enhanced-predictor".into(),
            experiment: experiment.into(),
            summary: format!("{name} summary <!channel> *bold*"),
            description: String::new(),
            starts_at: "2026-11-27 01:03:18 UTC".into(),
            ends_at: None,
            fingerprint: format!("{name}{severity}"),
            labels: Default::default(),
            annotations: Default::default(),
            links: Default::default(),
            context: Value::Null,
            outcomes: Vec::new(),
        }
    }

    fn view(id: i64, alerts: Vec<AlertView>) -> View {
        let mut v = frame(
            &Summary::new(1),
            &Heading {
                id: "x".into(),
                part: 1,
                storm: None,
            },
            "a",
        );
        v.notification_id = id;
        v.alerts = alerts;
        v
    }

    fn shift(decision: &str) -> OutcomeView {
        OutcomeView {
            action: "rollback".into(),
            action_type: "traffic_shift".into(),
            status: RunStatus::Succeeded,
            text: format!("traffic {decision}"),
            result: Some(json!({"decision": decision})),
        }
    }

    fn storm(n: i64) -> Summary {
        let mut s = Summary::new(3);
        for id in 1..=n {
            let mut a = alert(
                if id % 2 == 0 {
                    "HighLatency"
                } else {
                    "ModelAccuracyDegraded"
                },
                if id % 10 == 0 { "critical" } else { "warning" },
                "exp-a",
                "firing",
            );
            a.outcomes
                .push(shift(if id % 5 == 0 { "blocked" } else { "shifted" }));
            let b = alert("ErrorRate", "info", "exp-b", "resolved");
            s.add(&Entry::from_view(&view(id, vec![a, b]), 3));
        }
        s
    }

    #[test]
    fn summary_counts_by_name_severity_experiment_and_decision() {
        let s = storm(100);
        assert_eq!(s.notifications, 100);
        assert_eq!(s.alerts, 200);
        assert_eq!((s.firing, s.resolved), (100, 100));
        assert_eq!(s.by_alertname["HighLatency"], 50);
        assert_eq!(s.by_alertname["ErrorRate"], 100);
        assert_eq!(s.by_severity["critical"], 10);
        assert_eq!(s.by_severity["warning"], 90);
        assert_eq!(s.by_experiment["exp-b"], 100);
        assert_eq!(s.decisions["shifted"], 80);
        assert_eq!(s.decisions["blocked"], 20);
        assert_eq!(s.ids.len(), 100);
        // Worst: firing critical first, at most max_items.
        assert_eq!(s.worst.len(), 3);
        assert!(s.worst.iter().all(|a| a.severity == "critical"));
        assert_eq!(s.tone(), Tone::Critical);
    }

    #[test]
    fn merge_equals_adding_one_by_one() {
        let a = storm(10);
        let mut b = Summary::new(3);
        b.merge(&a);
        b.merge(&storm(4));
        assert_eq!(b.notifications, 14);
        assert_eq!(b.ids, (1..=10).collect::<Vec<_>>(), "ids are a set");
        assert_eq!(b.by_alertname["ErrorRate"], 14);
    }

    #[test]
    fn id_ranges_are_compact() {
        assert_eq!(id_ranges(&[1, 2, 3, 5, 7, 8], 5), "#1–#3, #5, #7–#8");
        assert_eq!(id_ranges(&[4], 5), "#4");
        assert_eq!(id_ranges(&[1, 3, 5, 7], 2), "#1, #3, +2 more ranges");
        assert_eq!(id_ranges(&[], 2), "");
    }

    #[test]
    fn threshold_is_what_the_destination_sends_within_after() {
        let c = DigestConfig::default();
        assert_eq!(c.threshold(1.0), 5);
        assert_eq!(c.threshold(2.5), 12);
        assert_eq!(c.threshold(0.01), 1);
        assert_eq!(c.threshold(f64::NAN), 1);
    }

    #[test]
    fn validation_names_the_key() {
        let mut errors = Vec::new();
        DigestConfig {
            enabled: true,
            after: Duration::from_secs(120),
            max_items: 0,
            link: Some("ftp://x".into()),
        }
        .validate(&mut errors);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("digest.after: must be between 1s and 30s"));
        assert!(errors[1].starts_with("digest.max_items: must be between 1 and 50, got 0"));
        assert!(errors[2].starts_with("digest.link:"));
        let mut ok = Vec::new();
        DigestConfig::default().validate(&mut ok);
        assert!(ok.is_empty());
        assert!(!DigestConfig::effective(None, false).enabled);
        assert!(DigestConfig::effective(None, true).enabled);
    }

    #[test]
    fn text_says_what_happened_and_where_the_rest_is() {
        let s = storm(100);
        let h = Heading {
            id: "ml-slack#1".into(),
            part: 1,
            storm: None,
        };
        let config = DigestConfig {
            link: Some("https://router.example/base/".into()),
            ..DigestConfig::default()
        };
        let t = text(&s, &h, &config, Dialect::Slack, 3).into_string();
        assert!(
            t.contains("100 notifications (200 alerts: 100 firing, 100 resolved)"),
            "{t}"
        );
        assert!(
            t.contains("*By alert*: ErrorRate 100 · HighLatency 50 · ModelAccuracyDegraded 50"),
            "{t}"
        );
        assert!(t.contains("80 traffic shifts · 20 blocked shifts"), "{t}");
        assert!(
            t.contains(
                "notifications #1–#100, each recorded as delivered through digest ml-slack#1"
            ),
            "{t}"
        );
        assert!(t.contains("<https://router.example/base/api/v1/notifications?before=101&amp;limit=100|the notifications API>"), "{t}");
        // Values are escaped for the dialect: no mention, no bold from a value.
        assert!(!t.contains("<!channel>"), "{t}");
        assert!(t.contains("&lt;!channel&gt;"), "{t}");
        assert!(t.contains("… and 197 more alerts"), "{t}");
        // Critical first.
        let worst = t.find("Worst alerts").unwrap();
        assert!(
            t[worst..].find("critical").unwrap()
                < t[worst..].find("ErrorRate").unwrap_or(usize::MAX)
        );
        // Without a link, the API path is named.
        let t = text(&s, &h, &DigestConfig::default(), Dialect::Mattermost, 0).into_string();
        assert!(t.contains("GET /api/v1/notifications/{id}"), "{t}");
        assert!(!t.contains("Worst alerts"), "{t}");
    }

    #[test]
    fn a_follow_up_carries_the_storm_so_far() {
        let s = storm(10);
        let mut total = storm(10);
        total.merge(&storm(30));
        let h = Heading {
            id: "d#2".into(),
            part: 2,
            storm: Some(total),
        };
        let t = text(&s, &h, &DigestConfig::default(), Dialect::Discord, 1).into_string();
        assert!(
            t.contains("Storm so far: 40 notifications in 2 digests"),
            "{t}"
        );
        assert!(frame(&s, &h, "d").title.contains("(continued)"));
    }

    #[test]
    fn a_resolved_storm_reads_resolved() {
        let mut s = Summary::new(2);
        for id in 1..=20 {
            let v = view(id, vec![alert("HighLatency", "critical", "e", "resolved")]);
            s.add(&Entry::from_view(&v, 2));
        }
        let f = frame(
            &s,
            &Heading {
                id: "x#1".into(),
                part: 1,
                storm: None,
            },
            "x",
        );
        assert!(
            f.title
                .starts_with("🟢 RESOLVED STORM: 20 notifications, 20 alerts"),
            "{}",
            f.title
        );
        assert_eq!(f.tone, Tone::Resolved);
    }

    // A sink that records what it was asked to send.
    #[derive(Default)]
    struct Recorder {
        posts: Mutex<Vec<(u64, String)>>,
        updates: Mutex<Vec<u64>>,
        can_update: bool,
        fail: bool,
    }

    #[async_trait::async_trait]
    impl DigestSink for Recorder {
        fn kind(&self) -> &'static str {
            "test"
        }
        async fn post(&self, s: &Summary, h: &Heading) -> Result<Posted, ActionError> {
            if self.fail {
                return Err(ActionError::Retryable {
                    message: "503".into(),
                    retry_after: None,
                });
            }
            self.posts
                .lock()
                .unwrap()
                .push((s.notifications, h.id.clone()));
            Ok(Posted {
                message: self.can_update.then(|| "ts1".to_owned()),
                channel: None,
                status: 200,
            })
        }
        async fn update(
            &self,
            posted: &Posted,
            s: &Summary,
            _h: &Heading,
        ) -> Option<Result<Posted, ActionError>> {
            if !self.can_update {
                return None;
            }
            self.updates.lock().unwrap().push(s.notifications);
            Some(Ok(posted.clone()))
        }
    }

    fn entry(id: i64) -> Entry {
        Entry::from_view(
            &view(id, vec![alert("HighLatency", "warning", "e", "firing")]),
            2,
        )
    }

    /// Submits `ids` at once; a message whose turn comes is "sent" at once.
    async fn storm_through(
        q: Arc<DigestQueue>,
        ids: std::ops::RangeInclusive<i64>,
    ) -> (u64, Vec<Value>) {
        let mut tasks = Vec::new();
        for id in ids {
            let q = q.clone();
            tasks.push(tokio::spawn(async move {
                match q.wait_turn(entry(id)).await {
                    Turn::Send(guard) => {
                        // The rate limiter would pace this; here a send takes 1 s.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        drop(guard);
                        None
                    }
                    Turn::Digested(r) => Some(r.unwrap()),
                }
            }));
            // Let the queue see each arrival in order.
            tokio::task::yield_now().await;
        }
        let mut singles = 0;
        let mut digested = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                None => singles += 1,
                Some(v) => digested.push(v),
            }
        }
        (singles, digested)
    }

    #[tokio::test(start_paused = true)]
    async fn a_storm_becomes_digests_and_every_message_is_accounted_for() {
        let sink = Arc::new(Recorder::default());
        let q = Arc::new(DigestQueue::new(
            "chat",
            DigestConfig::default(),
            1.0,
            sink.clone(),
            None,
        ));
        let (singles, digested) = storm_through(q.clone(), 1..=1000).await;
        assert_eq!(
            singles + digested.len() as u64,
            1000,
            "nothing lost or doubled"
        );
        assert!(singles <= 5, "at most the threshold go alone: {singles}");
        let posts = sink.posts.lock().unwrap().clone();
        let posted: u64 = posts.iter().map(|(n, _)| n).sum();
        assert_eq!(posted, digested.len() as u64, "{posts:?}");
        assert!(posts.len() <= 3, "a few digests, not a queue: {posts:?}");
        // Each digested run names its digest.
        for v in &digested {
            let id = v["digest"]["id"].as_str().unwrap();
            assert!(posts.iter().any(|(_, p)| p == id), "{v}");
        }
        let stats = q.stats();
        assert_eq!(
            stats.digested.load(Ordering::Relaxed),
            digested.len() as u64
        );
        assert_eq!(stats.digests.load(Ordering::Relaxed), posts.len() as u64);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_destination_sends_each_message_alone() {
        let sink = Arc::new(Recorder::default());
        let q = Arc::new(DigestQueue::new(
            "chat",
            DigestConfig::default(),
            1.0,
            sink.clone(),
            None,
        ));
        for id in 1..=3 {
            assert!(matches!(q.wait_turn(entry(id)).await, Turn::Send(_)));
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        assert!(sink.posts.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn within_a_storm_an_editable_digest_is_updated_then_the_storm_ends() {
        let sink = Arc::new(Recorder {
            can_update: true,
            ..Recorder::default()
        });
        let q = Arc::new(DigestQueue::new(
            "chat",
            DigestConfig::default(),
            1.0,
            sink.clone(),
            None,
        ));
        let (_, first) = storm_through(q.clone(), 1..=50).await;
        assert!(!first.is_empty());
        // Two seconds later (within `after`), one more message: it updates the storm's digest.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Turn::Digested(r) = q.wait_turn(entry(51)).await else {
            panic!("a message within the storm goes into its digest");
        };
        let r = r.unwrap();
        assert_eq!(r["digest"]["mode"], "updated");
        assert_eq!(r["digest"]["message"], "ts1");
        assert_eq!(r["digest"]["id"], first[0]["digest"]["id"]);
        let updates = sink.updates.lock().unwrap().clone();
        assert_eq!(
            updates.last(),
            Some(&(first.len() as u64 + 1)),
            "the storm's totals"
        );
        // After `after` of quiet, the storm is over: the next message goes alone.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(matches!(q.wait_turn(entry(52)).await, Turn::Send(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn without_edits_a_follow_up_digest_is_posted() {
        let sink = Arc::new(Recorder::default());
        let q = Arc::new(DigestQueue::new(
            "chat",
            DigestConfig::default(),
            1.0,
            sink.clone(),
            None,
        ));
        storm_through(q.clone(), 1..=50).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Turn::Digested(r) = q.wait_turn(entry(51)).await else {
            panic!("a message within the storm goes into a digest");
        };
        assert_eq!(r.unwrap()["digest"]["mode"], "follow_up");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_digest_fails_every_run_it_covers() {
        let sink = Arc::new(Recorder {
            fail: true,
            ..Recorder::default()
        });
        let q = Arc::new(DigestQueue::new(
            "chat",
            DigestConfig::default(),
            1.0,
            sink.clone(),
            None,
        ));
        let mut tasks = Vec::new();
        for id in 1..=20 {
            let q = q.clone();
            tasks.push(tokio::spawn(async move { q.wait_turn(entry(id)).await }));
            tokio::task::yield_now().await;
        }
        let mut failed = 0;
        for t in tasks {
            match t.await.unwrap() {
                Turn::Send(g) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    drop(g)
                }
                Turn::Digested(Err(ActionError::Retryable { message, .. })) => {
                    assert!(message.starts_with("digest not delivered: 503"));
                    failed += 1;
                }
                Turn::Digested(other) => panic!("{:?}", other.map(|_| ())),
            }
        }
        assert!(failed > 0);
        assert_eq!(q.stats().digested.load(Ordering::Relaxed), 0);
    }
}

#[cfg(test)]
mod platform_tests {
    use super::tests_support::*;
    use super::*;
    use crate::act::chat::{
        DiscordConfig, GoogleChatConfig, MattermostConfig, MsTeamsConfig, SlackConfig,
    };

    fn config<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn check<F: Format>(format: &F, needle: &str) {
        let s = big_storm(1000, 50);
        let h = Heading {
            id: "chat#1".into(),
            part: 1,
            storm: None,
        };
        let c = DigestConfig {
            max_items: 50,
            link: Some("https://router.example".into()),
            ..DigestConfig::default()
        };
        let body = render(format, "chat", &s, &h, &c);
        assert!(format.fits(&body), "{} digest within its limits", F::KIND);
        let text = body.to_string();
        assert!(text.contains("1000 notifications"), "{}: {text}", F::KIND);
        assert!(text.contains(needle), "{}: {text}", F::KIND);
        assert!(text.contains("Everything else"), "{}: {text}", F::KIND);
        assert!(text.contains("Worst alerts"), "{}: {text}", F::KIND);
        assert!(
            !text.contains("<!channel>") && !text.contains("@here"),
            "{}: escaped",
            F::KIND
        );
    }

    #[test]
    fn each_platform_renders_a_1000_notification_digest_within_its_limits() {
        check::<SlackConfig>(
            &config(json!({"url": "https://hooks.example/x"})),
            "ALERT STORM",
        );
        check::<MsTeamsConfig>(
            &config(json!({"url": "https://teams.example/x"})),
            "AdaptiveCard",
        );
        check::<MattermostConfig>(
            &config(json!({"url": "https://mm.example/x"})),
            "**Router**",
        );
        check::<DiscordConfig>(
            &config(json!({"url": "https://discord.example/x"})),
            "embeds",
        );
        check::<GoogleChatConfig>(
            &config(json!({"url": "https://chat.example/x"})),
            "threadKey",
        );
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// `n` notifications of two alerts each, with hostile summaries and shifts.
    pub fn big_storm(n: i64, max_items: usize) -> Summary {
        let mut s = Summary::new(max_items);
        for id in 1..=n {
            let alerts: Vec<AlertView> = (0..2)
                .map(|k| AlertView {
                    status: if k == 0 { "firing" } else { "resolved" },
                    tone: if k == 0 {
                        Tone::Critical
                    } else {
                        Tone::Resolved
                    },
                    alertname: format!("Alert{}", id % 13),
                    severity: if id % 3 == 0 { "critical" } else { "warning" }.into(),
                    variant: format!("variant-{}", id % 7),
                    experiment: format!("experiment-{}", id % 11),
                    summary: "<!channel> @here **bold** [x](https://evil.example) ".repeat(20),
                    description: "d".repeat(400),
                    starts_at: "2026-11-27 01:03:18 UTC".into(),
                    ends_at: None,
                    fingerprint: format!("{id}-{k}"),
                    labels: Default::default(),
                    annotations: Default::default(),
                    links: [(
                        "runbook".to_owned(),
                        "https://runbooks.example/a?x=1&y=2".to_owned(),
                    )]
                    .into_iter()
                    .collect(),
                    context: Value::Null,
                    outcomes: Vec::new(),
                })
                .collect();
            let mut e = Entry {
                notification_id: id,
                firing: 1,
                resolved: 1,
                router: vec![format!("traffic shifted: variant-{} 30 → 0", id % 7)],
                ..Entry::default()
            };
            for a in &alerts {
                *e.by_alertname.entry(a.alertname.clone()).or_default() += 1;
                *e.by_severity.entry(a.severity.clone()).or_default() += 1;
                *e.by_experiment.entry(a.experiment.clone()).or_default() += 1;
            }
            e.decisions.insert("shifted".into(), 1);
            e.worst = alerts;
            keep_worst(&mut e.worst, max_items);
            s.add(&e);
        }
        s
    }
}

//! The weight-over-time chart of an experiment, computed here and drawn as
//! inline SVG by the template (no script, no external asset).
//!
//! Each variant is a step line (weights change only at decisions); each
//! decision is a vertical mark, coloured by kind, with its time, kind and
//! reason as the mark's tooltip (the rows under the chart list them).

use crate::act::traffic::policy::{normalise, WeightMap};
use crate::store::TrafficDecision;
use serde::Serialize;
use serde_json::Value;

/// Drawing area (SVG user units; the SVG scales to the page width).
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 40.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// Okabe–Ito colours: distinguishable with the common colour-vision deficiencies.
const PALETTE: [&str; 7] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000",
];

#[derive(Debug, Serialize)]
pub struct Chart {
    pub width: f64,
    pub height: f64,
    pub series: Vec<Series>,
    pub marks: Vec<Mark>,
    /// Horizontal grid lines: (y, label).
    pub y_ticks: Vec<(f64, String)>,
    pub x_start: (f64, String),
    pub x_end: (f64, String),
    pub plot: Plot,
    /// A sentence for screen readers: what the chart shows.
    pub summary: String,
}

#[derive(Debug, Serialize)]
pub struct Plot {
    pub left: f64,
    pub top: f64,
    pub right: f64,
    pub bottom: f64,
}

#[derive(Debug, Serialize)]
pub struct Series {
    pub variant: String,
    pub colour: &'static str,
    /// SVG `points` of the polyline.
    pub points: String,
    /// The weight now (percent).
    pub now: u32,
}

#[derive(Debug, Serialize)]
pub struct Mark {
    pub x: f64,
    pub id: i64,
    pub decision: String,
    /// CSS class: `moved` (shifted/restored), `refused` (blocked/failed), `other`.
    pub class: &'static str,
    pub title: String,
}

/// A weight map as stored in a decision (`{"variant": weight}`), in percent.
pub fn percent(v: &Value) -> Option<WeightMap> {
    let map = v.as_object()?;
    let mut w = WeightMap::new();
    for (k, v) in map {
        w.insert(k.clone(), u32::try_from(v.as_u64()?).ok()?);
    }
    Some(normalise(&w))
}

/// Builds the chart from the decisions (any order) and the weights now.
pub fn build(decisions: &[TrafficDecision], now_weights: Option<&WeightMap>, now_ms: i64) -> Chart {
    let mut ds: Vec<&TrafficDecision> = decisions.iter().collect();
    ds.sort_by_key(|d| (d.at, d.id));

    // The weights over time: the first decision's "before", then each "after".
    let mut changes: Vec<(i64, WeightMap)> = Vec::new();
    if let Some(first) = ds
        .iter()
        .find_map(|d| d.before.as_ref().and_then(percent).map(|w| (d.at, w)))
    {
        changes.push(first);
    }
    for d in &ds {
        if let Some(after) = d.after.as_ref().and_then(percent) {
            changes.push((d.at, after));
        }
    }
    let current = now_weights
        .map(normalise)
        .or_else(|| changes.last().map(|(_, w)| w.clone()))
        .unwrap_or_default();
    // A margin before the first decision, so that its mark stands clear of the axis.
    let start = match ds.first() {
        Some(d) => {
            let first = d.at.min(now_ms);
            first - ((now_ms - first) / 20).max(60_000)
        }
        None => now_ms - 3_600_000,
    };
    let end = now_ms.max(start + 60_000);
    match changes.first() {
        Some((_, w)) => changes.insert(0, (start, w.clone())),
        None => changes.push((start, current.clone())),
    }

    let plot = Plot {
        left: LEFT,
        top: TOP,
        right: WIDTH - RIGHT,
        bottom: HEIGHT - BOTTOM,
    };
    let x = |t: i64| {
        let f = (t - start) as f64 / (end - start) as f64;
        round(plot.left + f.clamp(0.0, 1.0) * (plot.right - plot.left))
    };
    let y = |w: u32| round(plot.bottom - f64::from(w.min(100)) / 100.0 * (plot.bottom - plot.top));

    let mut variants: Vec<String> = Vec::new();
    for w in changes.iter().map(|(_, w)| w).chain([&current]) {
        for k in w.keys() {
            if !variants.contains(k) {
                variants.push(k.clone());
            }
        }
    }
    let series = variants
        .iter()
        .enumerate()
        .map(|(i, variant)| {
            let at = |w: &WeightMap| w.get(variant).copied().unwrap_or(0);
            let mut pts: Vec<(f64, f64)> = Vec::new();
            let mut last: Option<u32> = None;
            for (t, w) in &changes {
                let v = at(w);
                if let Some(prev) = last {
                    pts.push((x(*t), y(prev)));
                }
                pts.push((x(*t), y(v)));
                last = Some(v);
            }
            let now = at(&current);
            if let Some(prev) = last {
                pts.push((x(end), y(prev)));
            }
            pts.push((x(end), y(now)));
            Series {
                variant: variant.clone(),
                colour: PALETTE[i % PALETTE.len()],
                points: pts
                    .iter()
                    .map(|(x, y)| format!("{x},{y}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                now,
            }
        })
        .collect();
    let marks = ds
        .iter()
        .map(|d| Mark {
            x: x(d.at),
            id: d.id,
            decision: d.decision.clone(),
            class: match d.decision.as_str() {
                "shifted" | "restored" => "moved",
                "blocked" | "failed" => "refused",
                _ => "other",
            },
            title: format!("{} {}: {}", super::fmt_ms(d.at), d.decision, d.reason),
        })
        .collect();
    let summary = format!(
        "Weights from {} to {}, {} decisions; now {}",
        super::fmt_ms(start),
        super::fmt_ms(end),
        ds.len(),
        current
            .iter()
            .map(|(k, v)| format!("{k} {v}%"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Chart {
        width: WIDTH,
        height: HEIGHT,
        series,
        marks,
        y_ticks: [0, 50, 100]
            .iter()
            .map(|w| (y(*w), format!("{w}%")))
            .collect(),
        x_start: (plot.left, super::fmt_ms(start)),
        x_end: (plot.right, super::fmt_ms(end)),
        plot,
        summary,
    }
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decision(id: i64, at: i64, kind: &str, before: Value, after: Value) -> TrafficDecision {
        TrafficDecision {
            id,
            at,
            action: "rollback".into(),
            target: "exp".into(),
            episode: "e".into(),
            fingerprint: "f".into(),
            notification_id: 1,
            decision: kind.into(),
            before: Some(before).filter(|v| !v.is_null()),
            after: Some(after).filter(|v| !v.is_null()),
            reason: "why".into(),
        }
    }

    #[test]
    fn a_shift_is_a_step_in_each_series_and_every_decision_is_marked() {
        let ds = vec![
            // Newest first, as the store answers.
            decision(2, 2_000, "cooldown", Value::Null, Value::Null),
            decision(
                1,
                1_000,
                "shifted",
                json!({"a": 50, "b": 50}),
                json!({"a": 80, "b": 20}),
            ),
        ];
        let now: WeightMap = [("a".to_owned(), 80), ("b".to_owned(), 20)].into();
        let c = build(&ds, Some(&now), 61_000);
        assert_eq!(c.marks.len(), 2);
        assert_eq!(c.marks[0].class, "moved");
        assert_eq!(c.marks[1].class, "other");
        assert!(c.marks[0].x < c.marks[1].x);
        let a = c.series.iter().find(|s| s.variant == "a").unwrap();
        assert_eq!(a.now, 80);
        // 50 % then 80 %: a vertical step at the shift.
        let ys: Vec<f64> = a
            .points
            .split(' ')
            .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        let (y50, y80) = (ys[0], *ys.last().unwrap());
        assert!(y80 < y50, "80 % is drawn above 50 %");
        assert!(c.summary.contains("a 80%"));
    }

    #[test]
    fn relative_weights_are_drawn_in_percent_and_no_decision_is_a_flat_line() {
        assert_eq!(percent(&json!({"a": 1, "b": 3})).unwrap()["b"], 75);
        assert!(percent(&json!({"a": -1})).is_none());
        let now: WeightMap = [("a".to_owned(), 1), ("b".to_owned(), 1)].into();
        let c = build(&[], Some(&now), 10_000_000);
        assert!(c.marks.is_empty());
        assert!(c.series.iter().all(|s| s.now == 50));
    }
}

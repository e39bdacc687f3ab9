//! Size limits: cut text at a character boundary, and a message at an alert
//! boundary ("… and N more alerts").
//!
//! Every platform refuses (or silently truncates) a message over its limits,
//! so each format builds its body for the first `k` alerts and [`fit`] finds
//! the largest `k` whose body passes the format's own check.

/// Number of characters (Unicode scalar values) in `s`; what the platforms count.
pub fn chars(s: &str) -> usize {
    s.chars().count()
}

pub use crate::text::clip;

/// The line that replaces the alerts a message had no room for.
pub fn more_alerts(n: usize) -> String {
    if n == 1 {
        "… and 1 more alert".to_owned()
    } else {
        format!("… and {n} more alerts")
    }
}

/// Builds with the first `k` of `n` alerts for the largest `k` whose result
/// `fits`; `k = 0` when not even one alert fits. Fitting is monotone in `k`
/// (each alert only adds), so a binary search needs about log2(n) builds.
pub fn fit<T, E>(
    n: usize,
    mut build: impl FnMut(usize) -> Result<T, E>,
    fits: impl Fn(&T) -> bool,
) -> Result<(T, usize), E> {
    let all = build(n)?;
    if fits(&all) {
        return Ok((all, n));
    }
    let (mut lo, mut hi) = (0, n); // fits(lo) is assumed, fits(hi) is false
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(&build(mid)?) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok((build(lo)?, lo))
}

/// Length of `v` as compact JSON, in bytes (what a payload limit measures).
pub fn json_bytes(v: &serde_json::Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_never_cuts_inside_a_character() {
        assert_eq!(clip("héllo", 10), "héllo");
        assert_eq!(clip("héllo", 5), "héllo");
        assert_eq!(clip("héllo", 4), "hél…");
        assert_eq!(clip("日本語テキスト", 3), "日本…");
        assert_eq!(chars(&clip("🔥🔥🔥🔥", 2)), 2);
        assert_eq!(clip("abc", 0), "");
    }

    #[test]
    fn fit_finds_the_most_alerts_that_fit() {
        let build = |k: usize| Ok::<_, ()>("x".repeat(10 + 7 * k));
        let (s, k) = fit(500, build, |s: &String| s.len() <= 100).unwrap();
        assert_eq!(k, 12);
        assert_eq!(s.len(), 94);
        let (_, k) = fit(3, build, |s: &String| s.len() <= 100).unwrap();
        assert_eq!(k, 3);
        let (_, k) = fit(3, build, |s: &String| s.len() <= 5).unwrap();
        assert_eq!(k, 0);
    }

    #[test]
    fn the_more_line_counts() {
        assert_eq!(more_alerts(1), "… and 1 more alert");
        assert_eq!(more_alerts(488), "… and 488 more alerts");
    }
}

//! The matcher parser (`route::matcher`): Alertmanager's matcher grammar.
//!
//! Input: UTF-8; the first line is the matcher text, the rest a label value.
//! Properties:
//! - `parse_matchers` and `parse_label_arg` never panic; an error has a
//!   non-empty message (and `parse_label_arg`'s an `offset` on a char
//!   boundary);
//! - the canonical form parses back to the same matchers (one by one and as
//!   a brace set);
//! - `=` / `!=` compare strings, `!~` is the negation of `=~`, and the
//!   regex shortcut (plain alternatives decided by string comparison) agrees
//!   with the regex engine: the same pattern wrapped in `(?:…)` (which turns
//!   the shortcut off) decides the label value the same way.

use mlops_alert_router::route::matcher::{
    format_matchers, parse_label_arg, parse_matchers, MatchOp, Matcher,
};

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (input, value) = text.split_once('\n').unwrap_or((text, ""));

    match parse_matchers(input) {
        // Alertmanager's errors carry no position (its own texts, e.g.
        // `bad matcher format: …`): only a message is promised.
        Err(e) => assert!(!e.to_string().is_empty()),
        // An empty label name is accepted, as Alertmanager accepts it, but
        // prints back as `="x"`, which no parser reads: no round trip then.
        Ok(matchers) if matchers.iter().any(|m| m.name().is_empty()) => {}
        Ok(matchers) => {
            let canonical = format_matchers(&matchers);
            let again = parse_matchers(&canonical)
                .unwrap_or_else(|e| panic!("canonical form {canonical:?} does not parse: {e}"));
            assert_eq!(
                again, matchers,
                "canonical form {canonical:?} parses differently"
            );
            for m in &matchers {
                let one = m.to_string();
                let back =
                    parse_matchers(&one).unwrap_or_else(|e| panic!("{one:?} does not parse: {e}"));
                assert_eq!(back, vec![m.clone()], "{one:?}");
                semantics(m, value);
            }
        }
    }

    if let Err(e) = parse_label_arg(input) {
        assert!(input.is_char_boundary(e.offset));
        assert!(!e.to_string().is_empty());
    }
}

fn semantics(m: &Matcher, value: &str) {
    let got = m.matches_value(value);
    match m.op() {
        MatchOp::Equal => assert_eq!(got, value == m.value()),
        MatchOp::NotEqual => assert_eq!(got, value != m.value()),
        MatchOp::Regex | MatchOp::NotRegex => {
            let flipped = match m.op() {
                MatchOp::Regex => MatchOp::NotRegex,
                _ => MatchOp::Regex,
            };
            let negation = Matcher::new(m.name(), flipped, m.value())
                .expect("the same pattern compiles with the other operator");
            assert_eq!(negation.matches_value(value), !got, "{m:?} vs {negation:?}");
            // `(?:…)` contains parentheses, so the shortcut never applies:
            // the regex engine decides. Wrapping keeps the meaning only when
            // the pattern has no parenthesis of its own (`a)|(b` is Go's
            // concatenation quirk), and the shortcut needs that anyway.
            let wrappable = !m.value().contains(['(', ')']);
            if !wrappable {
                return;
            }
            if let Ok(engine) = Matcher::new(m.name(), m.op(), format!("(?:{})", m.value())) {
                assert_eq!(
                    engine.matches_value(value),
                    got,
                    "shortcut and regex engine disagree on {:?} for value {value:?}",
                    m.value()
                );
            }
        }
    }
}

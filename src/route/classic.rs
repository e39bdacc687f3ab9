//! Alertmanager's classic matcher parser (`pkg/labels/parse.go`), the one
//! Alertmanager ≤ 0.26 uses and the one ≥ 0.27 falls back to.
//!
//! Reimplemented from its documented behaviour and test table, result for
//! result and error for error:
//!
//! - `ParseMatchers`: one leading `{` and one trailing `}` are cut off (no
//!   check that they pair up), the rest is split at commas outside double
//!   quotes (a backslash-escaped quote does not open or close), the last piece
//!   is trimmed and dropped when empty; every other piece, even an empty one,
//!   must be a matcher.
//! - `ParseMatcher`: `^\s*NAME\s*OP\s*VALUE\s*$` with NAME
//!   `[a-zA-Z_:][a-zA-Z0-9_:]*`, OP the first of `=~ = != !~` that fits and
//!   VALUE anything (possibly empty); a VALUE starting with `"` must end with
//!   the only other unescaped `"`; `\n`, `\"`, `\\` are escapes, any other
//!   backslash is literal.

use super::matcher::{MatchOp, Matcher, MatcherParseError};

/// Go's `\s` in `regexp`: `[\t\n\f\r ]`.
fn is_go_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0C' | '\r' | ' ')
}

/// `pkg/labels.ParseMatchers`.
pub fn parse_matchers(input: &str) -> Result<Vec<Matcher>, MatcherParseError> {
    let s = input.strip_prefix('{').unwrap_or(input);
    let s = s.strip_suffix('}').unwrap_or(s);
    let mut tokens: Vec<String> = Vec::new();
    let mut token = String::new();
    let mut inside_quotes = false;
    let mut escaped = false;
    for c in s.chars() {
        match c {
            ',' if !inside_quotes => {
                tokens.push(std::mem::take(&mut token));
                continue;
            }
            // A comma inside quotes is kept and leaves `escaped` as it was.
            ',' => {}
            '"' => {
                if escaped {
                    escaped = false;
                } else {
                    inside_quotes = !inside_quotes;
                }
            }
            '\\' => escaped = !escaped,
            _ => escaped = false,
        }
        token.push(c);
    }
    // Go's strings.TrimSpace: Unicode white space.
    let last = token.trim_matches(char::is_whitespace);
    if !last.is_empty() {
        tokens.push(last.to_string());
    }
    tokens.iter().map(|t| parse_matcher(t)).collect()
}

/// `pkg/labels.ParseMatcher`: one matcher.
pub fn parse_matcher(s: &str) -> Result<Matcher, MatcherParseError> {
    let bad = || MatcherParseError::BadFormat(s.to_string());
    let rest = s.trim_start_matches(is_go_space);
    let mut chars = rest.char_indices();
    match chars.next() {
        Some((_, c)) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {}
        _ => return Err(bad()),
    }
    let name_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(rest.len());
    let name = &rest[..name_len];
    let rest = rest[name_len..].trim_start_matches(is_go_space);
    let (op, len) = if rest.starts_with("=~") {
        (MatchOp::Regex, 2)
    } else if rest.starts_with('=') {
        (MatchOp::Equal, 1)
    } else if rest.starts_with("!=") {
        (MatchOp::NotEqual, 2)
    } else if rest.starts_with("!~") {
        (MatchOp::NotRegex, 2)
    } else {
        return Err(bad());
    };
    let raw = rest[len..].trim_matches(is_go_space);
    let value = unescape_value(raw)?;
    Matcher::new(name, op, value).map_err(MatcherParseError::InvalidRegex)
}

/// The value rules of `ParseMatcher`; `raw` is the trimmed value text.
fn unescape_value(raw: &str) -> Result<String, MatcherParseError> {
    let unescaped_quote = || MatcherParseError::UnescapedQuote(raw.to_string());
    let (body, mut expect_trailing_quote) = match raw.strip_prefix('"') {
        Some(body) => (body, true),
        None => (raw, false),
    };
    let mut value = String::with_capacity(body.len());
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        let last = i + c.len_utf8() == body.len();
        if escaped {
            escaped = false;
            match c {
                'n' => value.push('\n'),
                '"' | '\\' => value.push(c),
                _ => {
                    value.push('\\');
                    value.push(c);
                }
            }
            continue;
        }
        match c {
            '\\' if !last => escaped = true,
            '\\' => value.push('\\'),
            '"' => {
                if !expect_trailing_quote || !last {
                    return Err(unescaped_quote());
                }
                expect_trailing_quote = false;
            }
            _ => value.push(c),
        }
    }
    if expect_trailing_quote {
        return Err(unescaped_quote());
    }
    Ok(value)
}

//! Alertmanager label matchers: `name="value"`, `name!="value"`,
//! `name=~"regex"`, `name!~"regex"`.
//!
//! # Grammar
//!
//! ```text
//! input    = ws ( "{" ws [ list ] ws "}" | [ list ] ) ws
//! list     = matcher { ws "," ws matcher } [ ws "," ]        (one trailing comma allowed)
//! matcher  = name ws op ws value
//! name     = quoted | 1*( any char except whitespace and { } ! = ~ , \ " ' ` )
//! op       = "=~" | "!~" | "!=" | "="
//! value    = quoted | unquoted
//! quoted   = '"' { char | escape } '"'
//! unquoted = everything up to the next "," / "}" / end, trimmed; may not contain
//!            an unescaped '"', nor '{' / '}'
//! escape   = \" | \\ | \n      (any other backslash stays a literal backslash)
//! ```
//!
//! This accepts everything Alertmanager's classic parser (`pkg/labels`) and
//! its UTF-8 parser (`matcher/parse`) accept in normal use, with the meaning
//! Alertmanager gives it. Alertmanager ≥ 0.27 runs both parsers and, when
//! both accept an input with different results, uses the classic one; that is
//! why escapes follow the classic rules (`"a\tb"` is a backslash followed by
//! `t`, not a tab) and unquoted values may contain spaces (`foo=bar baz`).
//! From the UTF-8 parser come quoted label names (`"débit.rate"="x"`),
//! unquoted names beyond `[a-zA-Z_:][a-zA-Z0-9_:]*`, `{}` (no matchers) and
//! whitespace before `{`.
//!
//! Deliberately stricter than the classic parser (it accepts these silently):
//! unbalanced braces (`{foo=bar`, `foo=bar}`), braces inside unquoted values
//! (`foo=~a{2}`, which the classic parser mangles), and an empty unquoted value
//! (`job=`; write `job=""`), which newer Alertmanager releases reject too.
//!
//! Regexes are anchored exactly like Alertmanager does, by text concatenation:
//! `^(?:` + value + `)$`, and compiled once. Go regex syntax is translated so
//! the match result is the same as Go's (see [`super::go_regex`]).

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

use super::go_regex;

/// The four matcher operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl MatchOp {
    /// The operator as written in matcher syntax.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }

    /// Whether the value is a regular expression.
    pub fn is_regex(self) -> bool {
        matches!(self, MatchOp::Regex | MatchOp::NotRegex)
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A regex that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid regex {pattern:?} for label {name:?}: {reason}")]
pub struct InvalidRegexError {
    /// Label name of the matcher.
    pub name: String,
    /// The regex as written (unanchored).
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One label matcher. Immutable once built: the regex is compiled in
/// [`Matcher::new`] and never again.
#[derive(Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    /// `Some` exactly when `op.is_regex()`.
    re: Option<Regex>,
    /// For simple regex shapes, a way to decide without the regex engine.
    shortcut: Option<Shortcut>,
}

/// A regex made only of alternatives of the form `[.*]literal[.*]`
/// (`critical|warning`, `baseline.*`, `.*gpu.*`, `.*`), decided with string
/// comparisons. Only used for values without a newline (`.` does not match
/// `\n`); those go to the regex.
#[derive(Debug, Clone)]
struct Shortcut(Box<[ShortcutAlt]>);

#[derive(Debug, Clone)]
struct ShortcutAlt {
    literal: String,
    any_before: bool,
    any_after: bool,
}

impl Shortcut {
    fn from_pattern(pattern: &str) -> Option<Shortcut> {
        let is_plain = |s: &str| !s.contains(|c| r"\.+*?()|[]{}^$".contains(c) || c == '\n');
        let alts = pattern
            .split('|')
            .map(|alt| {
                let (any_before, rest) = match alt.strip_prefix(".*") {
                    Some(rest) => (true, rest),
                    None => (false, alt),
                };
                let (any_after, literal) = match rest.strip_suffix(".*") {
                    Some(lit) => (true, lit),
                    None => (false, rest),
                };
                is_plain(literal).then(|| ShortcutAlt {
                    literal: literal.to_string(),
                    any_before,
                    any_after,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Shortcut(alts.into_boxed_slice()))
    }

    /// `None` when the value needs the regex engine.
    fn matches(&self, value: &str) -> Option<bool> {
        if value.contains('\n') {
            return None;
        }
        Some(self.0.iter().any(|a| match (a.any_before, a.any_after) {
            (false, false) => value == a.literal,
            (true, false) => value.ends_with(&a.literal),
            (false, true) => value.starts_with(&a.literal),
            (true, true) => value.contains(&a.literal),
        }))
    }
}

impl Matcher {
    /// Build a matcher; for `=~` / `!~` the value is compiled as
    /// `^(?:value)$` with Go regex semantics.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Matcher, InvalidRegexError> {
        let name = name.into();
        let value = value.into();
        let (re, shortcut) = if op.is_regex() {
            (
                Some(compile_anchored(&name, &value)?),
                Shortcut::from_pattern(&value),
            )
        } else {
            (None, None)
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
            shortcut,
        })
    }

    /// The label name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operator.
    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// The value (the unanchored regex for `=~` / `!~`).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether `value` satisfies the matcher. A missing label is passed as "".
    pub fn matches_value(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Regex => self.regex_matches(value),
            MatchOp::NotRegex => !self.regex_matches(value),
        }
    }

    fn regex_matches(&self, value: &str) -> bool {
        if let Some(hit) = self.shortcut.as_ref().and_then(|s| s.matches(value)) {
            return hit;
        }
        // `new` always sets `re` for the regex operators, so `None` cannot
        // happen; answering "no match" keeps this total without a panic.
        self.re.as_ref().is_some_and(|re| re.is_match(value))
    }

    /// Whether the label set satisfies the matcher. A missing label matches as
    /// the empty string, as in Alertmanager: `team!="ml"` and `team=""` both
    /// match an alert without `team`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_value(labels.get(&self.name).map_or("", String::as_str))
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Matcher({self})")
    }
}

/// Canonical form: the name bare when it is a classic Prometheus label name
/// (else quoted), then the operator, then the value always double-quoted with
/// `\\`, `\"` and `\n` escaped. `parse_matchers(&m.to_string())` gives back `m`.
impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_classic_label_name(&self.name) {
            f.write_str(&self.name)?;
        } else {
            write_quoted(f, &self.name)?;
        }
        f.write_str(self.op.as_str())?;
        write_quoted(f, &self.value)
    }
}

/// Format matchers as a brace set: `{a="1", b=~"x|y"}`.
pub fn format_matchers(matchers: &[Matcher]) -> String {
    let inner: Vec<String> = matchers.iter().map(Matcher::to_string).collect();
    format!("{{{}}}", inner.join(", "))
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '"' => f.write_str("\\\"")?,
            '\n' => f.write_str("\\n")?,
            c => fmt::Write::write_char(f, c)?,
        }
    }
    f.write_str("\"")
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, the only names Alertmanager 0.25 accepts.
pub fn is_classic_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn compile_anchored(name: &str, pattern: &str) -> Result<Regex, InvalidRegexError> {
    let invalid = |reason: String| InvalidRegexError {
        name: name.to_string(),
        pattern: pattern.to_string(),
        reason,
    };
    let translated = go_regex::translate(pattern).map_err(invalid)?;
    // Same concatenation as Alertmanager, so `a)|(b` keeps its Go meaning
    // (`^(?:a)|(b)$`, i.e. "starts with a or ends with b").
    Regex::new(&format!("^(?:{translated})$")).map_err(|e| invalid(regex_error_reason(&e)))
}

/// The regex crate's syntax errors span several lines (pattern, caret, then
/// `error: ...`); keep the last, descriptive line.
fn regex_error_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(|| text.trim().to_string(), str::to_string)
}

// ---------------------------------------------------------------------------
// Errors

/// What went wrong while parsing matchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// A label name was expected (`found` is `None` at end of input).
    ExpectedLabelName { found: Option<char> },
    /// `""="x"`.
    EmptyLabelName,
    /// The label name is not followed by `=`, `!=`, `=~` or `!~`.
    ExpectedOperator { name: String, found: Option<char> },
    /// Nothing after the operator (`job=`).
    ExpectedValue { name: String, op: MatchOp },
    /// A `"` opened at the error position is never closed.
    UnterminatedQuote,
    /// An unescaped `"` inside an unquoted value.
    UnexpectedQuote { name: String },
    /// `{` inside an unquoted value (a `}` ends the value).
    BraceInUnquotedValue { name: String, brace: char },
    /// After a matcher, something other than `,`, a closing `}` or the end.
    ExpectedSeparator { found: char, braced: bool },
    /// The `{` at `open_position` (char index) is never closed.
    UnclosedBrace { open_position: usize },
    /// A `}` without an opening `{`.
    UnexpectedCloseBrace,
    /// Input after the closing `}`.
    TrailingInput { found: char },
    /// Input after a quoted value where only the end may follow
    /// ([`parse_label_arg`]).
    TrailingAfterValue { found: char },
    /// A `LABEL=VALUE` argument ([`parse_label_arg`]) with another operator.
    LabelArgNotEqual { name: String, op: MatchOp },
    /// The regex of a `=~` / `!~` matcher does not compile.
    InvalidRegex(InvalidRegexError),
}

/// A parse error with where it happened: `position` is the 0-based index in
/// characters (Unicode scalar values), `offset` the 0-based byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatcherParseError {
    pub kind: ParseErrorKind,
    pub position: usize,
    pub offset: usize,
}

impl std::error::Error for MatcherParseError {}

struct Found(Option<char>);

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("end of input"),
            Some(c) => write!(f, "{c:?}"),
        }
    }
}

impl fmt::Display for MatcherParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.position;
        match &self.kind {
            ParseErrorKind::ExpectedLabelName { found } => {
                write!(
                    f,
                    "expected label name at position {p}, found {}",
                    Found(*found)
                )
            }
            ParseErrorKind::EmptyLabelName => write!(f, "empty label name at position {p}"),
            ParseErrorKind::ExpectedOperator { name, found } => write!(
                f,
                "expected operator after label name {name:?} at position {p} \
                 (one of =, !=, =~, !~), found {}",
                Found(*found)
            ),
            ParseErrorKind::ExpectedValue { name, op } => write!(
                f,
                "expected value after operator \"{op}\" for label {name:?} at position {p} \
                 (write \"\" for an empty value)"
            ),
            ParseErrorKind::UnterminatedQuote => {
                write!(f, "unterminated quoted string starting at position {p}")
            }
            ParseErrorKind::UnexpectedQuote { name } => write!(
                f,
                "unexpected '\"' in unquoted value of label {name:?} at position {p} \
                 (quote the whole value and escape inner quotes as \\\")"
            ),
            ParseErrorKind::BraceInUnquotedValue { name, brace } => write!(
                f,
                "unexpected '{brace}' in unquoted value of label {name:?} at position {p} \
                 (quote the value)"
            ),
            ParseErrorKind::ExpectedSeparator { found, braced } => write!(
                f,
                "expected ',' {} after matcher at position {p}, found {found:?}",
                if *braced { "or '}'" } else { "or end of input" }
            ),
            ParseErrorKind::UnclosedBrace { open_position } => write!(
                f,
                "missing closing '}}' for the '{{' at position {open_position} \
                 (input ends at position {p})"
            ),
            ParseErrorKind::UnexpectedCloseBrace => {
                write!(f, "unexpected '}}' at position {p} without an opening '{{'")
            }
            ParseErrorKind::TrailingInput { found } => {
                write!(
                    f,
                    "unexpected {found:?} at position {p} after the closing '}}'"
                )
            }
            ParseErrorKind::TrailingAfterValue { found } => {
                write!(
                    f,
                    "unexpected {found:?} at position {p} after the quoted value"
                )
            }
            ParseErrorKind::LabelArgNotEqual { name, op } => write!(
                f,
                "labels must be specified as NAME=VALUE: found operator \"{op}\" after \
                 label name {name:?} at position {p}"
            ),
            ParseErrorKind::InvalidRegex(e) => write!(
                f,
                "invalid regex {:?} for label {:?} at position {p}: {}",
                e.pattern, e.name, e.reason
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Parser

/// Parse one matcher (`alertname="X"`), several comma-separated ones
/// (`a="1", b!~"x|y"`), or one brace set (`{team="ml", model!~"base.*",}`).
/// Empty input and `{}` give no matchers.
pub fn parse_matchers(input: &str) -> Result<Vec<Matcher>, MatcherParseError> {
    let mut p = Parser { input, pos: 0 };
    let mut out = Vec::new();
    p.skip_ws();
    let open = (p.peek() == Some('{')).then_some(p.pos);
    if open.is_some() {
        p.pos += 1;
    }
    loop {
        p.skip_ws();
        match p.peek() {
            None => {
                if let Some(open) = open {
                    return Err(p.error_at(
                        ParseErrorKind::UnclosedBrace {
                            open_position: p.char_position(open),
                        },
                        p.pos,
                    ));
                }
                break;
            }
            Some('}') => {
                if open.is_none() {
                    return Err(p.error_at(ParseErrorKind::UnexpectedCloseBrace, p.pos));
                }
                p.pos += 1;
                p.skip_ws();
                if let Some(found) = p.peek() {
                    return Err(p.error_at(ParseErrorKind::TrailingInput { found }, p.pos));
                }
                break;
            }
            Some(_) => {}
        }
        out.push(p.matcher()?);
        p.skip_ws();
        match p.peek() {
            Some(',') => p.pos += 1,
            None | Some('}') => {}
            Some(found) => {
                return Err(p.error_at(
                    ParseErrorKind::ExpectedSeparator {
                        found,
                        braced: open.is_some(),
                    },
                    p.pos,
                ))
            }
        }
    }
    Ok(out)
}

/// Parse a `LABEL=VALUE` command-line argument the way `amtool config routes
/// test` does: one matcher whose operator must be `=`, with the value taken to
/// the end of the argument (so commas and braces need no quoting; quotes do:
/// `summary="say \"hi\""`). An empty value (`team=`) is allowed.
pub fn parse_label_arg(arg: &str) -> Result<(String, String), MatcherParseError> {
    let mut p = Parser { input: arg, pos: 0 };
    p.skip_ws();
    let name = p.label_name()?;
    p.skip_ws();
    let op_start = p.pos;
    match p.operator() {
        Some(MatchOp::Equal) => {}
        Some(op) => return Err(p.error_at(ParseErrorKind::LabelArgNotEqual { name, op }, op_start)),
        None => {
            return Err(p.error_at(
                ParseErrorKind::ExpectedOperator {
                    name,
                    found: p.peek(),
                },
                p.pos,
            ))
        }
    }
    p.skip_ws();
    if p.peek() == Some('"') {
        let value = p.quoted()?;
        p.skip_ws();
        if let Some(found) = p.peek() {
            return Err(p.error_at(ParseErrorKind::TrailingAfterValue { found }, p.pos));
        }
        return Ok((name, value));
    }
    // Unquoted: the rest of the argument; only an unescaped quote is an error.
    let base = p.pos;
    let rest = arg[base..].trim_end_matches(is_ws);
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                let _ = chars.next();
            }
            '"' => return Err(p.error_at(ParseErrorKind::UnexpectedQuote { name }, base + i)),
            _ => {}
        }
    }
    Ok((name, unescape(rest)))
}

/// Go's `\s`: space, \t, \n, \f, \r (the same set as `char::is_ascii_whitespace`).
fn is_ws(c: char) -> bool {
    c.is_ascii_whitespace()
}

/// Reserved characters that end an unquoted label name.
fn ends_unquoted_name(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '{' | '}' | '!' | '=' | '~' | ',' | '\\' | '"' | '\'' | '`'
        )
}

/// Classic Alertmanager unescaping: `\n`, `\"`, `\\`; any other backslash is
/// kept literally (`\d` stays `\d`, a trailing `\` stays `\`).
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

struct Parser<'a> {
    input: &'a str,
    /// Byte offset, always on a char boundary.
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        let rest = &self.input[self.pos..];
        self.pos += rest.len() - rest.trim_start_matches(is_ws).len();
    }

    fn char_position(&self, offset: usize) -> usize {
        self.input[..offset].chars().count()
    }

    fn error_at(&self, kind: ParseErrorKind, offset: usize) -> MatcherParseError {
        MatcherParseError {
            kind,
            position: self.char_position(offset),
            offset,
        }
    }

    /// A double-quoted string starting at `self.pos` (which holds `"`);
    /// returns the unescaped content and leaves `pos` after the closing quote.
    fn quoted(&mut self) -> Result<String, MatcherParseError> {
        let start = self.pos;
        let body_start = start + 1;
        let mut chars = self.input[body_start..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    let _ = chars.next();
                }
                '"' => {
                    self.pos = body_start + i + 1;
                    return Ok(unescape(&self.input[body_start..body_start + i]));
                }
                _ => {}
            }
        }
        Err(self.error_at(ParseErrorKind::UnterminatedQuote, start))
    }

    fn label_name(&mut self) -> Result<String, MatcherParseError> {
        let start = self.pos;
        match self.peek() {
            Some('"') => {
                let name = self.quoted()?;
                if name.is_empty() {
                    return Err(self.error_at(ParseErrorKind::EmptyLabelName, start));
                }
                Ok(name)
            }
            found => {
                let rest = &self.input[start..];
                let len = rest.find(ends_unquoted_name).unwrap_or(rest.len());
                if len == 0 {
                    return Err(self.error_at(ParseErrorKind::ExpectedLabelName { found }, start));
                }
                self.pos += len;
                Ok(rest[..len].to_string())
            }
        }
    }

    fn operator(&mut self) -> Option<MatchOp> {
        let rest = &self.input[self.pos..];
        let (op, len) = if rest.starts_with("=~") {
            (MatchOp::Regex, 2)
        } else if rest.starts_with("!~") {
            (MatchOp::NotRegex, 2)
        } else if rest.starts_with("!=") {
            (MatchOp::NotEqual, 2)
        } else if rest.starts_with('=') {
            (MatchOp::Equal, 1)
        } else {
            return None;
        };
        self.pos += len;
        Some(op)
    }

    fn matcher(&mut self) -> Result<Matcher, MatcherParseError> {
        let name = self.label_name()?;
        self.skip_ws();
        let Some(op) = self.operator() else {
            return Err(self.error_at(
                ParseErrorKind::ExpectedOperator {
                    name,
                    found: self.peek(),
                },
                self.pos,
            ));
        };
        self.skip_ws();
        let value_start = self.pos;
        let value = if self.peek() == Some('"') {
            self.quoted()?
        } else {
            self.unquoted_value(&name, op)?
        };
        Matcher::new(name, op, value)
            .map_err(|e| self.error_at(ParseErrorKind::InvalidRegex(e), value_start))
    }

    /// An unquoted value: up to the next `,` / `}` / end, trailing whitespace
    /// removed, classic escapes applied.
    fn unquoted_value(&mut self, name: &str, op: MatchOp) -> Result<String, MatcherParseError> {
        let start = self.pos;
        let rest = &self.input[start..];
        let mut end = rest.len();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    // `\"` and `\\` are escapes; keep them inside the value.
                    if matches!(rest[i + 1..].chars().next(), Some('"' | '\\')) {
                        let _ = chars.next();
                    }
                }
                '"' => {
                    return Err(self.error_at(
                        ParseErrorKind::UnexpectedQuote {
                            name: name.to_string(),
                        },
                        start + i,
                    ))
                }
                '{' => {
                    return Err(self.error_at(
                        ParseErrorKind::BraceInUnquotedValue {
                            name: name.to_string(),
                            brace: c,
                        },
                        start + i,
                    ))
                }
                ',' | '}' => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let raw = rest[..end].trim_end_matches(is_ws);
        if raw.is_empty() {
            return Err(self.error_at(
                ParseErrorKind::ExpectedValue {
                    name: name.to_string(),
                    op,
                },
                start,
            ));
        }
        self.pos = start + raw.len();
        Ok(unescape(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, op: MatchOp, value: &str) -> Matcher {
        Matcher::new(name, op, value).expect("valid matcher")
    }
    fn eq(n: &str, v: &str) -> Matcher {
        m(n, MatchOp::Equal, v)
    }
    fn ne(n: &str, v: &str) -> Matcher {
        m(n, MatchOp::NotEqual, v)
    }
    fn re(n: &str, v: &str) -> Matcher {
        m(n, MatchOp::Regex, v)
    }
    fn nre(n: &str, v: &str) -> Matcher {
        m(n, MatchOp::NotRegex, v)
    }
    fn ok(input: &str) -> Vec<Matcher> {
        parse_matchers(input).unwrap_or_else(|e| panic!("{input:?} should parse: {e}"))
    }
    fn err(input: &str) -> MatcherParseError {
        match parse_matchers(input) {
            Ok(ms) => panic!("{input:?} should fail, got {ms:?}"),
            Err(e) => e,
        }
    }
    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // Cases from Alertmanager's classic parser tests (pkg/labels), restated.
    #[test]
    fn classic_parser_cases() {
        assert_eq!(ok(r#"{foo="bar"}"#), vec![eq("foo", "bar")]);
        assert_eq!(ok(r#"{foo=~"bar.*"}"#), vec![re("foo", "bar.*")]);
        assert_eq!(ok(r#"{foo!="bar"}"#), vec![ne("foo", "bar")]);
        assert_eq!(ok(r#"{foo!~"bar.*"}"#), vec![nre("foo", "bar.*")]);
        assert_eq!(
            ok(r#"{foo="bar", baz!="quux"}"#),
            vec![eq("foo", "bar"), ne("baz", "quux")]
        );
        assert_eq!(
            ok(r#"{foo="bar", baz!~"quux.*"}"#),
            vec![eq("foo", "bar"), nre("baz", "quux.*")]
        );
        assert_eq!(
            ok(r#"{foo="bar",baz!~".*quux", derp="wat"}"#),
            vec![eq("foo", "bar"), nre("baz", ".*quux"), eq("derp", "wat")]
        );
        assert_eq!(
            ok(r#"{foo="bar", baz!~".*quux.*", derp="wat"}"#),
            vec![eq("foo", "bar"), nre("baz", ".*quux.*"), eq("derp", "wat")]
        );
        assert_eq!(
            ok(r#"{foo="bar", instance=~"some-api.*"}"#),
            vec![eq("foo", "bar"), re("instance", "some-api.*")]
        );
        assert_eq!(ok(r#"{foo=""}"#), vec![eq("foo", "")]);
        assert_eq!(
            ok(r#"{foo="bar,quux", job="job1"}"#),
            vec![eq("foo", "bar,quux"), eq("job", "job1")]
        );
        assert_eq!(
            ok(r#"{foo = "bar", dings != "bums", }"#),
            vec![eq("foo", "bar"), ne("dings", "bums")]
        );
        assert_eq!(
            ok("foo=bar,dings!=bums"),
            vec![eq("foo", "bar"), ne("dings", "bums")]
        );
        assert_eq!(
            ok("foo=bar, dings!=bums"),
            vec![eq("foo", "bar"), ne("dings", "bums")]
        );
        assert_eq!(
            ok(r#"{quote="She said: \"Hi, ladies! That's gender-neutral…\""}"#),
            vec![eq(
                "quote",
                r#"She said: "Hi, ladies! That's gender-neutral…""#
            )]
        );
        assert_eq!(ok(r#"statuscode=~"5..""#), vec![re("statuscode", "5..")]);
        // The operator is taken greedily (`=~`), the rest is the value.
        assert_eq!(ok("tricky=~~~"), vec![re("tricky", "~~")]);
        // Classic escapes apply to unquoted values too; `\=` is kept as is.
        assert_eq!(
            ok(r#"trickier==\\=\=\""#),
            vec![eq("trickier", r#"=\=\=""#)]
        );
        assert_eq!(
            ok(r#"contains_quote != "\"" , contains_comma !~ "foo,bar" , "#),
            vec![ne("contains_quote", "\""), nre("contains_comma", "foo,bar")]
        );
    }

    #[test]
    fn classic_parser_error_cases() {
        assert!(matches!(
            err(r#"job="value"#).kind,
            ParseErrorKind::UnterminatedQuote
        ));
        assert!(matches!(
            err(r#"job=value""#).kind,
            ParseErrorKind::UnexpectedQuote { .. }
        ));
        assert!(matches!(
            err(r#"trickier==\\=\=\"""#).kind,
            ParseErrorKind::UnexpectedQuote { .. }
        ));
        assert!(matches!(
            err(r#"contains_unescaped_quote = foo"bar"#).kind,
            ParseErrorKind::UnexpectedQuote { .. }
        ));
        let e = err(r#"{foo=~"invalid[regexp"}"#);
        assert!(matches!(e.kind, ParseErrorKind::InvalidRegex(_)), "{e}");
        assert_eq!(e.position, 6);
        // Double-escaped strings (a whole matcher pasted inside quotes).
        for input in [
            r#""{foo=\"bar"}"#,
            r#""foo=\"bar""#,
            r#""foo=\"bar\"""#,
            r#""foo=\"bar\""#,
            r#""{foo=\"bar\"}""#,
            r#""foo="bar"""#,
        ] {
            err(input);
        }
    }

    #[test]
    fn empty_unquoted_value_is_rejected() {
        // Alertmanager 0.25 read `job=` as job=""; later releases reject it.
        let e = err("job=");
        assert_eq!(
            e.to_string(),
            "expected value after operator \"=\" for label \"job\" at position 4 \
             (write \"\" for an empty value)"
        );
        err("{job=, a=b}");
        assert_eq!(ok(r#"job="""#), vec![eq("job", "")]);
    }

    #[test]
    fn name_rules() {
        // The classic parser rejects this name; Alertmanager's UTF-8 parser (and
        // so Alertmanager >= 0.27 by default) accepts it.
        assert_eq!(
            ok(r#"{invalid-name = "valid label"}"#),
            vec![eq("invalid-name", "valid label")]
        );
        assert_eq!(ok(r#""débit.rate"="x""#), vec![eq("débit.rate", "x")]);
        assert_eq!(ok(r#"{"foo bar"="x",}"#), vec![eq("foo bar", "x")]);
        assert_eq!(ok(r#""a\"b"="x""#), vec![eq("a\"b", "x")]);
        assert!(matches!(
            err(r#"""="x""#).kind,
            ParseErrorKind::EmptyLabelName
        ));
        assert!(matches!(
            err(r#"="x""#).kind,
            ParseErrorKind::ExpectedLabelName { found: Some('=') }
        ));
        assert!(matches!(
            err("foo bar=x").kind,
            ParseErrorKind::ExpectedOperator { .. }
        ));
    }

    // Cases from Alertmanager's UTF-8 parser tests (matcher/parse), restated.
    #[test]
    fn utf8_parser_cases() {
        assert_eq!(ok(""), vec![]);
        assert_eq!(ok("{}"), vec![]);
        assert_eq!(ok("  { }  "), vec![]);
        assert_eq!(ok("{foo=bar}"), vec![eq("foo", "bar")]);
        assert_eq!(ok("{foo=bar,}"), vec![eq("foo", "bar")]);
        assert_eq!(ok("{foo!=bar}"), vec![ne("foo", "bar")]);
        assert_eq!(ok("{foo=~[a-z]+}"), vec![re("foo", "[a-z]+")]);
        assert_eq!(ok("{foo!~[a-z]+}"), vec![nre("foo", "[a-z]+")]);
        assert_eq!(ok("{foo=🙂}"), vec![eq("foo", "🙂")]);
        assert_eq!(ok("{foo=🙂bar}"), vec![eq("foo", "🙂bar")]);
        assert_eq!(ok("foo=bar"), vec![eq("foo", "bar")]);
        assert_eq!(ok("foo=bar,"), vec![eq("foo", "bar")]);
        assert_eq!(ok("foo!=bar"), vec![ne("foo", "bar")]);
        assert_eq!(ok("foo=~[a-z]+"), vec![re("foo", "[a-z]+")]);
        assert_eq!(ok("foo!~[a-z]+"), vec![nre("foo", "[a-z]+")]);
        assert_eq!(ok(r#"{"foo"="bar"}"#), vec![eq("foo", "bar")]);
        assert_eq!(ok(r#"{"foo"="bar",}"#), vec![eq("foo", "bar")]);
        assert_eq!(ok(r#"{"foo"!="bar"}"#), vec![ne("foo", "bar")]);
        assert_eq!(ok(r#"{"foo"=~"[a-z]+"}"#), vec![re("foo", "[a-z]+")]);
        assert_eq!(ok(r#"{"foo"!~"[a-z]+"}"#), vec![nre("foo", "[a-z]+")]);
        assert_eq!(ok(r#"{"foo"="🙂"}"#), vec![eq("foo", "🙂")]);
        assert_eq!(ok(r#"{"foo"="🙂bar"}"#), vec![eq("foo", "🙂bar")]);
        assert_eq!(ok(r#"{"foo"="bar\n"}"#), vec![eq("foo", "bar\n")]);
        assert_eq!(ok(r#"{"foo"="\"bar\""}"#), vec![eq("foo", "\"bar\"")]);
        assert_eq!(ok(r#"{"foo"="bar\\"}"#), vec![eq("foo", "bar\\")]);
        assert_eq!(ok(r#""foo"="bar""#), vec![eq("foo", "bar")]);
        assert_eq!(ok(r#""foo"="bar","#), vec![eq("foo", "bar")]);
        assert_eq!(
            ok("{foo=bar,bar!=baz}"),
            vec![eq("foo", "bar"), ne("bar", "baz")]
        );
        assert_eq!(
            ok(r#"{foo="bar",bar!="baz"}"#),
            vec![eq("foo", "bar"), ne("bar", "baz")]
        );
        assert_eq!(
            ok("foo=bar,bar!=baz"),
            vec![eq("foo", "bar"), ne("bar", "baz")]
        );
        assert_eq!(
            ok(r#"foo="bar",bar!="baz""#),
            vec![eq("foo", "bar"), ne("bar", "baz")]
        );
    }

    #[test]
    fn utf8_parser_error_cases() {
        let e = err(",");
        assert_eq!(e.position, 0);
        assert!(matches!(
            e.kind,
            ParseErrorKind::ExpectedLabelName { found: Some(',') }
        ));
        assert_eq!(err("{,}").position, 1);
        let e = err("{");
        assert!(matches!(
            e.kind,
            ParseErrorKind::UnclosedBrace { open_position: 0 }
        ));
        assert_eq!(e.position, 1);
        assert!(matches!(
            err("}").kind,
            ParseErrorKind::UnexpectedCloseBrace
        ));
        // The classic parser silently drops an unbalanced brace; we refuse.
        let e = err("foo=bar}");
        assert!(matches!(e.kind, ParseErrorKind::UnexpectedCloseBrace));
        assert_eq!(e.position, 7);
        let e = err("{foo=bar");
        assert!(matches!(
            e.kind,
            ParseErrorKind::UnclosedBrace { open_position: 0 }
        ));
        assert_eq!(e.position, 8);
        assert!(matches!(
            err(r#"{foo=:"bar"}"#).kind,
            ParseErrorKind::UnexpectedQuote { .. }
        ));
        assert!(matches!(
            err("{foo=bar}x").kind,
            ParseErrorKind::TrailingInput { found: 'x' }
        ));
        assert!(matches!(
            err(r#"foo="bar" baz="x""#).kind,
            ParseErrorKind::ExpectedSeparator { found: 'b', .. }
        ));
        assert!(matches!(
            err("foo=bar,,baz=x").kind,
            ParseErrorKind::ExpectedLabelName { found: Some(',') }
        ));
    }

    /// Where Alertmanager's two parsers disagree, Alertmanager (>= 0.27, in
    /// its default fallback mode) uses the classic result; so do we.
    #[test]
    fn classic_wins_where_parsers_disagree() {
        // Not an escape in the classic parser: backslash + letter stay.
        assert_eq!(ok(r#"{foo="bar\w"}"#), vec![eq("foo", r"bar\w")]);
        assert_eq!(ok(r#"{foo="a\tb"}"#), vec![eq("foo", r"a\tb")]);
        assert_eq!(ok(r#"foo=~"\d+""#), vec![re("foo", r"\d+")]);
        // Escapes work in unquoted values; a trailing backslash is literal.
        assert_eq!(ok(r"{foo=bar\n}"), vec![eq("foo", "bar\n")]);
        assert_eq!(ok(r"foo=bar\"), vec![eq("foo", "bar\\")]);
        // Unquoted values may contain spaces (trimmed at both ends).
        assert_eq!(
            ok("foo =  bar baz  ,x=y"),
            vec![eq("foo", "bar baz"), eq("x", "y")]
        );
        assert_eq!(ok("foo==bar"), vec![eq("foo", "=bar")]);
        assert_eq!(ok("foo!==bar"), vec![ne("foo", "=bar")]);
        // Braces inside unquoted values are refused (quote the value).
        assert!(matches!(
            err("foo=~a{2}").kind,
            ParseErrorKind::BraceInUnquotedValue { brace: '{', .. }
        ));
        assert_eq!(ok(r#"{foo=~"a{2}"}"#), vec![re("foo", "a{2}")]);
        // Literal newlines and tabs inside quotes are kept.
        assert_eq!(ok("foo=\"a\nb\tc\""), vec![eq("foo", "a\nb\tc")]);
    }

    #[test]
    fn whitespace_tolerance() {
        assert_eq!(
            ok(" \t{ \n foo \t=~ \"x|y\" \r\n, bar != baz ,\n } \n"),
            vec![re("foo", "x|y"), ne("bar", "baz")]
        );
        assert_eq!(ok(r#"  alertname = "X"  "#), vec![eq("alertname", "X")]);
    }

    #[test]
    fn error_messages_say_where_and_what() {
        assert_eq!(
            err("foo").to_string(),
            "expected operator after label name \"foo\" at position 3 \
             (one of =, !=, =~, !~), found end of input"
        );
        assert_eq!(
            err(r#"alertname="unterminated"#).to_string(),
            "unterminated quoted string starting at position 10"
        );
        let e = err(r#"{a="1", b=~"(x"}"#);
        assert_eq!(
            e.to_string(),
            "invalid regex \"(x\" for label \"b\" at position 11: unclosed group"
        );
        // Positions count characters; `offset` counts bytes.
        let e = err(r#"{"débit"="ü", zz}"#);
        assert_eq!(e.position, 16);
        assert_eq!(e.offset, 18);
        assert_eq!(
            e.to_string(),
            "expected operator after label name \"zz\" at position 16 \
             (one of =, !=, =~, !~), found '}'"
        );
        assert_eq!(
            err("a=b}").to_string(),
            "unexpected '}' at position 3 without an opening '{'"
        );
        assert_eq!(
            err(r#"{a="b""#).to_string(),
            "missing closing '}' for the '{' at position 0 (input ends at position 6)"
        );
    }

    #[test]
    fn missing_label_matches_as_empty_string() {
        let none = labels(&[("alertname", "X")]);
        assert!(ne("team", "ml").matches(&none));
        assert!(eq("team", "").matches(&none));
        assert!(!eq("team", "ml").matches(&none));
        assert!(re("team", ".*").matches(&none));
        assert!(re("team", "").matches(&none));
        assert!(!re("team", ".+").matches(&none));
        assert!(nre("team", ".+").matches(&none));
        // A label present with an empty value behaves the same.
        let empty = labels(&[("team", "")]);
        assert!(eq("team", "").matches(&empty));
        assert!(ne("team", "ml").matches(&empty));
    }

    #[test]
    fn regexes_are_fully_anchored() {
        let r = re("model_name", "baseline.*");
        assert!(r.matches(&labels(&[("model_name", "baseline-v2")])));
        assert!(!r.matches(&labels(&[("model_name", "new-baseline")])));
        let r = re("severity", "critical|warning");
        assert!(r.matches(&labels(&[("severity", "warning")])));
        assert!(!r.matches(&labels(&[("severity", "warning2")])));
        assert!(!r.matches(&labels(&[("severity", "xcritical")])));
        let r = re("x", "bar");
        assert!(!r.matches(&labels(&[("x", "foobar")])));
        assert!(!r.matches(&labels(&[("x", "barfoo")])));
        // `.` does not match a newline (no (?s)), as in Go.
        assert!(!re("x", ".*").matches_value("a\nb"));
        assert!(re("x", "(?s).*").matches_value("a\nb"));
    }

    #[test]
    fn anchoring_is_textual_like_alertmanager() {
        // `^(?:a)|(b)$`: "starts with a" or "ends with b" (checked against amtool).
        let r = re("x", "a)|(b");
        assert!(r.matches_value("azzz"));
        assert!(r.matches_value("zzzb"));
        assert!(!r.matches_value("zzz"));
    }

    #[test]
    fn regexes_use_go_semantics() {
        assert!(!re("x", r"\d+").matches_value("٣"));
        assert!(re("x", r"\d+").matches_value("42"));
        assert!(!re("x", r"\w+").matches_value("é"));
        assert!(re("x", "(?i)ÄB").matches_value("äb"));
        assert!(re("x", r"a\sb").matches_value("a\x0Cb"));
        assert!(!re("x", r"a\sb").matches_value("a\x0Bb"));
    }

    #[test]
    fn shortcuts_agree_with_the_regex_engine() {
        let patterns = [
            "critical|warning",
            "baseline.*",
            ".*baseline",
            ".*gpu.*",
            ".*",
            "",
            "a|",
            "|a",
            "ünï|ml",
            "a,b|x y",
            ".*.*",
            "a.*|.*b",
            "x.*y",
            ".+",
        ];
        let values = [
            "",
            "critical",
            "warning",
            "criticalwarning",
            "baseline",
            "baseline-v2",
            "new-baseline",
            "gpu",
            "my-gpu-node",
            "a",
            "b",
            "ab",
            "xy",
            "x--y",
            "ünï",
            "ml",
            "a,b",
            "x y",
            "line1\nline2",
            "baseline\n",
            "\ngpu",
            "a\nb",
        ];
        let mut with_shortcut = 0;
        for p in patterns {
            let fast = re("x", p);
            with_shortcut += usize::from(fast.shortcut.is_some());
            let slow = {
                let mut m = re("x", p);
                m.shortcut = None;
                m
            };
            for v in values {
                assert_eq!(
                    fast.matches_value(v),
                    slow.matches_value(v),
                    "{p:?} on {v:?}"
                );
            }
        }
        assert_eq!(with_shortcut, 12);
    }

    #[test]
    fn display_is_canonical_and_round_trips() {
        assert_eq!(eq("team", "ml").to_string(), r#"team="ml""#);
        assert_eq!(
            nre("model_name", "baseline.*").to_string(),
            r#"model_name!~"baseline.*""#
        );
        assert_eq!(
            eq("q", "say \"hi\"\\\n").to_string(),
            r#"q="say \"hi\"\\\n""#
        );
        assert_eq!(eq("débit.rate", "x").to_string(), r#""débit.rate"="x""#);
        assert_eq!(
            format_matchers(&[eq("a", "1"), re("b", "x|y")]),
            r#"{a="1", b=~"x|y"}"#
        );
        // Round trip over awkward names and values.
        let pieces = [
            "", "a", "ü", "\"", "\\", "\n", ",", "{", "}", " ", "=~", "\\n", "\\\"", "x y", "🙂",
            "\t", "'",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let mut name = String::from("n");
            let mut value = String::new();
            for _ in 0..(next() % 5) {
                name.push_str(pieces[(next() % pieces.len() as u64) as usize]);
            }
            for _ in 0..(next() % 6) {
                value.push_str(pieces[(next() % pieces.len() as u64) as usize]);
            }
            let op = if next() % 2 == 0 {
                MatchOp::Equal
            } else {
                MatchOp::NotEqual
            };
            let original = m(&name, op, &value);
            let text = original.to_string();
            assert_eq!(ok(&text), vec![original.clone()], "round trip of {text}");
            let braced = format_matchers(&[original.clone(), original.clone()]);
            assert_eq!(ok(&braced), vec![original.clone(), original], "{braced}");
        }
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let pool: Vec<char> = "{}=!~,\"\\ \tab:_é🙂\n[]()|.*+?^$-&Q<>x1dpE"
            .chars()
            .collect();
        let mut seed: u64 = 42;
        for _ in 0..20_000 {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let len = (seed >> 59) as usize;
            let mut x = seed;
            let input: String = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    pool[(x >> 33) as usize % pool.len()]
                })
                .collect();
            // Whatever parses prints back to something that parses the same.
            if let Ok(ms) = parse_matchers(&input) {
                for m in ms {
                    assert_eq!(parse_matchers(&m.to_string()), Ok(vec![m]));
                }
            }
            let _ = parse_label_arg(&input);
            let _ = Matcher::new("x", MatchOp::Regex, input.as_str());
            if let Err(e) = parse_matchers(&input) {
                assert!(e.offset <= input.len());
                assert!(input.is_char_boundary(e.offset));
                assert_eq!(e.position, input[..e.offset].chars().count());
            }
        }
    }

    #[test]
    fn label_args_like_amtool() {
        let arg = |s: &str| parse_label_arg(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(arg("team=ml"), ("team".into(), "ml".into()));
        assert_eq!(arg(r#"team="ml""#), ("team".into(), "ml".into()));
        // The value runs to the end: commas and braces need no quoting.
        assert_eq!(arg("v=a,b{c}"), ("v".into(), "a,b{c}".into()));
        assert_eq!(
            arg(r#"q="say \"hi\", ok""#),
            ("q".into(), "say \"hi\", ok".into())
        );
        assert_eq!(arg("empty="), ("empty".into(), String::new()));
        assert_eq!(arg("x=ünï"), ("x".into(), "ünï".into()));
        let e = parse_label_arg("team=~ml").expect_err("not NAME=VALUE");
        assert!(
            matches!(e.kind, ParseErrorKind::LabelArgNotEqual { .. }),
            "{e}"
        );
        assert!(parse_label_arg(r#"q=a"b"#).is_err());
        assert!(parse_label_arg(r#"q="a"b"#).is_err());
        assert!(parse_label_arg("justtext").is_err());
    }
}

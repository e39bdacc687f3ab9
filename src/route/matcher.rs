//! Alertmanager label matchers: `name="value"`, `name!="value"`,
//! `name=~"regex"`, `name!~"regex"`, alone, comma-separated or in braces.
//!
//! # Which Alertmanager
//!
//! Parsing is Alertmanager's default ("fallback") mode of releases ≥ 0.27,
//! checked against the test tables of v0.34.0 (`tests/alertmanager_tables.rs`):
//! every input goes through both of Alertmanager's parsers,
//!
//! - the UTF-8 parser ([`super::utf8`], `matcher/parse`): quoted or unquoted
//!   names and values, quoted strings decoded like Go string literals
//!   (`"\t"` is a TAB, `"\U0001f642"` is 🙂, `"\d"` is an error), unquoted
//!   tokens without white space or ``{}!=~,\"'` ``, braces paired;
//! - the classic parser ([`super::classic`], `pkg/labels`, the only one of
//!   Alertmanager ≤ 0.26): names `[a-zA-Z_:][a-zA-Z0-9_:]*`, anything after
//!   the operator is the value (`job=` is `job=""`, `foo=bar baz` keeps the
//!   space), only `\n`, `\"`, `\\` are escapes, one leading `{` and one
//!   trailing `}` are simply cut off (`{foo=bar}}` is `foo="bar}"`);
//!
//! and, like Alertmanager: both reject → the classic parser's error; only the
//! classic one accepts → its result, with a [`ParseWarning`] (Alertmanager
//! logs "this input is incompatible"); both accept but differ → the classic
//! result, with a warning ("disagreement"); otherwise the UTF-8 result.
//! Alertmanager also warns when both read an empty input as "no matchers"
//! (a Go nil-versus-empty-slice artefact); we do not.
//!
//! Regexes are anchored exactly like Alertmanager does, by text concatenation:
//! `^(?:` + value + `)$`, and compiled once. Go regex syntax is translated so
//! the match result is the same as Go's (see [`super::go_regex`]).

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

use super::{classic, go_regex, utf8};

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
///
/// Displayed the way Go's `regexp` reports it (`error parsing regexp:
/// missing closing ]: `[a)$``), which is what Alertmanager prints; where the
/// Go wording is not known here, the `regex` crate's description is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.go_message())]
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

impl InvalidRegexError {
    /// Go's `regexp.Compile` error text for `^(?:pattern)$`.
    pub fn go_message(&self) -> String {
        let anchored = format!("^(?:{})$", self.pattern);
        let reason = self.reason.as_str();
        let (code, expr) = match reason {
            "unclosed character class" | "missing closing ] in character class" => (
                "missing closing ]",
                unclosed_class(&anchored).unwrap_or(anchored.as_str()),
            ),
            "unclosed group" => ("missing closing )", anchored.as_str()),
            "unopened group" => ("unexpected )", anchored.as_str()),
            "trailing backslash at end of expression" => (reason, ""),
            _ => {
                let known = ["invalid character class range ", "invalid escape sequence "];
                match known
                    .iter()
                    .find_map(|k| reason.strip_prefix(k).map(|e| (k, e)))
                {
                    Some((k, e)) => (k.trim_end(), e),
                    None => (reason, anchored.as_str()),
                }
            }
        };
        format!("error parsing regexp: {code}: `{expr}`")
    }
}

/// The text from the first character class that is never closed to the end
/// (what Go quotes for "missing closing ]").
fn unclosed_class(re: &str) -> Option<&str> {
    let mut chars = re.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '[' => {
                // `[]` / `[^]` at the start of a class is a literal `]`.
                if chars.peek().is_some_and(|&(_, c)| c == '^') {
                    chars.next();
                }
                if chars.peek().is_some_and(|&(_, c)| c == ']') {
                    chars.next();
                }
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '[' if chars.peek().is_some_and(|&(_, c)| c == ':') => {
                            // `[:alpha:]`
                            for (_, c) in chars.by_ref() {
                                if c == ']' {
                                    break;
                                }
                            }
                        }
                        ']' => {
                            closed = true;
                            break;
                        }
                        _ => {}
                    }
                }
                if !closed {
                    return Some(&re[i..]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Alertmanager's `labels.Matcher.String()`: a name with a reserved character
/// (white space or ``{}!=~,\"'` ``) and the value both Go-quoted
/// (`strconv.Quote`); otherwise the name bare and the value in double quotes
/// with only `\`, newline and `"` escaped (OpenMetrics escaping).
impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.contains(utf8::is_reserved) {
            return write!(
                f,
                "{}{}{}",
                go_quote(&self.name),
                self.op,
                go_quote(&self.value)
            );
        }
        f.write_str(&self.name)?;
        f.write_str(self.op.as_str())?;
        f.write_str("\"")?;
        for c in self.value.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => fmt::Write::write_char(f, c)?,
            }
        }
        f.write_str("\"")
    }
}

/// Alertmanager's `labels.Matchers.String()`: `{a="1",b=~"x|y"}`.
pub fn format_matchers(matchers: &[Matcher]) -> String {
    let inner: Vec<String> = matchers.iter().map(Matcher::to_string).collect();
    format!("{{{}}}", inner.join(","))
}

/// Alertmanager's order of a route's matchers (`labels.Matchers.Less`): by
/// name, then value, then operator.
pub fn sort_matchers(matchers: &mut [Matcher]) {
    matchers.sort_by(|a, b| {
        (a.name.as_str(), a.value.as_str(), a.op).cmp(&(b.name.as_str(), b.value.as_str(), b.op))
    });
}

/// Go's `strconv.Quote`: printable characters as they are, `\a \b \f \n \r
/// \t \v \\ \"`, other ASCII controls as `\xHH`, other non-printable
/// characters as `\uHHHH` / `\UHHHHHHHH`. "Printable" follows Go's
/// `unicode.IsPrint` for controls, spaces other than U+0020, surrogates,
/// private use and the common format characters; unassigned code points
/// (which Go also escapes) are printed as they are.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0C' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0B' => out.push_str("\\v"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    let u = c as u32;
    !(c.is_control()
        || c.is_whitespace()
        || (0xE000..=0xF8FF).contains(&u)
        || u >= 0xF0000
        || matches!(
            u,
            0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
                | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
                | 0xFFF9..=0xFFFB
        ))
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, the only names Alertmanager 0.25 accepts.
pub fn is_classic_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `model.LabelNameRE` (`^[a-zA-Z_][a-zA-Z0-9_]*$`): the names Alertmanager
/// allows as keys of the deprecated `match` / `match_re` (no colon).
pub fn is_model_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
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
// Parsing: Alertmanager's fallback mode

/// A matcher string Alertmanager rejects. The texts are those of its classic
/// parser, which is what Alertmanager reports when both parsers reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherParseError {
    /// Not `NAME OP VALUE` (the piece between commas is quoted).
    #[error("bad matcher format: {0}")]
    BadFormat(String),
    /// A `"` inside the value that neither opens nor closes it.
    #[error("matcher value contains unescaped double quote: {0}")]
    UnescapedQuote(String),
    /// The regex of a `=~` / `!~` matcher does not compile.
    #[error("{0}")]
    InvalidRegex(InvalidRegexError),
}

/// An input Alertmanager accepts but logs a warning about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseWarning {
    /// Only the classic parser accepts it (a form the UTF-8 parser, the future
    /// default, rejects); `suggestion` is the same matchers written for both.
    ClassicOnly {
        utf8_error: String,
        suggestion: String,
    },
    /// Both parsers accept it with different results; the classic one is used.
    Disagreement { utf8: String, classic: String },
}

impl fmt::Display for ParseWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseWarning::ClassicOnly {
                utf8_error,
                suggestion,
            } => write!(
                f,
                "deprecated form: only Alertmanager's classic matchers parser accepts this \
                 (the UTF-8 parser says: {utf8_error}); read it the classic way, as \
                 Alertmanager >= 0.27 does; write `{suggestion}` to mean the same in every \
                 Alertmanager version"
            ),
            ParseWarning::Disagreement { utf8, classic } => write!(
                f,
                "ambiguous form: Alertmanager's two matchers parsers read this differently \
                 (UTF-8 parser: `{utf8}`, classic parser: `{classic}`); the classic reading \
                 is used, as Alertmanager >= 0.27 does; write `{classic}` to say so \
                 unambiguously"
            ),
        }
    }
}

fn join_matchers(ms: &[Matcher]) -> String {
    ms.iter()
        .map(Matcher::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Parse a matcher string the way Alertmanager ≥ 0.27 does by default, and
/// say whether Alertmanager would log a warning about it.
pub fn parse_matchers_checked(
    input: &str,
) -> Result<(Vec<Matcher>, Option<ParseWarning>), MatcherParseError> {
    let new = utf8::parse_matchers(input);
    let old = classic::parse_matchers(input);
    match (new, old) {
        (Err(_), Err(e)) => Err(e),
        (Err(utf8_error), Ok(c)) => {
            let suggestion = join_matchers(&c);
            Ok((
                c,
                Some(ParseWarning::ClassicOnly {
                    utf8_error,
                    suggestion,
                }),
            ))
        }
        (Ok(n), Ok(c)) if n != c => {
            let warning = ParseWarning::Disagreement {
                utf8: join_matchers(&n),
                classic: join_matchers(&c),
            };
            Ok((c, Some(warning)))
        }
        (Ok(n), _) => Ok((n, None)),
    }
}

/// Parse one matcher string (one matcher, several comma-separated ones, or a
/// brace set) as Alertmanager ≥ 0.27 does by default; see the module docs.
pub fn parse_matchers(input: &str) -> Result<Vec<Matcher>, MatcherParseError> {
    parse_matchers_checked(input).map(|(ms, _)| ms)
}

// ---------------------------------------------------------------------------
// `routes test` arguments

/// What is wrong with a `LABEL=VALUE` argument; `position` is the 0-based
/// index in characters, `offset` the byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelArgError {
    pub kind: LabelArgErrorKind,
    pub position: usize,
    pub offset: usize,
}

/// The kinds of [`LabelArgError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelArgErrorKind {
    /// A label name was expected (`found` is `None` at end of input).
    ExpectedLabelName { found: Option<char> },
    /// `""="x"`.
    EmptyLabelName,
    /// The label name is not followed by `=`.
    ExpectedOperator { name: String, found: Option<char> },
    /// A `"` opened at the error position is never closed.
    UnterminatedQuote,
    /// An unescaped `"` inside an unquoted value.
    UnexpectedQuote { name: String },
    /// Input after a quoted value.
    TrailingAfterValue { found: char },
    /// Another operator than `=`.
    NotEqual { name: String, op: MatchOp },
}

impl std::error::Error for LabelArgError {}

struct Found(Option<char>);

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("end of input"),
            Some(c) => write!(f, "{c:?}"),
        }
    }
}

impl fmt::Display for LabelArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.position;
        match &self.kind {
            LabelArgErrorKind::ExpectedLabelName { found } => write!(
                f,
                "expected label name at position {p}, found {}",
                Found(*found)
            ),
            LabelArgErrorKind::EmptyLabelName => write!(f, "empty label name at position {p}"),
            LabelArgErrorKind::ExpectedOperator { name, found } => write!(
                f,
                "expected operator after label name {name:?} at position {p} \
                 (one of =, !=, =~, !~), found {}",
                Found(*found)
            ),
            LabelArgErrorKind::UnterminatedQuote => {
                write!(f, "unterminated quoted string starting at position {p}")
            }
            LabelArgErrorKind::UnexpectedQuote { name } => write!(
                f,
                "unexpected '\"' in unquoted value of label {name:?} at position {p} \
                 (quote the whole value and escape inner quotes as \\\")"
            ),
            LabelArgErrorKind::TrailingAfterValue { found } => write!(
                f,
                "unexpected {found:?} at position {p} after the quoted value"
            ),
            LabelArgErrorKind::NotEqual { name, op } => write!(
                f,
                "labels must be specified as NAME=VALUE: found operator \"{op}\" after \
                 label name {name:?} at position {p}"
            ),
        }
    }
}

/// Parse a `LABEL=VALUE` command-line argument the way `amtool config routes
/// test` (0.25) does: one matcher whose operator must be `=`, with the value
/// taken to the end of the argument (so commas and braces need no quoting;
/// quotes do: `summary="say \"hi\""`). An empty value (`team=`) is allowed.
pub fn parse_label_arg(arg: &str) -> Result<(String, String), LabelArgError> {
    let mut p = ArgParser { input: arg, pos: 0 };
    p.skip_ws();
    let name = p.label_name()?;
    p.skip_ws();
    let op_start = p.pos;
    match p.operator() {
        Some(MatchOp::Equal) => {}
        Some(op) => return Err(p.error_at(LabelArgErrorKind::NotEqual { name, op }, op_start)),
        None => {
            return Err(p.error_at(
                LabelArgErrorKind::ExpectedOperator {
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
            return Err(p.error_at(LabelArgErrorKind::TrailingAfterValue { found }, p.pos));
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
            '"' => return Err(p.error_at(LabelArgErrorKind::UnexpectedQuote { name }, base + i)),
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

struct ArgParser<'a> {
    input: &'a str,
    /// Byte offset, always on a char boundary.
    pos: usize,
}

impl ArgParser<'_> {
    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        let rest = &self.input[self.pos..];
        self.pos += rest.len() - rest.trim_start_matches(is_ws).len();
    }

    fn error_at(&self, kind: LabelArgErrorKind, offset: usize) -> LabelArgError {
        LabelArgError {
            kind,
            position: self.input[..offset].chars().count(),
            offset,
        }
    }

    /// A double-quoted string starting at `self.pos` (which holds `"`);
    /// returns the unescaped content and leaves `pos` after the closing quote.
    fn quoted(&mut self) -> Result<String, LabelArgError> {
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
        Err(self.error_at(LabelArgErrorKind::UnterminatedQuote, start))
    }

    fn label_name(&mut self) -> Result<String, LabelArgError> {
        let start = self.pos;
        match self.peek() {
            Some('"') => {
                let name = self.quoted()?;
                if name.is_empty() {
                    return Err(self.error_at(LabelArgErrorKind::EmptyLabelName, start));
                }
                Ok(name)
            }
            found => {
                let rest = &self.input[start..];
                let len = rest.find(ends_unquoted_name).unwrap_or(rest.len());
                if len == 0 {
                    return Err(
                        self.error_at(LabelArgErrorKind::ExpectedLabelName { found }, start)
                    );
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
    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The forms the issue tracker listed, with Alertmanager's fallback-mode
    /// reading (checked against `pkg/labels` and `matcher/parse` semantics).
    #[test]
    fn forms_alertmanager_accepts() {
        let warned = |input: &str| {
            let (ms, w) = parse_matchers_checked(input)
                .unwrap_or_else(|e| panic!("{input:?} should parse: {e}"));
            assert!(w.is_some(), "{input:?} should warn");
            ms
        };
        assert_eq!(warned("job="), vec![eq("job", "")]);
        assert_eq!(warned("{foo=}b"), vec![eq("foo", "}b")]);
        assert_eq!(warned("{foo=bar}}"), vec![eq("foo", "bar}")]);
        assert_eq!(warned("{"), vec![]);
        assert_eq!(warned("}"), vec![]);
        assert_eq!(warned("foo=bar}"), vec![eq("foo", "bar")]);
        assert_eq!(warned("{foo=bar"), vec![eq("foo", "bar")]);
        assert_eq!(warned("{foo=~}"), vec![re("foo", "")]);
        assert_eq!(warned("foo=bar baz"), vec![eq("foo", "bar baz")]);
        // Both accept, differently: the classic reading wins.
        assert_eq!(warned(r#"{foo="bar\t"}"#), vec![eq("foo", r"bar\t")]);
        // Only the UTF-8 parser accepts: its reading, no warning.
        let quiet = |input: &str| {
            let (ms, w) = parse_matchers_checked(input)
                .unwrap_or_else(|e| panic!("{input:?} should parse: {e}"));
            assert_eq!(w, None, "{input:?}");
            ms
        };
        assert_eq!(quiet(r#"{"foo"="bar\t"}"#), vec![eq("foo", "bar\t")]);
        assert_eq!(quiet(r#"{"foo\t"="x"}"#), vec![eq("foo\t", "x")]);
        assert_eq!(quiet(r#""\xf0\x9f\x99\x82"="x""#), vec![eq("🙂", "x")]);
        assert_eq!(quiet(r#""\U0001f642"="x""#), vec![eq("🙂", "x")]);
        assert_eq!(quiet("invalid-name=x"), vec![eq("invalid-name", "x")]);
        assert_eq!(quiet(" {a=b}"), vec![eq("a", "b")]);
        assert_eq!(quiet(""), vec![]);
        assert_eq!(quiet("{}"), vec![]);
        // Rejected by both: the classic error.
        for input in [r#"{"foo\d"="x"}"#, r#"{"\xff"="x"}"#, "{\"a\nb\"=\"x\"}"] {
            let e = parse_matchers(input).expect_err(input);
            assert!(
                matches!(e, MatcherParseError::BadFormat(_)),
                "{input:?}: {e}"
            );
        }
    }

    #[test]
    fn regex_errors_read_like_go() {
        let e = parse_matchers(r#"{foo=~"invalid[regexp"}"#).expect_err("bad regex");
        assert_eq!(
            e.to_string(),
            "error parsing regexp: missing closing ]: `[regexp)$`"
        );
        let e = parse_matchers(r#"x=~"(a""#).expect_err("bad regex");
        assert_eq!(
            e.to_string(),
            "error parsing regexp: missing closing ): `^(?:(a)$`"
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
    fn display_is_alertmanagers_and_round_trips() {
        assert_eq!(eq("team", "ml").to_string(), r#"team="ml""#);
        assert_eq!(
            nre("model_name", "baseline.*").to_string(),
            r#"model_name!~"baseline.*""#
        );
        assert_eq!(
            eq("q", "say \"hi\"\\\n\t").to_string(),
            "q=\"say \\\"hi\\\"\\\\\\n\t\""
        );
        // No reserved character: bare, even when not a classic name.
        assert_eq!(eq("débit.rate", "x").to_string(), r#"débit.rate="x""#);
        assert_eq!(eq("a-b", "x").to_string(), r#"a-b="x""#);
        // A reserved character: name and value Go-quoted.
        assert_eq!(
            eq("foo bar", "a\tb\u{1}\u{a0}🙂").to_string(),
            r#""foo bar"="a\tb\x01\u00a0🙂""#
        );
        assert_eq!(
            format_matchers(&[eq("a", "1"), re("b", "x|y")]),
            r#"{a="1",b=~"x|y"}"#
        );
        // Round trip over awkward names and values.
        let pieces = [
            "", "a", "ü", "\"", "\\", "\n", ",", "{", "}", " ", "=~", "\\n", "\\\"", "x y", "🙂",
            "\t", "'", "\u{7f}", "\u{a0}",
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
            // Whatever parses prints back to something that parses the same
            // (except an empty name, which Alertmanager prints as nothing).
            if let Ok(ms) = parse_matchers(&input) {
                for m in ms.into_iter().filter(|m| !m.name().is_empty()) {
                    assert_eq!(parse_matchers(&m.to_string()), Ok(vec![m]), "{input:?}");
                }
            }
            let _ = parse_label_arg(&input);
            let _ = Matcher::new("x", MatchOp::Regex, input.as_str());
            if let Err(e) = parse_label_arg(&input) {
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
        assert!(matches!(e.kind, LabelArgErrorKind::NotEqual { .. }), "{e}");
        assert!(parse_label_arg(r#"q=a"b"#).is_err());
        assert!(parse_label_arg(r#"q="a"b"#).is_err());
        assert!(parse_label_arg("justtext").is_err());
    }
}

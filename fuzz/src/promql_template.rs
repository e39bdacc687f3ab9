//! PromQL query templates (`enrich::template`): a label value cannot leave
//! its string literal.
//!
//! Input: byte 0 picks the mode; the rest, split at 0xFF (never in UTF-8), is
//! a template source then the values of the keys in [`KEYS`] (lossy UTF-8),
//! used for labels, annotations, common and group labels alike.
//!
//! - Known templates (even byte 0): the rendered query is lexed as PromQL
//!   lexes it (Go string literals, `\` escapes, no raw newline inside `"…"`)
//!   and must be exactly the template's code with each string literal
//!   holding the value, unescaped, byte for byte.
//! - Fuzzed templates (odd byte 0): any source the compile-time check accepts
//!   (control blocks `{% … %}` excluded: they choose code on purpose) must
//!   render to the same code outside string literals for the fuzzed values
//!   as for the benign value `x`: a value cannot change the query.

use mlops_alert_router::enrich::template::{QueryTemplate, TemplateVars};
use std::collections::BTreeMap;

const KEYS: &[&str] = &["experiment", "model_name", "summary", "severity", "a", "b"];

/// A piece of a known template: PromQL code, or a double-quoted literal.
enum Part {
    Code(&'static str),
    Str(&'static [Piece]),
}

enum Piece {
    Lit(&'static str),
    /// A variable expression (`labels.experiment | safe`) and the key whose value it prints.
    Var(&'static str, &'static str),
}

use Part::{Code, Str};
use Piece::{Lit, Var};

const KNOWN: &[&[Part]] = &[
    &[
        Code("ab_test_model_accuracy{experiment="),
        Str(&[Var("labels.experiment", "experiment")]),
        Code(", model_name="),
        Str(&[Var("labels.model_name", "model_name")]),
        Code("}"),
    ],
    &[
        Code("sum by (model_name) (rate(ab_test_requests_total{experiment=~"),
        Str(&[Var("labels.experiment", "experiment"), Lit("|other")]),
        Code("}[5m]))"),
    ],
    &[
        Code("m{a="),
        Str(&[
            Lit("pre-"),
            Var("annotations.summary", "summary"),
            Lit("-"),
            Var("group_labels.a", "a"),
        ]),
        Code(", b!="),
        Str(&[Var("common_labels.severity", "severity")]),
        Code("} > 0.5 and on() label_replace(vector(1), "),
        Str(&[Lit("x")]),
        Code(", "),
        Str(&[Var("labels.b | safe", "b")]),
        Code(", "),
        Str(&[]),
        Code(", "),
        Str(&[Lit("$1")]),
        Code(")"),
    ],
    &[
        Code("count(up{job="),
        Str(&[Lit("j")]),
        Code("}) or m{s="),
        Str(&[Var("labels.summary ~ \"\"", "summary")]),
        Code("}"),
    ],
];

/// A lexed token: code outside literals, or a literal's quote and decoded content.
#[derive(Debug, PartialEq, Eq)]
enum Tok {
    Code(String),
    Str(char, String),
}

pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.split(|&b| b == 0xff);
    let source = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let values: BTreeMap<String, String> = KEYS
        .iter()
        .map(|k| {
            let v = parts.next().unwrap_or_default();
            ((*k).to_owned(), String::from_utf8_lossy(v).into_owned())
        })
        .collect();
    if mode % 2 == 0 {
        known_template(KNOWN[usize::from(mode / 2) % KNOWN.len()], &values);
    } else {
        fuzzed_template(&source, &values);
    }
}

fn render(t: &QueryTemplate, values: &BTreeMap<String, String>) -> Result<String, String> {
    t.render(&TemplateVars {
        labels: values,
        annotations: values,
        common_labels: values,
        group_labels: values,
    })
}

fn known_template(parts: &[Part], values: &BTreeMap<String, String>) {
    let mut source = String::new();
    let mut expected = Vec::new();
    for p in parts {
        match p {
            Code(c) => {
                source.push_str(c);
                expected.push(Tok::Code((*c).to_owned()));
            }
            Str(pieces) => {
                source.push('"');
                let mut content = String::new();
                for piece in pieces.iter() {
                    match piece {
                        Lit(l) => {
                            source.push_str(l);
                            content.push_str(l);
                        }
                        Var(expr, key) => {
                            source.push_str(&format!("{{{{ {expr} }}}}"));
                            content.push_str(&values[*key]);
                        }
                    }
                }
                source.push('"');
                expected.push(Tok::Str('"', content));
            }
        }
    }
    let t = QueryTemplate::compile(&source)
        .unwrap_or_else(|e| panic!("known template {source:?} refused: {e}"));
    let query = render(&t, values).unwrap_or_else(|e| panic!("render failed: {e}"));
    let lexed =
        lex(&query).unwrap_or_else(|e| panic!("rendered query {query:?} does not lex: {e}"));
    assert_eq!(
        lexed, expected,
        "a value escaped its string literal: {query:?}"
    );
}

fn fuzzed_template(source: &str, values: &BTreeMap<String, String>) {
    if source.contains("{%") {
        return;
    }
    let Ok(t) = QueryTemplate::compile(source) else {
        return;
    };
    let benign: BTreeMap<String, String> = KEYS
        .iter()
        .map(|k| ((*k).to_owned(), "x".to_owned()))
        .collect();
    let (Ok(plain), Ok(hostile)) = (render(&t, &benign), render(&t, values)) else {
        return;
    };
    let Ok(plain) = lex(&plain) else {
        // The template itself is not lexable PromQL; Prometheus will say so.
        return;
    };
    let hostile_lexed = lex(&hostile).unwrap_or_else(|e| {
        panic!("template {source:?}: a value made the query unlexable ({e}): {hostile:?}")
    });
    assert_eq!(
        skeleton(&hostile_lexed),
        skeleton(&plain),
        "template {source:?} accepted, yet a value changed the query: {hostile:?}"
    );
}

/// The tokens with every literal's content dropped (code and quote kinds stay).
fn skeleton(toks: &[Tok]) -> Vec<Tok> {
    toks.iter()
        .map(|t| match t {
            Tok::Code(c) => Tok::Code(c.clone()),
            Tok::Str(q, _) => Tok::Str(*q, String::new()),
        })
        .collect()
}

/// Splits a query into code and string literals as PromQL's lexer does:
/// `"…"` and `'…'` with Go escapes (no raw newline), `` `…` `` raw.
fn lex(q: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut code = String::new();
    let mut chars = q.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                let mut content = String::new();
                loop {
                    match chars.next() {
                        None | Some('\n') => return Err("unterminated quoted string".into()),
                        Some('\\') => content.push(unescape(&mut chars, c)?),
                        Some(x) if x == c => break,
                        Some(x) => content.push(x),
                    }
                }
                if !code.is_empty() {
                    out.push(Tok::Code(std::mem::take(&mut code)));
                }
                out.push(Tok::Str(c, content));
            }
            '`' => {
                let mut content = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated raw string".into()),
                        Some('`') => break,
                        Some(x) => content.push(x),
                    }
                }
                if !code.is_empty() {
                    out.push(Tok::Code(std::mem::take(&mut code)));
                }
                out.push(Tok::Str('`', content));
            }
            c => code.push(c),
        }
    }
    if !code.is_empty() {
        out.push(Tok::Code(code));
    }
    Ok(out)
}

/// One Go escape sequence after the backslash (strconv.Unquote's rules).
fn unescape(chars: &mut std::str::Chars<'_>, quote: char) -> Result<char, String> {
    fn hex(chars: &mut std::str::Chars<'_>, n: usize) -> Result<char, String> {
        let digits: String = chars.by_ref().take(n).collect();
        if digits.chars().count() != n {
            return Err("short escape".into());
        }
        let v = u32::from_str_radix(&digits, 16).map_err(|e| format!("bad escape: {e}"))?;
        char::from_u32(v).ok_or_else(|| format!("escape {v:#x} is not a character"))
    }
    match chars.next() {
        Some('a') => Ok('\u{7}'),
        Some('b') => Ok('\u{8}'),
        Some('f') => Ok('\u{c}'),
        Some('n') => Ok('\n'),
        Some('r') => Ok('\r'),
        Some('t') => Ok('\t'),
        Some('v') => Ok('\u{b}'),
        Some('\\') => Ok('\\'),
        Some('x') => hex(chars, 2),
        Some('u') => hex(chars, 4),
        Some('U') => hex(chars, 8),
        Some(q) if q == quote => Ok(q),
        Some(d @ '0'..='7') => {
            let rest: String = chars.by_ref().take(2).collect();
            let v = u32::from_str_radix(&format!("{d}{rest}"), 8)
                .map_err(|e| format!("bad octal escape: {e}"))?;
            if rest.chars().count() != 2 || v > 255 {
                return Err("bad octal escape".into());
            }
            char::from_u32(v).ok_or_else(|| "bad octal escape".into())
        }
        other => Err(format!("unknown escape {other:?}")),
    }
}

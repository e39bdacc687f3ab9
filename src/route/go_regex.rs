//! Go (RE2) regular-expression syntax, rewritten for the `regex` crate.
//!
//! Alertmanager compiles matcher regexes with Go's `regexp` package. The
//! `regex` crate accepts almost the same syntax, but a few constructs that are
//! valid in both mean different things:
//!
//! * `\d`, `\s`, `\w`, `\b` (and their negations) are ASCII-only in Go and
//!   Unicode-aware in the `regex` crate (`\d` matches `٣` in Rust, not in Go).
//! * Inside a character class, Go treats `[`, `&&`, `~~` and `--` literally;
//!   the `regex` crate reads them as nested classes / set operations.
//! * A `{` that does not start a valid repetition (`a{`, `x{,3}`) is a literal
//!   in Go and an error in the `regex` crate; `\<` / `\>` are escaped literals
//!   in Go and word-boundary assertions in the `regex` crate.
//! * `\Q...\E` quoting exists only in Go.
//!
//! [`translate`] rewrites those constructs so the compiled pattern matches the
//! same strings as Go's, and rejects what Go rejects but the `regex` crate
//! would take: nested repetition (`a**`, `a{2}*`), flags other than `imsU`
//! (`(?x)`), repeat counts over 1000. Everything else is passed through
//! unchanged, so a pattern Go rejects is rejected here as well.

const ASCII_DIGIT: &str = "0-9";
const ASCII_SPACE: &str = r"\t\n\x0C\r ";
const ASCII_WORD: &str = "0-9A-Za-z_";

/// Rewrite a Go RE2 pattern into a `regex`-crate pattern with the same meaning.
///
/// Returns a description of the problem for malformed classes and escapes that
/// Go would also reject.
pub fn translate(pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut i = 0;
    // Whether the last thing emitted was a repetition operator (with its
    // optional lazy `?`): Go rejects another one right after it (`a**`).
    let mut after_repeat = false;
    while i < chars.len() {
        let is_repeat = matches!(chars[i], '*' | '+' | '?')
            || (chars[i] == '{' && repeat_end(&chars, i).is_some());
        if is_repeat {
            let end = if chars[i] == '{' {
                let end = repeat_end(&chars, i).unwrap_or(i + 1);
                check_repeat_counts(&chars[i + 1..end - 1])?;
                end
            } else {
                i + 1
            };
            let end = if chars.get(end) == Some(&'?') {
                end + 1
            } else {
                end
            };
            if after_repeat {
                return Err("invalid nested repetition operator".to_string());
            }
            out.extend(&chars[i..end]);
            i = end;
            after_repeat = true;
            continue;
        }
        after_repeat = false;
        match chars[i] {
            '\\' => i = escape_outside_class(&chars, i, &mut out)?,
            '[' => i = class(&chars, i, &mut out)?,
            '(' if chars.get(i + 1) == Some(&'?') => {
                check_group_flags(&chars[i + 2..])?;
                out.push_str("(?");
                i += 2;
            }
            '{' => {
                out.push_str(r"\{");
                i += 1;
            }
            '}' => {
                out.push_str(r"\}");
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Go's limits on `{n}`, `{n,}`, `{n,m}`: counts up to 1000, `n <= m`.
fn check_repeat_counts(body: &[char]) -> Result<(), String> {
    let text: String = body.iter().collect();
    let mut parts = text.splitn(2, ',');
    let count = |s: &str| s.parse::<u32>().unwrap_or(u32::MAX);
    let min = count(parts.next().unwrap_or(""));
    let max = parts
        .next()
        .map(|m| if m.is_empty() { None } else { Some(count(m)) });
    let too_big = min > 1000 || max.flatten().is_some_and(|m| m > 1000 || m < min);
    if too_big {
        return Err("invalid repeat count".to_string());
    }
    Ok(())
}

/// After `(?`: Go accepts a named group (`P<name>`, `<name>`) or flags from
/// `imsU` (with `-`) ending in `:` or `)`; the `regex` crate also takes `x`,
/// `u`, `R`, which Go rejects.
fn check_group_flags(rest: &[char]) -> Result<(), String> {
    if matches!(rest.first(), Some('P' | '<')) {
        return Ok(());
    }
    for c in rest {
        match c {
            ':' | ')' => return Ok(()),
            'i' | 'm' | 's' | 'U' | '-' => {}
            _ => break,
        }
    }
    Err("invalid or unsupported Perl syntax".to_string())
}

/// If `chars[start]` opens a valid Go repetition (`{n}`, `{n,}`, `{n,m}`),
/// the index just past its `}`.
fn repeat_end(chars: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    let digits_from = i;
    while chars.get(i).is_some_and(char::is_ascii_digit) {
        i += 1;
    }
    if i == digits_from {
        return None;
    }
    if chars.get(i) == Some(&',') {
        i += 1;
        while chars.get(i).is_some_and(char::is_ascii_digit) {
            i += 1;
        }
    }
    (chars.get(i) == Some(&'}')).then_some(i + 1)
}

/// Copy `\p{Name}` / `\pL` (or `\x{...}` / `\xHH`) starting at the backslash.
fn copy_braced_or_short(chars: &[char], start: usize, short_len: usize, out: &mut String) -> usize {
    // chars[start] == '\\', chars[start + 1] is the escape letter.
    let body = start + 2;
    let end = if chars.get(body) == Some(&'{') {
        match chars[body..].iter().position(|&c| c == '}') {
            Some(off) => body + off + 1,
            None => chars.len(),
        }
    } else {
        (body + short_len).min(chars.len())
    };
    out.extend(&chars[start..end]);
    end
}

fn escape_outside_class(chars: &[char], start: usize, out: &mut String) -> Result<usize, String> {
    let Some(&e) = chars.get(start + 1) else {
        return Err("trailing backslash at end of expression".to_string());
    };
    let next = start + 2;
    match e {
        'd' => out.push_str("[0-9]"),
        'D' => out.push_str("[^0-9]"),
        's' => out.push_str(r"[\t\n\x0C\r ]"),
        'S' => out.push_str(r"[^\t\n\x0C\r ]"),
        'w' => out.push_str("[0-9A-Za-z_]"),
        'W' => out.push_str("[^0-9A-Za-z_]"),
        'b' => out.push_str(r"(?-u:\b)"),
        'B' => out.push_str(r"(?-u:\B)"),
        'Q' => {
            // Literal text up to `\E` (or the end of the pattern).
            let mut j = next;
            while j < chars.len() && !(chars[j] == '\\' && chars.get(j + 1) == Some(&'E')) {
                push_literal(chars[j], out);
                j += 1;
            }
            return Ok(if j < chars.len() { j + 2 } else { j });
        }
        'p' | 'P' => return Ok(copy_braced_or_short(chars, start, 1, out)),
        'x' => return Ok(copy_braced_or_short(chars, start, 2, out)),
        // Go: escaped punctuation is that literal character. The regex crate
        // gives `\<` and `\>` a meaning of their own, so emit literals.
        c if c.is_ascii_punctuation() => push_literal(c, out),
        c => {
            out.push('\\');
            out.push(c);
        }
    }
    Ok(next)
}

/// One element of a Go character class.
enum ClassAtom {
    Char(char),
    /// Already-translated class fragment (`0-9`, `[^0-9]`, `\p{Greek}`).
    Set(String),
}

/// Translate a Go character class starting at `chars[start] == '['`.
fn class(chars: &[char], start: usize, out: &mut String) -> Result<usize, String> {
    let mut j = start + 1;
    let negated = chars.get(j) == Some(&'^');
    if negated {
        j += 1;
    }
    let mut body = String::new();
    let mut first = true;
    loop {
        let Some(&c) = chars.get(j) else {
            return Err("missing closing ] in character class".to_string());
        };
        if c == ']' && !first {
            j += 1;
            break;
        }
        first = false;
        // POSIX class such as [:alpha:] or [:^space:]: same names in both.
        if c == '[' && chars.get(j + 1) == Some(&':') {
            if let Some(off) = chars[j + 2..]
                .windows(2)
                .position(|w| w[0] == ':' && w[1] == ']')
            {
                let end = j + 2 + off + 2;
                body.extend(&chars[j..end]);
                j = end;
                continue;
            }
        }
        let (atom, after) = class_atom(chars, j)?;
        j = after;
        match atom {
            ClassAtom::Set(s) => body.push_str(&s),
            ClassAtom::Char(lo) => {
                // `a-z` is a range unless the `-` is followed by the closing `]`.
                if chars.get(j) == Some(&'-') && chars.get(j + 1).is_some_and(|&n| n != ']') {
                    let (hi_atom, after_hi) = class_atom(chars, j + 1)?;
                    let ClassAtom::Char(hi) = hi_atom else {
                        return Err("invalid character class range".to_string());
                    };
                    if hi < lo {
                        return Err(format!("invalid character class range {lo}-{hi}"));
                    }
                    push_literal(lo, &mut body);
                    body.push('-');
                    push_literal(hi, &mut body);
                    j = after_hi;
                } else {
                    push_literal(lo, &mut body);
                }
            }
        }
    }
    out.push('[');
    if negated {
        out.push('^');
    }
    out.push_str(&body);
    out.push(']');
    Ok(j)
}

fn class_atom(chars: &[char], j: usize) -> Result<(ClassAtom, usize), String> {
    let c = chars[j];
    if c != '\\' {
        return Ok((ClassAtom::Char(c), j + 1));
    }
    let Some(&e) = chars.get(j + 1) else {
        return Err("trailing backslash at end of expression".to_string());
    };
    let set = |s: &str| Ok((ClassAtom::Set(s.to_string()), j + 2));
    let ch = |c: char| Ok((ClassAtom::Char(c), j + 2));
    match e {
        'd' => set(ASCII_DIGIT),
        'D' => set(&format!("[^{ASCII_DIGIT}]")),
        's' => set(ASCII_SPACE),
        'S' => set(&format!("[^{ASCII_SPACE}]")),
        'w' => set(ASCII_WORD),
        'W' => set(&format!("[^{ASCII_WORD}]")),
        'p' | 'P' => {
            let mut s = String::new();
            let end = copy_braced_or_short(chars, j, 1, &mut s);
            Ok((ClassAtom::Set(s), end))
        }
        'x' => {
            let mut s = String::new();
            let end = copy_braced_or_short(chars, j, 2, &mut s);
            let hex = s[2..].trim_start_matches('{').trim_end_matches('}');
            let value = u32::from_str_radix(hex, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("invalid escape sequence {s}"))?;
            Ok((ClassAtom::Char(value), end))
        }
        'a' => ch('\x07'),
        'f' => ch('\x0C'),
        't' => ch('\t'),
        'n' => ch('\n'),
        'r' => ch('\r'),
        'v' => ch('\x0B'),
        c if c.is_ascii_punctuation() => ch(c),
        c => Err(format!("invalid escape sequence \\{c}")),
    }
}

/// Append `c` so that it is a literal both inside and outside a class.
fn push_literal(c: char, out: &mut String) {
    if c.is_ascii_punctuation() && regex::escape(c.encode_utf8(&mut [0; 4])).len() > 1 {
        out.push('\\');
        out.push(c);
    } else if c.is_control() || c.is_whitespace() {
        out.push_str(&format!(r"\x{{{:X}}}", c as u32));
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::translate;
    use regex::Regex;

    fn full(p: &str) -> Regex {
        let t = translate(p).expect("translates");
        Regex::new(&format!("^(?:{t})$")).expect("compiles")
    }

    #[test]
    fn perl_classes_are_ascii_like_go() {
        let d = full(r"\d+");
        assert!(d.is_match("123"));
        assert!(!d.is_match("٣"), "Arabic-Indic digit is not \\d in Go");
        let w = full(r"\w+");
        assert!(w.is_match("abc_9"));
        assert!(!w.is_match("é"));
        let s = full(r"a\sb");
        assert!(s.is_match("a\x0Cb"));
        assert!(!s.is_match("a\x0Bb"), "Go \\s has no vertical tab");
        assert!(!s.is_match("a\u{85}b"));
        assert!(full(r"\D").is_match("٣"));
        assert!(full(r"\W").is_match("é"));
        assert!(full(r"\S").is_match("\u{A0}"));
    }

    #[test]
    fn perl_classes_inside_brackets() {
        let r = full(r"[\d\s-]+");
        assert!(r.is_match("1 -2"));
        assert!(!r.is_match("٣"));
        let r = full(r"[^\d]");
        assert!(r.is_match("٣"));
        assert!(!r.is_match("3"));
        let r = full(r"[\D]");
        assert!(r.is_match("x"));
        assert!(!r.is_match("3"));
        // After a perl class, `-` is a literal in Go.
        let r = full(r"[\d-z]+");
        assert!(r.is_match("1-z"));
        assert!(!r.is_match("y"));
    }

    #[test]
    fn word_boundary_is_ascii() {
        let r = full(r".*\bfoo\b.*");
        assert!(r.is_match("a foo b"));
        // In Go `é` is not a word character, so there is a boundary before foo.
        assert!(r.is_match("éfoo"));
        assert!(!full(r".*\Bfoo.*").is_match("éfoo"));
    }

    #[test]
    fn class_literals_that_rust_reads_as_operators() {
        let r = full(r"[a&&b]+");
        assert!(r.is_match("a&b"));
        let r = full(r"[a~~b]+");
        assert!(r.is_match("~a~"));
        let r = full(r"[[]");
        assert!(r.is_match("["));
        let r = full(r"[]a]+");
        assert!(r.is_match("]a"));
        let r = full(r"[^]a]");
        assert!(r.is_match("b"));
        assert!(!r.is_match("]"));
        let r = full(r"[a-]+");
        assert!(r.is_match("a-"));
        let r = full(r"[!--]+");
        assert!(r.is_match("!-,"));
        let r = full(r"[[:alpha:][:digit:]]+");
        assert!(r.is_match("ab12"));
        assert!(!r.is_match("é"));
        let r = full(r"[\x41-\x{43}]+");
        assert!(r.is_match("ABC"));
        assert!(!r.is_match("D"));
        let r = full(r"[\p{Greek}x]+");
        assert!(r.is_match("αx"));
    }

    #[test]
    fn braces_that_are_not_repetitions_are_literal() {
        assert!(full("a{").is_match("a{"));
        assert!(full("x{,3}").is_match("x{,3}"));
        assert!(full("a}").is_match("a}"));
        assert!(full("{foo}").is_match("{foo}"));
        let r = full("a{2,3}");
        assert!(r.is_match("aa"));
        assert!(!r.is_match("a{2,3}"));
        assert!(full("a{2}").is_match("aa"));
        assert!(full("a{2,}").is_match("aaaa"));
        assert!(full(r"\p{Greek}+").is_match("αβ"));
        assert!(full(r"\x{41}").is_match("A"));
    }

    #[test]
    fn escaped_punctuation_and_quoting() {
        assert!(full(r"\<a\>").is_match("<a>"));
        // Like Go, the quoted text is a run of literals: `+` repeats the last one.
        assert!(full(r"\Qa.b*\E+").is_match("a.b***"));
        assert!(!full(r"\Qa.b*\E+").is_match("a.b*a.b*"));
        assert!(!full(r"\Qa.b\E").is_match("axb"));
        assert!(full(r"\Q(unterminated").is_match("(unterminated"));
        assert!(full(r"a\.b").is_match("a.b"));
        assert!(full(r"\!").is_match("!"));
    }

    #[test]
    fn malformed_patterns_are_rejected() {
        assert!(translate("[abc").is_err());
        assert!(translate("[z-a]").is_err());
        assert!(translate(r"abc\").is_err());
        assert!(translate(r"[\q]").is_err());
        assert!(translate(r"[a-\d]").is_err());
    }

    /// Constructs the `regex` crate accepts and Go rejects (so Alertmanager
    /// refuses the config): nested repetition, flags other than `imsU`,
    /// repeat counts over 1000.
    #[test]
    fn what_go_rejects_is_rejected() {
        for p in [
            "a**",
            "a+*",
            "a*?+",
            "a???",
            "a{2}{3}",
            "a{2}*",
            "(?x)a",
            "(?u:a)",
            "(?R)a",
            "a{1001}",
            "a{2,1001}",
            "a{3,2}",
        ] {
            assert!(translate(p).is_err(), "{p:?} should be rejected");
        }
        for p in [
            "a*?",
            "a+?",
            "a??",
            "a{2}?",
            "(?i)a",
            "(?-s:a.)",
            "(?U)a*",
            "(?P<n>a)",
            "(?<n>a)",
            "(?:a)*",
            "a{1000}",
            "a{0,1000}",
            "a{,3}*",
            r"\**",
            "[*]*",
        ] {
            assert!(translate(p).is_ok(), "{p:?} should be accepted");
            Regex::new(&format!("^(?:{})$", translate(p).unwrap_or_default()))
                .unwrap_or_else(|e| panic!("{p:?}: {e}"));
        }
    }

    #[test]
    fn plain_patterns_pass_through() {
        assert_eq!(
            translate("critical|warning").as_deref(),
            Ok("critical|warning")
        );
        assert_eq!(translate("(?i)foo.*").as_deref(), Ok("(?i)foo.*"));
        assert_eq!(translate("baseline.*").as_deref(), Ok("baseline.*"));
    }
}

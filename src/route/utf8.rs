//! Alertmanager's UTF-8 matcher parser (`matcher/parse`, Alertmanager ≥ 0.27).
//!
//! Reimplemented from its documented grammar, lexer rules and test table,
//! with the same results and the same error texts (`0:8: }: expected opening
//! brace`), which Alertmanager's fallback mode puts in its warning:
//!
//! - tokens: `{`, `}`, `,`, `=`, `!=`, `=~`, `!~`, a double-quoted string
//!   (decoded like a Go string literal, must be valid UTF-8), or an unquoted
//!   run of characters other than white space and ``{}!=~,\"'` ``; white space
//!   between tokens is skipped, any other character is invalid input;
//! - `[ "{" ] [ matcher { "," matcher } [ "," ] ] [ "}" ]`, braces paired,
//!   with `matcher = name op value` and name / value quoted or unquoted.

use super::matcher::{MatchOp, Matcher};

/// The characters that end an unquoted token (and are invalid on their own,
/// except the operators' `=` and `!`).
pub fn is_reserved(c: char) -> bool {
    c.is_whitespace() || "{}!=~,\\\"'`".contains(c)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Eof,
    OpenBrace,
    CloseBrace,
    Comma,
    Equals,
    NotEquals,
    Matches,
    NotMatches,
    Quoted,
    Unquoted,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
    /// Columns count characters, as the reference lexer does.
    col_start: usize,
    col_end: usize,
}

#[derive(Clone)]
struct Lexer<'a> {
    input: &'a str,
    /// Byte offsets of the current token's start and of the cursor.
    start: usize,
    pos: usize,
    /// Character columns of the same.
    column: usize,
    cols: usize,
    /// A lexing error is sticky: every later scan returns it.
    err: Option<String>,
}

impl<'a> Lexer<'a> {
    fn new(input: &'a str) -> Self {
        Self {
            input,
            start: 0,
            pos: 0,
            column: 0,
            cols: 0,
            err: None,
        }
    }

    fn peek_char(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek_char() {
            self.pos += c.len_utf8();
            self.cols += 1;
        }
    }

    fn emit(&mut self, kind: Kind) -> Token<'a> {
        let t = Token {
            kind,
            text: &self.input[self.start..self.pos],
            col_start: self.column,
            col_end: self.cols,
        };
        self.start = self.pos;
        self.column = self.cols;
        t
    }

    fn here(&self) -> String {
        format!("{}:{}", self.column, self.cols)
    }

    fn scan(&mut self) -> Result<Token<'a>, String> {
        if let Some(e) = &self.err {
            return Err(e.clone());
        }
        let result = self.scan_inner();
        if let Err(e) = &result {
            self.err = Some(e.clone());
        }
        result
    }

    fn scan_inner(&mut self) -> Result<Token<'a>, String> {
        while let Some(c) = self.peek_char() {
            match c {
                '{' | '}' | ',' => {
                    self.bump();
                    return Ok(self.emit(match c {
                        '{' => Kind::OpenBrace,
                        '}' => Kind::CloseBrace,
                        _ => Kind::Comma,
                    }));
                }
                '=' | '!' => return self.scan_operator(),
                '"' => return self.scan_quoted(),
                c if !is_reserved(c) => {
                    while self.peek_char().is_some_and(|c| !is_reserved(c)) {
                        self.bump();
                    }
                    return Ok(self.emit(Kind::Unquoted));
                }
                c if c.is_whitespace() => {
                    self.bump();
                    self.start = self.pos;
                    self.column = self.cols;
                }
                _ => {
                    self.bump();
                    return Err(format!(
                        "{}: {}: invalid input",
                        self.here(),
                        &self.input[self.start..self.pos]
                    ));
                }
            }
        }
        Ok(Token {
            kind: Kind::Eof,
            text: "",
            col_start: self.column,
            col_end: self.cols,
        })
    }

    fn expected(&self, expected: &str) -> String {
        if self.pos >= self.input.len() {
            format!(
                "{}: unexpected end of input, expected one of '{expected}'",
                self.here()
            )
        } else {
            format!(
                "{}: {}: expected one of '{expected}'",
                self.here(),
                &self.input[self.start..self.pos]
            )
        }
    }

    fn scan_operator(&mut self) -> Result<Token<'a>, String> {
        if self.peek_char() == Some('!') {
            self.bump();
            return match self.peek_char() {
                Some('=') => {
                    self.bump();
                    Ok(self.emit(Kind::NotEquals))
                }
                Some('~') => {
                    self.bump();
                    Ok(self.emit(Kind::NotMatches))
                }
                _ => Err(self.expected("=~")),
            };
        }
        // The caller saw '='.
        self.bump();
        if self.peek_char() == Some('~') {
            self.bump();
            return Ok(self.emit(Kind::Matches));
        }
        Ok(self.emit(Kind::Equals))
    }

    fn scan_quoted(&mut self) -> Result<Token<'a>, String> {
        self.bump(); // the opening quote
        let mut escaped = false;
        while let Some(c) = self.peek_char() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                self.bump();
                return Ok(self.emit(Kind::Quoted));
            }
            self.bump();
        }
        Err(format!(
            "{}: {}: missing end \"",
            self.here(),
            &self.input[self.start..self.pos]
        ))
    }

    /// The next token without consuming it (a lexing error stays sticky).
    fn peek(&mut self) -> Result<Token<'a>, String> {
        let saved = (self.start, self.pos, self.column, self.cols);
        let t = self.scan();
        (self.start, self.pos, self.column, self.cols) = saved;
        t
    }
}

const END_OF_INPUT: &str = "end of input";

/// The next token if it is one of `kinds` (consumed), else the error text.
fn expect<'a>(l: &mut Lexer<'a>, kinds: &[Kind]) -> Result<Token<'a>, String> {
    let t = expect_peek(l, kinds)?;
    l.scan()?;
    Ok(t)
}

fn expect_peek<'a>(l: &mut Lexer<'a>, kinds: &[Kind]) -> Result<Token<'a>, String> {
    let t = l.peek()?;
    if t.kind == Kind::Eof {
        return Err(END_OF_INPUT.into());
    }
    if !kinds.contains(&t.kind) {
        return Err(format!(
            "{}:{}: unexpected {}",
            t.col_start, t.col_end, t.text
        ));
    }
    Ok(t)
}

fn unquote(t: &Token<'_>) -> Result<String, String> {
    let invalid = || format!("{}:{}: {}: invalid input", t.col_start, t.col_end, t.text);
    if t.kind != Kind::Quoted {
        return Ok(t.text.to_string());
    }
    go_unquote(t.text).ok_or_else(invalid)
}

/// `matcher/parse.Matchers`: the matchers, or Alertmanager's error text.
pub fn parse_matchers(input: &str) -> Result<Vec<Matcher>, String> {
    let mut l = Lexer::new(input);
    let mut out = Vec::new();
    // Optional opening brace.
    let first = l.peek()?;
    if first.kind == Kind::Eof {
        return parse_eof(&mut l).map(|()| out);
    }
    let has_open_brace = first.kind == Kind::OpenBrace;
    if has_open_brace {
        l.scan()?;
    }
    let next = l.peek()?;
    if next.kind == Kind::Eof || next.kind == Kind::CloseBrace {
        return parse_close_brace(&mut l, has_open_brace).map(|()| out);
    }
    loop {
        // A matcher.
        let t = expect(&mut l, &[Kind::Quoted, Kind::Unquoted])
            .map_err(|e| format!("{e}: expected label name"))?;
        let name = unquote(&t)?;
        let t = expect(
            &mut l,
            &[
                Kind::Equals,
                Kind::NotEquals,
                Kind::Matches,
                Kind::NotMatches,
            ],
        )
        .map_err(|e| format!("{e}: expected an operator such as '=', '!=', '=~' or '!~'"))?;
        let op = match t.kind {
            Kind::NotEquals => MatchOp::NotEqual,
            Kind::Matches => MatchOp::Regex,
            Kind::NotMatches => MatchOp::NotRegex,
            _ => MatchOp::Equal,
        };
        let t = expect(&mut l, &[Kind::Unquoted, Kind::Quoted])
            .map_err(|e| format!("{e}: expected label value"))?;
        let value = unquote(&t)?;
        let m = Matcher::new(name, op, value)
            .map_err(|e| format!("failed to create matcher: {}", e.go_message()))?;
        out.push(m);
        // End of the matcher: a comma, a closing brace or the end.
        let t = match expect_peek(&mut l, &[Kind::Comma, Kind::CloseBrace]) {
            Ok(t) => t,
            Err(e) if e == END_OF_INPUT => {
                return parse_close_brace(&mut l, has_open_brace).map(|()| out)
            }
            Err(e) => return Err(format!("{e}: expected a comma or close brace")),
        };
        if t.kind == Kind::CloseBrace {
            return parse_close_brace(&mut l, has_open_brace).map(|()| out);
        }
        expect(&mut l, &[Kind::Comma]).map_err(|e| format!("{e}: expected a comma"))?;
        match expect_peek(&mut l, &[Kind::CloseBrace, Kind::Unquoted, Kind::Quoted]) {
            Ok(t) if t.kind == Kind::CloseBrace => {
                return parse_close_brace(&mut l, has_open_brace).map(|()| out)
            }
            Ok(_) => {}
            Err(e) if e == END_OF_INPUT => {
                return parse_close_brace(&mut l, has_open_brace).map(|()| out)
            }
            Err(e) => {
                return Err(format!(
                    "{e}: expected a matcher or close brace after comma"
                ))
            }
        }
    }
}

fn parse_close_brace(l: &mut Lexer<'_>, has_open_brace: bool) -> Result<(), String> {
    if has_open_brace {
        if let Err(e) = expect(l, &[Kind::CloseBrace]) {
            return Err(format!("0:{}: {e}: expected close brace", l.cols));
        }
    } else if expect(l, &[Kind::CloseBrace]).is_ok() {
        return Err(format!("0:{}: }}: expected opening brace", l.cols));
    }
    parse_eof(l)
}

fn parse_eof(l: &mut Lexer<'_>) -> Result<(), String> {
    let t = l
        .scan()
        .map_err(|e| format!("{e}: expected end of input"))?;
    if t.kind != Kind::Eof {
        return Err(format!(
            "{}:{}: {}: expected end of input",
            t.col_start, t.col_end, t.text
        ));
    }
    Ok(())
}

/// Go's `strconv.Unquote` for a double-quoted literal, then the UTF-8 check
/// of the matcher parser: `None` when Go would fail either.
///
/// Escapes: `\a \b \f \n \r \t \v \\ \"`, `\xHH` and `\OOO` (one byte each),
/// `\uHHHH`, `\UHHHHHHHH` (a valid code point). A raw newline, `\'` and any
/// other escape are errors.
pub fn go_unquote(quoted: &str) -> Option<String> {
    let body = quoted.strip_prefix('"')?.strip_suffix('"')?;
    if body.contains('\n') {
        return None;
    }
    let mut bytes: Vec<u8> = Vec::with_capacity(body.len());
    let mut chars = body.chars();
    let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            v = v * 16 + chars.next()?.to_digit(16)?;
        }
        Some(v)
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => return None,
            '\\' => {}
            c => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
        }
        let byte = |b: u8, bytes: &mut Vec<u8>| bytes.push(b);
        match chars.next()? {
            'a' => byte(7, &mut bytes),
            'b' => byte(8, &mut bytes),
            'f' => byte(12, &mut bytes),
            'n' => byte(b'\n', &mut bytes),
            'r' => byte(b'\r', &mut bytes),
            't' => byte(b'\t', &mut bytes),
            'v' => byte(11, &mut bytes),
            '\\' => byte(b'\\', &mut bytes),
            '"' => byte(b'"', &mut bytes),
            'x' => byte(u8::try_from(hex(&mut chars, 2)?).ok()?, &mut bytes),
            d @ '0'..='7' => {
                let mut v = d.to_digit(8)?;
                for _ in 0..2 {
                    v = v * 8 + chars.next()?.to_digit(8)?;
                }
                byte(u8::try_from(v).ok()?, &mut bytes);
            }
            u @ ('u' | 'U') => {
                let v = hex(&mut chars, if u == 'u' { 4 } else { 8 })?;
                let c = char::from_u32(v)?;
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok()
}

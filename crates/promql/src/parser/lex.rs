//! The PromQL lexer: turns the query text into tokens with byte offsets.
//!
//! It is a small state machine like Prometheus's: inside `{...}` keywords
//! are plain identifiers and `=~`/`!~` exist; inside `[...]` only duration
//! arithmetic is allowed; parentheses and brackets are counted so that an
//! unclosed one is reported at the end of the input. The lexer stops at the
//! first error, which becomes the last token ([`Tok::Error`]) and is reported
//! by the parser only when it gets there, as Prometheus's parser does.

/// A keyword (case-insensitive in the text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kw {
    And,
    Or,
    Unless,
    Atan2,
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    CountValues,
    Quantile,
    Limitk,
    LimitRatio,
    Offset,
    Smoothed,
    Anchored,
    By,
    Without,
    On,
    Ignoring,
    GroupLeft,
    GroupRight,
    Fill,
    FillLeft,
    FillRight,
    Bool,
    Start,
    End,
    Step,
    Range,
    MaxOf,
    MinOf,
}

impl Kw {
    fn lookup(word: &str) -> Option<Kw> {
        Some(match word.to_ascii_lowercase().as_str() {
            "and" => Kw::And,
            "or" => Kw::Or,
            "unless" => Kw::Unless,
            "atan2" => Kw::Atan2,
            "sum" => Kw::Sum,
            "avg" => Kw::Avg,
            "count" => Kw::Count,
            "min" => Kw::Min,
            "max" => Kw::Max,
            "group" => Kw::Group,
            "stddev" => Kw::Stddev,
            "stdvar" => Kw::Stdvar,
            "topk" => Kw::Topk,
            "bottomk" => Kw::Bottomk,
            "count_values" => Kw::CountValues,
            "quantile" => Kw::Quantile,
            "limitk" => Kw::Limitk,
            "limit_ratio" => Kw::LimitRatio,
            "offset" => Kw::Offset,
            "smoothed" => Kw::Smoothed,
            "anchored" => Kw::Anchored,
            "by" => Kw::By,
            "without" => Kw::Without,
            "on" => Kw::On,
            "ignoring" => Kw::Ignoring,
            "group_left" => Kw::GroupLeft,
            "group_right" => Kw::GroupRight,
            "fill" => Kw::Fill,
            "fill_left" => Kw::FillLeft,
            "fill_right" => Kw::FillRight,
            "bool" => Kw::Bool,
            "start" => Kw::Start,
            "end" => Kw::End,
            "step" => Kw::Step,
            "range" => Kw::Range,
            "max_of" => Kw::MaxOf,
            "min_of" => Kw::MinOf,
            _ => return None,
        })
    }

    /// The keyword spelled `word`, if any (tests).
    #[cfg(test)]
    pub(crate) fn lookup_pub(word: &str) -> Option<Kw> {
        Kw::lookup(word)
    }

    /// Aggregation operators.
    pub(crate) fn is_aggregator(self) -> bool {
        matches!(
            self,
            Kw::Sum
                | Kw::Avg
                | Kw::Count
                | Kw::Min
                | Kw::Max
                | Kw::Group
                | Kw::Stddev
                | Kw::Stdvar
                | Kw::Topk
                | Kw::Bottomk
                | Kw::CountValues
                | Kw::Quantile
                | Kw::Limitk
                | Kw::LimitRatio
        )
    }

    /// Keywords proper (Prometheus prints them as `<word>` in errors).
    fn is_keyword(self) -> bool {
        matches!(
            self,
            Kw::Offset
                | Kw::Smoothed
                | Kw::Anchored
                | Kw::By
                | Kw::Without
                | Kw::On
                | Kw::Ignoring
                | Kw::GroupLeft
                | Kw::GroupRight
                | Kw::Fill
                | Kw::FillLeft
                | Kw::FillRight
                | Kw::Bool
        )
    }
}

/// A token kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Eof,
    /// A lexing error; the message is Prometheus's.
    Error(String),
    Comma,
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Colon,
    At,
    /// `=`
    Eql,
    /// `==`
    EqlC,
    Neq,
    EqlRegex,
    NeqRegex,
    Lss,
    Gtr,
    Lte,
    Gte,
    /// `</`
    TrimUpper,
    /// `>/`
    TrimLower,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Number,
    Duration,
    /// A quoted string, still with its quotes.
    Str,
    Ident,
    /// An identifier containing `:`.
    MetricIdent,
    Kw(Kw),
}

/// A token: kind and byte range in the input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
}

impl Token {
    /// The token's text.
    pub(crate) fn text<'a>(&self, input: &'a str) -> &'a str {
        input.get(self.start..self.end).unwrap_or("")
    }

    /// How Prometheus describes the token after "unexpected ".
    pub(crate) fn describe(&self, input: &str) -> String {
        let val = self.text(input);
        match &self.tok {
            Tok::Eof => "end of input".into(),
            Tok::Error(m) => m.clone(),
            Tok::Ident => format!("identifier {}", go_quote(val)),
            Tok::MetricIdent => format!("metric identifier {}", go_quote(val)),
            Tok::Number => format!("number {}", short_quote(val)),
            Tok::Duration => format!("duration {}", short_quote(val)),
            Tok::Str => format!("string {}", short_quote(val)),
            Tok::Kw(k) if k.is_keyword() => format!("<{val}>"),
            Tok::Kw(k) if k.is_aggregator() => format!("<aggr:{val}>"),
            Tok::Kw(Kw::And | Kw::Or | Kw::Unless | Kw::Atan2) => format!("<op:{val}>"),
            Tok::Kw(_) => short_quote(val),
            Tok::Eql
            | Tok::EqlC
            | Tok::Neq
            | Tok::EqlRegex
            | Tok::NeqRegex
            | Tok::Lss
            | Tok::Gtr
            | Tok::Lte
            | Tok::Gte
            | Tok::TrimUpper
            | Tok::TrimLower
            | Tok::Add
            | Tok::Sub
            | Tok::Mul
            | Tok::Div
            | Tok::Mod
            | Tok::Pow
            | Tok::At
                if self.tok != Tok::Eql =>
            {
                format!("<op:{val}>")
            }
            _ => short_quote(val),
        }
    }
}

/// Go's `%q` of a string (our strings mark invalid bytes, see
/// [`super::raw_byte`]).
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if let Some(b) = super::raw_byte(c) {
            out.push_str(&format!("\\x{b:02x}"));
            continue;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%q`, cut to 10 characters with `...` (as Prometheus's item
/// printing of long values).
fn short_quote(s: &str) -> String {
    if s.chars().count() > 10 {
        let cut: String = s.chars().take(10).collect();
        format!("{}...", go_quote(&cut))
    } else {
        go_quote(s)
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn is_alpha(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_alnum(c: char) -> bool {
    is_alpha(c) || c.is_ascii_digit()
}

/// Lexer state.
struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    start: usize,
    paren_depth: i64,
    brace_open: bool,
    bracket_open: bool,
    got_colon: bool,
    got_duration: bool,
    /// Inside `[` before anything but spaces was read: duration mode.
    in_duration: bool,
    out: Vec<Token>,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.peek() {
            Some(c) if valid.contains(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn is(&self, valid: &str) -> bool {
        self.peek().is_some_and(|c| valid.contains(c))
    }

    fn emit(&mut self, tok: Tok) {
        self.out.push(Token {
            tok,
            start: self.start,
            end: self.pos,
        });
        self.start = self.pos;
    }

    /// Ends lexing with an error at the start of the current item.
    fn error(&mut self, msg: String) {
        let start = self.start;
        self.out.push(Token {
            tok: Tok::Error(msg),
            start,
            end: self.input.len(),
        });
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
        self.start = self.pos;
    }

    /// Runs to the end or the first error.
    fn run(&mut self) {
        loop {
            let go_on = if self.brace_open {
                self.inside_braces()
            } else if self.in_duration {
                self.duration_expr()
            } else {
                self.statements()
            };
            if !go_on {
                return;
            }
        }
    }

    fn comment(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' || c == '\r' {
                break;
            }
            self.pos += c.len_utf8();
        }
        self.start = self.pos;
    }

    /// The top-level state; false when lexing is over.
    fn statements(&mut self) -> bool {
        if self.input[self.pos..].starts_with('#') {
            self.comment();
            return true;
        }
        let Some(c) = self.next() else {
            if self.paren_depth != 0 {
                self.error("unclosed left parenthesis".into());
            } else if self.bracket_open {
                self.error("unclosed left bracket".into());
            } else {
                self.emit(Tok::Eof);
            }
            return false;
        };
        match c {
            ',' => self.emit(Tok::Comma),
            c if is_space(c) => self.skip_spaces(),
            '*' => self.emit(Tok::Mul),
            '/' => self.emit(Tok::Div),
            '%' => self.emit(Tok::Mod),
            '+' => self.emit(Tok::Add),
            '-' => self.emit(Tok::Sub),
            '^' => self.emit(Tok::Pow),
            '=' => match self.peek() {
                Some('=') => {
                    self.next();
                    self.emit(Tok::EqlC);
                }
                Some('~') => {
                    self.error("unexpected character after '=': '~'".into());
                    return false;
                }
                _ => self.emit(Tok::Eql),
            },
            '!' => match self.next() {
                Some('=') => self.emit(Tok::Neq),
                t => {
                    self.error(format!("unexpected character after '!': {}", go_char(t)));
                    return false;
                }
            },
            '<' => match self.peek() {
                Some('=') => {
                    self.next();
                    self.emit(Tok::Lte);
                }
                Some('/') => {
                    self.next();
                    self.emit(Tok::TrimUpper);
                }
                _ => self.emit(Tok::Lss),
            },
            '>' => match self.peek() {
                Some('=') => {
                    self.next();
                    self.emit(Tok::Gte);
                }
                Some('/') => {
                    self.next();
                    self.emit(Tok::TrimLower);
                }
                _ => self.emit(Tok::Gtr),
            },
            c if c.is_ascii_digit()
                || (c == '.' && self.peek().is_some_and(|d| d.is_ascii_digit())) =>
            {
                self.pos = self.start;
                return self.number_or_duration();
            }
            '"' | '\'' => return self.string(c),
            '`' => return self.raw_string(),
            c if is_alpha(c) || c == ':' => {
                if !self.bracket_open {
                    self.pos = self.start;
                    self.keyword_or_identifier();
                    return true;
                }
                if c == ':' {
                    if self.got_colon {
                        self.error("unexpected colon ':'".into());
                        return false;
                    }
                    self.emit(Tok::Colon);
                    self.got_colon = true;
                    return true;
                }
                if self.duration_keyword() {
                    return true;
                }
                self.error(format!(
                    "unexpected character: {}, expected ':'",
                    go_char(Some(c))
                ));
                return false;
            }
            '(' => {
                self.emit(Tok::LParen);
                self.paren_depth += 1;
            }
            ')' => {
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    // Prometheus's error replaces the token, reported
                    // after it.
                    self.start = self.pos;
                    self.error("unexpected right parenthesis ')'".into());
                    return false;
                }
                self.emit(Tok::RParen);
            }
            '{' => {
                self.emit(Tok::LBrace);
                self.brace_open = true;
            }
            '[' => {
                if self.bracket_open {
                    self.error("unexpected left bracket '['".into());
                    return false;
                }
                self.got_colon = false;
                self.emit(Tok::LBracket);
                self.skip_spaces();
                self.bracket_open = true;
                self.in_duration = true;
            }
            ']' => {
                if !self.bracket_open {
                    self.error("unexpected right bracket ']'".into());
                    return false;
                }
                self.emit(Tok::RBracket);
                self.bracket_open = false;
            }
            '@' => self.emit(Tok::At),
            c => {
                self.error(format!("unexpected character: {}", go_char(Some(c))));
                return false;
            }
        }
        true
    }

    /// The state right after `[` (and after operators inside it).
    fn duration_expr(&mut self) -> bool {
        let Some(c) = self.next() else {
            self.error("unexpected end of input in duration expression".into());
            return false;
        };
        match c {
            ']' => {
                self.emit(Tok::RBracket);
                self.bracket_open = false;
                self.got_colon = false;
                self.in_duration = false;
            }
            ':' => {
                let msg = if !self.got_duration {
                    "unexpected colon before duration in duration expression"
                } else if self.got_colon {
                    "unexpected repeated colon in duration expression"
                } else {
                    self.emit(Tok::Colon);
                    self.got_colon = true;
                    return true;
                };
                self.start = self.pos;
                self.error(msg.into());
                return false;
            }
            '(' => {
                self.emit(Tok::LParen);
                self.paren_depth += 1;
            }
            ')' => {
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    // Prometheus's error replaces the token, reported
                    // after it.
                    self.start = self.pos;
                    self.error("unexpected right parenthesis ')'".into());
                    return false;
                }
                self.emit(Tok::RParen);
            }
            c if is_space(c) => self.skip_spaces(),
            '+' => self.emit(Tok::Add),
            '-' => self.emit(Tok::Sub),
            '*' => self.emit(Tok::Mul),
            '/' => self.emit(Tok::Div),
            '%' => self.emit(Tok::Mod),
            '^' => self.emit(Tok::Pow),
            ',' => self.emit(Tok::Comma),
            c if is_alpha(c) && self.duration_keyword() => {}
            c if c.is_ascii_digit()
                || (c == '.' && self.peek().is_some_and(|d| d.is_ascii_digit())) =>
            {
                self.pos = self.start;
                self.got_duration = true;
                self.in_duration = false;
                return self.number_or_duration();
            }
            c => {
                self.error(format!(
                    "unexpected character in duration expression: {}",
                    go_char(Some(c))
                ));
                return false;
            }
        }
        true
    }

    /// After its first letter was read: `step`, `range`, `max_of`, `min_of`.
    fn duration_keyword(&mut self) -> bool {
        let first = self.input[self.start..].chars().next();
        if !first.is_some_and(|c| matches!(c.to_ascii_lowercase(), 's' | 'r' | 'm')) {
            return false;
        }
        while self.peek().is_some_and(is_alpha) {
            self.next();
        }
        let word = self.input[self.start..self.pos].to_ascii_lowercase();
        let kw = match word.as_str() {
            "step" => Kw::Step,
            "range" => Kw::Range,
            "max_of" => Kw::MaxOf,
            "min_of" => Kw::MinOf,
            _ => {
                self.pos = self.start + 1;
                return false;
            }
        };
        self.emit(Tok::Kw(kw));
        true
    }

    fn keyword_or_identifier(&mut self) {
        while self.peek().is_some_and(|c| is_alnum(c) || c == ':') {
            self.next();
        }
        let word = &self.input[self.start..self.pos];
        let lower = word.to_ascii_lowercase();
        if lower == "inf" || lower == "nan" {
            self.emit(Tok::Number);
            return;
        }
        match Kw::lookup(word) {
            Some(k @ (Kw::Fill | Kw::FillLeft | Kw::FillRight)) => {
                let rest = self.input[self.pos..].trim_start_matches(is_space);
                if rest.starts_with('(') {
                    self.emit(Tok::Kw(k));
                } else {
                    self.emit(Tok::Ident);
                }
            }
            Some(k) => self.emit(Tok::Kw(k)),
            None if word.contains(':') => self.emit(Tok::MetricIdent),
            None => self.emit(Tok::Ident),
        }
    }

    fn identifier(&mut self) {
        while self.peek().is_some_and(is_alnum) {
            self.next();
        }
        self.emit(Tok::Ident);
    }

    fn inside_braces(&mut self) -> bool {
        if self.input[self.pos..].starts_with('#') {
            self.comment();
            return true;
        }
        let Some(c) = self.next() else {
            self.error("unexpected end of input inside braces".into());
            return false;
        };
        match c {
            c if is_space(c) => self.skip_spaces(),
            c if is_alpha(c) => {
                self.pos = self.start;
                self.identifier();
            }
            ',' => self.emit(Tok::Comma),
            '"' | '\'' => return self.string(c),
            '`' => return self.raw_string(),
            '=' => {
                if self.peek() == Some('~') {
                    self.next();
                    self.emit(Tok::EqlRegex);
                } else {
                    self.emit(Tok::Eql);
                }
            }
            '!' => match self.next() {
                Some('~') => self.emit(Tok::NeqRegex),
                Some('=') => self.emit(Tok::Neq),
                t => {
                    self.error(format!(
                        "unexpected character after '!' inside braces: {}",
                        go_char(t)
                    ));
                    return false;
                }
            },
            '{' => {
                self.error("unexpected left brace '{'".into());
                return false;
            }
            '}' => {
                self.emit(Tok::RBrace);
                self.brace_open = false;
            }
            c => {
                self.error(format!(
                    "unexpected character inside braces: {}",
                    go_char(Some(c))
                ));
                return false;
            }
        }
        true
    }

    /// A quoted string whose opening quote was read.
    fn string(&mut self, quote: char) -> bool {
        loop {
            match self.next() {
                Some('\\') => {
                    if let Err(m) = self.escape(quote) {
                        self.error(m);
                        return false;
                    }
                }
                Some('\u{FFFD}') => {
                    self.error("invalid UTF-8 rune".into());
                    return false;
                }
                None | Some('\n') => {
                    self.error("unterminated quoted string".into());
                    return false;
                }
                Some(c) if c == quote => break,
                Some(_) => {}
            }
        }
        self.emit(Tok::Str);
        true
    }

    fn escape(&mut self, quote: char) -> Result<(), String> {
        let c = self.next();
        let (mut n, base, max): (u32, u32, u32) = match c {
            Some('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\') => return Ok(()),
            Some(c) if c == quote => return Ok(()),
            Some('0'..='7') => (3, 8, 255),
            Some('x') => (2, 16, 255),
            Some('u') => (4, 16, 0x10FFFF),
            Some('U') => (8, 16, 0x10FFFF),
            None => return Err("escape sequence not terminated".into()),
            Some(c) => return Err(format!("unknown escape sequence {}", go_unicode(c))),
        };
        let mut ch = if matches!(c, Some('x' | 'u' | 'U')) {
            self.next()
        } else {
            c
        };
        let mut x: u32 = 0;
        while n > 0 {
            let d = ch.and_then(|c| c.to_digit(16)).unwrap_or(16);
            if d >= base {
                return Err(match ch {
                    None => "escape sequence not terminated".into(),
                    Some(c) => format!("illegal character {} in escape sequence", go_unicode(c)),
                });
            }
            x = x.wrapping_mul(base).wrapping_add(d);
            n -= 1;
            if n > 0 {
                ch = self.next();
            }
        }
        if x > max || (0xD800..0xE000).contains(&x) {
            return Err("escape sequence is an invalid Unicode code point".into());
        }
        Ok(())
    }

    fn raw_string(&mut self) -> bool {
        loop {
            match self.next() {
                Some('\u{FFFD}') => {
                    self.error("invalid UTF-8 rune".into());
                    return false;
                }
                None => {
                    self.error("unterminated raw string".into());
                    return false;
                }
                Some('`') => break,
                Some(_) => {}
            }
        }
        self.emit(Tok::Str);
        true
    }

    fn number_or_duration(&mut self) -> bool {
        if self.scan_number() {
            self.emit(Tok::Number);
            return true;
        }
        if self.remaining_duration() {
            self.emit(Tok::Duration);
            return true;
        }
        let text = self.input[self.start..self.pos].to_string();
        self.error(format!(
            "bad number or duration syntax: {}",
            go_quote(&text)
        ));
        false
    }

    /// Continues a duration after its first number; true when it ends well.
    fn remaining_duration(&mut self) -> bool {
        if !self.accept("smhdwy") {
            return false;
        }
        self.accept("s");
        while self.accept("0123456789") {
            while self.accept("0123456789") {}
            if !self.accept("smhdw") {
                return false;
            }
            self.accept("s");
        }
        match self.peek() {
            Some(c) if is_alnum(c) => {
                self.next();
                false
            }
            _ => true,
        }
    }

    /// Prometheus's number scanner (decimal, hex, `_` separators, exponents).
    fn scan_number(&mut self) -> bool {
        let initial = self.pos;
        let mut digits = "0123456789";
        if self.accept("0") && self.accept("xX") {
            self.accept("_");
            digits = "0123456789abcdefABCDEF";
        }
        self.accept(".");
        self.accept(digits);
        let mut dot = false;
        let mut exp = false;
        let all = format!("{digits}._eE");
        while self.is(&all) {
            if self.is(".") && dot {
                self.accept(".");
                return false;
            }
            if self.is("eE") && exp {
                self.accept("eE");
                return false;
            }
            if self.accept(".") {
                dot = true;
                if self.accept("_.") || digits.len() > 10 {
                    return false;
                }
                continue;
            }
            if self.accept("eE") {
                exp = true;
                self.accept("+-");
                if self.accept("._eE") || self.peek().is_none() {
                    return false;
                }
                continue;
            }
            if self.accept("_") {
                if self.accept("._eE") || self.peek().is_none() {
                    return false;
                }
                continue;
            }
            while self.accept(digits) {}
        }
        if self.pos == initial {
            return false;
        }
        !self.peek().is_some_and(is_alnum)
    }
}

/// Go's `%q` of a rune (`'x'`), or `EOF`-like for the end.
fn go_char(c: Option<char>) -> String {
    match c {
        None => "'\\x00'".into(),
        Some('\'') => "'\\''".into(),
        Some(c) => {
            let q = go_quote(&c.to_string());
            let inner = &q[1..q.len() - 1];
            let inner = if inner == "\\\"" { "\"" } else { inner };
            format!("'{inner}'")
        }
    }
}

/// Go's `%#U` of a rune (`U+0071 'q'`).
fn go_unicode(c: char) -> String {
    if c.is_control() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("U+{:04X} '{c}'", c as u32)
    }
}

/// Lexes the whole input. The last token is [`Tok::Eof`] or [`Tok::Error`].
pub(crate) fn lex(input: &str) -> Vec<Token> {
    let mut l = Lexer {
        input,
        pos: 0,
        start: 0,
        paren_depth: 0,
        brace_open: false,
        bracket_open: false,
        got_colon: false,
        got_duration: false,
        in_duration: false,
        out: Vec::new(),
    };
    l.run();
    l.out
}

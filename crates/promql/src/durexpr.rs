//! Duration expressions (Prometheus's experimental `promql-duration-expr`):
//! arithmetic in range selectors, subquery ranges and steps, and offsets
//! (`foo[5m+30s]`, `foo[1h/2:step()]`, `foo offset (2*1m)`,
//! `foo offset -step()`).
//!
//! promql-parser 0.11 only takes duration literals there, so the query text
//! is rewritten before parsing: each such expression is evaluated (numbers
//! are seconds, durations are converted to seconds, `step()` and `range()`
//! are the query's step and `end - start`, `min_of`/`max_of` pick) and
//! replaced by a literal in milliseconds. As in Prometheus's grammar, an
//! offset without parentheses takes one signed operand only:
//! `foo offset 2 ^ 2` is `(foo offset 2) ^ 2`.

/// Query parameters duration expressions may use (ms).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DurCtx {
    /// The query step (0 for instant queries).
    pub step: i64,
    /// `end - start`.
    pub range: i64,
}

/// Rewrites the duration expressions of `q` into literals. Text outside
/// them is returned unchanged; malformed expressions are left for the
/// parser to reject. Without a context, expressions using `step()` or
/// `range()` are left alone.
pub(crate) fn rewrite(q: &str, ctx: Option<DurCtx>) -> String {
    let b = q.as_bytes();
    let mut out = String::with_capacity(q.len() + 8);
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => {
                i = skip_string(b, i);
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'[' => {
                let Some(end) = q[i..].find(']').map(|e| i + e) else {
                    break;
                };
                let inner = &q[i + 1..end];
                if let Some(new) = rewrite_brackets(inner, ctx) {
                    out.push_str(&q[copied..=i]);
                    out.push_str(&new);
                    copied = end;
                }
                i = end + 1;
            }
            c if (c == b'o' || c == b'O') && is_word_at(q, i, "offset") => {
                let after = i + 6;
                match rewrite_offset(q, after, ctx) {
                    // A zero offset is no offset (the parser rejects `0ms`).
                    Some((end, new)) if new == "0ms" => {
                        out.push_str(&q[copied..i]);
                        copied = end;
                        i = end;
                    }
                    Some((end, new)) => {
                        out.push_str(&q[copied..after]);
                        out.push(' ');
                        out.push_str(&new);
                        copied = end;
                        i = end;
                    }
                    None => i = after,
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&q[copied..]);
    out
}

fn skip_string(b: &[u8], start: usize) -> usize {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && q != b'`' {
            i += 2;
            continue;
        }
        if b[i] == q {
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// Whether the whole word `w` (case-insensitive) starts at `i`.
fn is_word_at(q: &str, i: usize, w: &str) -> bool {
    let b = q.as_bytes();
    let end = i + w.len();
    end <= b.len()
        && q.get(i..end).is_some_and(|x| x.eq_ignore_ascii_case(w))
        && (i == 0 || !is_ident(b[i - 1]))
        && (end == b.len() || !is_ident(b[end]))
}

/// Whether `s` is a plain duration literal (`5m`, `1h30m`, `8000ms`).
fn is_duration_literal(s: &str) -> bool {
    let s = s.trim();
    !s.is_empty() && parse_duration_secs(s).is_some_and(|(_, n)| n == s.len())
}

/// The new contents of `[...]` when a part is an expression.
fn rewrite_brackets(inner: &str, ctx: Option<DurCtx>) -> Option<String> {
    let parts: Vec<&str> = inner.split(':').collect();
    if parts.len() > 2
        || parts
            .iter()
            .all(|p| p.trim().is_empty() || is_duration_literal(p))
    {
        return None;
    }
    let mut out = Vec::new();
    for p in parts {
        if p.trim().is_empty() || is_duration_literal(p) {
            out.push(p.trim().to_string());
            continue;
        }
        let mut parser = Parser {
            s: p.as_bytes(),
            text: p,
            pos: 0,
            ctx,
            depth: 0,
        };
        let v = parser.expr()?;
        parser.ws();
        if parser.pos != p.len() {
            return None;
        }
        out.push(literal(v)?);
    }
    Some(out.join(":"))
}

/// An offset operand starting at `from`: returns where it ends and its
/// literal, when it is more than a (signed) duration literal.
fn rewrite_offset(q: &str, from: usize, ctx: Option<DurCtx>) -> Option<(usize, String)> {
    let mut p = Parser {
        s: q.as_bytes(),
        text: q,
        pos: from,
        ctx,
        depth: 0,
    };
    p.ws();
    let start = p.pos;
    let mut sign = 1.0;
    match p.peek() {
        Some(b'-') => {
            sign = -1.0;
            p.pos += 1;
        }
        Some(b'+') => p.pos += 1,
        _ => {}
    }
    p.ws();
    let operand_start = p.pos;
    let v = p.atom()?;
    let text = &q[operand_start..p.pos];
    if is_duration_literal(text) {
        return None;
    }
    let _ = start;
    Some((p.pos, literal(sign * v)?))
}

/// A duration literal in milliseconds for `secs` seconds.
fn literal(secs: f64) -> Option<String> {
    if !secs.is_finite() {
        return None;
    }
    let ms = (secs * 1000.0).round();
    if ms.abs() > 9.0e15 {
        return None;
    }
    let ms = ms as i64;
    Some(if ms < 0 {
        format!("-{}ms", -ms)
    } else {
        format!("{ms}ms")
    })
}

/// A duration literal at the start of `s`: seconds and bytes used.
fn parse_duration_secs(s: &str) -> Option<(f64, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut total = 0.0;
    let mut any = false;
    loop {
        let st = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == st {
            break;
        }
        let n: f64 = s[st..i].parse().ok()?;
        let (mult, len) = if s[i..].starts_with("ms") {
            (0.001, 2)
        } else {
            match b.get(i) {
                Some(b's') => (1.0, 1),
                Some(b'm') => (60.0, 1),
                Some(b'h') => (3600.0, 1),
                Some(b'd') => (86400.0, 1),
                Some(b'w') => (604800.0, 1),
                Some(b'y') => (31536000.0, 1),
                _ => {
                    i = st;
                    break;
                }
            }
        };
        i += len;
        total += n * mult;
        any = true;
    }
    if !any || (i < b.len() && is_ident(b[i])) {
        return None;
    }
    Some((total, i))
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
    ctx: Option<DurCtx>,
    /// Nesting depth, bounded so hostile input cannot exhaust the stack.
    depth: usize,
}

/// Deepest nesting of parentheses and signs evaluated.
const MAX_DEPTH: usize = 100;

impl Parser<'_> {
    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    /// sum := product (('+' | '-') product)*
    fn expr(&mut self) -> Option<f64> {
        let mut v = self.product()?;
        loop {
            match self.peek() {
                Some(b'+') => {
                    self.pos += 1;
                    v += self.product()?;
                }
                Some(b'-') => {
                    self.pos += 1;
                    v -= self.product()?;
                }
                _ => return Some(v),
            }
        }
    }

    /// product := unary (('*' | '/' | '%') unary)*
    fn product(&mut self) -> Option<f64> {
        let mut v = self.unary()?;
        loop {
            match self.peek() {
                Some(b'*') => {
                    self.pos += 1;
                    v *= self.unary()?;
                }
                Some(b'/') => {
                    self.pos += 1;
                    v /= self.unary()?;
                }
                Some(b'%') => {
                    self.pos += 1;
                    v %= self.unary()?;
                }
                _ => return Some(v),
            }
        }
    }

    /// unary := ('-' | '+') unary | power
    fn unary(&mut self) -> Option<f64> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let r = self.unary_inner();
        self.depth -= 1;
        r
    }

    fn unary_inner(&mut self) -> Option<f64> {
        match self.peek() {
            Some(b'-') => {
                self.pos += 1;
                Some(-self.unary()?)
            }
            Some(b'+') => {
                self.pos += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    /// power := atom ('^' unary)?   (right-associative, above unary minus)
    fn power(&mut self) -> Option<f64> {
        let base = self.atom()?;
        if self.peek() == Some(b'^') {
            self.pos += 1;
            let exp = self.unary()?;
            return Some(base.powf(exp));
        }
        Some(base)
    }

    /// atom := '(' expr ')' | number | duration | step() | range()
    ///       | min_of(expr, expr) | max_of(expr, expr)
    fn atom(&mut self) -> Option<f64> {
        match self.peek()? {
            b'(' => {
                self.pos += 1;
                let v = self.expr()?;
                (self.peek()? == b')').then_some(())?;
                self.pos += 1;
                Some(v)
            }
            c if c.is_ascii_digit() || c == b'.' => {
                let rest = &self.text[self.pos..];
                if let Some((v, n)) = parse_duration_secs(rest) {
                    self.pos += n;
                    return Some(v);
                }
                let n = rest
                    .bytes()
                    .take_while(|c| c.is_ascii_digit() || *c == b'.')
                    .count();
                let v: f64 = rest[..n].parse().ok()?;
                self.pos += n;
                if self.s.get(self.pos).is_some_and(|c| is_ident(*c)) {
                    return None;
                }
                Some(v)
            }
            c if c.is_ascii_alphabetic() => {
                let rest = &self.text[self.pos..];
                let n = rest.bytes().take_while(|c| is_ident(*c)).count();
                let name = rest[..n].to_ascii_lowercase();
                self.pos += n;
                (self.peek()? == b'(').then_some(())?;
                self.pos += 1;
                let v = match name.as_str() {
                    "step" | "range" => {
                        let ctx = self.ctx?;
                        let ms = if name == "step" { ctx.step } else { ctx.range };
                        ms as f64 / 1000.0
                    }
                    "min_of" | "max_of" => {
                        let a = self.expr()?;
                        (self.peek()? == b',').then_some(())?;
                        self.pos += 1;
                        let b = self.expr()?;
                        if name == "min_of" { a.min(b) } else { a.max(b) }
                    }
                    _ => return None,
                };
                (self.peek()? == b')').then_some(())?;
                self.pos += 1;
                Some(v)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: Option<DurCtx> = Some(DurCtx {
        step: 5000,
        range: 10_000,
    });

    #[test]
    fn ranges() {
        assert_eq!(rewrite("a[5m]", CTX), "a[5m]");
        assert_eq!(rewrite("a[26m+4m]", CTX), "a[1800000ms]");
        assert_eq!(rewrite("a[1800]", CTX), "a[1800000ms]");
        assert_eq!(rewrite("a[30m1s-30m1s % 1m]", CTX), "a[1800000ms]");
        assert_eq!(rewrite("a[29s+1s:5s+5s]", CTX), "a[30000ms:10000ms]");
        assert_eq!(rewrite("a[5m:]", CTX), "a[5m:]");
        assert_eq!(rewrite("a[1+(STep()-5)*2]", CTX), "a[1000ms]");
        assert_eq!(
            rewrite("a[max_of(min_of(step()+1,1h),1ms)]", CTX),
            "a[6000ms]"
        );
        assert_eq!(rewrite(r#"a{x="[1+1]"}"#, CTX), r#"a{x="[1+1]"}"#);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(q in "\\PC{0,40}", r in "[a-z\\[\\]()+*/%^:0-9 .-]{0,30}") {
            let _ = rewrite(&q, CTX);
            let _ = rewrite(&format!("x[{r}] offset {r}"), CTX);
            let _ = rewrite(&format!("offseté{r}"), None);
            let deep = format!("x[{}1{}]", "(".repeat(5000), ")".repeat(5000));
            assert_eq!(rewrite(&deep, CTX), deep);
        }
    }

    #[test]
    fn offsets() {
        assert_eq!(rewrite("a offset 5m", CTX), "a offset 5m");
        assert_eq!(rewrite("a offset -5m", CTX), "a offset -5m");
        assert_eq!(rewrite("a offset (100 + 2)", CTX), "a offset 102000ms");
        assert_eq!(rewrite("a offset 100 + 2", CTX), "a offset 100000ms + 2");
        assert_eq!(rewrite("a offset -2 ^ 2", CTX), "a offset -2000ms ^ 2");
        assert_eq!(rewrite("a offset (-2 ^ 2)", CTX), "a offset -4000ms");
        assert_eq!(rewrite("a offset -step()*2", CTX), "a offset -5000ms*2");
        assert_eq!(rewrite("a offset step()", None), "a offset step()");
        assert_eq!(
            rewrite("a offset range() + 1", Some(DurCtx { step: 0, range: 0 })),
            "a  + 1"
        );
        assert_eq!(
            rewrite(r#"sum by (offset) (a)"#, CTX),
            "sum by (offset) (a)"
        );
    }
}

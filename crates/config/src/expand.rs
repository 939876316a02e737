//! Environment references in `external_labels` values, expanded as
//! Prometheus does with Go's `os.Expand`: `$NAME` and `${NAME}` are
//! replaced by the variable (empty when unset), `$$` is a literal `$`, a `$`
//! not followed by a name is kept, and malformed braces (`${}`, an unclosed
//! `${`) are dropped.

/// Expands references in `s` using `lookup`.
pub(crate) fn expand_env(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    if !s.contains('$') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0; // start of the text not yet copied
    let mut j = 0;
    while j < b.len() {
        if b[j] == b'$' && j + 1 < b.len() {
            out.push_str(&s[i..j]);
            let (name, width) = shell_name(&s[j + 1..]);
            match name {
                None if width > 0 => {} // bad syntax: the characters are eaten
                None => out.push('$'),
                Some("$") => out.push('$'),
                Some(n) => out.push_str(&lookup(n).unwrap_or_default()),
            }
            j += width;
            i = j + 1;
        }
        j += 1;
    }
    out.push_str(&s[i.min(s.len())..]);
    out
}

fn is_special(c: u8) -> bool {
    matches!(c, b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-') || c.is_ascii_digit()
}

/// The variable name after a `$` and how many bytes it spans. `(None, n)`
/// with `n > 0` is bad syntax whose `n` bytes are dropped; `(None, 0)` is a
/// `$` that stays literal.
fn shell_name(s: &str) -> (Option<&str>, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_special(b[1]) && b[2] == b'}' {
            return (Some(&s[1..2]), 3);
        }
        for (i, &c) in b.iter().enumerate().skip(1) {
            if c == b'}' {
                if i == 1 {
                    return (None, 2);
                }
                return (Some(&s[1..i]), i + 1);
            }
        }
        return (None, 1);
    }
    if is_special(b[0]) {
        return (Some(&s[0..1]), 1);
    }
    let n = b
        .iter()
        .take_while(|&&c| c == b'_' || c.is_ascii_alphanumeric())
        .count();
    if n == 0 {
        (None, 0)
    } else {
        (Some(&s[..n]), n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TEST" => Some("TestValue".into()),
            "1" => Some("one".into()),
            _ => None,
        }
    }

    #[test]
    fn expansion() {
        let e = |s: &str| expand_env(s, &env);
        assert_eq!(e("plain"), "plain");
        assert_eq!(e("foo${TEST}bar"), "fooTestValuebar");
        assert_eq!(e("$TEST"), "TestValue");
        assert_eq!(e("${UNSET}x"), "x");
        assert_eq!(e("foo$${TEST}"), "foo${TEST}");
        assert_eq!(e("foo$$bar"), "foo$bar");
        assert_eq!(e("a$"), "a$");
        assert_eq!(e("a$-b"), "ab");
        assert_eq!(e("$1x"), "onex");
        assert_eq!(e("x${}y"), "xy");
        assert_eq!(e("x${y"), "xy");
        assert_eq!(e("a$.b"), "a$.b");
        assert_eq!(e("é$TEST€"), "éTestValue€");
    }
}

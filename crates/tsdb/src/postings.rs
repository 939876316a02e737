//! The in-memory postings index: label name -> label value -> sorted list of
//! series references, plus the list of all series.
//!
//! Matchers are resolved the way Prometheus's `PostingsForMatchers` does: a
//! matcher that does not accept the empty string *selects* the series whose
//! label value it accepts (an intersection), while a matcher that accepts the
//! empty string also keeps series lacking the label, so it is applied by
//! *removing* the series whose value it rejects (a subtraction). When no
//! matcher selects, the start set is all series. This needs only the
//! distinct values of each label name, never a scan of all series.

use std::borrow::Cow;
use std::collections::HashMap;

use pharos_model::{Labels, MatchOp, Matcher};
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

type Values = HashMap<Box<str>, Vec<u64>, Xxh3DefaultBuilder>;

/// Label name -> value -> series refs, each list sorted and duplicate-free.
#[derive(Default)]
pub(crate) struct MemPostings {
    all: Vec<u64>,
    by_name: HashMap<Box<str>, Values, Xxh3DefaultBuilder>,
}

/// Inserts `r` keeping `v` sorted; cheap when `r` is the largest, the common
/// case since references grow over time.
fn insert_sorted(v: &mut Vec<u64>, r: u64) {
    match v.last() {
        None => v.push(r),
        Some(&last) if last < r => v.push(r),
        _ => {
            if let Err(i) = v.binary_search(&r) {
                v.insert(i, r);
            }
        }
    }
}

impl MemPostings {
    /// Adds series `r` with `labels`.
    pub(crate) fn add(&mut self, r: u64, labels: &Labels) {
        insert_sorted(&mut self.all, r);
        for l in labels.iter() {
            let values = match self.by_name.get_mut(l.name) {
                Some(v) => v,
                None => self.by_name.entry(l.name.into()).or_default(),
            };
            match values.get_mut(l.value) {
                Some(list) => insert_sorted(list, r),
                None => {
                    values.insert(l.value.into(), vec![r]);
                }
            }
        }
    }

    /// Removes the given series (reference and the labels it was added
    /// with) in one pass per touched list.
    pub(crate) fn remove(&mut self, series: &[(u64, Labels)]) {
        if series.is_empty() {
            return;
        }
        let mut gone: Vec<u64> = series.iter().map(|s| s.0).collect();
        gone.sort_unstable();
        let is_gone = |r: &u64| gone.binary_search(r).is_ok();
        self.all.retain(|r| !is_gone(r));
        let mut touched: Vec<(&str, &str)> = series
            .iter()
            .flat_map(|(_, l)| l.iter().map(|l| (l.name, l.value)))
            .collect();
        touched.sort_unstable();
        touched.dedup();
        for (name, value) in touched {
            let Some(values) = self.by_name.get_mut(name) else {
                continue;
            };
            if let Some(list) = values.get_mut(value) {
                list.retain(|r| !is_gone(r));
                if list.is_empty() {
                    values.remove(value);
                } else if list.capacity() > 2 * list.len() + 4 {
                    list.shrink_to_fit();
                }
            }
            if values.is_empty() {
                self.by_name.remove(name);
            }
        }
    }

    /// Number of series in the index.
    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    /// Sorted label names present in the index.
    pub(crate) fn label_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_name.keys().map(|k| k.to_string()).collect();
        v.sort_unstable();
        v
    }

    /// Sorted values of label `name`.
    pub(crate) fn label_values(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .by_name
            .get(name)
            .map(|vals| vals.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    fn list(&self, name: &str, value: &str) -> &[u64] {
        self.by_name
            .get(name)
            .and_then(|vals| vals.get(value))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The union of the lists of `name`'s values accepted by `keep`.
    fn union_where(&self, name: &str, keep: impl Fn(&str) -> bool) -> Cow<'_, [u64]> {
        let Some(vals) = self.by_name.get(name) else {
            return Cow::Borrowed(&[]);
        };
        let lists: Vec<&[u64]> = vals
            .iter()
            .filter(|(v, _)| keep(v))
            .map(|(_, l)| l.as_slice())
            .collect();
        union(lists)
    }

    /// The union of the lists of the given literal values of `name`.
    fn union_of(&self, name: &str, values: &[String]) -> Cow<'_, [u64]> {
        union(values.iter().map(|v| self.list(name, v)).collect())
    }

    /// Series references, ascending, of the series matching every matcher.
    pub(crate) fn postings_for_matchers(&self, matchers: &[Matcher]) -> Vec<u64> {
        let mut select: Vec<Cow<'_, [u64]>> = Vec::new();
        let mut remove: Vec<Cow<'_, [u64]>> = Vec::new();
        for m in matchers {
            let literals = m.regex().and_then(|r| r.literals());
            if m.matches_empty() {
                // Keep series without the label; drop those whose value fails.
                let drop = match (m.op, literals) {
                    (MatchOp::NotEqual, _) => Cow::Borrowed(self.list(&m.name, &m.value)),
                    (MatchOp::NotRegex, Some(lits)) => self.union_of(&m.name, lits),
                    (MatchOp::Regex, _) if m.value == ".*" => continue,
                    _ => self.union_where(&m.name, |v| !m.matches(v)),
                };
                if !drop.is_empty() {
                    remove.push(drop);
                }
            } else {
                let keep = match (m.op, literals) {
                    (MatchOp::Equal, _) => Cow::Borrowed(self.list(&m.name, &m.value)),
                    (MatchOp::Regex, Some(lits)) => self.union_of(&m.name, lits),
                    _ => self.union_where(&m.name, |v| m.matches(v)),
                };
                if keep.is_empty() {
                    return Vec::new();
                }
                select.push(keep);
            }
        }
        select.sort_by_key(|l| l.len());
        let mut it = select.into_iter();
        let mut out: Vec<u64> = match it.next() {
            Some(first) => first.into_owned(),
            None => self.all.clone(),
        };
        for l in it {
            if out.is_empty() {
                return out;
            }
            out = intersect(&out, &l);
        }
        for l in &remove {
            if out.is_empty() {
                break;
            }
            subtract(&mut out, l);
        }
        out
    }
}

/// Union of sorted lists into one sorted, duplicate-free list.
pub(crate) fn union(mut lists: Vec<&[u64]>) -> Cow<'_, [u64]> {
    lists.retain(|l| !l.is_empty());
    match lists.len() {
        0 => Cow::Borrowed(&[]),
        1 => Cow::Borrowed(lists[0]),
        _ => {
            let mut v: Vec<u64> = Vec::with_capacity(lists.iter().map(|l| l.len()).sum());
            for l in lists {
                v.extend_from_slice(l);
            }
            v.sort_unstable();
            v.dedup();
            Cow::Owned(v)
        }
    }
}

/// Intersection of two sorted lists. Uses binary search from the shorter
/// list when the lengths differ a lot, a linear merge otherwise.
pub(crate) fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(small.len());
    if small.len() * 16 < large.len() {
        let mut rest = large;
        for &x in small {
            let i = rest.partition_point(|&y| y < x);
            rest = &rest[i..];
            match rest.first() {
                None => break,
                Some(&y) if y == x => out.push(x),
                Some(_) => {}
            }
        }
    } else {
        let (mut i, mut j) = (0, 0);
        while i < small.len() && j < large.len() {
            match small[i].cmp(&large[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    out.push(small[i]);
                    i += 1;
                    j += 1;
                }
            }
        }
    }
    out
}

/// Removes from sorted `a` every element of sorted `b`.
pub(crate) fn subtract(a: &mut Vec<u64>, b: &[u64]) {
    let gallop = b.len() > a.len().saturating_mul(16);
    let mut j = 0;
    a.retain(|&x| {
        if gallop {
            j += b[j..].partition_point(|&y| y < x);
        } else {
            while j < b.len() && b[j] < x {
                j += 1;
            }
        }
        b.get(j) != Some(&x)
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(op: MatchOp, n: &str, v: &str) -> Matcher {
        Matcher::new(op, n, v).unwrap()
    }

    fn index(series: &[Labels]) -> MemPostings {
        let mut p = MemPostings::default();
        // Insert out of order to exercise sorted insertion.
        for (i, l) in series.iter().enumerate().rev() {
            p.add(i as u64 + 1, l);
        }
        p
    }

    fn brute(series: &[Labels], ms: &[Matcher]) -> Vec<u64> {
        series
            .iter()
            .enumerate()
            .filter(|(_, l)| ms.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
            .map(|(i, _)| i as u64 + 1)
            .collect()
    }

    fn sample() -> Vec<Labels> {
        vec![
            Labels::from_pairs(&[("__name__", "up"), ("job", "a"), ("instance", "1")]),
            Labels::from_pairs(&[("__name__", "up"), ("job", "b"), ("instance", "2")]),
            Labels::from_pairs(&[("__name__", "up"), ("instance", "3")]),
            Labels::from_pairs(&[("__name__", "x"), ("job", "a"), ("env", "prod")]),
            Labels::from_pairs(&[("__name__", "x"), ("job", "")]),
        ]
    }

    #[test]
    fn matcher_semantics() {
        let s = sample();
        let p = index(&s);
        let cases: Vec<Vec<Matcher>> = vec![
            vec![m(MatchOp::Equal, "__name__", "up")],
            vec![
                m(MatchOp::Equal, "__name__", "up"),
                m(MatchOp::Equal, "job", ""),
            ],
            vec![
                m(MatchOp::Equal, "__name__", "up"),
                m(MatchOp::NotEqual, "job", "a"),
            ],
            vec![
                m(MatchOp::Equal, "__name__", "up"),
                m(MatchOp::NotEqual, "job", ""),
            ],
            vec![m(MatchOp::Regex, "job", "a|b")],
            vec![m(MatchOp::Regex, "job", "a|")],
            vec![m(MatchOp::Regex, "job", ".*")],
            vec![m(MatchOp::Regex, "job", ".+")],
            vec![m(MatchOp::NotRegex, "job", "a|b")],
            vec![m(MatchOp::NotRegex, "job", "")],
            vec![m(MatchOp::NotRegex, "job", ".*")],
            vec![
                m(MatchOp::NotRegex, "env", "pr.*"),
                m(MatchOp::Regex, "__name__", "x|up"),
            ],
            vec![m(MatchOp::Equal, "nope", "")],
            vec![m(MatchOp::Equal, "nope", "x")],
            vec![m(MatchOp::NotEqual, "nope", "x")],
            vec![],
        ];
        for ms in cases {
            assert_eq!(p.postings_for_matchers(&ms), brute(&s, &ms), "{ms:?}");
        }
        // Without-the-label selection, spelled out.
        let r = p.postings_for_matchers(&[
            m(MatchOp::Equal, "__name__", "up"),
            m(MatchOp::Equal, "job", ""),
        ]);
        assert_eq!(r, vec![3]);
    }

    #[test]
    fn names_values_and_remove() {
        let s = sample();
        let mut p = index(&s);
        assert_eq!(p.label_names(), vec!["__name__", "env", "instance", "job"]);
        assert_eq!(p.label_values("job"), vec!["a", "b"]);
        p.remove(&[(4, s[3].clone()), (2, s[1].clone())]);
        assert_eq!(p.len(), 3);
        assert_eq!(p.label_names(), vec!["__name__", "instance", "job"]);
        assert_eq!(p.label_values("job"), vec!["a"]);
        assert_eq!(p.postings_for_matchers(&[]), vec![1, 3, 5]);
    }

    #[test]
    fn set_ops() {
        let a: Vec<u64> = (0..1000).step_by(3).collect();
        let b: Vec<u64> = (0..1000).step_by(5).collect();
        let c = vec![15u64, 30, 999];
        assert_eq!(intersect(&a, &b), (0..1000).step_by(15).collect::<Vec<_>>());
        assert_eq!(intersect(&c, &a), vec![15, 30, 999]);
        let mut d = a.clone();
        subtract(&mut d, &b);
        assert_eq!(
            d,
            a.iter().copied().filter(|x| x % 5 != 0).collect::<Vec<_>>()
        );
        assert_eq!(union(vec![&c, &c[..1], &[]]).into_owned(), c);
    }

    fn any_labels() -> impl Strategy<Value = Labels> {
        proptest::collection::btree_map("[abc]", "[xyz]{0,2}", 0..4).prop_map(|m| {
            let v: Vec<(String, String)> = m.into_iter().collect();
            Labels::from_pairs(&v)
        })
    }

    fn any_matcher() -> impl Strategy<Value = Matcher> {
        (
            prop_oneof![
                Just(MatchOp::Equal),
                Just(MatchOp::NotEqual),
                Just(MatchOp::Regex),
                Just(MatchOp::NotRegex)
            ],
            "[abcd]",
            prop_oneof![
                "[xyz]{0,2}",
                Just(".*".to_string()),
                Just("x.*".to_string()),
                Just("x|y|".to_string()),
                Just(".+".to_string())
            ],
        )
            .prop_map(|(op, n, v)| Matcher::new(op, &n, &v).unwrap())
    }

    proptest! {
        #[test]
        fn agrees_with_brute_force(series in proptest::collection::vec(any_labels(), 0..40),
                                   ms in proptest::collection::vec(any_matcher(), 0..4)) {
            let p = index(&series);
            prop_assert_eq!(p.postings_for_matchers(&ms), brute(&series, &ms));
        }

        #[test]
        fn set_ops_agree(mut a in proptest::collection::vec(0u64..500, 0..200),
                         mut b in proptest::collection::vec(0u64..500, 0..200)) {
            a.sort_unstable(); a.dedup(); b.sort_unstable(); b.dedup();
            let want: Vec<u64> = a.iter().copied().filter(|x| b.contains(x)).collect();
            prop_assert_eq!(intersect(&a, &b), want);
            let mut d = a.clone();
            subtract(&mut d, &b);
            let want: Vec<u64> = a.iter().copied().filter(|x| !b.contains(x)).collect();
            prop_assert_eq!(d, want);
        }
    }
}

//! Wildcard matching as the policy language defines it: `*` is any run of
//! characters (empty included), `?` exactly one character.
//!
//! This is the plain, obviously-correct form used by the reference
//! interpreter: templates are resolved into token vectors, then matched. The
//! compiled evaluator has its own allocation-free matchers and is tested
//! against this one.

#[cfg(feature = "reference")]
use super::template::{Part, Template};

/// Case folding of one character, as the language compares ignoring case:
/// the simple lower-case mapping when it is one character, else the
/// character itself (so folding never changes a string's length in chars).
pub(crate) fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// A string folded character by character ([`fold_char`]).
pub(crate) fn fold(s: &str) -> String {
    s.chars().map(fold_char).collect()
}

#[cfg(feature = "reference")]
/// One pattern token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A literal character.
    Ch(char),
    /// `*`: any run of characters.
    Star,
    /// `?`: exactly one character.
    One,
}

#[cfg(feature = "reference")]
/// Resolve a template into tokens. `glob` makes `*` and `?` of written text
/// wildcards; literal parts and substituted values never are. `lookup` gives
/// a variable's value; a variable with no value and no default makes the
/// whole template unresolvable (`None`).
pub(crate) fn resolve<'a>(
    template: &Template,
    glob: bool,
    lookup: &dyn Fn(&str) -> Option<&'a str>,
) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    for part in template.parts() {
        match part {
            Part::Text(t) => out.extend(t.chars().map(|c| match c {
                '*' if glob => Tok::Star,
                '?' if glob => Tok::One,
                c => Tok::Ch(c),
            })),
            Part::Literal(l) => out.extend(l.chars().map(Tok::Ch)),
            Part::Var(v) => {
                let value = lookup(&v.key).or(v.default.as_deref())?;
                out.extend(value.chars().map(Tok::Ch));
            }
        }
    }
    Some(out)
}

#[cfg(feature = "reference")]
/// Whether `text` matches `pattern`; `fold_case` compares case-insensitively.
pub(crate) fn matches(pattern: &[Tok], text: &str, fold_case: bool) -> bool {
    let (pat, txt): (Vec<Tok>, Vec<char>) = if fold_case {
        (
            pattern
                .iter()
                .map(|t| match *t {
                    Tok::Ch(c) => Tok::Ch(fold_char(c)),
                    other => other,
                })
                .collect(),
            text.chars().map(fold_char).collect(),
        )
    } else {
        (pattern.to_vec(), text.chars().collect())
    };
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < txt.len() {
        match (pat.get(p), txt.get(t)) {
            (Some(Tok::One), _) => {
                p += 1;
                t += 1;
            }
            (Some(Tok::Ch(c)), Some(x)) if c == x => {
                p += 1;
                t += 1;
            }
            (Some(Tok::Star), _) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pat.get(p..)
        .is_some_and(|rest| rest.iter().all(|t| *t == Tok::Star))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Vec<Tok> {
        resolve(&Template::plain(p), true, &|_| None).unwrap()
    }

    #[test]
    fn wildcards() {
        assert!(matches(&glob("*"), "", false));
        assert!(matches(&glob("a*c"), "abbbc", false));
        assert!(matches(&glob("a*c"), "ac", false));
        assert!(!matches(&glob("a?c"), "ac", false));
        assert!(matches(&glob("a?c"), "abc", false));
        assert!(matches(&glob("*/test/*"), "1/2/test/3/obj.jpg", false));
        assert!(matches(&glob("*/test/*"), "/test/object.jpg", false));
        assert!(!matches(&glob("*/test/*"), "test/object.jpg", false));
        assert!(!matches(&glob("abc"), "ABC", false));
        assert!(matches(&glob("abc"), "ABC", true));
        assert!(matches(&glob("a**b"), "ab", false));
    }

    #[test]
    fn substituted_values_are_literal() {
        let (t, _) = Template::parse("x/${aws:username}", true);
        let toks = resolve(&t, true, &|_| Some("a*")).unwrap();
        assert!(matches(&toks, "x/a*", false));
        assert!(!matches(&toks, "x/ab", false));
        assert!(resolve(&t, true, &|_| None).is_none());
    }
}

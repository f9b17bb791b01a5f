//! Allocation-free string matchers: wildcard globs over text that may be
//! split into segments (policy text, where `*` and `?` are wildcards, and
//! substituted variable values, which are literal), with optional case
//! folding. Plain patterns compile into exact, prefix or suffix tests.

use crate::policy::glob::fold_char;

/// A piece of a pattern after variable substitution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seg<'a> {
    /// Policy text: `*` and `?` are wildcards.
    Glob(&'a str),
    /// Literal text (escapes, substituted values).
    Lit(&'a str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Ch(char),
    Star,
    One,
}

/// A position in a segmented pattern: segment, byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pos {
    seg: usize,
    off: usize,
}

fn next_tok(segs: &[Seg<'_>], mut p: Pos) -> Option<(Tok, Pos)> {
    loop {
        let seg = segs.get(p.seg)?;
        let (text, glob) = match *seg {
            Seg::Glob(t) => (t, true),
            Seg::Lit(t) => (t, false),
        };
        match text.get(p.off..).and_then(|r| r.chars().next()) {
            Some(c) => {
                let np = Pos {
                    seg: p.seg,
                    off: p.off + c.len_utf8(),
                };
                let tok = match c {
                    '*' if glob => Tok::Star,
                    '?' if glob => Tok::One,
                    c => Tok::Ch(c),
                };
                return Some((tok, np));
            }
            None => {
                p = Pos {
                    seg: p.seg + 1,
                    off: 0,
                };
            }
        }
    }
}

#[inline]
fn same(a: char, b: char, fold: bool) -> bool {
    a == b || (fold && fold_char(a) == fold_char(b))
}

/// Whether `text` matches the segmented pattern; `fold` ignores case.
pub fn glob_segments(segs: &[Seg<'_>], text: &str, fold: bool) -> bool {
    let mut p = Pos { seg: 0, off: 0 };
    let mut t = 0usize;
    let mut star: Option<(Pos, usize)> = None;
    while let Some(c) = text.get(t..).and_then(|r| r.chars().next()) {
        match next_tok(segs, p) {
            Some((Tok::One, np)) => {
                p = np;
                t += c.len_utf8();
            }
            Some((Tok::Ch(pc), np)) if same(pc, c, fold) => {
                p = np;
                t += c.len_utf8();
            }
            Some((Tok::Star, np)) => {
                star = Some((np, t));
                p = np;
            }
            _ => match star {
                Some((sp, st)) => {
                    let skipped = text
                        .get(st..)
                        .and_then(|r| r.chars().next())
                        .map_or(1, char::len_utf8);
                    star = Some((sp, st + skipped));
                    p = sp;
                    t = st + skipped;
                }
                None => return false,
            },
        }
    }
    while let Some((Tok::Star, np)) = next_tok(segs, p) {
        p = np;
    }
    next_tok(segs, p).is_none()
}

/// Whether `text` equals the concatenation of the segments (no wildcards).
pub fn equals_segments(segs: &[Seg<'_>], text: &str, fold: bool) -> bool {
    let mut chars = text.chars();
    for seg in segs {
        let s = match *seg {
            Seg::Glob(s) | Seg::Lit(s) => s,
        };
        for pc in s.chars() {
            match chars.next() {
                Some(c) if same(pc, c, fold) => {}
                _ => return false,
            }
        }
    }
    chars.next().is_none()
}

/// String equality, eight bytes at a time. `==` on strings calls the C
/// library's `memcmp`, whose AVX-512 variant measured about 30 ns per call
/// on short strings on the development machine, more than a whole cache
/// lookup or a statement match; see BENCHMARKS.md.
#[inline]
pub fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (wa.remainder(), wb.remainder());
    wa.zip(wb).all(|(x, y)| word(x) == word(y)) && ra.iter().zip(rb).all(|(x, y)| x == y)
}

#[inline]
fn word(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |w, &b| (w << 8) | u64::from(b))
}

/// Case-aware equality of two strings, character by character.
pub fn eq_fold(a: &str, b: &str, fold: bool) -> bool {
    if !fold {
        return str_eq(a, b);
    }
    let mut bc = b.chars();
    for c in a.chars() {
        match bc.next() {
            Some(d) if same(c, d, true) => {}
            _ => return false,
        }
    }
    bc.next().is_none()
}

fn starts_with_fold(text: &str, prefix: &str, fold: bool) -> Option<usize> {
    if !fold {
        return text.starts_with(prefix).then_some(prefix.len());
    }
    let mut it = text.char_indices();
    for pc in prefix.chars() {
        match it.next() {
            Some((_, c)) if same(pc, c, true) => {}
            _ => return None,
        }
    }
    Some(it.next().map_or(text.len(), |(i, _)| i))
}

fn ends_with_fold(text: &str, suffix: &str, fold: bool) -> bool {
    if !fold {
        return text.ends_with(suffix);
    }
    let mut it = text.chars().rev();
    for sc in suffix.chars().rev() {
        match it.next() {
            Some(c) if same(sc, c, true) => {}
            _ => return false,
        }
    }
    true
}

/// Pattern text; up to 24 bytes are stored inline, so that most matchers
/// compare without following a pointer.
pub type Text = compact_str::CompactString;

/// A compiled plain pattern (no variables).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// `*`: anything.
    Any,
    /// No wildcard: equality.
    Exact(Text),
    /// `abc*`.
    Prefix(Text),
    /// `*abc`.
    Suffix(Text),
    /// Anything else: a general glob.
    Glob(Text),
}

impl Matcher {
    /// Compile a glob pattern (wildcards active).
    pub fn glob(pattern: &str) -> Self {
        if pattern == "*" {
            return Self::Any;
        }
        let wild = |s: &str| s.contains(['*', '?']);
        if !wild(pattern) {
            return Self::Exact(pattern.into());
        }
        if let Some(p) = pattern.strip_suffix('*')
            && !wild(p)
        {
            return Self::Prefix(p.into());
        }
        if let Some(s) = pattern.strip_prefix('*')
            && !wild(s)
        {
            return Self::Suffix(s.into());
        }
        Self::Glob(pattern.into())
    }

    /// A literal (no wildcards).
    pub fn literal(text: &str) -> Self {
        Self::Exact(text.into())
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str, fold: bool) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(s) => eq_fold(s, text, fold),
            Self::Prefix(p) => starts_with_fold(text, p, fold).is_some(),
            Self::Suffix(s) => ends_with_fold(text, s, fold),
            Self::Glob(g) => glob_segments(&[Seg::Glob(g)], text, fold),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_eq_is_string_equality() {
        let base = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-éü";
        for len in 0..=base.len() {
            let Some(a) = base.get(..len) else { continue };
            assert!(str_eq(a, a));
            let copy = String::from(a);
            assert!(str_eq(a, &copy));
            // Every one-byte change, and every shorter or longer string.
            for i in 0..len {
                let mut b = a.as_bytes().to_vec();
                b[i] ^= 0x01;
                if let Ok(b) = String::from_utf8(b) {
                    assert!(!str_eq(a, &b), "{a:?} vs {b:?}");
                }
            }
            for other in 0..=base.len() {
                if let Some(b) = base.get(..other) {
                    assert_eq!(str_eq(a, b), a == b, "{a:?} vs {b:?}");
                }
            }
        }
    }

    use crate::policy::glob;
    use crate::policy::template::Template;
    use proptest::prelude::*;

    #[test]
    fn matchers() {
        assert!(Matcher::glob("*").matches("", false));
        assert!(Matcher::glob("key/*").matches("key/abc", false));
        assert!(!Matcher::glob("key/*").matches("Key/abc", false));
        assert!(Matcher::glob("key/*").matches("Key/abc", true));
        assert!(Matcher::glob("*.jpg").matches("a.jpg", false));
        assert!(Matcher::glob("a*b?c").matches("axxbyc", false));
        assert!(!Matcher::glob("a*b?c").matches("axxbc", false));
        assert!(Matcher::glob("ÄB").matches("äb", true));
    }

    #[test]
    fn segments() {
        let segs = [Seg::Glob("a*/"), Seg::Lit("x*"), Seg::Glob("?")];
        assert!(glob_segments(&segs, "abc/x*y", false));
        assert!(!glob_segments(&segs, "abc/xzy", false));
        assert!(equals_segments(
            &[Seg::Lit("ab"), Seg::Glob("c*")],
            "abc*",
            false
        ));
        assert!(!equals_segments(
            &[Seg::Lit("ab"), Seg::Glob("c*")],
            "abcd",
            false
        ));
    }

    proptest! {
        /// The compiled matchers agree with the reference glob.
        #[test]
        fn agrees_with_reference(pattern in "[ab*?Ä/]{0,8}", text in "[abAB/äÄ]{0,10}", fold in any::<bool>()) {
            let toks = glob::resolve(&Template::plain(&pattern), true, &|_| None).unwrap();
            let want = glob::matches(&toks, &text, fold);
            prop_assert_eq!(Matcher::glob(&pattern).matches(&text, fold), want);
            prop_assert_eq!(glob_segments(&[Seg::Glob(&pattern)], &text, fold), want);
            let split = pattern.len() / 2;
            if pattern.is_char_boundary(split) {
                let (a, b) = pattern.split_at(split);
                prop_assert_eq!(glob_segments(&[Seg::Glob(a), Seg::Glob(""), Seg::Glob(b)], &text, fold), want);
            }
        }
    }
}

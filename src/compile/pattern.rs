//! Allocation-free string matchers: wildcard globs over text that may be
//! split into segments (policy text, where `*` and `?` are wildcards, and
//! substituted variable values, which are literal), with optional case
//! folding. Plain patterns compile into exact, prefix or suffix tests.

use crate::policy::glob::fold_char;

/// A piece of a pattern after variable substitution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seg<'a> {
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
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

thread_local! {
    /// Glob-matching steps this thread may still take (see [`with_match_budget`]).
    static STEPS_LEFT: std::cell::Cell<u64> = const { std::cell::Cell::new(u64::MAX) };
}

/// Run `f` with at most `steps` glob-matching steps on this thread (a step
/// compares one character of a pattern piece with the text). Returns what
/// `f` returned and whether the budget held; once it is spent every glob
/// fails at once, so what `f` returned then means nothing and must be
/// discarded. Outside this, matching is unbounded.
pub(crate) fn with_match_budget<R>(steps: u64, f: impl FnOnce() -> R) -> (R, bool) {
    let outer = STEPS_LEFT.replace(steps);
    let result = f();
    let left = STEPS_LEFT.replace(outer);
    (result, left > 0)
}

/// Take `n` steps from the budget; false once it is spent.
#[inline]
fn charge(n: u64) -> bool {
    STEPS_LEFT.with(|c| {
        let left = c.get();
        if left == u64::MAX {
            return true;
        }
        let rest = left.saturating_sub(n);
        c.set(rest);
        rest > 0
    })
}

#[inline]
fn char_at(text: &str, at: usize) -> Option<char> {
    text.get(at..).and_then(|r| r.chars().next())
}

#[inline]
fn tok_matches(tok: Tok, c: char, fold: bool) -> bool {
    match tok {
        Tok::One => true,
        Tok::Ch(pc) => same(pc, c, fold),
        Tok::Star => false,
    }
}

/// Whether the star-free tokens from `p` up to `end` (exclusive) match
/// `text` at byte `at`; returns the byte just past them and the characters
/// compared.
fn piece_at(
    segs: &[Seg<'_>],
    mut p: Pos,
    end: Pos,
    text: &str,
    mut at: usize,
    fold: bool,
) -> (Option<usize>, u64) {
    let mut steps = 0u64;
    while p < end {
        let Some((tok, np)) = next_tok(segs, p) else {
            break;
        };
        steps += 1;
        match char_at(text, at) {
            Some(c) if tok_matches(tok, c, fold) => {
                at += c.len_utf8();
                p = np;
            }
            _ => return (None, steps),
        }
    }
    (Some(at), steps)
}

/// What a step of the character-wise matcher is charged, in steps of the
/// byte-wise one (it decodes a character on each side and follows segments).
const CHAR_STEP_COST: u64 = 8;

/// Whether a star-free piece of ASCII pattern matches at the start of `text`.
#[inline]
fn piece_ascii(piece: &[u8], text: &[u8], fold: bool) -> bool {
    piece.len() <= text.len()
        && piece
            .iter()
            .zip(text)
            .all(|(&p, &t)| p == b'?' || p == t || (fold && p.eq_ignore_ascii_case(&t)))
}

/// [`glob_segments`] for one ASCII pattern over ASCII text, byte by byte:
/// the same pieces, anchored and searched the same way.
fn glob_ascii(pattern: &[u8], text: &[u8], fold: bool) -> bool {
    let mut pieces = pattern.split(|&b| b == b'*');
    let first = pieces.next().unwrap_or_default();
    let Some(last_star) = memchr::memrchr(b'*', pattern) else {
        return first.len() == text.len() && piece_ascii(first, text, fold);
    };
    let last = pattern.get(last_star + 1..).unwrap_or_default();
    if first.len() + last.len() > text.len()
        || !piece_ascii(first, text, fold)
        || !piece_ascii(
            last,
            text.get(text.len() - last.len()..).unwrap_or_default(),
            fold,
        )
    {
        return false;
    }
    let mut window = text
        .get(first.len()..text.len() - last.len())
        .unwrap_or_default();
    let middle = pattern.get(first.len() + 1..last_star).unwrap_or_default();
    for piece in middle.split(|&b| b == b'*').filter(|p| !p.is_empty()) {
        let mut start = 0usize;
        loop {
            let Some(rest) = window.get(start..).filter(|r| r.len() >= piece.len()) else {
                return false;
            };
            // Jump to the next place the piece's first byte is (when it is
            // a plain byte and case matters).
            let skip = match piece.first() {
                Some(&b) if b != b'?' && !(fold && b.is_ascii_alphabetic()) => {
                    match memchr::memchr(b, rest) {
                        Some(i) => i,
                        None => return false,
                    }
                }
                _ => 0,
            };
            start += skip;
            let Some(at) = window.get(start..) else {
                return false;
            };
            // A place tried costs about eight byte comparisons besides its own.
            let compared = 8 + piece.len().min(at.len()) + skip / 16;
            if !charge(u64::try_from(compared).unwrap_or(u64::MAX)) {
                return false;
            }
            if piece_ascii(piece, at, fold) {
                window = at.get(piece.len()..).unwrap_or_default();
                break;
            }
            start += 1;
        }
    }
    true
}

/// Whether `text` matches the segmented pattern; `fold` ignores case.
///
/// The pieces between stars are matched in turn: the first at the start of
/// the text, the last at its end, and each one between at its leftmost
/// place after the one before (which is enough: a star absorbs anything).
/// The cost is bounded by the text's length times a middle piece's, and is
/// charged to the thread's match budget.
pub(crate) fn glob_segments(segs: &[Seg<'_>], text: &str, fold: bool) -> bool {
    // Scanning both sides once (ASCII checks, the anchored pieces) is
    // charged too, at a step per eight bytes.
    let pattern_len: usize = segs
        .iter()
        .map(|s| match s {
            Seg::Glob(t) | Seg::Lit(t) => t.len(),
        })
        .sum();
    if !charge(1 + u64::try_from((text.len() + pattern_len) / 8).unwrap_or(u64::MAX)) {
        return false;
    }
    if let [Seg::Glob(pattern)] = segs
        && pattern.is_ascii()
        && text.is_ascii()
    {
        return glob_ascii(pattern.as_bytes(), text.as_bytes(), fold);
    }
    // The first piece, anchored at the start.
    let mut p = Pos { seg: 0, off: 0 };
    let mut t = 0usize;
    loop {
        match next_tok(segs, p) {
            None => return t == text.len(),
            Some((Tok::Star, _)) => break,
            Some((tok, np)) => match char_at(text, t) {
                Some(c) if tok_matches(tok, c, fold) => {
                    t += c.len_utf8();
                    p = np;
                }
                _ => return false,
            },
        }
    }
    // The last piece (after the last star), anchored at the end.
    let mut last_star = p;
    let mut tail_len = 0usize;
    let mut q = p;
    while let Some((tok, nq)) = next_tok(segs, q) {
        if tok == Tok::Star {
            last_star = nq;
            tail_len = 0;
        } else {
            tail_len += 1;
        }
        q = nq;
    }
    let Some(tail_start) = text
        .get(t..)
        .and_then(|r| r.char_indices().rev().nth(tail_len.checked_sub(1)?))
        .map(|(i, _)| t + i)
        .or((tail_len == 0).then_some(text.len()))
    else {
        return false;
    };
    let end_of_pattern = q;
    match piece_at(segs, last_star, end_of_pattern, text, tail_start, fold) {
        (Some(e), _) if e == text.len() => {}
        _ => return false,
    }
    // The pieces between, each at its leftmost place in what is left.
    let window = text.get(..tail_start).unwrap_or("");
    while p < last_star {
        let Some((tok, np)) = next_tok(segs, p) else {
            break;
        };
        if tok == Tok::Star {
            p = np;
            continue;
        }
        // The piece runs from `p` to the next star.
        let mut piece_end = p;
        while let Some((tok, n)) = next_tok(segs, piece_end) {
            if tok == Tok::Star {
                break;
            }
            piece_end = n;
        }
        let mut start = t;
        loop {
            let (found, steps) = piece_at(segs, p, piece_end, window, start, fold);
            if !charge(steps * CHAR_STEP_COST) {
                return false;
            }
            if let Some(e) = found {
                t = e;
                break;
            }
            match char_at(window, start) {
                Some(c) => start += c.len_utf8(),
                None => return false,
            }
        }
        p = piece_end;
    }
    true
}

/// Whether `text` equals the concatenation of the segments (no wildcards).
pub(crate) fn equals_segments(segs: &[Seg<'_>], text: &str, fold: bool) -> bool {
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
/// library's `memcmp`, whose AVX-512 variant costs more per call on short
/// strings than a whole cache lookup or a statement match on the
/// development machine; BENCHMARKS.md ("memcmp on short strings") has the
/// figures.
#[inline]
pub(crate) fn str_eq(a: &str, b: &str) -> bool {
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
pub(crate) fn eq_fold(a: &str, b: &str, fold: bool) -> bool {
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
pub(crate) type Text = compact_str::CompactString;

/// A compiled plain pattern (no variables).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Matcher {
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
    pub(crate) fn glob(pattern: &str) -> Self {
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
    pub(crate) fn literal(text: &str) -> Self {
        Self::Exact(text.into())
    }

    /// Whether `text` matches.
    pub(crate) fn matches(&self, text: &str, fold: bool) -> bool {
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

//! Policy text with policy variables (`${aws:username}`,
//! `${aws:PrincipalTag/team, 'default'}`) and the escapes `${*}`, `${?}`, `${$}`.
//!
//! A [`Template`] keeps three kinds of parts apart: text written in the policy
//! (where `*` and `?` are wildcards in glob contexts), literal characters
//! (escapes, and later substituted values, which are never wildcards), and
//! variables. Variables are recognised only when the policy's `Version` is
//! `2012-10-17`; otherwise the whole text is plain.

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// Text as written; `*` and `?` are wildcards where the context globs.
    Text(Box<str>),
    /// Literal characters (from `${*}`, `${?}`, `${$}`), never wildcards.
    Literal(Box<str>),
    /// A policy variable.
    Var(Box<Variable>),
}

/// `${key}` or `${key, 'default'}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Variable {
    /// The context key, lower-cased.
    pub(crate) key: Box<str>,
    /// The default used when the key has no single value.
    pub(crate) default: Option<Box<str>>,
    /// The variable as written, `${…}` included.
    pub(crate) raw: Box<str>,
}

/// Text with optional policy variables.
///
/// Most policy text is a single plain part; it is stored inline, so that a
/// resource ARN cut into six pieces costs six string allocations, not twelve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    repr: Repr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Repr {
    One(Part),
    Many(Box<[Part]>),
}

impl Default for Template {
    fn default() -> Self {
        Self {
            repr: Repr::Many(Box::new([])),
        }
    }
}

/// Parts under construction; [`Builder::finish`] makes the template.
#[derive(Default)]
struct Builder {
    parts: Vec<Part>,
}

impl Builder {
    fn push_text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if let Some(Part::Text(prev)) = self.parts.last_mut() {
            let mut s = String::with_capacity(prev.len() + text.len());
            s.push_str(prev);
            s.push_str(text);
            *prev = s.into();
        } else {
            self.parts.push(Part::Text(text.into()));
        }
    }

    fn push(&mut self, part: Part) {
        match part {
            Part::Text(t) => self.push_text(&t),
            Part::Literal(l) => {
                if let Some(Part::Literal(prev)) = self.parts.last_mut() {
                    let mut s = String::from(&**prev);
                    s.push_str(&l);
                    *prev = s.into();
                } else {
                    self.parts.push(Part::Literal(l));
                }
            }
            v @ Part::Var(_) => self.parts.push(v),
        }
    }

    fn finish(mut self) -> Template {
        let repr = if self.parts.len() == 1 {
            match self.parts.pop() {
                Some(p) => Repr::One(p),
                None => Repr::Many(Box::new([])),
            }
        } else {
            Repr::Many(self.parts.into_boxed_slice())
        };
        Template { repr }
    }
}

/// What parsing noticed besides the template itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseNotes {
    /// A `${` that does not start a well-formed variable (kept as text).
    pub(crate) malformed_variable: bool,
}

impl Template {
    /// Plain text: no variable recognition.
    pub(crate) fn plain(text: &str) -> Self {
        let mut b = Builder::default();
        b.push_text(text);
        b.finish()
    }

    /// Parse `text`; variables are recognised only if `variables` is set.
    pub fn parse(text: &str, variables: bool) -> (Self, ParseNotes) {
        let mut notes = ParseNotes::default();
        if !variables || !text.contains("${") {
            return (Self::plain(text), notes);
        }
        let mut t = Builder::default();
        let mut rest = text;
        while let Some(pos) = rest.find("${") {
            let (before, from) = rest.split_at(pos);
            t.push_text(before);
            match parse_variable(from) {
                Some((part, used)) => {
                    t.push(part);
                    rest = from.get(used..).unwrap_or("");
                }
                None => {
                    notes.malformed_variable = true;
                    t.push_text("$");
                    rest = from.get(1..).unwrap_or("");
                }
            }
        }
        t.push_text(rest);
        (t.finish(), notes)
    }

    /// The parts, in order.
    pub(crate) fn parts(&self) -> &[Part] {
        match &self.repr {
            Repr::One(p) => std::slice::from_ref(p),
            Repr::Many(parts) => parts,
        }
    }

    /// Whether any variable occurs.
    pub(crate) fn has_variables(&self) -> bool {
        self.parts().iter().any(|p| matches!(p, Part::Var(_)))
    }

    /// The variables, in order.
    pub(crate) fn variables(&self) -> impl Iterator<Item = &Variable> {
        self.parts().iter().filter_map(|p| match p {
            Part::Var(v) => Some(&**v),
            _ => None,
        })
    }

    /// The text as written (variables and escapes in their `${…}` form).
    pub fn source(&self) -> String {
        let mut s = String::new();
        for p in self.parts() {
            match p {
                Part::Text(t) => s.push_str(t),
                Part::Literal(l) => {
                    for c in l.chars() {
                        s.push_str("${");
                        s.push(c);
                        s.push('}');
                    }
                }
                Part::Var(v) => s.push_str(&v.raw),
            }
        }
        s
    }

    /// Whether the template ends with `*` written as a wildcard.
    pub(crate) fn ends_with_wildcard(&self) -> bool {
        matches!(self.parts().last(), Some(Part::Text(t)) if t.ends_with('*'))
    }

    /// Whether a wildcard character occurs in the written text.
    pub(crate) fn has_wildcard(&self) -> bool {
        self.parts()
            .iter()
            .any(|p| matches!(p, Part::Text(t) if t.contains(['*', '?'])))
    }

    /// Cut at the first `max_cuts` colons of the written text (colons inside
    /// variables and literals do not count).
    pub fn split_colons(&self, max_cuts: usize) -> Vec<Template> {
        let mut out = vec![Builder::default()];
        let mut cuts = 0;
        for p in self.parts() {
            match p {
                Part::Text(t) => {
                    let mut rest: &str = t;
                    while cuts < max_cuts {
                        let Some(pos) = rest.find(':') else { break };
                        let (head, tail) = rest.split_at(pos);
                        if let Some(cur) = out.last_mut() {
                            cur.push_text(head);
                        }
                        out.push(Builder::default());
                        cuts += 1;
                        rest = tail.get(1..).unwrap_or("");
                    }
                    if let Some(cur) = out.last_mut() {
                        cur.push_text(rest);
                    }
                }
                other => {
                    if let Some(cur) = out.last_mut() {
                        cur.push(other.clone());
                    }
                }
            }
        }
        out.into_iter().map(Builder::finish).collect()
    }

    /// This template with variables made plain text (as written).
    pub(crate) fn without_variables(&self) -> Template {
        let mut t = Builder::default();
        for p in self.parts() {
            match p {
                Part::Var(v) => t.push_text(&v.raw),
                other => t.push(other.clone()),
            }
        }
        t.finish()
    }
}

/// Parse a variable at the start of `s` (which starts with `${`). Returns the
/// part and the bytes used, or `None` if it is not well-formed.
fn parse_variable(s: &str) -> Option<(Part, usize)> {
    let body = s.get(2..)?;
    for (esc, lit) in [("*}", "*"), ("?}", "?"), ("$}", "$")] {
        if body.starts_with(esc) {
            return Some((Part::Literal(lit.into()), 4));
        }
    }
    let mut chars = body.char_indices().peekable();
    let skip_ws = |it: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        while it.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            it.next();
        }
    };
    skip_ws(&mut chars);
    let key_start = chars.peek()?.0;
    let mut key_end = key_start;
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() || c == ',' || c == '}' {
            break;
        }
        if matches!(c, '$' | '{' | '\'') {
            return None;
        }
        key_end = i + c.len_utf8();
        chars.next();
    }
    let key = body.get(key_start..key_end)?;
    if key.is_empty() {
        return None;
    }
    skip_ws(&mut chars);
    let (i, c) = chars.next()?;
    let (default, end) = match c {
        '}' => (None, i + 1),
        ',' => {
            skip_ws(&mut chars);
            let (_, q) = chars.next()?;
            if q != '\'' {
                return None;
            }
            let mut default = String::new();
            loop {
                let (_, c) = chars.next()?;
                if c == '\'' {
                    if chars.peek().is_some_and(|(_, c)| *c == '\'') {
                        chars.next();
                        default.push('\'');
                        continue;
                    }
                    break;
                }
                default.push(c);
            }
            skip_ws(&mut chars);
            let (i, c) = chars.next()?;
            if c != '}' {
                return None;
            }
            (Some(default.into_boxed_str()), i + 1)
        }
        _ => return None,
    };
    let used = 2 + end;
    Some((
        Part::Var(Box::new(Variable {
            key: key.to_lowercase().into(),
            default,
            raw: s.get(..used)?.into(),
        })),
        used,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(key: &str, default: Option<&str>, raw: &str) -> Part {
        Part::Var(Box::new(Variable {
            key: key.into(),
            default: default.map(Into::into),
            raw: raw.into(),
        }))
    }

    #[test]
    fn parses_variables_defaults_and_escapes() {
        let (t, n) = Template::parse(
            "arn:aws:s3:::b-${aws:PrincipalTag/team , 'it''s'}/${aws:username}/${*}x",
            true,
        );
        assert!(!n.malformed_variable);
        assert_eq!(
            t.parts(),
            &[
                Part::Text("arn:aws:s3:::b-".into()),
                var(
                    "aws:principaltag/team",
                    Some("it's"),
                    "${aws:PrincipalTag/team , 'it''s'}"
                ),
                Part::Text("/".into()),
                var("aws:username", None, "${aws:username}"),
                Part::Text("/".into()),
                Part::Literal("*".into()),
                Part::Text("x".into()),
            ]
        );
        assert_eq!(
            t.source(),
            "arn:aws:s3:::b-${aws:PrincipalTag/team , 'it''s'}/${aws:username}/${*}x"
        );
    }

    #[test]
    fn without_version_everything_is_text() {
        let (t, _) = Template::parse("a/${aws:username}", false);
        assert_eq!(t.parts(), &[Part::Text("a/${aws:username}".into())]);
    }

    #[test]
    fn malformed_is_text_and_noted() {
        for s in ["a${b", "${}", "${a, 'x}", "${a b}", "${a, x}"] {
            let (t, n) = Template::parse(s, true);
            assert!(n.malformed_variable, "{s}");
            assert!(!t.has_variables(), "{s}");
            assert_eq!(t.source(), s);
        }
    }

    #[test]
    fn split_ignores_colons_in_variables() {
        let (t, _) = Template::parse("arn:aws:s3:::${aws:username}:x:y", true);
        let pieces = t.split_colons(5);
        assert_eq!(pieces.len(), 6);
        assert_eq!(pieces[5].source(), "${aws:username}:x:y");
        assert_eq!(pieces[3].source(), "");
    }
}

//! Positions inside JSON text.
//!
//! serde reports line:column for syntax errors only, and knows nothing of JSON
//! pointers. This module walks JSON text (without building values) to map a
//! JSON pointer to a byte offset and back, and enforces the input limits serde
//! cannot: nesting depth and string length. It never panics on malformed text:
//! a walk that meets bad JSON simply stops, and serde reports the syntax error.

use std::fmt::Write as _;

/// 1-based line and column (column counted in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Position {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub(crate) column: u32,
}

/// JSON text with an index of line starts, for offset → line:column in
/// constant time (generated bundles are often one long line).
#[derive(Debug)]
pub(crate) struct SourceText {
    text: String,
    line_starts: Vec<usize>,
    /// For non-ASCII text: (byte offset, characters before it) every
    /// [`CHECKPOINT`] bytes or so; empty for ASCII text.
    checkpoints: Vec<(usize, usize)>,
}

const CHECKPOINT: usize = 1024;

impl SourceText {
    /// Index `text`.
    pub(crate) fn new(text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(memchr_newlines(text.as_bytes()));
        let mut checkpoints = Vec::new();
        if !text.is_ascii() {
            let mut next = 0usize;
            for (chars, (i, _)) in text.char_indices().enumerate() {
                if i >= next {
                    checkpoints.push((i, chars));
                    next = i + CHECKPOINT;
                }
            }
        }
        Self {
            text,
            line_starts,
            checkpoints,
        }
    }

    /// Characters in `text[..offset]` (`offset` on a char boundary).
    fn chars_before(&self, offset: usize) -> usize {
        if self.checkpoints.is_empty() {
            return offset;
        }
        let i = match self.checkpoints.binary_search_by(|(b, _)| b.cmp(&offset)) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let (byte, chars) = self.checkpoints.get(i).copied().unwrap_or((0, 0));
        chars + self.text.get(byte..offset).map_or(0, |s| s.chars().count())
    }

    /// The text.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Line and column of a byte offset (clamped to the text).
    pub(crate) fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line_idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts.get(line_idx).copied().unwrap_or(0);
        let mut offset = offset;
        while offset > start && !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let column = self.chars_before(offset) - self.chars_before(start);
        Position {
            line: u32::try_from(line_idx + 1).unwrap_or(u32::MAX),
            column: u32::try_from(column + 1).unwrap_or(u32::MAX),
        }
    }
}

fn memchr_newlines(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
}

/// Escape one JSON pointer segment (`~` → `~0`, `/` → `~1`).
pub(crate) fn escape_segment(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Append `/segment` (escaped) to a pointer.
pub(crate) fn push_segment(pointer: &str, segment: &str) -> String {
    let mut out = String::with_capacity(pointer.len() + segment.len() + 1);
    out.push_str(pointer);
    out.push('/');
    out.push_str(&escape_segment(segment));
    out
}

/// Append `/index` to a pointer.
pub(crate) fn push_index(pointer: &str, index: usize) -> String {
    let mut out = String::with_capacity(pointer.len() + 8);
    out.push_str(pointer);
    let _ = write!(out, "/{index}");
    out
}

/// One step of a path inside a JSON value.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                out.push('/');
                out.push_str(&escape_segment(k));
            }
            Seg::Index(i) => {
                let _ = write!(out, "/{i}");
            }
        }
    }
    out
}

fn parse_pointer(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// What a visitor wants after an event.
enum Flow {
    Continue,
    Stop,
}

/// Events of a walk. `path` is the path of the value (or key) concerned.
trait Visitor {
    /// A key token was read at `offset`; `path` ends with that key.
    fn key(&mut self, _path: &[Seg], _offset: usize, _len: usize) -> Flow {
        Flow::Continue
    }
    /// A value starts at `offset`; `depth` counts the arrays and objects
    /// around it, itself included when it is one.
    fn value(&mut self, _path: &[Seg], _offset: usize, _depth: usize) -> Flow {
        Flow::Continue
    }
    /// A string value of `len` bytes (as written, escapes included) ends a value.
    fn string(&mut self, _path: &[Seg], _offset: usize, _len: usize) -> Flow {
        Flow::Continue
    }
    /// A token starts at `offset`; `path` is the current position.
    fn token(&mut self, _path: &[Seg], _offset: usize) -> Flow {
        Flow::Continue
    }
}

enum Frame {
    /// Inside an object; `has_key` once the current member's key is read.
    Object {
        has_key: bool,
    },
    Array,
}

/// Walk `text`, reporting events to `v`. Stops at the first malformed token.
fn walk(text: &str, v: &mut impl Visitor) {
    let bytes = text.as_bytes();
    let mut i = 0usize;
    let mut stack: Vec<Frame> = Vec::new();
    let mut path: Vec<Seg> = Vec::new();
    // Whether a value is expected next (vs a separator or a closing bracket).
    let mut expect_value = true;
    loop {
        while i < bytes.len() && matches!(bytes.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        let Some(&b) = bytes.get(i) else { return };
        if let Flow::Stop = v.token(&path, i) {
            return;
        }
        match b {
            b'{' | b'[' => {
                if !expect_value {
                    return;
                }
                if let Flow::Stop = v.value(&path, i, stack.len() + 1) {
                    return;
                }
                if b == b'{' {
                    stack.push(Frame::Object { has_key: false });
                } else {
                    stack.push(Frame::Array);
                    path.push(Seg::Index(0));
                }
                i += 1;
                // An object expects a key (or `}`), an array a value (or `]`).
                expect_value = b == b'[';
            }
            b'}' | b']' => {
                match stack.pop() {
                    Some(Frame::Object { has_key }) if b == b'}' => {
                        if has_key {
                            path.pop();
                        }
                    }
                    Some(Frame::Array) if b == b']' => {
                        path.pop();
                    }
                    _ => return,
                }
                i += 1;
                expect_value = false;
            }
            b',' => {
                match stack.last_mut() {
                    Some(Frame::Object { has_key }) => {
                        if *has_key {
                            path.pop();
                        }
                        *has_key = false;
                        expect_value = false;
                    }
                    Some(Frame::Array) => {
                        if let Some(Seg::Index(n)) = path.last_mut() {
                            *n += 1;
                        }
                        expect_value = true;
                    }
                    None => return,
                }
                i += 1;
            }
            b':' => {
                i += 1;
                expect_value = true;
            }
            b'"' => {
                let start = i;
                let Some(end) = string_end(bytes, i) else {
                    return;
                };
                let in_key_position =
                    matches!(stack.last(), Some(Frame::Object { has_key: false })) && !expect_value;
                if in_key_position {
                    let raw = text.get(start + 1..end - 1).unwrap_or("");
                    let key = unescape(raw);
                    path.push(Seg::Key(key));
                    if let Some(Frame::Object { has_key }) = stack.last_mut() {
                        *has_key = true;
                    }
                    if let Flow::Stop = v.key(&path, start, end - start - 2) {
                        return;
                    }
                } else {
                    if !expect_value {
                        return;
                    }
                    if let Flow::Stop = v.value(&path, start, stack.len()) {
                        return;
                    }
                    if let Flow::Stop = v.string(&path, start, end - start - 2) {
                        return;
                    }
                    expect_value = false;
                }
                i = end;
            }
            _ => {
                if !expect_value {
                    return;
                }
                if let Flow::Stop = v.value(&path, i, stack.len()) {
                    return;
                }
                while i < bytes.len()
                    && !matches!(
                        bytes.get(i),
                        Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' | b':' | b'"')
                    )
                {
                    i += 1;
                }
                expect_value = false;
            }
        }
    }
}

/// Index one past the closing quote of the string starting at `start`.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn unescape(raw: &str) -> String {
    if !raw.contains('\\') {
        return raw.to_owned();
    }
    serde_json::from_str::<String>(&format!("\"{raw}\"")).unwrap_or_else(|_| raw.to_owned())
}

/// Byte offset of the value (or, for an object member, of its key) at `pointer`.
pub fn offset_of_pointer(text: &str, pointer: &str) -> Option<usize> {
    struct Find {
        target: Vec<String>,
        found: Option<usize>,
    }
    fn same(path: &[Seg], target: &[String]) -> bool {
        path.len() == target.len()
            && path.iter().zip(target).all(|(seg, t)| match seg {
                Seg::Key(k) => k == t,
                Seg::Index(n) => t.parse::<usize>().ok() == Some(*n),
            })
    }
    impl Visitor for Find {
        fn key(&mut self, path: &[Seg], offset: usize, _len: usize) -> Flow {
            if same(path, &self.target) {
                self.found = Some(offset);
                return Flow::Stop;
            }
            Flow::Continue
        }
        fn value(&mut self, path: &[Seg], offset: usize, _depth: usize) -> Flow {
            if same(path, &self.target) {
                self.found = Some(offset);
                return Flow::Stop;
            }
            Flow::Continue
        }
    }
    let mut f = Find {
        target: parse_pointer(pointer),
        found: None,
    };
    walk(text, &mut f);
    f.found
}

/// The JSON pointer of the innermost value or member at or before `offset`:
/// where serde was when it reported an error at `offset`.
pub fn pointer_at_offset(text: &str, offset: usize) -> String {
    struct At {
        offset: usize,
        path: Option<Vec<Seg>>,
    }
    impl Visitor for At {
        fn token(&mut self, path: &[Seg], offset: usize) -> Flow {
            if offset >= self.offset {
                self.path = Some(path.to_vec());
                return Flow::Stop;
            }
            Flow::Continue
        }
        fn key(&mut self, path: &[Seg], _offset: usize, _len: usize) -> Flow {
            self.path = Some(path.to_vec());
            Flow::Continue
        }
        fn value(&mut self, path: &[Seg], _offset: usize, _depth: usize) -> Flow {
            self.path = Some(path.to_vec());
            Flow::Continue
        }
    }
    let mut at = At { offset, path: None };
    walk(text, &mut at);
    at.path.map(|p| render(&p)).unwrap_or_default()
}

/// Offsets of the direct children of the array at `pointer`, or of the value
/// itself when it is not an array. Used to locate every statement in one pass.
pub fn element_offsets(text: &str, pointer: &str) -> Vec<usize> {
    struct Elements {
        target: Vec<String>,
        out: Vec<usize>,
    }
    impl Visitor for Elements {
        fn value(&mut self, path: &[Seg], offset: usize, _depth: usize) -> Flow {
            let n = self.target.len();
            let prefix_matches = |len: usize| {
                path.len() >= len
                    && path
                        .iter()
                        .zip(&self.target)
                        .take(len)
                        .all(|(seg, t)| match seg {
                            Seg::Key(k) => k == t,
                            Seg::Index(i) => t.parse::<usize>().ok() == Some(*i),
                        })
            };
            if path.len() == n && prefix_matches(n) {
                // The value itself; if it is an array, its elements follow.
                self.out.push(offset);
            } else if path.len() == n + 1
                && prefix_matches(n)
                && matches!(path.last(), Some(Seg::Index(_)))
            {
                if self.out.len() == 1 && matches!(path.last(), Some(Seg::Index(0))) {
                    // It was an array: drop the array's own offset.
                    self.out.clear();
                }
                self.out.push(offset);
            } else if !self.out.is_empty() && path.len() <= n {
                return Flow::Stop;
            }
            Flow::Continue
        }
    }
    let mut e = Elements {
        target: parse_pointer(pointer),
        out: Vec::new(),
    };
    walk(text, &mut e);
    e.out
}

/// A limit that the text breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitBreach {
    /// Nesting deeper than the limit.
    Depth {
        /// Pointer of the first value too deep.
        pointer: String,
        /// Its offset.
        offset: usize,
    },
    /// A string (key or value) longer than the limit.
    StringLength {
        /// Pointer of the string.
        pointer: String,
        /// Its offset.
        offset: usize,
        /// Its length in bytes, as written.
        len: usize,
    },
}

/// Check nesting depth and string lengths; the first breach is returned.
pub fn check_limits(text: &str, max_depth: usize, max_string: usize) -> Option<LimitBreach> {
    struct Limits {
        max_depth: usize,
        max_string: usize,
        breach: Option<LimitBreach>,
    }
    impl Visitor for Limits {
        fn key(&mut self, path: &[Seg], offset: usize, len: usize) -> Flow {
            if len > self.max_string {
                self.breach = Some(LimitBreach::StringLength {
                    pointer: render(path),
                    offset,
                    len,
                });
                return Flow::Stop;
            }
            Flow::Continue
        }
        fn value(&mut self, path: &[Seg], offset: usize, depth: usize) -> Flow {
            if depth > self.max_depth {
                self.breach = Some(LimitBreach::Depth {
                    pointer: render(path),
                    offset,
                });
                return Flow::Stop;
            }
            Flow::Continue
        }
        fn string(&mut self, path: &[Seg], offset: usize, len: usize) -> Flow {
            if len > self.max_string {
                self.breach = Some(LimitBreach::StringLength {
                    pointer: render(path),
                    offset,
                    len,
                });
                return Flow::Stop;
            }
            Flow::Continue
        }
    }
    let mut l = Limits {
        max_depth,
        max_string,
        breach: None,
    };
    walk(text, &mut l);
    l.breach
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "a", "Effect": "Allow"},
    {"Sid": "b/c", "Effect": "Deny", "Condition": {"StringEquals": {"k": ["x", "y"]}}}
  ]
}"#;

    #[test]
    fn pointer_to_offset_and_back() {
        let off = offset_of_pointer(DOC, "/Statement/1/Effect").unwrap();
        assert_eq!(&DOC[off..off + 8], "\"Effect\"");
        let off = offset_of_pointer(DOC, "/Statement/1/Condition/StringEquals/k/1").unwrap();
        assert_eq!(&DOC[off..off + 3], "\"y\"");
        assert_eq!(offset_of_pointer(DOC, "/Statement/2"), None);
        assert_eq!(offset_of_pointer(DOC, ""), Some(0));
    }

    #[test]
    fn offset_to_pointer() {
        let off = DOC.find("\"Deny\"").unwrap();
        assert_eq!(pointer_at_offset(DOC, off + 6), "/Statement/1/Effect");
        let off = DOC.find("\"Sid\": \"a\"").unwrap();
        assert_eq!(pointer_at_offset(DOC, off + 5), "/Statement/0/Sid");
    }

    #[test]
    fn statement_offsets_array_and_object() {
        let offs = element_offsets(DOC, "/Statement");
        assert_eq!(offs.len(), 2);
        assert!(DOC[offs[1]..].starts_with("{\"Sid\": \"b/c\""));
        let single = r#"{"Statement": {"Effect": "Allow"}}"#;
        assert_eq!(element_offsets(single, "/Statement"), vec![14]);
    }

    #[test]
    fn positions_are_one_based() {
        let src = SourceText::new("ab\ncdé\nf".to_owned());
        assert_eq!(src.position(0), Position { line: 1, column: 1 });
        assert_eq!(src.position(3), Position { line: 2, column: 1 });
        assert_eq!(src.position(7), Position { line: 2, column: 4 });
        assert_eq!(src.position(8), Position { line: 3, column: 1 });
        // Long non-ASCII lines use checkpoints.
        let long = format!("{}é{}x", "a".repeat(3000), "b".repeat(3000));
        let src = SourceText::new(long.clone());
        let x = long.find('x').unwrap();
        assert_eq!(
            src.position(x),
            Position {
                line: 1,
                column: 6002
            }
        );
    }

    #[test]
    fn limits() {
        let deep = "[[[[1]]]]";
        assert!(matches!(
            check_limits(deep, 3, 10),
            Some(LimitBreach::Depth { .. })
        ));
        assert_eq!(check_limits(deep, 4, 10), None);
        let long = r#"{"a": "0123456789x"}"#;
        assert_eq!(
            check_limits(long, 4, 10),
            Some(LimitBreach::StringLength {
                pointer: "/a".into(),
                offset: 6,
                len: 11
            })
        );
    }

    #[test]
    fn escaped_keys() {
        let src = r#"{"a/b": {"c~d": 1}}"#;
        assert_eq!(offset_of_pointer(src, "/a~1b/c~0d"), Some(9));
    }
}

//! serde shapes of an IAM JSON policy document exactly as written.
//!
//! Strict: unknown elements and repeated keys are errors (serde reports them
//! with line:column). Values keep their written form; [`super::parse`] turns
//! these shapes into the validated model. Condition values stay raw JSON so
//! that unquoted numbers keep their source text (`1.10` stays `1.10`).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// A policy document.
#[derive(Debug, Default)]
pub(crate) struct DocumentShape<'a> {
    /// `Version`.
    pub(crate) version: Option<String>,
    /// `Id`.
    pub(crate) id: Option<String>,
    /// `Statement`: one object or a list.
    pub(crate) statement: OneOrMany<StatementShape<'a>>,
}

/// One statement.
#[derive(Debug, Default)]
pub(crate) struct StatementShape<'a> {
    /// `Sid`.
    pub(crate) sid: Option<String>,
    /// `Effect` (checked later, so that a missing one is located precisely).
    pub(crate) effect: Option<String>,
    /// `Action`.
    pub action: Option<OneOrMany<String>>,
    /// `NotAction`.
    pub(crate) not_action: Option<OneOrMany<String>>,
    /// `Resource`.
    pub resource: Option<OneOrMany<String>>,
    /// `NotResource`.
    pub(crate) not_resource: Option<OneOrMany<String>>,
    /// `Principal`.
    pub principal: Option<PrincipalShape>,
    /// `NotPrincipal`.
    pub(crate) not_principal: Option<PrincipalShape>,
    /// `Condition`: operator → key → value(s), raw.
    pub(crate) condition: Option<UniqueMap<UniqueMap<&'a RawValue>>>,
    /// Elements written but not read (an error says why), and those a
    /// misspelt name probably meant: no "missing" error repeats them.
    pub(crate) unreadable: Vec<&'static str>,
}

/// The elements a document may have.
pub(crate) const DOCUMENT_ELEMENTS: &[&str] = &["Version", "Id", "Statement"];

/// The elements a statement may have.
pub(crate) const STATEMENT_ELEMENTS: &[&str] = &[
    "Sid",
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Principal",
    "NotPrincipal",
    "Condition",
];

/// Where reading an element went wrong: the pointer of the element (or of
/// what inside it failed), the byte offset in the text read, and serde's
/// message (without its position).
#[derive(Debug)]
pub(crate) struct ShapeError {
    pub(crate) pointer: String,
    pub(crate) offset: Option<usize>,
    pub(crate) kind: ShapeErrorKind,
}

/// What was wrong with an element.
#[derive(Debug)]
pub(crate) enum ShapeErrorKind {
    /// serde's message about the element's value.
    Json(serde_json::Error),
    /// A name that is no element here.
    Unknown(String),
    /// An element written twice.
    Duplicate(String),
    /// A required element left out.
    Missing(&'static str),
}

/// A JSON object's members as written: names in order, values unread,
/// repeated names kept (the reader reports them).
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis;
        impl<'de> Visitor<'de> for Vis {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    out.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(Vis)
    }
}

/// Reads a document element by element, so that one wrong element does not
/// hide the others: every unknown, repeated, missing or mistyped element of
/// the document and of each statement is reported. Only JSON that does not
/// parse at all (or a document that is not an object) stops it at once.
pub(crate) fn read_document(
    text: &str,
) -> Result<(DocumentShape<'_>, Vec<ShapeError>), serde_json::Error> {
    let members: Members<'_> = serde_json::from_str(text)?;
    let mut errors = Vec::new();
    let mut doc = DocumentShape::default();
    let mut statements: Option<&RawValue> = None;
    let mut seen = Vec::new();
    for (name, raw) in &members.0 {
        let ptr = crate::policy::locate::push_segment("", name);
        if !note_name(&mut seen, name, DOCUMENT_ELEMENTS, &ptr, &mut errors) {
            continue;
        }
        match name.as_str() {
            "Version" => doc.version = element(text, raw, &ptr, &mut errors),
            "Id" => doc.id = element(text, raw, &ptr, &mut errors),
            _ => statements = Some(*raw),
        }
    }
    // One statement object, or a list of them: each read on its own.
    let statements = statements.and_then(|raw| {
        if raw.get().starts_with('[') {
            element::<Vec<&RawValue>>(text, raw, "/Statement", &mut errors).map(|values| {
                OneOrMany {
                    values,
                    listed: true,
                }
            })
        } else {
            Some(OneOrMany::one(raw))
        }
    });
    let Some(statements) = statements else {
        if !seen.contains(&"Statement") {
            errors.push(ShapeError {
                pointer: String::new(),
                offset: None,
                kind: ShapeErrorKind::Missing("Statement"),
            });
        }
        return Ok((doc, errors));
    };
    let mut read = Vec::with_capacity(statements.values.len());
    for (ptr, raw) in statements.with_pointers("/Statement") {
        read.push(read_statement(text, raw, &ptr, &mut errors));
    }
    doc.statement = OneOrMany {
        values: read,
        listed: statements.listed,
    };
    Ok((doc, errors))
}

fn read_statement<'a>(
    text: &'a str,
    raw: &'a RawValue,
    base: &str,
    errors: &mut Vec<ShapeError>,
) -> StatementShape<'a> {
    let mut st = StatementShape::default();
    let Some(members) = element::<Members<'a>>(text, raw, base, errors) else {
        return st;
    };
    let mut seen = Vec::new();
    for (name, raw) in &members.0 {
        let ptr = crate::policy::locate::push_segment(base, name);
        let errors_before = errors.len();
        if !note_name(&mut seen, name, STATEMENT_ELEMENTS, &ptr, errors) {
            if let Some(meant) = crate::policy::catalogue::closest_name(name, STATEMENT_ELEMENTS) {
                st.unreadable.push(meant);
            }
            continue;
        }
        let known = STATEMENT_ELEMENTS.iter().copied().find(|k| *k == name);
        match name.as_str() {
            "Sid" => st.sid = element(text, raw, &ptr, errors),
            "Effect" => st.effect = element(text, raw, &ptr, errors),
            "Action" => st.action = element(text, raw, &ptr, errors),
            "NotAction" => st.not_action = element(text, raw, &ptr, errors),
            "Resource" => st.resource = element(text, raw, &ptr, errors),
            "NotResource" => st.not_resource = element(text, raw, &ptr, errors),
            "Principal" => st.principal = element(text, raw, &ptr, errors),
            "NotPrincipal" => st.not_principal = element(text, raw, &ptr, errors),
            _ => st.condition = element(text, raw, &ptr, errors),
        }
        if errors.len() > errors_before {
            st.unreadable.extend(known);
        }
    }
    st
}

/// Records `name`; false (with an error) when it is unknown or repeated.
fn note_name(
    seen: &mut Vec<&'static str>,
    name: &str,
    known: &[&'static str],
    ptr: &str,
    errors: &mut Vec<ShapeError>,
) -> bool {
    let Some(&canonical) = known.iter().find(|k| **k == name) else {
        errors.push(ShapeError {
            pointer: ptr.to_owned(),
            offset: None,
            kind: ShapeErrorKind::Unknown(name.to_owned()),
        });
        return false;
    };
    if seen.contains(&canonical) {
        errors.push(ShapeError {
            pointer: ptr.to_owned(),
            offset: None,
            kind: ShapeErrorKind::Duplicate(canonical.to_owned()),
        });
        return false;
    }
    seen.push(canonical);
    true
}

/// One element's value read as `T`; on failure the error is located inside
/// the element (`raw` is a slice of `text`).
fn element<'a, T: Deserialize<'a>>(
    text: &'a str,
    raw: &'a RawValue,
    ptr: &str,
    errors: &mut Vec<ShapeError>,
) -> Option<T> {
    let inner = raw.get();
    match serde_json::from_str::<T>(inner) {
        Ok(v) => Some(v),
        Err(e) => {
            let base = (inner.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
            let at = crate::policy::parse::json_error(inner, &e);
            let (rel_pointer, rel_offset) = (at.pointer, at.offset.unwrap_or(0));
            errors.push(ShapeError {
                pointer: format!("{ptr}{rel_pointer}"),
                offset: Some(base + rel_offset),
                kind: ShapeErrorKind::Json(e),
            });
            None
        }
    }
}

/// `Principal` / `NotPrincipal`: `"*"` or a map of principal types.
#[derive(Debug)]
pub(crate) enum PrincipalShape {
    /// A bare string (only `"*"` is valid; checked later).
    Bare(String),
    /// `{"AWS": …, "Service": …, …}`.
    Map(PrincipalMap),
}

/// The map form of a principal.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrincipalMap {
    /// `AWS`: accounts, users, roles, sessions, or `*`.
    #[serde(rename = "AWS", default)]
    pub(crate) aws: Option<OneOrMany<String>>,
    /// `Service`: service principals.
    #[serde(rename = "Service", default)]
    pub(crate) service: Option<OneOrMany<String>>,
    /// `Federated`: identity providers (trust policies; never matches here).
    #[serde(rename = "Federated", default)]
    pub(crate) federated: Option<OneOrMany<String>>,
    /// `CanonicalUser`: S3 canonical ids (never matches here).
    #[serde(rename = "CanonicalUser", default)]
    pub(crate) canonical_user: Option<OneOrMany<String>>,
}

impl<'de> Deserialize<'de> for PrincipalShape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PrincipalShape;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"*\" or a map of principal types")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(PrincipalShape::Bare(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                PrincipalMap::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(PrincipalShape::Map)
            }
        }
        d.deserialize_any(V)
    }
}

/// One value or a list of them (the grammar allows both wherever a list goes).
#[derive(Debug)]
pub(crate) struct OneOrMany<T> {
    /// The values.
    pub(crate) values: Vec<T>,
    /// Whether they were written as a list (pointers then get an index).
    pub(crate) listed: bool,
}

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            listed: true,
        }
    }
}

impl<T> OneOrMany<T> {
    fn one(value: T) -> Self {
        Self {
            values: vec![value],
            listed: false,
        }
    }

    /// Each value with its pointer under `base`.
    pub(crate) fn with_pointers<'s>(
        &'s self,
        base: &'s str,
    ) -> impl Iterator<Item = (String, &'s T)> + 's {
        self.values.iter().enumerate().map(move |(i, v)| {
            let pointer = if self.listed {
                crate::policy::locate::push_index(base, i)
            } else {
                base.to_owned()
            };
            (pointer, v)
        })
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(de::value::StrDeserializer::<E>::new(v)).map(OneOrMany::one)
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                T::deserialize(de::value::BorrowedStrDeserializer::<E>::new(v)).map(OneOrMany::one)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element()? {
                    out.push(item);
                }
                Ok(OneOrMany {
                    values: out,
                    listed: true,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(OneOrMany::one)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A JSON object kept in written order; a repeated key is an error.
#[derive(Debug)]
pub(crate) struct UniqueMap<V>(pub Vec<(String, V)>);

impl<V> Default for UniqueMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                    }
                    let value = map.next_value()?;
                    out.push((key, value));
                }
                Ok(UniqueMap(out))
            }
        }
        d.deserialize_map(Vis(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_or_many_forms() {
        let one: OneOrMany<String> = serde_json::from_str("\"a\"").unwrap();
        assert_eq!(one.values, vec!["a"]);
        assert!(!one.listed);
        let many: OneOrMany<String> = serde_json::from_str("[\"a\",\"b\"]").unwrap();
        assert_eq!(many.values, vec!["a", "b"]);
        assert!(many.listed);
    }

    #[test]
    fn statement_object_or_list_and_raw_conditions() {
        let src =
            r#"{"Statement": {"Effect": "Allow", "Condition": {"NumericEquals": {"k": 1.10}}}}"#;
        let (doc, errors) = read_document(src).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(doc.statement.values.len(), 1);
        let cond = doc.statement.values[0].condition.as_ref().unwrap();
        assert_eq!(cond.0[0].1.0[0].1.get(), "1.10");
    }

    fn kinds(src: &str) -> Vec<(String, String)> {
        read_document(src)
            .unwrap()
            .1
            .into_iter()
            .map(|e| (e.pointer, format!("{:?}", e.kind)))
            .collect()
    }

    #[test]
    fn every_element_error_is_reported() {
        let k = kinds(
            r#"{"Statement": [{"Effect": "Allow", "Effect": "Deny", "Actions": "s3:*", "Resource": 5},
                             {"Sid": [], "Condition": {"Bool": {"a": "true", "a": "false"}}}],
                "Foo": 1}"#,
        );
        let pointers: Vec<&str> = k.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/Foo",
                "/Statement/0/Effect",
                "/Statement/0/Actions",
                "/Statement/0/Resource",
                "/Statement/1/Sid",
                "/Statement/1/Condition/Bool/a",
            ],
            "{k:?}"
        );
        assert!(k[0].1.contains("Unknown(\"Foo\")"));
        assert!(k[1].1.contains("Duplicate(\"Effect\")"));
        assert!(k[5].1.contains("duplicate key"), "{k:?}");
        assert!(
            kinds(r#"{"Version": "2012-10-17"}"#)[0]
                .1
                .contains("Missing(\"Statement\")")
        );
        assert!(read_document("[1]").is_err());
        assert!(read_document("{").is_err());
    }

    #[test]
    fn a_misspelt_element_counts_as_written() {
        let (doc, _) =
            read_document(r#"{"Statement": [{"Effect": "Allow", "Actoin": "s3:*"}]}"#).unwrap();
        assert_eq!(doc.statement.values[0].unreadable, ["Action"]);
    }
}

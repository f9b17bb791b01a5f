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
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DocumentShape<'a> {
    /// `Version`.
    #[serde(rename = "Version", default)]
    pub(crate) version: Option<String>,
    /// `Id`.
    #[serde(rename = "Id", default)]
    pub(crate) id: Option<String>,
    /// `Statement`: one object or a list.
    #[serde(rename = "Statement", borrow)]
    pub(crate) statement: OneOrMany<StatementShape<'a>>,
}

/// One statement.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatementShape<'a> {
    /// `Sid`.
    #[serde(rename = "Sid", default)]
    pub(crate) sid: Option<String>,
    /// `Effect` (checked later, so that a missing one is located precisely).
    #[serde(rename = "Effect", default)]
    pub(crate) effect: Option<String>,
    /// `Action`.
    #[serde(rename = "Action", default)]
    pub action: Option<OneOrMany<String>>,
    /// `NotAction`.
    #[serde(rename = "NotAction", default)]
    pub(crate) not_action: Option<OneOrMany<String>>,
    /// `Resource`.
    #[serde(rename = "Resource", default)]
    pub resource: Option<OneOrMany<String>>,
    /// `NotResource`.
    #[serde(rename = "NotResource", default)]
    pub(crate) not_resource: Option<OneOrMany<String>>,
    /// `Principal`.
    #[serde(rename = "Principal", default)]
    pub principal: Option<PrincipalShape>,
    /// `NotPrincipal`.
    #[serde(rename = "NotPrincipal", default)]
    pub(crate) not_principal: Option<PrincipalShape>,
    /// `Condition`: operator → key → value(s), raw.
    #[serde(rename = "Condition", default, borrow)]
    pub(crate) condition: Option<UniqueMap<UniqueMap<&'a RawValue>>>,
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
        let doc: DocumentShape<'_> = serde_json::from_str(src).unwrap();
        assert_eq!(doc.statement.values.len(), 1);
        let cond = doc.statement.values[0].condition.as_ref().unwrap();
        assert_eq!(cond.0[0].1.0[0].1.get(), "1.10");
    }

    #[test]
    fn strict_shapes() {
        let unknown = r#"{"Statement": [], "Foo": 1}"#;
        assert!(
            serde_json::from_str::<DocumentShape<'_>>(unknown)
                .unwrap_err()
                .to_string()
                .contains("unknown field `Foo`")
        );
        let dup = r#"{"Statement": [{"Effect": "Allow", "Effect": "Deny"}]}"#;
        assert!(
            serde_json::from_str::<DocumentShape<'_>>(dup)
                .unwrap_err()
                .to_string()
                .contains("duplicate field `Effect`")
        );
        let dup_cond = r#"{"Statement": [{"Condition": {"Bool": {"a": "true", "a": "false"}}}]}"#;
        assert!(
            serde_json::from_str::<DocumentShape<'_>>(dup_cond)
                .unwrap_err()
                .to_string()
                .contains("duplicate key `a`")
        );
    }
}

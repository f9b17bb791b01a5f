//! Compiled text and conditions: condition keys classified once by where
//! their value comes from, templates split into literal and variable parts,
//! condition values parsed for their operator.

use std::sync::Arc;

use ipnet::IpNet;
use smallvec::SmallVec;

use super::pattern::{Matcher, Seg, equals_segments, glob_segments};
use crate::policy::template::{Part, Template};
use crate::policy::value::OwnedDecimal;
use crate::policy::{BoolValue, Condition, ConditionValue, Operator};

/// Where a context key's value comes from (docs/evaluation.md §1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// `aws:PrincipalArn`.
    PrincipalArn,
    /// `aws:PrincipalType`.
    PrincipalType,
    /// `aws:userid`.
    UserId,
    /// `aws:username`.
    UserName,
    /// `aws:PrincipalAccount`.
    PrincipalAccount,
    /// `kms:CallerAccount`.
    CallerAccount,
    /// `aws:PrincipalIsAWSService`.
    IsAwsService,
    /// `aws:PrincipalOrgID`.
    OrgId,
    /// `aws:PrincipalOrgPaths`.
    OrgPaths,
    /// `aws:PrincipalTag/<k>` (k lower-cased).
    PrincipalTag(Box<str>),
    /// `aws:ResourceTag/<k>` (k lower-cased).
    ResourceTag(Box<str>),
    /// `aws:ResourceAccount`.
    ResourceAccount,
    /// `kms:ResourceAliases`.
    ResourceAliases,
    /// `kms:KeySpec`.
    KeySpec,
    /// `kms:KeyUsage`.
    KeyUsage,
    /// `kms:KeyOrigin`.
    KeyOrigin,
    /// `aws:CurrentTime`.
    CurrentTime,
    /// `aws:EpochTime`.
    EpochTime,
    /// `kms:EncryptionContextKeys`.
    EncryptionContextKeys,
    /// `aws:RequestedRegion`.
    RequestedRegion,
    /// Anything else: the caller's value.
    Caller,
}

impl KeySource {
    /// Classify a lower-cased key.
    pub(crate) fn classify(lower: &str) -> Self {
        match lower {
            "aws:principalarn" => Self::PrincipalArn,
            "aws:principaltype" => Self::PrincipalType,
            "aws:userid" => Self::UserId,
            "aws:username" => Self::UserName,
            "aws:principalaccount" => Self::PrincipalAccount,
            "kms:calleraccount" => Self::CallerAccount,
            "aws:principalisawsservice" => Self::IsAwsService,
            "aws:principalorgid" => Self::OrgId,
            "aws:principalorgpaths" => Self::OrgPaths,
            "aws:resourceaccount" => Self::ResourceAccount,
            "kms:resourcealiases" => Self::ResourceAliases,
            "kms:keyspec" => Self::KeySpec,
            "kms:keyusage" => Self::KeyUsage,
            "kms:keyorigin" => Self::KeyOrigin,
            "aws:currenttime" => Self::CurrentTime,
            "aws:epochtime" => Self::EpochTime,
            "kms:encryptioncontextkeys" => Self::EncryptionContextKeys,
            "aws:requestedregion" => Self::RequestedRegion,
            _ => {
                if let Some(k) = lower.strip_prefix("aws:principaltag/") {
                    Self::PrincipalTag(k.into())
                } else if let Some(k) = lower.strip_prefix("aws:resourcetag/") {
                    Self::ResourceTag(k.into())
                } else {
                    Self::Caller
                }
            }
        }
    }
}

/// A context key: its name and where its value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CKey {
    /// Lower-cased name.
    pub(crate) lower: Arc<str>,
    /// Source.
    pub source: KeySource,
}

impl CKey {
    /// Classify a lower-cased key.
    pub(crate) fn new(lower: &str) -> Self {
        Self {
            lower: lower.into(),
            source: KeySource::classify(lower),
        }
    }
}

/// A compiled template part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CPart {
    /// Policy text (wildcards active where the context globs).
    Text(Box<str>),
    /// Literal characters.
    Lit(Box<str>),
    /// A variable.
    Var {
        /// Its key.
        key: CKey,
        /// Its default.
        default: Option<Box<str>>,
    },
}

/// Text from a policy: a plain matcher, or a template with variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CText {
    /// No variables and no escapes.
    Plain(Matcher),
    /// Parts to substitute.
    Template(Box<[CPart]>),
}

/// Segments of a resolved template, inline for the usual sizes.
pub(crate) type Segs<'a> = SmallVec<[Seg<'a>; 8]>;

impl CText {
    /// Compile a template. `glob` makes written `*` and `?` wildcards.
    pub(crate) fn compile(t: &Template, glob: bool) -> Self {
        let parts = t.parts();
        match parts {
            [] => return Self::Plain(Matcher::literal("")),
            [Part::Text(s)] => {
                return Self::Plain(if glob {
                    Matcher::glob(s)
                } else {
                    Matcher::literal(s)
                });
            }
            _ => {}
        }
        if !glob && !t.has_variables() {
            let mut text = String::new();
            for p in parts {
                if let Part::Text(s) | Part::Literal(s) = p {
                    text.push_str(s);
                }
            }
            return Self::Plain(Matcher::literal(&text));
        }
        Self::Template(
            parts
                .iter()
                .map(|p| match p {
                    Part::Text(s) => CPart::Text(s.clone()),
                    Part::Literal(s) => CPart::Lit(s.clone()),
                    Part::Var(v) => CPart::Var {
                        key: CKey::new(&v.key),
                        default: v.default.clone(),
                    },
                })
                .collect(),
        )
    }

    /// Resolve variables into segments; `None` when a variable has no value
    /// and no default.
    pub(crate) fn segments<'a>(
        parts: &'a [CPart],
        glob: bool,
        lookup: &impl Fn(&CKey) -> Option<&'a str>,
    ) -> Option<Segs<'a>> {
        let mut out = Segs::new();
        for p in parts {
            out.push(match p {
                CPart::Text(s) if glob => Seg::Glob(s),
                CPart::Text(s) | CPart::Lit(s) => Seg::Lit(s),
                CPart::Var { key, default } => Seg::Lit(lookup(key).or(default.as_deref())?),
            });
        }
        Some(out)
    }

    /// Whether `text` matches; `None` when a variable has no value.
    pub(crate) fn matches<'a>(
        &'a self,
        text: &str,
        glob: bool,
        fold: bool,
        lookup: &impl Fn(&CKey) -> Option<&'a str>,
    ) -> Option<bool> {
        match self {
            Self::Plain(m) => Some(m.matches(text, fold)),
            Self::Template(parts) => {
                let segs = Self::segments(parts, glob, lookup)?;
                Some(if glob {
                    glob_segments(&segs, text, fold)
                } else {
                    equals_segments(&segs, text, fold)
                })
            }
        }
    }

    /// The variables' keys.
    pub(crate) fn variable_keys(&self) -> impl Iterator<Item = &CKey> {
        let parts: &[CPart] = match self {
            Self::Plain(_) => &[],
            Self::Template(p) => p,
        };
        parts.iter().filter_map(|p| match p {
            CPart::Var { key, .. } => Some(key),
            _ => None,
        })
    }
}

/// A compiled condition value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CValue {
    /// String operators (literal for Equals, glob for Like).
    Str(CText),
    /// Numeric operators.
    Number(OwnedDecimal),
    /// Date operators.
    Date(OwnedDecimal),
    /// `Bool` literal.
    Bool(bool),
    /// `Bool` with a variable.
    BoolVar(CText),
    /// `BinaryEquals`.
    Binary(Box<[u8]>),
    /// IP operators.
    Ip(IpNet),
    /// ARN operators: six pieces, or `None` for a value with fewer (never matches).
    Arn(Option<Box<[CText]>>),
    /// `Null`.
    Null(bool),
}

/// A compiled `(operator, key, values)` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CCondition {
    /// The operator.
    pub op: Operator,
    /// The key.
    pub(crate) key: CKey,
    /// The values.
    pub(crate) values: Box<[CValue]>,
    /// The values as the policy writes them (explanations only).
    pub(crate) written_values: Box<[Box<str>]>,
}

impl CCondition {
    /// Compile a validated condition.
    pub(crate) fn compile(c: &Condition) -> Self {
        let like = matches!(
            c.op.base.positive(),
            crate::policy::BaseOperator::StringLike
        );
        // U46: an unreadable value matches nothing; it is left out (a
        // condition left with no value is false).
        let values = c
            .values
            .iter()
            .filter_map(|v| {
                Some(match v {
                    ConditionValue::String(t) => CValue::Str(CText::compile(t, like)),
                    ConditionValue::Number(d) => CValue::Number(d.clone()),
                    ConditionValue::Date(d) => CValue::Date(d.clone()),
                    ConditionValue::Bool(BoolValue::Literal(b)) => CValue::Bool(*b),
                    ConditionValue::Bool(BoolValue::Template(t)) => {
                        CValue::BoolVar(CText::compile(t, false))
                    }
                    ConditionValue::Binary(b) => CValue::Binary(b.clone()),
                    ConditionValue::Ip(n) => CValue::Ip(*n),
                    ConditionValue::Arn(a) => CValue::Arn(
                        (a.pieces.len() == 6)
                            .then(|| a.pieces.iter().map(|p| CText::compile(p, true)).collect()),
                    ),
                    ConditionValue::Null(b) => CValue::Null(*b),
                    ConditionValue::Unreadable => return None,
                })
            })
            .collect();
        Self {
            op: c.op,
            key: CKey::new(&c.key),
            values,
            written_values: c.written_values.clone(),
        }
    }
}

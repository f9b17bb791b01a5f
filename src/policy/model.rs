//! The validated policy model: what the evaluator and the compiler trust.
//!
//! Every value here has been checked by [`super::parse`]: effects are known,
//! actions have a service, resources are `*` or ARNs with a literal service,
//! principals are well-formed, operators are known and their values parsed.

use std::fmt;
use std::sync::Arc;

use ipnet::IpNet;

use super::locate::Position;
use super::principal::PrincipalArn;
use super::template::Template;
use super::value::OwnedDecimal;

/// `Version` of a document; variables are recognised only under `2012-10-17`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    /// `2012-10-17`.
    V2012_10_17,
    /// `2008-10-17`.
    V2008_10_17,
    /// No `Version` element.
    Unspecified,
}

impl Version {
    /// Whether policy variables are substituted.
    pub(crate) fn variables(self) -> bool {
        self == Self::V2012_10_17
    }
}

/// `Effect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Effect {
    /// `Allow`.
    Allow,
    /// `Deny`.
    Deny,
}

impl Effect {
    /// The spelling used in output.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "Allow",
            Self::Deny => "Deny",
        }
    }
}

/// Where a policy is attached, which decides how it is validated and how
/// decisions name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    /// Service control policy.
    Scp,
    /// Resource control policy.
    Rcp,
    /// Resource-based policy of a resource other than a KMS key.
    Resource,
    /// KMS key policy.
    KeyPolicy,
    /// A role's trust policy (U45): its statements have no `Resource` and
    /// apply to the role itself.
    Trust,
    /// Identity policy attached to the user or role.
    Identity,
    /// Identity policy attached to one of the user's groups.
    Group,
    /// Permissions boundary.
    Boundary,
    /// The request's session policy.
    Session,
    /// A KMS grant (not a document; named for decisions).
    Grant,
}

impl PolicyKind {
    /// The spelling used in decisions.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Scp => "scp",
            Self::Rcp => "rcp",
            Self::Resource => "resource",
            Self::KeyPolicy => "key_policy",
            Self::Trust => "trust",
            Self::Identity => "identity",
            Self::Group => "group",
            Self::Boundary => "boundary",
            Self::Session => "session",
            Self::Grant => "grant",
        }
    }

    /// Whether statements of this kind carry `Principal`/`NotPrincipal`.
    pub(crate) fn has_principals(self) -> bool {
        matches!(
            self,
            Self::Resource | Self::KeyPolicy | Self::Trust | Self::Rcp
        )
    }

    /// Human name with its article, for messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Scp => "a service control policy",
            Self::Rcp => "a resource control policy",
            Self::Resource => "a resource-based policy",
            Self::KeyPolicy => "a key policy",
            Self::Trust => "a role trust policy",
            Self::Identity => "an identity policy",
            Self::Group => "a group policy",
            Self::Boundary => "a permissions boundary",
            Self::Session => "a session policy",
            Self::Grant => "a grant",
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed, validated policy document.
#[derive(Clone, Debug)]
pub struct PolicyDocument {
    /// `Version`.
    #[expect(
        dead_code,
        reason = "the loaded model keeps what the bundle says; no decision reads it"
    )]
    pub(crate) version: Version,
    /// `Id`.
    #[expect(
        dead_code,
        reason = "the loaded model keeps what the bundle says; no decision reads it"
    )]
    pub(crate) id: Option<String>,
    /// Whether `Statement` was written as a list (statement pointers then
    /// carry an index).
    pub(crate) listed: bool,
    /// Statements in written order.
    pub statements: Vec<Statement>,
}

impl PolicyDocument {
    /// JSON pointer of statement `index` inside the document.
    pub(crate) fn statement_pointer(&self, index: u32) -> String {
        if self.listed {
            format!("/Statement/{index}")
        } else {
            "/Statement".to_owned()
        }
    }
}

/// One statement.
#[derive(Clone, Debug)]
pub struct Statement {
    /// 0-based position in `Statement` (0 for a single object).
    pub(crate) index: u32,
    /// `Sid`.
    pub(crate) sid: Option<Arc<str>>,
    /// `Effect`.
    pub(crate) effect: Effect,
    /// `Action` or `NotAction`.
    pub action: Block<ActionPattern>,
    /// `Resource` or `NotResource`; `None` only in key policies, where such a
    /// statement applies to nothing.
    pub resource: Option<Block<ResourcePattern>>,
    /// `Principal` or `NotPrincipal` (resource-based kinds only).
    pub principal: Option<Block<PrincipalEntry>>,
    /// `Condition`, flattened: every entry must hold.
    pub conditions: Box<[Condition]>,
    /// Where the statement starts in its file.
    pub position: Position,
}

/// A list element with its negation (`NotAction`, `NotResource`, `NotPrincipal`).
#[derive(Clone, Debug)]
pub struct Block<T> {
    /// Whether this is the `Not…` form.
    pub(crate) negated: bool,
    /// The values (never empty).
    pub(crate) items: Box<[T]>,
}

/// One `Action` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionPattern {
    /// `*`.
    Any,
    /// `service:pattern`, both lower-cased; the pattern may hold `*` and `?`.
    Named {
        /// Service prefix, no wildcards.
        service: Box<str>,
        /// Action name pattern.
        name: Box<str>,
    },
}

/// One `Resource` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourcePattern {
    /// `*`.
    Any,
    /// An ARN pattern.
    Arn(ArnPattern),
}

/// An ARN pattern cut at its first five colons: 1 to 6 pieces, the last of
/// which keeps any further colons. The service piece (index 2) never holds a
/// wildcard or a live variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArnPattern {
    /// The pieces.
    pub(crate) pieces: Box<[Template]>,
}

/// One `Principal`/`NotPrincipal` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrincipalEntry {
    /// `"*"` or `{"AWS": "*"}`.
    Everyone,
    /// `{"AWS": "A"}` or the account's root ARN.
    Account(Box<str>),
    /// A user, role, role session or federated user (canonical).
    Arn(PrincipalArn),
    /// `{"Service": "x.amazonaws.com"}`.
    Service(Box<str>),
    /// `Federated` and `CanonicalUser` values: valid, but never match a caller.
    Unmatchable(Box<str>),
}

/// A condition operator: base, set qualifier and `IfExists`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operator {
    /// The comparison.
    pub(crate) base: BaseOperator,
    /// `ForAllValues:` / `ForAnyValue:`.
    pub(crate) set: Option<SetQualifier>,
    /// `…IfExists`.
    pub(crate) if_exists: bool,
}

/// Set qualifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SetQualifier {
    /// `ForAllValues:`.
    ForAllValues,
    /// `ForAnyValue:`.
    ForAnyValue,
}

/// How a base operator compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueType {
    /// Strings (with variables).
    String,
    /// Exact decimals.
    Numeric,
    /// Instants.
    Date,
    /// Booleans.
    Bool,
    /// base64 bytes.
    Binary,
    /// IP ranges.
    Ip,
    /// ARNs, piece by piece.
    Arn,
    /// Presence.
    Null,
}

macro_rules! base_operators {
    ($($variant:ident => $name:literal, $ty:ident, $negated:literal, $positive:ident;)*) => {
        /// Base condition operators, as AWS spells them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum BaseOperator {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl BaseOperator {
            /// Every base operator.
            pub const ALL: &'static [BaseOperator] = &[$(BaseOperator::$variant),*];

            /// The name as written in policies.
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }

            /// Parse a base name (exact spelling).
            pub(crate) fn from_name(s: &str) -> Option<Self> {
                match s { $($name => Some(Self::$variant),)* _ => None }
            }

            /// What the values are.
            pub(crate) fn value_type(self) -> ValueType {
                match self { $(Self::$variant => ValueType::$ty),* }
            }

            /// Whether this is a negated operator (values combine as NOR).
            pub(crate) fn negated(self) -> bool {
                match self { $(Self::$variant => $negated),* }
            }

            /// The positive comparison behind a negated operator (itself otherwise).
            pub(crate) fn positive(self) -> Self {
                match self { $(Self::$variant => Self::$positive),* }
            }

            /// For the numeric and date operators: whether a request value
            /// that compares `ord` to the policy value satisfies the
            /// operator (`NotEquals` included). False for every other
            /// operator.
            pub(crate) fn admits(self, ord: std::cmp::Ordering) -> bool {
                use std::cmp::Ordering::{Equal, Greater, Less};
                match self {
                    Self::NumericEquals | Self::DateEquals => ord == Equal,
                    Self::NumericNotEquals | Self::DateNotEquals => ord != Equal,
                    Self::NumericLessThan | Self::DateLessThan => ord == Less,
                    Self::NumericLessThanEquals | Self::DateLessThanEquals => ord != Greater,
                    Self::NumericGreaterThan | Self::DateGreaterThan => ord == Greater,
                    Self::NumericGreaterThanEquals | Self::DateGreaterThanEquals => ord != Less,
                    _ => false,
                }
            }
        }
    };
}

base_operators! {
    StringEquals => "StringEquals", String, false, StringEquals;
    StringNotEquals => "StringNotEquals", String, true, StringEquals;
    StringEqualsIgnoreCase => "StringEqualsIgnoreCase", String, false, StringEqualsIgnoreCase;
    StringNotEqualsIgnoreCase => "StringNotEqualsIgnoreCase", String, true, StringEqualsIgnoreCase;
    StringLike => "StringLike", String, false, StringLike;
    StringNotLike => "StringNotLike", String, true, StringLike;
    NumericEquals => "NumericEquals", Numeric, false, NumericEquals;
    NumericNotEquals => "NumericNotEquals", Numeric, true, NumericEquals;
    NumericLessThan => "NumericLessThan", Numeric, false, NumericLessThan;
    NumericLessThanEquals => "NumericLessThanEquals", Numeric, false, NumericLessThanEquals;
    NumericGreaterThan => "NumericGreaterThan", Numeric, false, NumericGreaterThan;
    NumericGreaterThanEquals => "NumericGreaterThanEquals", Numeric, false, NumericGreaterThanEquals;
    DateEquals => "DateEquals", Date, false, DateEquals;
    DateNotEquals => "DateNotEquals", Date, true, DateEquals;
    DateLessThan => "DateLessThan", Date, false, DateLessThan;
    DateLessThanEquals => "DateLessThanEquals", Date, false, DateLessThanEquals;
    DateGreaterThan => "DateGreaterThan", Date, false, DateGreaterThan;
    DateGreaterThanEquals => "DateGreaterThanEquals", Date, false, DateGreaterThanEquals;
    Bool => "Bool", Bool, false, Bool;
    BinaryEquals => "BinaryEquals", Binary, false, BinaryEquals;
    IpAddress => "IpAddress", Ip, false, IpAddress;
    NotIpAddress => "NotIpAddress", Ip, true, IpAddress;
    ArnEquals => "ArnEquals", Arn, false, ArnEquals;
    ArnLike => "ArnLike", Arn, false, ArnLike;
    ArnNotEquals => "ArnNotEquals", Arn, true, ArnEquals;
    ArnNotLike => "ArnNotLike", Arn, true, ArnLike;
    Null => "Null", Null, false, Null;
}

impl Operator {
    /// Parse an operator name: `[ForAllValues:|ForAnyValue:]Base[IfExists]`.
    pub fn parse(s: &str) -> Option<Self> {
        let (set, rest) = if let Some(r) = s.strip_prefix("ForAllValues:") {
            (Some(SetQualifier::ForAllValues), r)
        } else if let Some(r) = s.strip_prefix("ForAnyValue:") {
            (Some(SetQualifier::ForAnyValue), r)
        } else {
            (None, s)
        };
        if let Some(base) = BaseOperator::from_name(rest) {
            return Some(Self {
                base,
                set,
                if_exists: false,
            });
        }
        let base = BaseOperator::from_name(rest.strip_suffix("IfExists")?)?;
        Some(Self {
            base,
            set,
            if_exists: true,
        })
    }

    /// Whether a missing key is reported for this operator (plain operators
    /// only: no `IfExists`, no set qualifier, not `Null`).
    pub(crate) fn reports_missing(self) -> bool {
        !self.if_exists && self.set.is_none() && self.base != BaseOperator::Null
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.set {
            Some(SetQualifier::ForAllValues) => f.write_str("ForAllValues:")?,
            Some(SetQualifier::ForAnyValue) => f.write_str("ForAnyValue:")?,
            None => {}
        }
        f.write_str(self.base.name())?;
        if self.if_exists {
            f.write_str("IfExists")?;
        }
        Ok(())
    }
}

/// One `(operator, key, values)` entry of a condition block.
#[derive(Clone, Debug)]
pub struct Condition {
    /// The operator.
    pub op: Operator,
    /// The context key, lower-cased.
    pub(crate) key: Box<str>,
    /// The key as written.
    pub(crate) written_key: Box<str>,
    /// The values, parsed for the operator.
    pub(crate) values: Box<[ConditionValue]>,
    /// The values as written (numbers and booleans as their JSON text),
    /// for explanations.
    pub(crate) written_values: Box<[Box<str>]>,
}

/// A condition value parsed for its operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ConditionValue {
    /// String operators.
    String(Template),
    /// Numeric operators.
    Number(OwnedDecimal),
    /// Date operators (seconds since the epoch).
    Date(OwnedDecimal),
    /// `Bool`: a literal, or a template holding a variable (U10).
    Bool(BoolValue),
    /// `BinaryEquals`: decoded bytes.
    Binary(Box<[u8]>),
    /// IP operators.
    Ip(IpNet),
    /// ARN operators.
    Arn(ArnPattern),
    /// `Null`: `true` means "the key is absent".
    Null(bool),
    /// A value its operator cannot read (U46): it matches nothing, and a
    /// condition whose values are all such is false.
    Unreadable,
}

/// A `Bool` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BoolValue {
    /// `true` / `false`.
    Literal(bool),
    /// Text with a variable, parsed after substitution.
    Template(Template),
}

//! Errors and warnings of policy parsing and validation.
//!
//! Each carries the JSON pointer of the offending element inside its document
//! (and, for serde errors, the byte offset serde reported); the bundle loader
//! turns these into file, pointer and line:column.

use super::model::PolicyKind;

/// A policy that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// Pointer inside the document.
    pub(crate) pointer: String,
    /// Byte offset inside the document text, when serde gave one.
    pub(crate) offset: Option<usize>,
    /// What is wrong.
    pub(crate) kind: PolicyErrorKind,
}

/// What is wrong with a policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PolicyErrorKind {
    /// Not valid JSON, or not the document grammar (unknown element, repeated key, wrong type).
    #[error("{0}")]
    Json(String),
    /// `Version` other than the two AWS defines.
    #[error("unknown `Version` `{0}` (expected `2012-10-17` or `2008-10-17`)")]
    Version(String),
    /// No `Effect`.
    #[error("statement has no `Effect`")]
    MissingEffect,
    /// `Effect` other than `Allow`/`Deny`.
    #[error("`Effect` must be `Allow` or `Deny` (case-sensitive), not `{0}`")]
    Effect(String),
    /// Neither or both of `X` and `NotX`.
    #[error("statement needs exactly one of `{0}` and `Not{0}`")]
    ExactlyOne(&'static str),
    /// An empty list where a value is needed.
    #[error("`{0}` must not be empty")]
    Empty(&'static str),
    /// An action that is not `*` or `service:name`.
    #[error("action `{0}` is not `*` or `service:action`")]
    Action(String),
    /// A wildcard in an action's service prefix.
    #[error("action `{0}` has a wildcard in its service prefix")]
    ActionServiceWildcard(String),
    /// A resource that is not `*` or an ARN.
    #[error("resource `{0}` is neither `*` nor an ARN")]
    Resource(String),
    /// A wildcard in a resource's service piece.
    #[error("resource `{0}` has a wildcard in its service piece")]
    ResourceServiceWildcard(String),
    /// A malformed principal value.
    #[error("principal `{value}`: {reason}")]
    Principal {
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A name that is no element of a document or statement, with the
    /// element it probably means.
    #[error("unknown field `{0}`{hint}", hint = did_you_mean(*.1))]
    UnknownElement(String, Option<&'static str>),
    /// An element written twice.
    #[error("duplicate field `{0}`")]
    DuplicateElement(String),
    /// A required element left out.
    #[error("missing field `{0}`")]
    MissingElement(&'static str),
    /// An operator AWS does not define, with the closest one that it does.
    #[error("unknown condition operator `{0}`{hint}", hint = did_you_mean(.1.as_deref()))]
    Operator(String, Option<String>),
    /// `Null` with a set qualifier or `IfExists`.
    #[error("`{0}`: `Null` takes no `ForAllValues:`/`ForAnyValue:` prefix and no `IfExists`")]
    NullQualified(String),
    /// Two keys equal ignoring case under one operator.
    #[error("condition key `{0}` repeats (keys compare ignoring case)")]
    DuplicateKey(String),
    /// An empty condition key.
    #[error("empty condition key")]
    EmptyKey,
    /// A condition value that is not a string, number or boolean.
    #[error("condition values must be strings, numbers or booleans")]
    ValueType,
    /// `Principal`/`NotPrincipal` where the place forbids it.
    #[error("`{element}` is not allowed in {place}")]
    PrincipalNotAllowed {
        /// `Principal` or `NotPrincipal`.
        element: &'static str,
        /// Where the document is attached.
        place: &'static str,
    },
    /// No `Principal`/`NotPrincipal` where the place requires one.
    #[error("every statement of {0} needs `Principal` or `NotPrincipal`")]
    PrincipalRequired(&'static str),
    /// `NotPrincipal` with `Allow`.
    #[error("`NotPrincipal` is only allowed with `\"Effect\": \"Deny\"`")]
    NotPrincipalWithAllow,
    /// No `Resource`/`NotResource`.
    #[error("statement needs `Resource` or `NotResource`")]
    MissingResource,
    /// A short ARN pattern where the place refuses it (U43).
    #[error("`{0}` has fewer than six colon-separated pieces; {1}")]
    ShortArn(String, &'static str),
    /// `Resource`/`NotResource` in a role trust policy.
    #[error(
        "a role trust policy's statements have no `Resource` or `NotResource`: they apply to the role itself"
    )]
    ResourceInTrustPolicy,
}

/// A policy that loads but deserves a second look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyWarning {
    /// Pointer inside the document.
    pub(crate) pointer: String,
    /// What was noticed.
    pub(crate) kind: PolicyWarningKind,
}

/// What was noticed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PolicyWarningKind {
    /// A `${` that is not a well-formed variable.
    #[error("`${{` does not start a well-formed policy variable here; it is literal text")]
    MalformedVariable,
    /// `${…}` in a document whose `Version` is not `2012-10-17`.
    #[error("policy variables need `\"Version\": \"2012-10-17\"`; here `${{…}}` is literal text")]
    VariablesNeedVersion,
    /// A variable on a multivalued key.
    #[error(
        "policy variable `${{{0}}}` names a multivalued key; it has no value when the key has several"
    )]
    MultivaluedVariable(String),
    /// A variable before the fifth colon of a resource (U32).
    #[error(
        "policy variable in the {0} piece of a resource ARN; AWS documents variables only after the fifth colon"
    )]
    VariableInArnPiece(&'static str),
    /// `ForAllValues` in an `Allow`.
    #[error("`{0}` in an `Allow` statement is true when the key is absent or empty")]
    ForAllValuesInAllow(String),
    /// A set operator on `kms:EncryptionContext:` or `aws:RequestTag/` keys (U39).
    #[error("`{operator}` on single-valued key `{key}`: KMS rejects set operators on it")]
    SetOperatorOnSingleValued {
        /// Operator.
        operator: String,
        /// Key.
        key: String,
    },
    /// A plain operator on a multivalued key (U12).
    #[error(
        "`{operator}` on multivalued key `{key}` never matches several values; use `ForAnyValue:` or `ForAllValues:`"
    )]
    PlainOperatorOnMultivalued {
        /// Operator.
        operator: String,
        /// Key.
        key: String,
    },
    /// A short ARN pattern that is padded with `*` pieces (U43).
    #[error("`{0}` has fewer than six colon-separated pieces; it is read as if padded with `:*`")]
    ShortArnPadded(String),
    /// A short ARN pattern without a wildcard in a policy that names
    /// principals (U43): it matches nothing.
    #[error(
        "`{0}` has fewer than six colon-separated pieces and no wildcard; here it matches nothing"
    )]
    ShortArnMatchesNothing(String),
    /// A set qualifier on `Null` (U47): ignored.
    #[error(
        "`{0}`: `Null` takes no set qualifier; it is ignored and the condition is a plain `Null`"
    )]
    NullQualifier(String),
    /// A value its operator cannot read (U46): it matches nothing.
    #[error("`{operator}`: `{value}` is not {expected}; this value matches nothing")]
    UnreadableValue {
        /// Operator.
        operator: String,
        /// The value (cut to 128 bytes).
        value: String,
        /// What the operator reads.
        expected: &'static str,
    },
    /// `NotAction` with `Allow`.
    #[error("`NotAction` with `Allow` allows every action not listed, in every service")]
    NotActionWithAllow,
    /// `NotResource` with `Allow`.
    #[error("`NotResource` with `Allow` allows every resource not listed")]
    NotResourceWithAllow,
    /// A `Deny` testing a key that callers often do not send.
    #[error(
        "`Deny` with `{operator}` on `{key}` fires only when the caller sends the key; add `IfExists` to deny when it is absent"
    )]
    DenyOnOptionalKey {
        /// Operator.
        operator: String,
        /// Key.
        key: String,
    },
    /// A `Sid` that is not alphanumeric outside resource and key policies.
    #[error("`Sid` `{0}` is not alphanumeric; AWS rejects it in this kind of policy")]
    SidNotAlphanumeric(String),
    /// Two statements with one `Sid`.
    #[error("`Sid` `{0}` is used by more than one statement")]
    DuplicateSid(String),
    /// A key-policy statement without `Resource`.
    #[error("key-policy statement without `Resource` or `NotResource` applies to nothing")]
    KeyPolicyWithoutResource,
    /// `kms:ResourceAliases` in a key policy.
    #[error(
        "`kms:ResourceAliases` is valid only in IAM policies; in a key policy it is always absent"
    )]
    ResourceAliasesInKeyPolicy,
    /// A document attached nowhere.
    #[error("policy is attached nowhere; validated as an identity policy")]
    Unattached,
    /// An action whose service prefix the IAM catalogue does not hold.
    #[error("`{action}`: no service has the prefix `{service}` in the IAM catalogue, so it matches no AWS action{}", did_you_mean(.suggestion.as_deref()))]
    UnknownService {
        /// The action as written.
        action: String,
        /// Its service prefix.
        service: String,
        /// The closest known prefix.
        suggestion: Option<String>,
    },
    /// An action its service does not have.
    #[error("`{action}` is no action of its service in the IAM catalogue, so it matches no AWS action{}", did_you_mean(.suggestion.as_deref()))]
    UnknownAction {
        /// The action as written.
        action: String,
        /// The closest action of the service.
        suggestion: Option<String>,
    },
    /// A wildcard action pattern no action of its service matches.
    #[error("`{0}` matches no action of its service in the IAM catalogue")]
    ActionMatchesNothing(String),
    /// A condition key the IAM catalogue does not hold.
    #[error("`{key}` is no condition key in the IAM catalogue: AWS never sends it{}", did_you_mean(.suggestion.as_deref()))]
    UnknownConditionKey {
        /// The key as written.
        key: String,
        /// The closest known key.
        suggestion: Option<String>,
    },
}

/// `; did you mean `x`?` when there is a suggestion.
fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion.map_or_else(String::new, |s| format!("; did you mean `{s}`?"))
}

impl PolicyErrorKind {
    /// The known name this one is probably a typo of.
    pub(crate) fn suggestion(&self) -> Option<&str> {
        match self {
            Self::Operator(_, suggestion) => suggestion.as_deref(),
            Self::UnknownElement(_, suggestion) => *suggestion,
            _ => None,
        }
    }

    /// The error's stable code (`check` prints it with the message).
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Json(_) => "E-JSON",
            Self::UnknownElement(..) => "E-UNKNOWN-ELEMENT",
            Self::DuplicateElement(_) => "E-DUPLICATE-ELEMENT",
            Self::MissingElement(_) => "E-MISSING-ELEMENT",
            Self::Version(_) => "E-VERSION",
            Self::MissingEffect => "E-MISSING-EFFECT",
            Self::Effect(_) => "E-EFFECT",
            Self::ExactlyOne(_) => "E-EXACTLY-ONE",
            Self::Empty(_) => "E-EMPTY",
            Self::Action(_) => "E-ACTION",
            Self::ActionServiceWildcard(_) => "E-ACTION-SERVICE-WILDCARD",
            Self::Resource(_) => "E-RESOURCE",
            Self::ResourceServiceWildcard(_) => "E-RESOURCE-SERVICE-WILDCARD",
            Self::Principal { .. } => "E-PRINCIPAL",
            Self::Operator(..) => "E-OPERATOR",
            Self::NullQualified(_) => "E-NULL-QUALIFIED",
            Self::DuplicateKey(_) => "E-DUPLICATE-CONDITION-KEY",
            Self::EmptyKey => "E-EMPTY-CONDITION-KEY",
            Self::ValueType => "E-CONDITION-VALUE-TYPE",
            Self::PrincipalNotAllowed { .. } => "E-PRINCIPAL-NOT-ALLOWED",
            Self::PrincipalRequired(_) => "E-PRINCIPAL-REQUIRED",
            Self::NotPrincipalWithAllow => "E-NOTPRINCIPAL-ALLOW",
            Self::MissingResource => "E-MISSING-RESOURCE",
            Self::ShortArn(..) => "E-SHORT-ARN",
            Self::ResourceInTrustPolicy => "E-TRUST-POLICY-RESOURCE",
        }
    }
}

impl PolicyWarningKind {
    /// The warning's stable code (`check` prints it; `--strict` refuses it).
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::MalformedVariable => "W-MALFORMED-VARIABLE",
            Self::VariablesNeedVersion => "W-VARIABLE-VERSION",
            Self::MultivaluedVariable(_) => "W-MULTIVALUED-VARIABLE",
            Self::VariableInArnPiece(_) => "W-VARIABLE-ARN-PIECE",
            Self::ForAllValuesInAllow(_) => "W-FORALLVALUES-ALLOW",
            Self::SetOperatorOnSingleValued { .. } => "W-SET-OPERATOR-SINGLE-VALUED",
            Self::PlainOperatorOnMultivalued { .. } => "W-PLAIN-OPERATOR-MULTIVALUED",
            Self::ShortArnPadded(_) => "W-SHORT-ARN",
            Self::ShortArnMatchesNothing(_) => "W-SHORT-ARN-NO-MATCH",
            Self::NullQualifier(_) => "W-NULL-QUALIFIER",
            Self::UnreadableValue { .. } => "W-TYPED-VALUE",
            Self::NotActionWithAllow => "W-NOTACTION-ALLOW",
            Self::NotResourceWithAllow => "W-NOTRESOURCE-ALLOW",
            Self::DenyOnOptionalKey { .. } => "W-DENY-OPTIONAL-KEY",
            Self::SidNotAlphanumeric(_) => "W-SID",
            Self::DuplicateSid(_) => "W-DUPLICATE-SID",
            Self::KeyPolicyWithoutResource => "W-KEY-POLICY-NO-RESOURCE",
            Self::ResourceAliasesInKeyPolicy => "W-RESOURCE-ALIASES-KEY-POLICY",
            Self::Unattached => "W-UNATTACHED",
            Self::UnknownService { .. } => "W-UNKNOWN-SERVICE",
            Self::UnknownAction { .. } => "W-UNKNOWN-ACTION",
            Self::ActionMatchesNothing(_) => "W-ACTION-MATCHES-NOTHING",
            Self::UnknownConditionKey { .. } => "W-UNKNOWN-CONDITION-KEY",
        }
    }

    /// Whether this is only a suggestion: the document does what AWS would
    /// do with it, and could say so more plainly (a policy attached nowhere,
    /// a short ARN pattern read as padded).
    pub(crate) fn is_suggestion(&self) -> bool {
        matches!(self, Self::Unattached | Self::ShortArnPadded(_))
    }

    /// The known name this one is probably a typo of.
    pub(crate) fn suggestion(&self) -> Option<&str> {
        match self {
            Self::UnknownService { suggestion, .. }
            | Self::UnknownAction { suggestion, .. }
            | Self::UnknownConditionKey { suggestion, .. } => suggestion.as_deref(),
            _ => None,
        }
    }
}

impl PolicyKind {
    /// Whether a `Sid` may hold more than letters and digits here.
    pub(crate) fn allows_free_sid(self) -> bool {
        matches!(self, Self::Resource | Self::KeyPolicy | Self::Trust)
    }
}

/// At most `max` bytes of `s`, cut at a character boundary and marked with
/// `…` when cut: for echoing input of any size in a message.
pub(crate) fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or(""))
}

#[cfg(test)]
mod cut_tests {
    use super::cut;

    #[test]
    fn cuts_at_a_character_boundary() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "abc…");
        assert_eq!(cut("aé", 2), "a…");
        assert_eq!(cut("", 0), "");
    }
}

//! JSON forms of requests and decisions (docs/api.md, "JSON requests"): the request shape of
//! `verdict eval --requests` and bundle tests, and the printed decision.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::policy::document::UniqueMap;
use crate::policy::parse::scalar;

use super::decision::{Decision, KindDecision, MatchedList};
use super::request::{InvalidRequest, RequestParts};

/// A request as JSON (strict: unknown keys are errors).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestShape<'a> {
    /// Principal.
    #[serde(default)]
    pub principal: Option<String>,
    /// Action.
    #[serde(default)]
    pub action: Option<String>,
    /// Resource.
    #[serde(default)]
    pub resource: Option<String>,
    /// Context: key → value or list of values.
    #[serde(default, borrow)]
    pub context: Option<UniqueMap<&'a RawValue>>,
    /// Session policy: a document, or a string holding one.
    #[serde(default, borrow)]
    pub session_policy: Option<&'a RawValue>,
    /// Explain.
    #[serde(default)]
    pub explain: bool,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InvalidRequest {
    InvalidRequest {
        field: field.into(),
        message: message.into(),
    }
}

/// Convert JSON context values: a scalar is a one-element list; numbers and
/// booleans become their JSON text; `null` and objects are errors.
pub(crate) fn context_pairs(
    context: &UniqueMap<&RawValue>,
) -> Result<Vec<(String, Vec<String>)>, InvalidRequest> {
    let mut out = Vec::with_capacity(context.0.len());
    for (key, raw) in &context.0 {
        let field = || format!("context[{key}]");
        let text = raw.get().trim_start();
        let values = if text.starts_with('[') {
            let items: Vec<&RawValue> =
                serde_json::from_str(text).map_err(|e| invalid(field(), e.to_string()))?;
            items
                .iter()
                .map(|i| {
                    scalar(i).ok_or_else(|| {
                        invalid(field(), "values must be strings, numbers or booleans")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            vec![scalar(raw).ok_or_else(|| {
                invalid(
                    field(),
                    "a value must be a string, number, boolean or a list of them",
                )
            })?]
        };
        out.push((key.clone(), values));
    }
    Ok(out)
}

/// The session policy text of a JSON request (an object, or a string holding one).
pub(crate) fn session_policy_text(raw: &RawValue) -> Result<String, InvalidRequest> {
    let text = raw.get().trim_start();
    match text.as_bytes().first() {
        Some(b'{') => Ok(text.to_owned()),
        Some(b'"') => serde_json::from_str::<String>(text)
            .map_err(|e| invalid("session_policy", e.to_string())),
        _ => Err(invalid(
            "session_policy",
            "must be a policy document or a string holding one",
        )),
    }
}

impl RequestShape<'_> {
    /// The request's parts, ready for validation.
    pub(crate) fn into_parts(self) -> Result<RequestParts, InvalidRequest> {
        let require = |v: Option<String>, field: &str| v.ok_or_else(|| invalid(field, "missing"));
        Ok(RequestParts {
            principal: require(self.principal, "principal")?,
            action: require(self.action, "action")?,
            resource: require(self.resource, "resource")?,
            context: match &self.context {
                Some(c) => context_pairs(c)?,
                None => Vec::new(),
            },
            session_policy: self.session_policy.map(session_policy_text).transpose()?,
            explain: self.explain,
        })
    }
}

/// Parse one JSON request line.
pub(crate) fn parse_request_line(line: &str) -> Result<RequestParts, InvalidRequest> {
    let shape: RequestShape<'_> = serde_json::from_str(line).map_err(|e| {
        let pe = crate::policy::parse::json_error(line, &e);
        let field = pe
            .pointer
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
            .to_owned();
        invalid(
            if field.is_empty() {
                "request".to_owned()
            } else {
                field
            },
            pe.kind.to_string(),
        )
    })?;
    shape.into_parts()
}

// === Output ===

/// A matched statement as printed.
#[derive(Debug, Serialize)]
pub(crate) struct MatchedJson<'a> {
    /// Policy id.
    pub(crate) policy_id: &'a str,
    /// Kind.
    pub(crate) kind: &'static str,
    /// Index.
    pub(crate) index: Option<u32>,
    /// Sid.
    pub(crate) sid: Option<&'a str>,
    /// Effect.
    pub(crate) effect: &'static str,
    /// Level (SCPs and RCPs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) level: Option<u32>,
    /// Line (explain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// Column (explain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) column: Option<u32>,
}

/// Per-kind decisions, printed as a JSON object in kind order.
#[derive(Debug)]
pub(crate) struct KindsJson<'a>(pub &'a [(crate::policy::PolicyKind, KindDecision)]);

impl Serialize for KindsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, d) in self.0 {
            map.serialize_entry(k.as_str(), d.as_str())?;
        }
        map.end()
    }
}

/// Per-kind decisions.
#[derive(Debug, Serialize)]
pub(crate) struct DetailsJson<'a> {
    /// Caller side.
    pub(crate) caller_side: KindsJson<'a>,
    /// Resource side.
    pub(crate) resource_side: KindsJson<'a>,
}

/// Explanation as printed.
#[derive(Debug, Serialize)]
pub(crate) struct ExplanationJson<'a> {
    /// SCP gate.
    pub(crate) allowed_by_organizations: bool,
    /// Boundary gate.
    pub(crate) allowed_by_boundary: bool,
    /// Session gate.
    pub(crate) allowed_by_session: bool,
    /// RCP gate.
    pub(crate) allowed_by_rcp: bool,
    /// Grant.
    pub(crate) grant_id: Option<&'a str>,
    /// Gates that refused.
    pub(crate) blocked_by: Vec<&'static str>,
    /// Key state that refused.
    pub(crate) key_state: Option<&'static str>,
    /// Per-kind decisions.
    pub(crate) decision_details: DetailsJson<'a>,
    /// Caller keys ignored because verdict derives them.
    pub(crate) ignored_context_keys: &'a [String],
    /// ImplicitDeny: the statements that came close.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) near_misses: Vec<NearMissJson<'a>>,
}

/// A near miss as printed.
#[derive(Debug, Serialize)]
pub(crate) struct NearMissJson<'a> {
    /// The statement.
    #[serde(flatten)]
    pub(crate) statement: MatchedJson<'a>,
    /// `Resource`, `Condition`, `Delegation`, `GrantConstraint`,
    /// `GrantRequest` or `NoAllow`.
    pub(crate) failed: &'static str,
    /// The condition that was false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) condition: Option<FailedConditionJson<'a>>,
    /// A grant's constraint: the encryption context pair the request
    /// lacks (`null`: it has every pair the grant lists, and more).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) missing_context_pair: Option<Option<[&'a str; 2]>>,
    /// A `CreateGrant` beyond a grant: the key and the value asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) grant_request: Option<GrantRequestJson<'a>>,
}

/// What a `CreateGrant` asked for beyond a grant.
#[derive(Debug, Serialize)]
pub(crate) struct GrantRequestJson<'a> {
    /// `kms:grantoperations` or `kms:grantconstrainttype`.
    pub(crate) key: &'a str,
    /// The value asked for; `null`: the request lacks the key.
    pub(crate) value: Option<&'a str>,
}

/// The false condition of a near miss.
#[derive(Debug, Serialize)]
pub(crate) struct FailedConditionJson<'a> {
    /// Position in the statement's conditions.
    pub(crate) index: u32,
    /// Operator as written.
    pub(crate) operator: &'a str,
    /// Key, lower-cased.
    pub(crate) key: &'a str,
    /// The request's values; `null`: absent.
    pub(crate) request_values: Option<&'a [String]>,
    /// The condition's values, as the policy writes them.
    pub(crate) policy_values: &'a [String],
}

fn matched_json(m: &crate::eval::MatchedStatement, explain: bool) -> MatchedJson<'_> {
    MatchedJson {
        policy_id: &m.policy_id,
        kind: m.kind.as_str(),
        index: m.index,
        sid: m.sid.as_deref(),
        effect: m.effect.as_str(),
        level: m.level,
        line: m.position.filter(|_| explain).map(|p| p.line),
        column: m.position.filter(|_| explain).map(|p| p.column),
    }
}

/// Statements as `matched` of a decision without explain prints them (no
/// line and column), serialized straight from the decision's list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MatchedStatements(pub(crate) MatchedList);

impl MatchedStatements {
    /// The `matched` statements of `d`.
    pub(crate) fn of(d: &Decision) -> Self {
        Self(d.matched.clone())
    }

    /// The statements.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &crate::eval::MatchedStatement> {
        self.0.iter()
    }
}

impl Serialize for MatchedStatements {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|m| matched_json(m, false)))
    }
}

impl std::fmt::Display for MatchedStatements {
    /// The statements as one line of JSON.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| std::fmt::Error)?;
        f.write_str(&text)
    }
}

fn near_miss_json(n: &crate::eval::NearMiss) -> NearMissJson<'_> {
    use crate::eval::Failed;
    let (failed, condition) = match &n.failed {
        Failed::Resource => ("Resource", None),
        Failed::Delegation => ("Delegation", None),
        Failed::GrantConstraint { .. } => ("GrantConstraint", None),
        Failed::GrantRequest { .. } => ("GrantRequest", None),
        Failed::NoAllow => ("NoAllow", None),
        Failed::Condition {
            index,
            operator,
            key,
            request,
            policy,
        } => (
            "Condition",
            Some(FailedConditionJson {
                index: *index,
                operator,
                key,
                request_values: request.as_deref(),
                policy_values: policy,
            }),
        ),
    };
    let missing_context_pair = match &n.failed {
        Failed::GrantConstraint { missing } => {
            Some(missing.as_ref().map(|(k, v)| [k.as_str(), v.as_str()]))
        }
        _ => None,
    };
    let grant_request = match &n.failed {
        Failed::GrantRequest { key, value } => Some(GrantRequestJson {
            key,
            value: value.as_deref(),
        }),
        _ => None,
    };
    NearMissJson {
        statement: matched_json(&n.statement, true),
        failed,
        condition,
        missing_context_pair,
        grant_request,
    }
}

/// A decision as printed.
#[derive(Debug, Serialize)]
pub(crate) struct DecisionJson<'a> {
    /// `Allow`, `ExplicitDeny` or `ImplicitDeny`.
    pub decision: &'static str,
    /// Deciding statements.
    pub(crate) matched: Vec<MatchedJson<'a>>,
    /// Missing keys.
    pub(crate) missing_context_keys: &'a [std::sync::Arc<str>],
    /// Revision.
    pub(crate) bundle_revision: &'a str,
    /// Explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) explanation: Option<ExplanationJson<'a>>,
}

impl<'a> DecisionJson<'a> {
    /// The printed form of `d`; statement positions only when explained.
    pub(crate) fn new(d: &'a Decision) -> Self {
        let explain = d.explanation.is_some();
        Self {
            decision: d.outcome.as_str(),
            matched: d.matched.iter().map(|m| matched_json(m, explain)).collect(),
            missing_context_keys: &d.missing_context_keys,
            bundle_revision: &d.bundle_revision,
            explanation: d.explanation.as_deref().map(|e| ExplanationJson {
                allowed_by_organizations: e.allowed_by_organizations,
                allowed_by_boundary: e.allowed_by_boundary,
                allowed_by_session: e.allowed_by_session,
                allowed_by_rcp: e.allowed_by_rcp,
                grant_id: e.grant_id.as_deref(),
                blocked_by: e.blocked_by.iter().map(|g| g.as_str()).collect(),
                key_state: e.key_state.map(|k| k.as_str()),
                decision_details: DetailsJson {
                    caller_side: KindsJson(&e.caller_side),
                    resource_side: KindsJson(&e.resource_side),
                },
                ignored_context_keys: &e.ignored_context_keys,
                near_misses: e.near_misses.iter().map(near_miss_json).collect(),
            }),
        }
    }
}

/// An invalid request as printed by `eval`.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorJson<'a> {
    /// The error.
    pub(crate) error: ErrorBody<'a>,
}

/// The body of [`ErrorJson`].
#[derive(Debug, Serialize)]
pub(crate) struct ErrorBody<'a> {
    /// 1-based input line (`--requests` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Field.
    pub(crate) field: &'a str,
    /// Message.
    pub message: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let p = parse_request_line(
            r#"{"principal": "p", "action": "a", "resource": "r", "context": {"n": 1.10, "b": true, "l": ["x", 2], "e": []},
                "session_policy": "{\"Statement\": []}", "explain": true}"#,
        )
        .unwrap();
        assert_eq!(
            p.context,
            vec![
                ("n".into(), vec!["1.10".into()]),
                ("b".into(), vec!["true".into()]),
                ("l".into(), vec!["x".into(), "2".into()]),
                ("e".into(), vec![]),
            ]
        );
        assert_eq!(p.session_policy.as_deref(), Some("{\"Statement\": []}"));
        assert!(p.explain);
        let e = parse_request_line(
            r#"{"principal": "p", "action": "a", "resource": "r", "context": {"k": null}}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "context[k]");
        let e = parse_request_line(r#"{"action": "a", "resource": "r"}"#).unwrap_err();
        assert_eq!(e.field, "principal");
        let e = parse_request_line(
            r#"{"principal": "p", "action": "a", "resource": "r", "colour": 1}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "colour");
        let e = parse_request_line("not json").unwrap_err();
        assert_eq!(e.field, "request");
    }
}

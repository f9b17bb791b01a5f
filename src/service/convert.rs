//! Conversions at the gRPC edge: proto requests into validated requests
//! (with `INVALID_ARGUMENT` naming the field), decisions into responses.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::eval::{Decision, InvalidRequest, Outcome, Request, RequestLimits, RequestParts};
use crate::proto;
use crate::telemetry::DecisionId;

/// The parts of a proto request, moved out of it. Every field is named, so
/// a field added to the message does not compile until it is carried over.
pub(crate) fn parts(r: proto::AuthorizeRequest) -> RequestParts {
    let proto::AuthorizeRequest {
        principal,
        action,
        resource,
        context,
        session_policy,
        explain,
        // Which bundle may answer, checked before any of this (the
        // cache is per bundle): never part of the decision or its key.
        min_serial: _,
    } = r;
    RequestParts {
        principal,
        action,
        resource,
        context: context.into_iter().map(|(k, v)| (k, v.values)).collect(),
        session_policy: (!session_policy.is_empty()).then_some(session_policy),
        explain,
    }
}

/// Validate a proto request.
pub fn request(
    r: proto::AuthorizeRequest,
    limits: &RequestLimits,
) -> Result<Request, InvalidRequest> {
    Request::new(parts(r), limits)
}

/// Validate a copy of a proto request, leaving it whole (for the cache to
/// keep once it is found valid).
pub(crate) fn request_copy(
    r: &proto::AuthorizeRequest,
    limits: &RequestLimits,
) -> Result<Request, InvalidRequest> {
    let proto::AuthorizeRequest {
        principal,
        action,
        resource,
        context,
        session_policy,
        explain,
        // Which bundle may answer, checked before any of this (the
        // cache is per bundle): never part of the decision or its key.
        min_serial: _,
    } = r;
    let parts = RequestParts {
        principal: principal.clone(),
        action: action.clone(),
        resource: resource.clone(),
        context: context
            .iter()
            .map(|(k, v)| (k.clone(), v.values.clone()))
            .collect(),
        session_policy: (!session_policy.is_empty()).then(|| session_policy.clone()),
        explain: *explain,
    };
    Request::new(parts, limits)
}

/// `INVALID_ARGUMENT` naming the field, with a `BadRequest` detail.
pub(crate) fn invalid(field: &str, message: &str) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {message}"),
        ErrorDetails::with_bad_request_violation(field, message),
    )
}

impl From<&InvalidRequest> for Status {
    fn from(e: &InvalidRequest) -> Self {
        invalid(&e.field, &e.message)
    }
}

fn outcome(o: Outcome) -> proto::Decision {
    match o {
        Outcome::Allow => proto::Decision::Allow,
        Outcome::ExplicitDeny => proto::Decision::ExplicitDeny,
        Outcome::ImplicitDeny => proto::Decision::ImplicitDeny,
    }
}

/// The response for a decision.
/// The response to a decision; `id` is this call's decision id (none for
/// the encoding a cache entry keeps, which each hit sends with its own).
pub(crate) fn response(
    d: &Decision,
    cached: bool,
    id: Option<DecisionId>,
) -> proto::AuthorizeResponse {
    let explain = d.explanation.is_some();
    proto::AuthorizeResponse {
        decision: outcome(d.outcome).into(),
        matched: d
            .matched
            .iter()
            .map(|m| matched_statement(m, explain))
            .collect(),
        missing_context_keys: d
            .missing_context_keys
            .iter()
            .map(|k| String::from(&**k))
            .collect(),
        bundle_revision: String::from(&*d.bundle_revision),
        bundle_serial: d.bundle_serial,
        decision_id: id.map(|id| id.to_string()).unwrap_or_default(),
        cached,
        explanation: d.explanation.as_deref().map(|e| proto::Explanation {
            allowed_by_organizations: e.allowed_by_organizations,
            allowed_by_boundary: e.allowed_by_boundary,
            allowed_by_session: e.allowed_by_session,
            allowed_by_rcp: e.allowed_by_rcp,
            grant_id: e.grant_id.as_deref().map(str::to_owned),
            blocked_by: e.blocked_by.iter().map(|g| g.as_str().to_owned()).collect(),
            key_state: e.key_state.map(|k| k.as_str().to_owned()),
            decision_details: Some(proto::DecisionDetails {
                caller_side: e
                    .caller_side
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.as_str().to_owned()))
                    .collect(),
                resource_side: e
                    .resource_side
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.as_str().to_owned()))
                    .collect(),
            }),
            ignored_context_keys: e.ignored_context_keys.clone(),
            near_misses: e.near_misses.iter().map(near_miss).collect(),
        }),
    }
}

fn matched_statement(m: &crate::eval::MatchedStatement, explain: bool) -> proto::MatchedStatement {
    proto::MatchedStatement {
        policy_id: String::from(&*m.policy_id),
        kind: m.kind.as_str().to_owned(),
        index: m.index,
        sid: m.sid.as_deref().map(str::to_owned),
        effect: m.effect.as_str().to_owned(),
        level: m.level,
        line: m.position.filter(|_| explain).map(|p| p.line),
        column: m.position.filter(|_| explain).map(|p| p.column),
    }
}

fn near_miss(n: &crate::eval::NearMiss) -> proto::NearMiss {
    use crate::eval::Failed;
    let mut out = proto::NearMiss {
        statement: Some(matched_statement(&n.statement, true)),
        ..Default::default()
    };
    match &n.failed {
        Failed::Resource => out.failed = "Resource".into(),
        Failed::Delegation => out.failed = "Delegation".into(),
        Failed::GrantConstraint { missing } => {
            out.failed = "GrantConstraint".into();
            if let Some((k, v)) = missing {
                out.key = Some(k.clone());
                out.request_values = vec![v.clone()];
            }
        }
        Failed::GrantRequest { key, value } => {
            out.failed = "GrantRequest".into();
            out.key = Some(key.clone());
            out.request_values = value.iter().cloned().collect();
            out.request_value_absent = value.is_none();
        }
        Failed::NoAllow => out.failed = "NoAllow".into(),
        Failed::Condition {
            index,
            operator,
            key,
            request,
            policy,
        } => {
            out.failed = "Condition".into();
            out.condition_index = Some(*index);
            out.operator = Some(operator.clone());
            out.key = Some(key.clone());
            out.request_values = request.clone().unwrap_or_default();
            out.request_value_absent = request.is_none();
            out.policy_values.clone_from(policy);
        }
    }
    out
}

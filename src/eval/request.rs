//! A validated authorization request: principal, action, resource, context
//! and optional session policy, checked at the edge so that the evaluator
//! never sees malformed input (docs/api.md, "A request and its decision").

use std::sync::Arc;

use crate::compile::statement::CPolicy;
use crate::policy::err::cut;
use crate::policy::principal::{PrincipalArn, canonicalize_arn, is_service_principal, split_arn};
use crate::policy::{PolicyDocument, PolicyKind, check_place, parse_document};

/// Request limits (docs/configuration.md), each a configuration value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLimits {
    /// Principal, action and resource, each.
    pub(crate) max_arn_bytes: usize,
    /// Context keys per request.
    pub(crate) max_context_keys: usize,
    /// Values per context key.
    pub(crate) max_context_values: usize,
    /// One context key name or value.
    pub(crate) max_context_value_bytes: usize,
    /// Session policy document.
    pub max_session_policy_bytes: usize,
    /// Wildcard-matching steps one decision may take (a step compares one
    /// character of a pattern with the request); a request that needs more
    /// is refused, never decided.
    pub max_match_steps: u64,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_arn_bytes: 2048,
            max_context_keys: 64,
            max_context_values: 64,
            max_context_value_bytes: 4096,
            max_session_policy_bytes: 10 * 1024,
            max_match_steps: 1_000_000,
        }
    }
}

/// Why a request is refused; `field` names where (`principal`, `action`,
/// `resource`, `context[<key>]`, `session_policy`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidRequest {
    /// The field.
    pub(crate) field: String,
    /// What is wrong.
    pub message: String,
}

/// Input echoed in an error message is cut to this many bytes.
pub(crate) const ECHO_BYTES: usize = 128;

/// Where the first control character (U+0000–U+001F, U+007F) is, if any.
fn control_char(s: &str) -> Option<usize> {
    s.bytes().position(|b| b < 0x20 || b == 0x7f)
}

impl InvalidRequest {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A root user, user, role, role session or federated user.
    Arn(PrincipalArn),
    /// A service principal (`x.amazonaws.com`).
    Service(Box<str>),
}

impl Caller {
    /// Whether the caller is a session: an assumed role, a role ARN or a
    /// federated user (session policies are allowed only for these).
    pub(crate) fn is_session(&self) -> bool {
        matches!(
            self,
            Self::Arn(
                PrincipalArn::AssumedRole { .. }
                    | PrincipalArn::Role { .. }
                    | PrincipalArn::FederatedUser { .. }
            )
        )
    }
}

/// One context entry: a key and its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ContextEntry {
    /// The key as sent.
    pub(crate) key: Box<str>,
    /// The key lower-cased.
    pub(crate) lower: Box<str>,
    /// The values (`[]`: present with no values).
    pub(crate) values: Vec<String>,
}

/// A request context: entries sorted by lower-cased key, no two equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    entries: Vec<ContextEntry>,
}

impl Context {
    /// The entries, sorted by lower-cased key.
    pub(crate) fn entries(&self) -> &[ContextEntry] {
        &self.entries
    }

    /// The entry of a lower-cased key.
    pub(crate) fn get(&self, lower: &str) -> Option<&ContextEntry> {
        self.entries
            .binary_search_by(|e| (*e.lower).cmp(lower))
            .ok()
            .and_then(|i| self.entries.get(i))
    }

    /// Build from (key, values) pairs; keys equal ignoring case are refused.
    pub(crate) fn new(
        pairs: Vec<(String, Vec<String>)>,
        limits: &RequestLimits,
    ) -> Result<Self, InvalidRequest> {
        if pairs.len() > limits.max_context_keys {
            return Err(InvalidRequest::new(
                "context",
                format!(
                    "{} keys, over the limit of {}",
                    pairs.len(),
                    limits.max_context_keys
                ),
            ));
        }
        let mut entries = Vec::with_capacity(pairs.len());
        for (key, values) in pairs {
            let field = || format!("context[{}]", cut(&key, ECHO_BYTES));
            if key.is_empty() {
                return Err(InvalidRequest::new(field(), "empty key"));
            }
            if key.len() > limits.max_context_value_bytes {
                return Err(InvalidRequest::new(
                    field(),
                    format!(
                        "key of {} bytes, over the limit of {}",
                        key.len(),
                        limits.max_context_value_bytes
                    ),
                ));
            }
            if let Some(at) = control_char(&key) {
                return Err(InvalidRequest::new(
                    field(),
                    format!("key holds a control character at byte {at}"),
                ));
            }
            if values.len() > limits.max_context_values {
                return Err(InvalidRequest::new(
                    field(),
                    format!(
                        "{} values, over the limit of {}",
                        values.len(),
                        limits.max_context_values
                    ),
                ));
            }
            if let Some(v) = values
                .iter()
                .find(|v| v.len() > limits.max_context_value_bytes)
            {
                return Err(InvalidRequest::new(
                    field(),
                    format!(
                        "value of {} bytes, over the limit of {}",
                        v.len(),
                        limits.max_context_value_bytes
                    ),
                ));
            }
            let lower: Box<str> = key.to_lowercase().into();
            entries.push(ContextEntry {
                key: key.into(),
                lower,
                values,
            });
        }
        entries.sort_by(|a, b| a.lower.cmp(&b.lower));
        for pair in entries.windows(2) {
            if let [a, b] = pair
                && a.lower == b.lower
            {
                return Err(InvalidRequest::new(
                    format!("context[{}]", cut(&b.key, ECHO_BYTES)),
                    format!(
                        "repeats key `{}` (keys compare ignoring case)",
                        cut(&a.key, ECHO_BYTES)
                    ),
                ));
            }
        }
        Ok(Self { entries })
    }
}

/// A request's session policy, validated as an identity policy.
#[derive(Debug)]
pub struct SessionPolicy {
    /// The document as sent.
    pub(crate) text: String,
    /// The document.
    pub document: PolicyDocument,
    /// The document compiled for the fast evaluator.
    pub(crate) compiled: CPolicy,
}

/// A validated request.
#[derive(Clone, Debug)]
pub struct Request {
    /// The caller.
    pub(crate) caller: Caller,
    /// The principal: an ARN made canonical (first five pieces
    /// lower-cased, the rest as sent), or a service principal as sent.
    pub principal: String,
    /// For role sessions and role-ARN callers: the role ARN as the request
    /// gives it (a session ARN has no path; the bundle may know it).
    pub(crate) role_arn: Option<Box<str>>,
    /// The action as sent (`service:Name`).
    pub action: String,
    /// `service:name`, lower-cased.
    pub(crate) action_key: Box<str>,
    /// Where the colon of `action_key` is.
    service_len: usize,
    /// The resource: `*` or an ARN, canonical (first five pieces lower-cased).
    pub resource: String,
    /// The context.
    pub context: Context,
    /// The session policy.
    pub session_policy: Option<Arc<SessionPolicy>>,
    /// Whether the decision should carry its explanation.
    pub explain: bool,
}

/// The parts of a request, unvalidated.
#[derive(Clone, Debug, Default)]
pub struct RequestParts {
    /// Principal.
    pub principal: String,
    /// Action.
    pub action: String,
    /// Resource.
    pub resource: String,
    /// Context pairs.
    pub context: Vec<(String, Vec<String>)>,
    /// Session policy JSON text.
    pub session_policy: Option<String>,
    /// Explain.
    pub explain: bool,
}

impl RequestParts {
    /// The principal and resource made canonical in place, as
    /// [`Request::new`] makes them, for parts already found valid (a cache
    /// hit's): an ARN's first five pieces lower-cased, a service principal
    /// and `*` as sent. Nothing is allocated.
    pub(crate) fn canonicalize(&mut self) {
        if !is_service_principal(&self.principal) {
            canonicalize_arn(&mut self.principal);
        }
        canonicalize_arn(&mut self.resource);
    }
}

/// Parse a request principal (docs/evaluation.md §1 forms).
pub(crate) fn parse_caller(principal: &str) -> Result<Caller, InvalidRequest> {
    if principal.is_empty() {
        return Err(InvalidRequest::new("principal", "must not be empty"));
    }
    if is_service_principal(principal) {
        return Ok(Caller::Service(principal.into()));
    }
    PrincipalArn::parse(principal)
        .map(Caller::Arn)
        .map_err(|e| {
            InvalidRequest::new(
                "principal",
                format!(
                    "`{}`: {}",
                    cut(principal, ECHO_BYTES),
                    cut(&e.to_string(), ECHO_BYTES)
                ),
            )
        })
}

/// Validate an action (`service:Name`); returns `service:name` lower-cased
/// and the offset of its colon.
pub(crate) fn parse_action(action: &str) -> Result<(Box<str>, usize), InvalidRequest> {
    let Some((service, name)) = crate::policy::principal::split_once_ascii(action, b':') else {
        return Err(InvalidRequest::new(
            "action",
            format!(
                "`{}` has no service prefix (`service:Action`)",
                cut(action, ECHO_BYTES)
            ),
        ));
    };
    if service.is_empty()
        || !service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(InvalidRequest::new(
            "action",
            format!("`{}`: bad service prefix", cut(action, ECHO_BYTES)),
        ));
    }
    if name.is_empty() || name.contains(['*', '?', ':']) || name.chars().any(char::is_whitespace) {
        return Err(InvalidRequest::new(
            "action",
            format!("`{}`: bad action name", cut(action, ECHO_BYTES)),
        ));
    }
    let key = if action.is_ascii() {
        action.to_ascii_lowercase()
    } else {
        // The service is ASCII (checked above); only the name can need
        // Unicode lower-casing.
        format!("{}:{}", service.to_ascii_lowercase(), name.to_lowercase())
    };
    Ok((key.into(), service.len()))
}

/// Validate a resource (`*` or `arn:` and six colon pieces) and make it
/// canonical in place (first five pieces lower-cased).
pub(crate) fn parse_resource(mut resource: String) -> Result<String, InvalidRequest> {
    if resource == "*" {
        return Ok(resource);
    }
    match split_arn(&resource) {
        Some([arn, partition, service, ..])
            if arn.eq_ignore_ascii_case("arn") && !partition.is_empty() && !service.is_empty() => {}
        _ => {
            return Err(InvalidRequest::new(
                "resource",
                format!(
                    "`{}` is neither `*` nor an ARN (`arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`)",
                    cut(&resource, ECHO_BYTES)
                ),
            ));
        }
    }
    canonicalize_arn(&mut resource);
    Ok(resource)
}

/// Parse and validate a session policy document.
pub(crate) fn parse_session_policy(
    text: &str,
    limits: &RequestLimits,
) -> Result<SessionPolicy, InvalidRequest> {
    if text.len() > limits.max_session_policy_bytes {
        return Err(InvalidRequest::new(
            "session_policy",
            format!(
                "{} bytes, over the limit of {}",
                text.len(),
                limits.max_session_policy_bytes
            ),
        ));
    }
    let first_error = |pointer: &str, message: String| {
        let at = if pointer.is_empty() {
            String::new()
        } else {
            format!("{pointer}: ")
        };
        InvalidRequest::new("session_policy", format!("{at}{message}"))
    };
    let parsed = parse_document(text, &|_| Default::default()).map_err(|errors| {
        let mut it = errors.into_iter();
        match it.next() {
            Some(e) => first_error(&e.pointer, e.kind.to_string()),
            None => InvalidRequest::new("session_policy", "invalid"),
        }
    })?;
    let (errors, _) = check_place(&parsed.document, PolicyKind::Session);
    if let Some(e) = errors.into_iter().next() {
        return Err(first_error(&e.pointer, e.kind.to_string()));
    }
    let compiled = CPolicy::compile(Arc::from("session_policy"), &parsed.document);
    Ok(SessionPolicy {
        text: text.to_owned(),
        document: parsed.document,
        compiled,
    })
}

impl Request {
    /// Validate the parts of a request (taking them over: the principal and
    /// resource are made canonical in place, not copied).
    pub fn new(parts: RequestParts, limits: &RequestLimits) -> Result<Self, InvalidRequest> {
        for (field, value) in [
            ("principal", &parts.principal),
            ("action", &parts.action),
            ("resource", &parts.resource),
        ] {
            check_arn_text(field, value, limits)?;
        }
        let caller = parse_caller(&parts.principal)?;
        let mut principal = parts.principal;
        if let Caller::Arn(_) = caller {
            // The canonical text of a principal ARN is its first five pieces
            // lower-cased and the rest as sent: what `PrincipalArn` prints.
            canonicalize_arn(&mut principal);
        }
        let (action_key, service_len) = parse_action(&parts.action)?;
        let resource = parse_resource(parts.resource)?;
        let context = Context::new(parts.context, limits)?;
        let session_policy = match parts.session_policy.as_deref() {
            None => None,
            Some(text) => {
                if !caller.is_session() {
                    return Err(InvalidRequest::new(
                        "session_policy",
                        "only assumed-role sessions, role ARNs and federated users carry a session policy",
                    ));
                }
                Some(Arc::new(parse_session_policy(text, limits)?))
            }
        };
        let role_arn = match &caller {
            Caller::Arn(PrincipalArn::AssumedRole {
                partition,
                account,
                role,
                ..
            }) => Some(format!("arn:{partition}:iam::{account}:role/{role}").into()),
            Caller::Arn(PrincipalArn::Role { .. }) => Some(principal.as_str().into()),
            _ => None,
        };
        Ok(Self {
            caller,
            principal,
            role_arn,
            action: parts.action,
            action_key,
            service_len,
            resource,
            context,
            session_policy,
            explain: parts.explain,
        })
    }

    /// The same request for another action (checked as [`Request::new`]
    /// checks one), so that a question over many actions parses its
    /// principal and resource once.
    pub(crate) fn set_action(
        &mut self,
        action: &str,
        limits: &RequestLimits,
    ) -> Result<(), InvalidRequest> {
        check_arn_text("action", action, limits)?;
        let (action_key, service_len) = parse_action(action)?;
        action.clone_into(&mut self.action);
        self.action_key = action_key;
        self.service_len = service_len;
        Ok(())
    }

    /// The caller's own ARN, canonical (none for service principals).
    pub(crate) fn caller_arn(&self) -> Option<&str> {
        match self.caller {
            Caller::Arn(_) => Some(&self.principal),
            Caller::Service(_) => None,
        }
    }

    /// The service prefix, lower-cased.
    pub(crate) fn service(&self) -> &str {
        self.action_key.get(..self.service_len).unwrap_or_default()
    }

    /// The action name, lower-cased.
    pub(crate) fn name(&self) -> &str {
        self.action_key
            .get(self.service_len + 1..)
            .unwrap_or_default()
    }
}

/// The checks every principal, action and resource text passes first:
/// within `max_arn_bytes`, and no control character.
fn check_arn_text(
    field: &'static str,
    value: &str,
    limits: &RequestLimits,
) -> Result<(), InvalidRequest> {
    if value.len() > limits.max_arn_bytes {
        return Err(InvalidRequest::new(
            field,
            format!(
                "{} bytes, over the limit of {}",
                value.len(),
                limits.max_arn_bytes
            ),
        ));
    }
    if let Some(at) = control_char(value) {
        return Err(InvalidRequest::new(
            field,
            format!("holds a control character at byte {at}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(principal: &str, action: &str, resource: &str) -> RequestParts {
        RequestParts {
            principal: principal.into(),
            action: action.into(),
            resource: resource.into(),
            ..Default::default()
        }
    }

    fn field(p: RequestParts) -> String {
        Request::new(p, &RequestLimits::default())
            .unwrap_err()
            .field
    }

    #[test]
    fn set_action_gives_the_request_new_would() {
        let limits = RequestLimits::default();
        let user = "arn:aws:iam::111122223333:user/alice";
        let key = "arn:aws:kms:us-west-2:111122223333:key/k";
        let mut r = Request::new(parts(user, "kms:Decrypt", key), &limits).unwrap();
        r.set_action("KMS:GenerateDataKey", &limits).unwrap();
        let fresh = Request::new(parts(user, "KMS:GenerateDataKey", key), &limits).unwrap();
        assert_eq!(r.action, fresh.action);
        assert_eq!(r.action_key, fresh.action_key);
        assert_eq!((r.service(), r.name()), (fresh.service(), fresh.name()));
        // A bad action is refused and leaves the request as it was.
        let err = r.set_action("GenerateDataKey", &limits).unwrap_err();
        assert_eq!(err.field, "action");
        assert!(r.set_action("kms:De\u{7}crypt", &limits).is_err());
        assert_eq!(r.action, "KMS:GenerateDataKey");
        assert_eq!(r.name(), "generatedatakey");
    }

    #[test]
    fn malformed_requests_name_the_field() {
        let ok = "arn:aws:iam::111122223333:user/alice";
        assert_eq!(field(parts("", "s3:GetObject", "*")), "principal");
        assert_eq!(field(parts("*", "s3:GetObject", "*")), "principal");
        assert_eq!(
            field(parts(
                "arn:aws:iam::111122223333:group/G",
                "s3:GetObject",
                "*"
            )),
            "principal"
        );
        assert_eq!(field(parts(ok, "GetObject", "*")), "action");
        assert_eq!(field(parts(ok, "s3:Get*", "*")), "action");
        assert_eq!(field(parts(ok, "s3:GetObject", "bucket")), "resource");
        let mut p = parts(ok, "s3:GetObject", "*");
        p.context = vec![
            ("aws:SourceIp".into(), vec![]),
            ("AWS:sourceip".into(), vec![]),
        ];
        assert_eq!(field(p), "context[AWS:sourceip]");
        let mut p = parts(ok, "s3:GetObject", "*");
        p.session_policy = Some("{\"Statement\": []}".into());
        assert_eq!(field(p), "session_policy");
        let mut p = parts(
            "arn:aws:sts::111122223333:assumed-role/R/s",
            "s3:GetObject",
            "*",
        );
        p.session_policy = Some("{\"Statement\": {\"Effect\": \"Allow\", \"Principal\": \"*\", \"Action\": \"s3:*\", \"Resource\": \"*\"}}".into());
        let e = Request::new(p, &RequestLimits::default()).unwrap_err();
        assert_eq!(e.field, "session_policy");
        assert!(
            e.message.starts_with("/Statement/Principal"),
            "{}",
            e.message
        );
    }

    #[test]
    fn limits_are_enforced() {
        let limits = RequestLimits {
            max_context_keys: 1,
            ..Default::default()
        };
        let mut p = parts("arn:aws:iam::111122223333:root", "s3:GetObject", "*");
        p.context = vec![("a".into(), vec![]), ("b".into(), vec![])];
        assert_eq!(Request::new(p, &limits).unwrap_err().field, "context");
        let p = parts(
            &format!("arn:aws:iam::111122223333:user/{}", "a".repeat(3000)),
            "s3:x",
            "*",
        );
        assert_eq!(
            Request::new(p, &RequestLimits::default())
                .unwrap_err()
                .field,
            "principal"
        );
    }

    #[test]
    fn every_principal_form_is_accepted() {
        for p in [
            "arn:aws:iam::111122223333:root",
            "arn:aws-cn:iam::111122223333:user/a/b",
            "arn:aws-us-gov:iam::111122223333:role/R",
            "arn:aws:sts::111122223333:assumed-role/R/S",
            "arn:aws:sts::111122223333:federated-user/F",
            "dynamodb.us-west-2.amazonaws.com",
        ] {
            Request::new(parts(p, "kms:Decrypt", "*"), &RequestLimits::default()).unwrap();
        }
    }
}

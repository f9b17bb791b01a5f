//! Document → model: validates a policy document and collects every error.
//!
//! Two entry points: [`parse_document`] checks what holds wherever a document
//! is attached, and [`check_place`] what the place it is attached to requires
//! (`Principal` only in resource-based kinds, `Resource` required outside key
//! policies, …). Both report all findings, never just the first.

use std::collections::HashSet;

use serde_json::value::RawValue;

use super::catalogue::ActionFinding;
use super::document::{
    OneOrMany, PrincipalShape, ShapeError, ShapeErrorKind, StatementShape, UniqueMap, read_document,
};
use super::err::{PolicyError, PolicyErrorKind as E, PolicyWarning, PolicyWarningKind as W};
use super::locate::{self, Position};
use super::model::*;
use super::principal::{PrincipalArn, is_account_id};
use super::template::Template;
use super::value;

/// A document that validated, with what was noticed along the way.
#[derive(Debug)]
pub struct Parsed {
    /// The document.
    pub document: PolicyDocument,
    /// Warnings.
    pub(crate) warnings: Vec<PolicyWarning>,
}

/// Keys that carry several values in one request (docs/evaluation.md §1).
pub(crate) const MULTIVALUED_KEYS: &[&str] = &[
    "aws:tagkeys",
    "aws:calledvia",
    "aws:principalorgpaths",
    "aws:principalservicenameslist",
    "kms:encryptioncontextkeys",
    "kms:grantoperations",
    "kms:resourcealiases",
];

/// Keys callers often leave out, which a `Deny` should test with `IfExists`.
const OPTIONAL_TRANSPORT_KEYS: &[&str] = &["aws:securetransport", "aws:sourceip", "aws:sourcevpc"];

struct Ctx<'c> {
    variables: bool,
    errors: Vec<PolicyError>,
    warnings: Vec<PolicyWarning>,
    /// The IAM catalogue checks' budget (names left to compare), when the
    /// document is checked against the catalogue.
    catalogue: Option<&'c mut u64>,
}

/// A document that did not validate: every error, and the warnings found
/// along the way.
#[derive(Debug)]
pub struct Rejected {
    /// Errors.
    pub(crate) errors: Vec<PolicyError>,
    /// Warnings.
    pub(crate) warnings: Vec<PolicyWarning>,
}

impl Ctx<'_> {
    fn error(&mut self, pointer: impl Into<String>, kind: E) {
        self.errors.push(PolicyError {
            pointer: pointer.into(),
            offset: None,
            kind,
        });
    }
    fn warn(&mut self, pointer: impl Into<String>, kind: W) {
        self.warnings.push(PolicyWarning {
            pointer: pointer.into(),
            kind,
        });
    }
}

/// A document or statement element that could not be read, as a policy error.
fn shape_error(e: ShapeError) -> PolicyError {
    let kind = match e.kind {
        ShapeErrorKind::Json(err) => E::Json(strip_serde_position(&err.to_string())),
        ShapeErrorKind::Unknown(name) => {
            let known = if e.pointer.starts_with("/Statement") {
                super::document::STATEMENT_ELEMENTS
            } else {
                super::document::DOCUMENT_ELEMENTS
            };
            let suggestion = super::catalogue::closest_name(&name, known);
            E::UnknownElement(super::err::cut(&name, 64), suggestion)
        }
        ShapeErrorKind::Duplicate(name) => E::DuplicateElement(name),
        ShapeErrorKind::Missing(name) => E::MissingElement(name),
    };
    PolicyError {
        pointer: e.pointer,
        offset: e.offset,
        kind,
    }
}

/// Byte offset in `text` of serde's 1-based (line, column).
pub(crate) fn serde_offset(text: &str, line: usize, column: usize) -> usize {
    let mut start = 0usize;
    if line > 1 {
        let mut seen = 1;
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                seen += 1;
                if seen == line {
                    start = i + 1;
                    break;
                }
            }
        }
    }
    (start + column).min(text.len())
}

/// Turn a serde_json error on `text` into a located policy error.
pub(crate) fn json_error(text: &str, err: &serde_json::Error) -> PolicyError {
    let offset = serde_offset(text, err.line(), err.column());
    let (pointer, offset) = if err.is_syntax() || err.is_eof() {
        (String::new(), offset.saturating_sub(1))
    } else {
        // A shape error: name the element, and point at it rather than at
        // where serde stopped reading.
        let pointer = locate::pointer_at_offset(text, offset);
        let at = locate::offset_of_pointer(text, &pointer).unwrap_or(offset.saturating_sub(1));
        (pointer, at)
    };
    let message = strip_serde_position(&err.to_string());
    PolicyError {
        pointer,
        offset: Some(offset),
        kind: E::Json(message),
    }
}

/// serde_json appends " at line L column C"; positions are reported
/// separately. Its messages also quote the values they found (`invalid
/// type: string "…"`): those quotes are dropped, so that an error never
/// carries a file's content (the pointer and position say where it is), and
/// names in backquotes (fields, variants) are cut to 64 bytes.
pub(crate) fn strip_serde_position(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(i) => message.get(..i).unwrap_or(message),
        None => message,
    };
    let mut out = String::with_capacity(message.len().min(256));
    let mut rest = message;
    while let Some(i) = rest.find(['"', '`']) {
        let (before, from) = rest.split_at(i);
        let quote = if from.starts_with('"') { '"' } else { '`' };
        let inner = from.get(1..).unwrap_or("");
        let Some(end) = closing_quote(inner, quote) else {
            // No closing quote: the rest is a quoted value, cut off.
            out.push_str(before.trim_end());
            return out;
        };
        let quoted = inner.get(..end).unwrap_or("");
        rest = inner.get(end + 1..).unwrap_or("");
        if quote == '"' {
            out.push_str(before.trim_end());
        } else {
            out.push_str(before);
            out.push('`');
            out.push_str(&crate::policy::err::cut(quoted, 64));
            out.push('`');
        }
    }
    out.push_str(rest);
    out
}

/// Where a quoted value opened just before `s` closes (a backslash escapes).
fn closing_quote(s: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == quote => return Some(i),
            _ => {}
        }
    }
    None
}

/// Parse and validate a document. `position` maps a byte offset in `text`
/// to a position in the file the text belongs to.
pub fn parse_document(
    text: &str,
    position: &dyn Fn(usize) -> Position,
) -> Result<Parsed, Vec<PolicyError>> {
    parse_checked(text, position, None).map_err(|r| r.errors)
}

/// [`parse_document`], and when `catalogue` is given, every action and
/// condition key checked against the IAM catalogue (unknown ones are
/// warnings, with the closest known name) while that budget of names to
/// compare lasts. Bundles are checked; requests' session policies are not
/// (a caller must not make verdict search the catalogue).
pub(crate) fn parse_checked(
    text: &str,
    position: &dyn Fn(usize) -> Position,
    catalogue: Option<&mut u64>,
) -> Result<Parsed, Rejected> {
    let (shape, shape_errors) = match read_document(text) {
        Ok(read) => read,
        Err(e) => {
            // Skipping over a value unread, serde_json words some syntax
            // errors less well ("key must be a string" for a trailing
            // comma): read as a plain JSON value for its message.
            let e = serde_json::from_str::<serde_json::Value>(text)
                .err()
                .filter(|v| v.is_syntax() || v.is_eof())
                .unwrap_or(e);
            return Err(Rejected {
                errors: vec![json_error(text, &e)],
                warnings: Vec::new(),
            });
        }
    };
    let mut cx = Ctx {
        variables: false,
        errors: shape_errors.into_iter().map(shape_error).collect(),
        warnings: Vec::new(),
        catalogue,
    };
    let version = match shape.version.as_deref() {
        None => Version::Unspecified,
        Some("2012-10-17") => Version::V2012_10_17,
        Some("2008-10-17") => Version::V2008_10_17,
        Some(other) => {
            cx.error("/Version", E::Version(other.to_owned()));
            Version::Unspecified
        }
    };
    cx.variables = version.variables();
    if !cx.variables && text.contains("${") {
        cx.warn("", W::VariablesNeedVersion);
    }
    let offsets = locate::element_offsets(text, "/Statement");
    let mut statements = Vec::with_capacity(shape.statement.values.len());
    let mut sids = HashSet::new();
    for (i, (pointer, st)) in shape.statement.with_pointers("/Statement").enumerate() {
        let offset = if shape.statement.listed {
            offsets.get(i).copied()
        } else {
            offsets.first().copied()
        };
        let pos = offset.map(position).unwrap_or_default();
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        if let Some(sid) = &st.sid
            && !sids.insert(sid.clone())
        {
            cx.warn(format!("{pointer}/Sid"), W::DuplicateSid(sid.clone()));
        }
        if let Some(s) = statement(&mut cx, &pointer, index, st, pos) {
            statements.push(s);
        }
    }
    if cx.errors.is_empty() {
        Ok(Parsed {
            document: PolicyDocument {
                version,
                id: shape.id,
                listed: shape.statement.listed,
                statements,
            },
            warnings: cx.warnings,
        })
    } else {
        Err(Rejected {
            errors: cx.errors,
            warnings: cx.warnings,
        })
    }
}

fn statement(
    cx: &mut Ctx,
    ptr: &str,
    index: u32,
    st: &StatementShape<'_>,
    position: Position,
) -> Option<Statement> {
    let errors_before = cx.errors.len();
    let effect = match st.effect.as_deref() {
        Some("Allow") => Some(Effect::Allow),
        Some("Deny") => Some(Effect::Deny),
        Some(other) => {
            cx.error(format!("{ptr}/Effect"), E::Effect(other.to_owned()));
            None
        }
        None => {
            if !st.unreadable.contains(&"Effect") {
                cx.error(ptr, E::MissingEffect);
            }
            None
        }
    };
    let action = match (&st.action, &st.not_action) {
        (Some(a), None) => actions(cx, &format!("{ptr}/Action"), a, false),
        (None, Some(a)) => actions(cx, &format!("{ptr}/NotAction"), a, true),
        (None, None) if st.unreadable.iter().any(|e| e.ends_with("Action")) => None,
        _ => {
            cx.error(ptr, E::ExactlyOne("Action"));
            None
        }
    };
    let resource = match (&st.resource, &st.not_resource) {
        (Some(r), None) => resources(cx, &format!("{ptr}/Resource"), r, false).map(Some),
        (None, Some(r)) => resources(cx, &format!("{ptr}/NotResource"), r, true).map(Some),
        (None, None) => Some(None),
        (Some(_), Some(_)) => {
            cx.error(ptr, E::ExactlyOne("Resource"));
            None
        }
    };
    let principal = match (&st.principal, &st.not_principal) {
        (Some(p), None) => principals(cx, &format!("{ptr}/Principal"), p, false).map(Some),
        (None, Some(p)) => principals(cx, &format!("{ptr}/NotPrincipal"), p, true).map(Some),
        (None, None) => Some(None),
        (Some(_), Some(_)) => {
            cx.error(ptr, E::ExactlyOne("Principal"));
            None
        }
    };
    let conditions = match &st.condition {
        Some(c) => conditions(cx, &format!("{ptr}/Condition"), c),
        None => Vec::new(),
    };
    if cx.errors.len() > errors_before {
        return None;
    }
    let (effect, action, resource, principal) = (effect?, action?, resource?, principal?);
    if effect == Effect::Allow {
        if action.negated {
            cx.warn(format!("{ptr}/NotAction"), W::NotActionWithAllow);
        }
        if resource.as_ref().is_some_and(|r| r.negated) {
            cx.warn(format!("{ptr}/NotResource"), W::NotResourceWithAllow);
        }
    }
    condition_warnings(cx, ptr, effect, &conditions);
    Some(Statement {
        index,
        sid: st.sid.as_deref().map(Into::into),
        effect,
        action,
        resource,
        principal,
        conditions: conditions.into_boxed_slice(),
        position,
    })
}

fn condition_warnings(cx: &mut Ctx, ptr: &str, effect: Effect, conditions: &[Condition]) {
    for c in conditions {
        let cptr = format!(
            "{ptr}/Condition/{}/{}",
            locate::escape_segment(&c.op.to_string()),
            locate::escape_segment(&c.written_key)
        );
        let key = &*c.key;
        let multivalued = MULTIVALUED_KEYS.contains(&key);
        match c.op.set {
            Some(SetQualifier::ForAllValues) if effect == Effect::Allow => {
                cx.warn(&cptr, W::ForAllValuesInAllow(c.op.to_string()));
            }
            _ => {}
        }
        if c.op.set.is_some()
            && (key.starts_with("kms:encryptioncontext:") || key.starts_with("aws:requesttag/"))
        {
            cx.warn(
                &cptr,
                W::SetOperatorOnSingleValued {
                    operator: c.op.to_string(),
                    key: c.written_key.to_string(),
                },
            );
        }
        if c.op.set.is_none() && c.op.base != BaseOperator::Null && multivalued {
            cx.warn(
                &cptr,
                W::PlainOperatorOnMultivalued {
                    operator: c.op.to_string(),
                    key: c.written_key.to_string(),
                },
            );
        }
        if effect == Effect::Deny
            && !c.op.if_exists
            && c.op.base != BaseOperator::Null
            && OPTIONAL_TRANSPORT_KEYS.contains(&key)
        {
            cx.warn(
                &cptr,
                W::DenyOnOptionalKey {
                    operator: c.op.to_string(),
                    key: c.written_key.to_string(),
                },
            );
        }
        for v in &c.values {
            let template = match v {
                ConditionValue::String(t) => Some(t),
                ConditionValue::Bool(BoolValue::Template(t)) => Some(t),
                _ => None,
            };
            let vars = template
                .into_iter()
                .flat_map(|t| t.variables())
                .chain(match v {
                    ConditionValue::Arn(a) => a
                        .pieces
                        .iter()
                        .flat_map(|p| p.variables())
                        .collect::<Vec<_>>(),
                    _ => Vec::new(),
                });
            for var in vars {
                if MULTIVALUED_KEYS.contains(&&*var.key) {
                    cx.warn(&cptr, W::MultivaluedVariable(var.key.to_string()));
                }
            }
        }
    }
}

fn actions(
    cx: &mut Ctx,
    ptr: &str,
    values: &OneOrMany<String>,
    negated: bool,
) -> Option<Block<ActionPattern>> {
    if values.values.is_empty() {
        cx.error(ptr, E::Empty(if negated { "NotAction" } else { "Action" }));
        return None;
    }
    let mut items = Vec::with_capacity(values.values.len());
    let mut ok = true;
    for (p, v) in values.with_pointers(ptr) {
        match action(v) {
            Ok(a) => {
                catalogue_action(cx, p, v, &a);
                items.push(a);
            }
            Err(kind) => {
                ok = false;
                cx.error(p, kind);
            }
        }
    }
    ok.then_some(Block {
        negated,
        items: items.into_boxed_slice(),
    })
}

/// What the IAM catalogue says of a valid action pattern, as a warning.
fn catalogue_action(cx: &mut Ctx, pointer: String, written: &str, a: &ActionPattern) {
    let (ActionPattern::Named { service, name }, Some(budget)) = (a, cx.catalogue.as_deref_mut())
    else {
        return;
    };
    let kind = match super::catalogue::catalogue().action(service, name, budget) {
        None => return,
        Some(ActionFinding::UnknownService { suggestion }) => W::UnknownService {
            action: super::err::cut(written, 128),
            service: super::err::cut(service, 64),
            suggestion: suggestion.map(str::to_owned),
        },
        Some(ActionFinding::UnknownAction { suggestion }) => W::UnknownAction {
            action: super::err::cut(written, 128),
            suggestion,
        },
        Some(ActionFinding::MatchesNothing) => {
            W::ActionMatchesNothing(super::err::cut(written, 128))
        }
    };
    cx.warn(pointer, kind);
}

/// Parse one action value.
pub(crate) fn action(v: &str) -> Result<ActionPattern, E> {
    if v == "*" {
        return Ok(ActionPattern::Any);
    }
    let Some((service, name)) = v.split_once(':') else {
        return Err(E::Action(v.to_owned()));
    };
    if service.contains(['*', '?']) {
        return Err(E::ActionServiceWildcard(v.to_owned()));
    }
    if service.is_empty()
        || name.is_empty()
        || !service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(E::Action(v.to_owned()));
    }
    Ok(ActionPattern::Named {
        service: service.to_ascii_lowercase().into(),
        name: name.to_lowercase().into(),
    })
}

fn resources(
    cx: &mut Ctx,
    ptr: &str,
    values: &OneOrMany<String>,
    negated: bool,
) -> Option<Block<ResourcePattern>> {
    if values.values.is_empty() {
        cx.error(
            ptr,
            E::Empty(if negated { "NotResource" } else { "Resource" }),
        );
        return None;
    }
    let mut items = Vec::with_capacity(values.values.len());
    let mut ok = true;
    for (p, v) in values.with_pointers(ptr) {
        if v == "*" {
            items.push(ResourcePattern::Any);
            continue;
        }
        if !v.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("arn:")) {
            ok = false;
            cx.error(p, E::Resource(v.clone()));
            continue;
        }
        let (template, notes) = Template::parse(v, cx.variables);
        if notes.malformed_variable {
            cx.warn(&p, W::MalformedVariable);
        }
        let mut pieces = template.split_colons(5);
        if let Some(service) = pieces.get_mut(2) {
            // Variables stay literal in the service piece (U32).
            *service = service.without_variables();
            if service.has_wildcard() {
                ok = false;
                cx.error(&p, E::ResourceServiceWildcard(v.clone()));
                continue;
            }
        }
        for (i, name) in [(1, "partition"), (3, "region"), (4, "account")] {
            if pieces.get(i).is_some_and(Template::has_variables) {
                cx.warn(&p, W::VariableInArnPiece(name));
            }
        }
        items.push(ResourcePattern::Arn(ArnPattern {
            pieces: pieces.into_boxed_slice(),
        }));
    }
    ok.then_some(Block {
        negated,
        items: items.into_boxed_slice(),
    })
}

fn principals(
    cx: &mut Ctx,
    ptr: &str,
    shape: &PrincipalShape,
    negated: bool,
) -> Option<Block<PrincipalEntry>> {
    let element = if negated { "NotPrincipal" } else { "Principal" };
    let mut items = Vec::new();
    let mut ok = true;
    match shape {
        PrincipalShape::Bare(s) => {
            if s == "*" {
                items.push(PrincipalEntry::Everyone);
            } else {
                cx.error(
                    ptr,
                    E::Principal {
                        value: s.clone(),
                        reason:
                            "a bare string principal must be `*`; name others as `{\"AWS\": …}`"
                                .into(),
                    },
                );
                return None;
            }
        }
        PrincipalShape::Map(m) => {
            let groups: [(&str, &Option<OneOrMany<String>>); 4] = [
                ("AWS", &m.aws),
                ("Service", &m.service),
                ("Federated", &m.federated),
                ("CanonicalUser", &m.canonical_user),
            ];
            if groups.iter().all(|(_, g)| g.is_none()) {
                cx.error(ptr, E::Empty(element));
                return None;
            }
            for (kind, values) in groups {
                let Some(values) = values else { continue };
                let base = locate::push_segment(ptr, kind);
                if values.values.is_empty() {
                    ok = false;
                    cx.error(&base, E::Empty(element));
                }
                for (p, v) in values.with_pointers(&base) {
                    match principal_value(kind, v) {
                        Ok(e) => items.push(e),
                        Err(reason) => {
                            ok = false;
                            cx.error(
                                p,
                                E::Principal {
                                    value: v.clone(),
                                    reason,
                                },
                            );
                        }
                    }
                }
            }
        }
    }
    ok.then_some(Block {
        negated,
        items: items.into_boxed_slice(),
    })
}

/// Parse one principal value of a principal type.
pub(crate) fn principal_value(kind: &str, v: &str) -> Result<PrincipalEntry, String> {
    match kind {
        "AWS" => {
            if v == "*" {
                return Ok(PrincipalEntry::Everyone);
            }
            if is_account_id(v) {
                return Ok(PrincipalEntry::Account(v.into()));
            }
            match PrincipalArn::parse(v) {
                Ok(PrincipalArn::Root { account, .. }) => {
                    Ok(PrincipalEntry::Account(account.as_str().into()))
                }
                Ok(arn) => Ok(PrincipalEntry::Arn(arn)),
                Err(e) => Err(e.to_string()),
            }
        }
        "Service" => {
            if v.is_empty() || v.contains(['*', '?']) {
                Err("a service principal is a full name such as `dynamodb.amazonaws.com`".into())
            } else {
                Ok(PrincipalEntry::Service(v.into()))
            }
        }
        _ => {
            if v.is_empty() {
                Err("empty principal".into())
            } else {
                Ok(PrincipalEntry::Unmatchable(v.into()))
            }
        }
    }
}

fn conditions(cx: &mut Ctx, ptr: &str, block: &UniqueMap<UniqueMap<&RawValue>>) -> Vec<Condition> {
    let mut out = Vec::new();
    for (op_name, keys) in &block.0 {
        let op_ptr = locate::push_segment(ptr, op_name);
        let Some(op) = Operator::parse(op_name) else {
            let suggestion = super::catalogue::closest_operator(op_name);
            cx.error(op_ptr, E::Operator(op_name.clone(), suggestion));
            continue;
        };
        if op.base == BaseOperator::Null && op.if_exists {
            cx.error(op_ptr, E::NullQualified(op_name.clone()));
            continue;
        }
        let mut op = op;
        if op.base == BaseOperator::Null && op.set.is_some() {
            // U47: evaluated as plain `Null`.
            cx.warn(op_ptr.clone(), W::NullQualifier(op_name.clone()));
            op.set = None;
        }
        let mut seen = HashSet::new();
        for (key, raw) in &keys.0 {
            let key_ptr = locate::push_segment(&op_ptr, key);
            if key.is_empty() {
                cx.error(key_ptr, E::EmptyKey);
                continue;
            }
            let lower = key.to_lowercase();
            if !seen.insert(lower.clone()) {
                cx.error(key_ptr, E::DuplicateKey(key.clone()));
                continue;
            }
            if let Some(suggestion) = cx
                .catalogue
                .as_deref_mut()
                .and_then(|budget| super::catalogue::catalogue().condition_key(&lower, budget))
            {
                cx.warn(
                    key_ptr.clone(),
                    W::UnknownConditionKey {
                        key: super::err::cut(key, 128),
                        suggestion: suggestion.map(str::to_owned),
                    },
                );
            }
            let Some(raw_values) = scalars(cx, &key_ptr, raw) else {
                continue;
            };
            if raw_values.is_empty() {
                cx.error(&key_ptr, E::Empty("condition values"));
                continue;
            }
            let mut values = Vec::with_capacity(raw_values.len());
            let written_values = raw_values.iter().map(|(_, t)| t.as_str().into()).collect();
            for (vptr, text) in raw_values {
                match condition_value(cx, op, &text, &vptr) {
                    Ok(v) => values.push(v),
                    // U46: the document loads; the value matches nothing.
                    Err(expected) => {
                        cx.warn(
                            vptr,
                            W::UnreadableValue {
                                operator: op_name.clone(),
                                value: super::err::cut(&text, 128),
                                expected,
                            },
                        );
                        values.push(ConditionValue::Unreadable);
                    }
                }
            }
            out.push(Condition {
                op,
                key: lower.into(),
                written_key: key.as_str().into(),
                values: values.into_boxed_slice(),
                written_values,
            });
        }
    }
    out
}

/// The scalar values under a condition key, each with its pointer: strings
/// as their content, numbers and booleans as their JSON text.
fn scalars(cx: &mut Ctx, ptr: &str, raw: &RawValue) -> Option<Vec<(String, String)>> {
    let text = raw.get().trim_start();
    if text.starts_with('[') {
        let items: Vec<&RawValue> = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                cx.error(ptr, E::Json(strip_serde_position(&e.to_string())));
                return None;
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let p = locate::push_index(ptr, i);
            match scalar(item) {
                Some(s) => out.push((p, s)),
                None => {
                    cx.error(p, E::ValueType);
                    return None;
                }
            }
        }
        Some(out)
    } else {
        match scalar(raw) {
            Some(s) => Some(vec![(ptr.to_owned(), s)]),
            None => {
                cx.error(ptr, E::ValueType);
                None
            }
        }
    }
}

/// A JSON scalar as text: a string's content; a number's or boolean's JSON text.
pub(crate) fn scalar(raw: &RawValue) -> Option<String> {
    let text = raw.get().trim();
    match text.as_bytes().first()? {
        b'"' => serde_json::from_str::<String>(text).ok(),
        b't' | b'f' if text == "true" || text == "false" => Some(text.to_owned()),
        b'-' | b'0'..=b'9' => Some(text.to_owned()),
        _ => None,
    }
}

fn condition_value(
    cx: &mut Ctx,
    op: Operator,
    text: &str,
    ptr: &str,
) -> Result<ConditionValue, &'static str> {
    let template = |cx: &mut Ctx| {
        let (t, notes) = Template::parse(text, cx.variables);
        if notes.malformed_variable {
            cx.warn(ptr, W::MalformedVariable);
        }
        t
    };
    Ok(match op.base.value_type() {
        ValueType::String => ConditionValue::String(template(cx)),
        ValueType::Numeric => ConditionValue::Number(
            value::parse_number(text)
                .ok_or("a number (`-?digits[.digits]`, at most 38 integer digits)")?
                .into(),
        ),
        ValueType::Date => ConditionValue::Date(
            value::parse_date(text)
                .ok_or("a date (W3C date/time or epoch seconds)")?
                .into(),
        ),
        ValueType::Bool => match value::parse_bool(text) {
            Some(b) => ConditionValue::Bool(BoolValue::Literal(b)),
            None => {
                let t = template(cx);
                if t.has_variables() {
                    ConditionValue::Bool(BoolValue::Template(t))
                } else {
                    return Err("`true` or `false`");
                }
            }
        },
        ValueType::Binary => ConditionValue::Binary(
            value::parse_base64(text)
                .ok_or("base64 (standard alphabet, padded)")?
                .into(),
        ),
        ValueType::Ip => {
            ConditionValue::Ip(value::parse_ip_net(text).ok_or("an IP address or CIDR range")?)
        }
        ValueType::Arn => {
            let t = template(cx);
            ConditionValue::Arn(ArnPattern {
                pieces: t.split_colons(5).into_boxed_slice(),
            })
        }
        ValueType::Null => {
            ConditionValue::Null(value::parse_bool(text).ok_or("`true` or `false`")?)
        }
    })
}

/// U43: what a short ARN pattern (fewer than six pieces) means where it
/// stands: an error in RCPs, and in SCPs unless its last piece ends in `*`;
/// otherwise a warning that it is padded, or (no wildcard, in a policy that
/// names principals) that it matches nothing.
fn short_arns(
    block: &Block<ResourcePattern>,
    place: PolicyKind,
    ptr: &str,
    errors: &mut Vec<PolicyError>,
    warnings: &mut Vec<PolicyWarning>,
) {
    let element = if block.negated {
        "NotResource"
    } else {
        "Resource"
    };
    for (i, item) in block.items.iter().enumerate() {
        let ResourcePattern::Arn(arn) = item else {
            continue;
        };
        if arn.pieces.len() >= 6 {
            continue;
        }
        let pointer = format!("{ptr}/{element}/{i}");
        let written: Vec<String> = arn.pieces.iter().map(Template::source).collect();
        let text = super::err::cut(&written.join(":"), 128);
        let refused = match place {
            PolicyKind::Rcp => Some("resource control policies refuse it"),
            PolicyKind::Scp if !arn.pieces.last().is_some_and(Template::ends_with_wildcard) => {
                Some("service control policies take one only when its last piece ends in `*`")
            }
            _ => None,
        };
        if let Some(why) = refused {
            errors.push(PolicyError {
                pointer,
                offset: None,
                kind: E::ShortArn(text, why),
            });
        } else if place.has_principals() && !arn.pieces.iter().any(Template::has_wildcard) {
            warnings.push(PolicyWarning {
                pointer,
                kind: W::ShortArnMatchesNothing(text),
            });
        } else {
            warnings.push(PolicyWarning {
                pointer,
                kind: W::ShortArnPadded(text),
            });
        }
    }
}

/// Check what the place a document is attached to requires. `document` has
/// already passed [`parse_document`].
pub fn check_place(
    doc: &PolicyDocument,
    place: PolicyKind,
) -> (Vec<PolicyError>, Vec<PolicyWarning>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for st in &doc.statements {
        let ptr = doc.statement_pointer(st.index);
        if let Some(block) = &st.resource {
            short_arns(block, place, &ptr, &mut errors, &mut warnings);
        }
        let mut err = |pointer: String, kind: E| {
            errors.push(PolicyError {
                pointer,
                offset: None,
                kind,
            })
        };
        match (&st.principal, place.has_principals()) {
            (Some(p), false) => err(
                format!(
                    "{ptr}/{}",
                    if p.negated {
                        "NotPrincipal"
                    } else {
                        "Principal"
                    }
                ),
                E::PrincipalNotAllowed {
                    element: if p.negated {
                        "NotPrincipal"
                    } else {
                        "Principal"
                    },
                    place: place.describe(),
                },
            ),
            (None, true) => err(ptr.clone(), E::PrincipalRequired(place.describe())),
            (Some(p), true) if p.negated => {
                // NotPrincipal is not supported in RCPs or trust policies.
                if matches!(place, PolicyKind::Rcp | PolicyKind::Trust) {
                    err(
                        format!("{ptr}/NotPrincipal"),
                        E::PrincipalNotAllowed {
                            element: "NotPrincipal",
                            place: place.describe(),
                        },
                    );
                } else if st.effect == Effect::Allow {
                    err(format!("{ptr}/NotPrincipal"), E::NotPrincipalWithAllow);
                }
            }
            _ => {}
        }
        if place == PolicyKind::Trust {
            if st.resource.is_some() {
                err(ptr.clone(), E::ResourceInTrustPolicy);
            }
        } else if st.resource.is_none() {
            if place == PolicyKind::KeyPolicy {
                warnings.push(PolicyWarning {
                    pointer: ptr.clone(),
                    kind: W::KeyPolicyWithoutResource,
                });
            } else {
                err(ptr.clone(), E::MissingResource);
            }
        }
        if let Some(sid) = &st.sid
            && !place.allows_free_sid()
            && !sid.chars().all(|c| c.is_ascii_alphanumeric())
        {
            warnings.push(PolicyWarning {
                pointer: format!("{ptr}/Sid"),
                kind: W::SidNotAlphanumeric(sid.to_string()),
            });
        }
        if place == PolicyKind::KeyPolicy {
            for c in &st.conditions {
                if &*c.key == "kms:resourcealiases" {
                    warnings.push(PolicyWarning {
                        pointer: format!(
                            "{ptr}/Condition/{}/{}",
                            locate::escape_segment(&c.op.to_string()),
                            locate::escape_segment(&c.written_key)
                        ),
                        kind: W::ResourceAliasesInKeyPolicy,
                    });
                }
            }
        }
    }
    (errors, warnings)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod serde_message_tests {
    use super::strip_serde_position;

    #[test]
    fn found_values_are_not_quoted() {
        assert_eq!(
            strip_serde_position(
                r#"invalid type: string "s3cr\"et", expected a map at line 1 column 9"#
            ),
            "invalid type: string, expected a map"
        );
        let long = "x".repeat(100);
        let m = strip_serde_position(&format!("unknown field `{long}`, expected `Version`"));
        assert_eq!(
            m,
            format!("unknown field `{}…`, expected `Version`", "x".repeat(64))
        );
        assert_eq!(
            strip_serde_position("invalid value: string \"abc"),
            "invalid value: string"
        );
    }
}

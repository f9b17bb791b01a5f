//! Bundle test suites: the `tests/` files of a bundle (docs/bundle-format.md), parsed
//! into cases and run against an evaluator.
//!
//! A case is a request in the JSON request shape plus what to expect: the
//! decision, and optionally the `matched` list (policy id and index, in
//! order), the missing context keys and the gates that refused.

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::bundle::{Bundle, Diagnostic, Finding, Severity, err::BundleErrorKind};
use crate::eval::json::{context_pairs, session_policy_text};
use crate::eval::{Decision, Gate, InvalidRequest, Outcome, Request, RequestLimits, RequestParts};
use crate::policy::document::UniqueMap;
use crate::policy::locate::{self, Position};
use crate::policy::parse::json_error;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape<'a> {
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "a suite may name itself; the report does not show it"
    )]
    name: Option<String>,
    #[serde(borrow)]
    cases: Vec<CaseShape<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseShape<'a> {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    rule: Option<String>,
    principal: String,
    action: String,
    resource: String,
    #[serde(default, borrow)]
    context: Option<UniqueMap<&'a RawValue>>,
    #[serde(default, borrow)]
    session_policy: Option<&'a RawValue>,
    #[serde(default)]
    explain: bool,
    #[serde(default)]
    now: Option<String>,
    #[serde(default)]
    expect: Option<String>,
    #[serde(default)]
    expect_invalid: Option<String>,
    #[serde(default)]
    expect_matched: Option<Vec<ExpectMatched>>,
    #[serde(default)]
    expect_missing_context_keys: Option<Vec<String>>,
    #[serde(default)]
    expect_blocked_by: Option<Vec<String>>,
    #[serde(default)]
    expect_near_misses: Option<Vec<ExpectNearMiss>>,
}

/// One expected `near_misses` entry: the statement, what failed and,
/// where something keyed failed, its key.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpectNearMiss {
    /// Policy id.
    pub(crate) policy_id: String,
    /// Statement index (none for a grant).
    #[serde(default)]
    pub(crate) index: Option<u32>,
    /// `Resource`, `Condition`, `Delegation`, `GrantConstraint`,
    /// `GrantRequest` or `NoAllow`.
    pub(crate) failed: String,
    /// The condition's key (lower-cased), for `Condition`; the missing
    /// encryption context key, for `GrantConstraint`; the key asked for
    /// beyond the grant, for `GrantRequest`.
    #[serde(default)]
    pub(crate) key: Option<String>,
    /// The condition's values as the policy writes them, for `Condition`
    /// (compared only when the case gives them).
    #[serde(default)]
    pub(crate) policy_values: Option<Vec<String>>,
    /// The value asked for beyond a grant, for `GrantRequest`; the missing
    /// pair's value, for `GrantConstraint` (compared only when the case
    /// gives it).
    #[serde(default)]
    pub(crate) value: Option<String>,
}

/// One expected `matched` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpectMatched {
    /// Policy id (grant id for grants).
    pub(crate) policy_id: String,
    /// Statement index (`null` for grants).
    #[serde(default)]
    pub(crate) index: Option<u32>,
}

/// What a case expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// This decision.
    Decision(Outcome),
    /// The request is refused, naming this field (`principal`, `context[k]`, …).
    Invalid(String),
}

/// A parsed test case.
#[derive(Debug)]
pub struct TestCase {
    /// File in the bundle.
    pub file: String,
    /// Where the case starts.
    pub position: Position,
    /// Name (or rule, or `case N`).
    pub label: String,
    /// The request, or why it was refused.
    pub request: Result<Request, InvalidRequest>,
    /// Fixed server clock, when given.
    pub(crate) now: Option<SystemTime>,
    /// Expected decision, or the field a refused request must name.
    pub(crate) expect: Expect,
    /// Expected `matched` (policy id, index), in order.
    pub(crate) expect_matched: Option<Vec<ExpectMatched>>,
    /// Expected missing keys (lower-cased, sorted).
    pub(crate) expect_missing: Option<Vec<String>>,
    /// Expected gates.
    pub(crate) expect_blocked_by: Option<Vec<Gate>>,
    /// Expected near misses, in order.
    pub(crate) expect_near_misses: Option<Vec<ExpectNearMiss>>,
}

fn case_error(
    file: &str,
    src: &locate::SourceText,
    pointer: String,
    message: String,
) -> Diagnostic {
    let position = locate::offset_of_pointer(src.text(), &pointer).map(|o| src.position(o));
    Diagnostic {
        severity: Severity::Error,
        file: file.to_owned(),
        pointer,
        position,
        finding: Finding::Bundle(BundleErrorKind::TestCase(message)),
    }
}

/// Parse every `tests/` file of a bundle loaded with tests. Invalid cases
/// are returned as errors, located.
pub fn parse_tests(bundle: &Bundle, limits: &RequestLimits) -> (Vec<TestCase>, Vec<Diagnostic>) {
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for f in &bundle.tests {
        let src = &f.text;
        let shape: FileShape<'_> = match serde_json::from_str(src.text()) {
            Ok(s) => s,
            Err(e) => {
                let pe = json_error(src.text(), &e);
                errors.push(Diagnostic {
                    severity: Severity::Error,
                    file: f.path.clone(),
                    pointer: pe.pointer,
                    position: pe.offset.map(|o| src.position(o)),
                    finding: Finding::Bundle(BundleErrorKind::Json(pe.kind.to_string())),
                });
                continue;
            }
        };
        for (i, c) in shape.cases.into_iter().enumerate() {
            let ptr = format!("/cases/{i}");
            let position = locate::offset_of_pointer(src.text(), &ptr)
                .map(|o| src.position(o))
                .unwrap_or_default();
            let label = c
                .name
                .clone()
                .or_else(|| c.rule.clone())
                .unwrap_or_else(|| format!("case {i}"));
            let expect = match (&c.expect, &c.expect_invalid) {
                (Some(e), None) => match Outcome::parse(e) {
                    Some(o) => Expect::Decision(o),
                    None => {
                        errors.push(case_error(
                            &f.path,
                            src,
                            format!("{ptr}/expect"),
                            format!("`expect` must be `Allow`, `ExplicitDeny` or `ImplicitDeny`, not `{e}`"),
                        ));
                        continue;
                    }
                },
                (None, Some(field)) => Expect::Invalid(field.clone()),
                _ => {
                    errors.push(case_error(
                        &f.path,
                        src,
                        ptr.clone(),
                        "a case needs exactly one of `expect` and `expect_invalid`".into(),
                    ));
                    continue;
                }
            };
            let mut blocked = None;
            if let Some(list) = &c.expect_blocked_by {
                let mut gates = Vec::new();
                for (j, g) in list.iter().enumerate() {
                    match Gate::parse(g) {
                        Some(g) => gates.push(g),
                        None => errors.push(case_error(
                            &f.path,
                            src,
                            format!("{ptr}/expect_blocked_by/{j}"),
                            format!("unknown gate `{g}`"),
                        )),
                    }
                }
                blocked = Some(gates);
            }
            let now = match &c.now {
                None => None,
                Some(t) => match chrono::DateTime::parse_from_rfc3339(t) {
                    Ok(d) => Some(SystemTime::from(d)),
                    Err(e) => {
                        errors.push(case_error(
                            &f.path,
                            src,
                            format!("{ptr}/now"),
                            format!("`now`: {e}"),
                        ));
                        continue;
                    }
                },
            };
            let parts = (|| -> Result<RequestParts, crate::eval::InvalidRequest> {
                Ok(RequestParts {
                    principal: c.principal.clone(),
                    action: c.action.clone(),
                    resource: c.resource.clone(),
                    context: match &c.context {
                        Some(ctx) => context_pairs(ctx)?,
                        None => Vec::new(),
                    },
                    session_policy: c.session_policy.map(session_policy_text).transpose()?,
                    explain: c.explain
                        || c.expect_blocked_by.is_some()
                        || c.expect_near_misses.is_some(),
                })
            })();
            let request = parts.and_then(|p| Request::new(p, limits));
            if let (Err(e), Expect::Decision(_)) = (&request, &expect) {
                let field = e.field.split('[').next().unwrap_or("").to_owned();
                errors.push(case_error(
                    &f.path,
                    src,
                    format!("{ptr}/{field}"),
                    e.to_string(),
                ));
                continue;
            }
            let expect_missing = c.expect_missing_context_keys.map(|mut keys| {
                keys.iter_mut().for_each(|k| *k = k.to_lowercase());
                keys.sort();
                keys.dedup();
                keys
            });
            cases.push(TestCase {
                file: f.path.clone(),
                position,
                label,
                request,
                now,
                expect,
                expect_matched: c.expect_matched,
                expect_missing,
                expect_blocked_by: blocked,
                expect_near_misses: c.expect_near_misses,
            });
        }
    }
    (cases, errors)
}

/// The outcome of one case.
#[derive(Debug)]
pub struct CaseResult<'c> {
    /// The case.
    pub case: &'c TestCase,
    /// What the evaluator decided (`None` when the request was refused).
    pub decision: Option<Decision>,
    /// What differed from the expectation (empty: passed).
    pub failures: Vec<String>,
}

/// Run the cases with `evaluate(request, now)`.
pub fn run<'c>(
    cases: &'c [TestCase],
    evaluate: &dyn Fn(&Request, SystemTime) -> Decision,
) -> Vec<CaseResult<'c>> {
    cases
        .iter()
        .map(|case| match (&case.request, &case.expect) {
            (Ok(req), Expect::Decision(_)) => {
                let decision = evaluate(req, case.now.unwrap_or_else(SystemTime::now));
                let failures = check(case, &decision);
                CaseResult {
                    case,
                    decision: Some(decision),
                    failures,
                }
            }
            (Ok(req), Expect::Invalid(field)) => {
                let decision = evaluate(req, case.now.unwrap_or_else(SystemTime::now));
                CaseResult {
                    case,
                    failures: vec![format!(
                        "expected the request to be refused naming `{field}`, but it was decided {}",
                        decision.outcome.as_str()
                    )],
                    decision: Some(decision),
                }
            }
            (Err(e), Expect::Invalid(field)) => CaseResult {
                case,
                decision: None,
                failures: if &e.field == field {
                    Vec::new()
                } else {
                    vec![format!("expected the request refused naming `{field}`, got `{e}`")]
                },
            },
            (Err(e), Expect::Decision(_)) => CaseResult {
                case,
                decision: None,
                failures: vec![format!("request refused: {e}")],
            },
        })
        .collect()
}

fn check(case: &TestCase, d: &Decision) -> Vec<String> {
    let mut failures = Vec::new();
    if let Expect::Decision(want) = case.expect
        && d.outcome != want
    {
        failures.push(format!(
            "expected {}, got {}",
            want.as_str(),
            d.outcome.as_str()
        ));
    }
    if let Some(want) = &case.expect_matched {
        let got: Vec<ExpectMatched> = d
            .matched
            .iter()
            .map(|m| ExpectMatched {
                policy_id: m.policy_id.to_string(),
                index: m.index,
            })
            .collect();
        if &got != want {
            failures.push(format!(
                "expected matched {}, got {}",
                show_matched(want),
                show_matched(&got)
            ));
        }
    }
    if let Some(want) = &case.expect_missing
        && !want
            .iter()
            .map(String::as_str)
            .eq(d.missing_context_keys.iter().map(|k| &**k))
    {
        failures.push(format!(
            "expected missing_context_keys {want:?}, got {:?}",
            d.missing_context_keys
        ));
    }
    if let Some(want) = &case.expect_blocked_by {
        let got: Vec<Gate> = d
            .explanation
            .as_ref()
            .map(|e| e.blocked_by.clone())
            .unwrap_or_default();
        if &got != want {
            let names = |g: &[Gate]| g.iter().map(|g| g.as_str()).collect::<Vec<_>>();
            failures.push(format!(
                "expected blocked_by {:?}, got {:?}",
                names(want),
                names(&got)
            ));
        }
    }
    if let Some(want) = &case.expect_near_misses {
        let mut got: Vec<ExpectNearMiss> = d
            .explanation
            .as_ref()
            .map(|e| e.near_misses.iter().map(near_miss_shape).collect())
            .unwrap_or_default();
        // Policy values and values are compared where the case gives them.
        for (g, w) in got.iter_mut().zip(want) {
            if w.policy_values.is_none() {
                g.policy_values = None;
            }
            if w.value.is_none() {
                g.value = None;
            }
        }
        if &got != want {
            failures.push(format!("expected near_misses {want:?}, got {got:?}"));
        }
    }
    failures
}

/// A near miss in the shape a case expects it.
fn near_miss_shape(n: &crate::eval::NearMiss) -> ExpectNearMiss {
    use crate::eval::Failed;
    let (mut key, mut policy_values, mut value) = (None, None, None);
    let failed = match &n.failed {
        Failed::Resource => "Resource",
        Failed::Delegation => "Delegation",
        Failed::NoAllow => "NoAllow",
        Failed::GrantConstraint { missing } => {
            key = missing.as_ref().map(|(k, _)| k.clone());
            value = missing.as_ref().map(|(_, v)| v.clone());
            "GrantConstraint"
        }
        Failed::GrantRequest { key: k, value: v } => {
            key = Some(k.clone());
            value.clone_from(v);
            "GrantRequest"
        }
        Failed::Condition { key: k, policy, .. } => {
            key = Some(k.clone());
            policy_values = Some(policy.clone());
            "Condition"
        }
    };
    ExpectNearMiss {
        policy_id: n.statement.policy_id.to_string(),
        index: n.statement.index,
        failed: failed.to_owned(),
        key,
        policy_values,
        value,
    }
}

/// `[id#index, …]`.
pub(crate) fn show_matched(list: &[ExpectMatched]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|m| match m.index {
            Some(i) => format!("{}#{i}", m.policy_id),
            None => m.policy_id.clone(),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// A decision's `matched` as `[id#index (kind, effect), …]`, for reports.
pub fn describe_matched(d: &Decision) -> String {
    let items: Vec<String> = d
        .matched
        .iter()
        .map(|m| {
            let at = m.index.map(|i| format!("#{i}")).unwrap_or_default();
            format!(
                "{}{at} ({}, {})",
                m.policy_id,
                m.kind.as_str(),
                m.effect.as_str()
            )
        })
        .collect();
    format!("[{}]", items.join(", "))
}

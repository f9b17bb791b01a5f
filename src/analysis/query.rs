//! The questions: who can use a resource (`who_can`), what a principal can
//! reach (`what_can`), and which requests two bundles decide differently
//! (`diff`). Each decides every request of its slice of the universe with
//! the evaluator that serves Authorize ([`crate::eval::logic::evaluate`]).

use std::time::SystemTime;

use serde::Serialize;

use super::relevance::Focus;
use super::universe::{ContextClass, Universe, glob};
use crate::bundle::Bundle;
use crate::compile::Snapshot;
use crate::eval::{Context, Decision, Outcome, Request, RequestLimits, RequestParts, logic};
use crate::policy::PolicyKind;

/// One principal's access to one resource with one action.
#[derive(Clone, Debug, Serialize)]
pub struct Access {
    /// The principal.
    pub principal: String,
    /// The action.
    pub action: String,
    /// Actions no statement tells apart from `action`: decided the same
    /// way, so allowed the same way.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub same_for: Vec<String>,
    /// The resource.
    pub resource: String,
    /// Whether every context class is allowed (no condition stands in the way).
    pub unconditional: bool,
    /// The context classes under which the request is allowed (by name);
    /// empty when it is allowed under every class (`unconditional`).
    pub allowed_when: Vec<String>,
    /// How it is allowed, under the first of those classes: a key policy
    /// statement, an identity statement reached through the key policy's
    /// delegation, a grant…
    pub path: String,
    /// The statements that allowed it, as `matched` of a decision.
    pub allowed_by: serde_json::Value,
    /// The explicit denies that stop it under other classes.
    pub denied_when: Vec<Denial>,
}

/// An explicit deny under one context class.
#[derive(Clone, Debug, Serialize)]
pub struct Denial {
    /// The context class.
    pub context: String,
    /// The deny statements.
    pub by: serde_json::Value,
}

/// The most requests an analysis may decide.
#[derive(Debug)]
pub struct Budget {
    left: u64,
}

impl Budget {
    /// At most `decisions` decisions.
    pub fn new(decisions: u64) -> Self {
        Self { left: decisions }
    }

    fn unlimited() -> Self {
        Self::new(u64::MAX)
    }

    fn spend(&mut self) -> Result<(), Exhausted> {
        self.left = self.left.checked_sub(1).ok_or(Exhausted)?;
        Ok(())
    }
}

/// An analysis stopped at its budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exhausted;

/// A context class made ready to decide: its context built once, and its
/// keys lower-cased. `context` is `None` when the class is not a valid
/// request context (a sample value its key's type refuses).
struct Prepared<'u> {
    class: &'u ContextClass,
    context: Option<Context>,
    keys: Vec<String>,
    /// Whether it sets a key of the snapshot's `default_context` (present
    /// without context too, so never taken as no context's when allowed).
    defaulted: bool,
}

/// Every context class of `universe`, made ready for `snaps`.
fn prepare<'u>(universe: &'u Universe, snaps: &[&Snapshot]) -> Vec<Prepared<'u>> {
    universe
        .contexts
        .iter()
        .map(|class| {
            let keys: Vec<String> = class
                .pairs
                .iter()
                .map(|(k, _)| k.to_ascii_lowercase())
                .collect();
            let defaulted = snaps.iter().any(|s| {
                s.bundle
                    .options
                    .default_context
                    .iter()
                    .any(|d| keys.iter().any(|k| **k == *d.lower))
            });
            Prepared {
                class,
                context: Context::new(class.pairs.clone(), &RequestLimits::default()).ok(),
                keys,
                defaulted,
            }
        })
        .collect()
}

/// The request of one (principal, action, resource) with no context, the
/// base each class's context is put into; `None` when it is not valid.
fn base(principal: &str, action: &str, resource: &str) -> Option<Request> {
    let parts = RequestParts {
        principal: principal.to_owned(),
        action: action.to_owned(),
        resource: resource.to_owned(),
        ..RequestParts::default()
    };
    Request::new(parts, &RequestLimits::default()).ok()
}

/// Decide `base` under one class's context (lent to the request for the
/// decision, so nothing is copied); `None` when the class is not valid.
fn decide(
    snap: &Snapshot,
    base: &mut Request,
    class: &mut Prepared<'_>,
    now: SystemTime,
) -> Option<Decision> {
    let context = class.context.as_mut()?;
    std::mem::swap(&mut base.context, context);
    let d = logic::evaluate(snap, base, now);
    std::mem::swap(&mut base.context, context);
    Some(d)
}

fn matched(d: &Decision) -> serde_json::Value {
    crate::eval::json::matched_value(d)
}

/// The path of an allowing decision, in words.
fn path(d: &Decision) -> String {
    let steps: Vec<String> = d
        .matched
        .iter()
        .map(|m| {
            let at = m.index.map_or_else(String::new, |i| format!("#{i}"));
            let sid = m
                .sid
                .as_deref()
                .map_or_else(String::new, |s| format!(" ({s})"));
            match m.kind {
                PolicyKind::Grant => format!("grant {}", m.policy_id),
                PolicyKind::KeyPolicy
                    if d.matched
                        .iter()
                        .any(|o| matches!(o.kind, PolicyKind::Identity | PolicyKind::Group)) =>
                {
                    format!("key policy {}{at}{sid} delegating to IAM", m.policy_id)
                }
                kind => format!("{} {}{at}{sid}", kind.as_str(), m.policy_id),
            }
        })
        .collect();
    steps.join(" + ")
}

/// The access of one (principal, action, resource) over every context
/// class; `None` when no class allows it.
fn access(
    snap: &Snapshot,
    universe: &Universe,
    (contexts, focus): (&mut [Prepared<'_>], &mut [Focus<'_>]),
    (principal, action, resource): (&str, &str, &str),
    budget: &mut Budget,
) -> Result<Option<Access>, Exhausted> {
    if !focus.iter_mut().any(|f| f.may_allow(principal, action)) {
        return Ok(None);
    }
    let now = SystemTime::now();
    let Some(mut request) = base(principal, action, resource) else {
        return Ok(None);
    };
    // Indexes into `contexts` of the classes that allow, and of those
    // that deny explicitly with their decision (`None`: the same as no
    // context's).
    let mut allowed_when: Vec<usize> = Vec::new();
    let mut denied_when: Vec<(usize, Option<Decision>)> = Vec::new();
    let mut first: Option<Decision> = None;
    let mut decided = 0usize;
    let trust = snap.bundle.options.trust_session_tags;
    let (mut relevant, mut sticky) = (Vec::new(), Vec::new());
    for f in focus.iter_mut() {
        let (all, when_allowed) = f.keys(principal, action, trust);
        relevant.extend(all);
        sticky.extend(when_allowed);
    }
    // `no context` first: a class that sets no key the decision can read
    // is decided as it is; when that is Allow, so is a class that sets
    // none of the keys that can take an Allow away.
    let mut plain: Option<Decision> = None;
    for (at, class) in contexts.iter_mut().enumerate() {
        if class.context.is_none() {
            continue;
        }
        if let Some(p) = &plain
            && !match p.outcome {
                Outcome::Allow => {
                    class.defaulted || super::relevance::touches(&class.keys, &sticky)
                }
                _ => super::relevance::touches(&class.keys, &relevant),
            }
        {
            decided += 1;
            match p.outcome {
                Outcome::Allow => allowed_when.push(at),
                Outcome::ExplicitDeny => denied_when.push((at, None)),
                Outcome::ImplicitDeny => {}
            }
            continue;
        }
        budget.spend()?;
        let Some(d) = decide(snap, &mut request, class, now) else {
            continue;
        };
        decided += 1;
        if plain.is_none() && class.class.pairs.is_empty() {
            match d.outcome {
                Outcome::Allow => allowed_when.push(at),
                Outcome::ExplicitDeny => denied_when.push((at, None)),
                Outcome::ImplicitDeny => {}
            }
            plain = Some(d);
            continue;
        }
        match d.outcome {
            Outcome::Allow => {
                allowed_when.push(at);
                first.get_or_insert(d);
            }
            Outcome::ExplicitDeny => denied_when.push((at, Some(d))),
            Outcome::ImplicitDeny => {}
        }
    }
    // The first class that allows: no context when it does.
    let plain_allows = plain.as_ref().is_some_and(|p| p.outcome == Outcome::Allow);
    let Some(first) = (if plain_allows {
        plain.as_ref()
    } else {
        first.as_ref()
    }) else {
        return Ok(None);
    };
    let unconditional = allowed_when.len() == decided;
    let name = |at: usize| contexts.get(at).map(|c| c.class.name.clone());
    Ok(Some(Access {
        principal: principal.to_owned(),
        action: action.to_owned(),
        same_for: universe.same_as.get(action).cloned().unwrap_or_default(),
        resource: resource.to_owned(),
        unconditional,
        path: path(first),
        allowed_by: matched(first),
        allowed_when: if unconditional {
            Vec::new()
        } else {
            allowed_when.iter().filter_map(|at| name(*at)).collect()
        },
        denied_when: denied_when
            .into_iter()
            .filter_map(|(at, d)| {
                Some(Denial {
                    context: name(at)?,
                    by: matched(d.as_ref().or(plain.as_ref())?),
                })
            })
            .collect(),
    }))
}

/// Who may do `actions` (every action of the universe when empty) on
/// `resource`: every principal of the universe allowed under at least one
/// context class.
pub fn who_can(
    snap: &Snapshot,
    universe: &Universe,
    resource: &str,
    actions: &[String],
) -> Vec<Access> {
    let mut out = Vec::new();
    let _ = who_can_each(
        snap,
        universe,
        resource,
        actions,
        &mut Budget::unlimited(),
        &mut |a| {
            out.push(a);
            true
        },
    );
    out
}

/// [`who_can`], each answer handed to `emit` as it is found (which returns
/// false to stop), within `budget`.
pub fn who_can_each(
    snap: &Snapshot,
    universe: &Universe,
    resource: &str,
    actions: &[String],
    budget: &mut Budget,
    emit: &mut dyn FnMut(Access) -> bool,
) -> Result<(), Exhausted> {
    let mut contexts = prepare(universe, &[snap]);
    let mut focus = universe.focus(resource);
    let actions = if actions.is_empty() {
        &universe.actions
    } else {
        actions
    };
    for action in actions {
        for principal in &universe.principals {
            if let Some(a) = access(
                snap,
                universe,
                (&mut contexts, &mut focus),
                (principal, action, resource),
                budget,
            )? && !emit(a)
            {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// What `principal` may do, on the universe's resources matching
/// `resource` (`*` and `?` wildcards; every resource when `None`).
pub fn what_can(
    snap: &Snapshot,
    universe: &Universe,
    principal: &str,
    resource: Option<&str>,
) -> Vec<Access> {
    let mut out = Vec::new();
    let _ = what_can_each(
        snap,
        universe,
        principal,
        resource,
        &mut Budget::unlimited(),
        &mut |a| {
            out.push(a);
            true
        },
    );
    out
}

/// [`what_can`], each answer handed to `emit` as it is found, within
/// `budget`.
pub fn what_can_each(
    snap: &Snapshot,
    universe: &Universe,
    principal: &str,
    resource: Option<&str>,
    budget: &mut Budget,
    emit: &mut dyn FnMut(Access) -> bool,
) -> Result<(), Exhausted> {
    let mut contexts = prepare(universe, &[snap]);
    for r in universe
        .resources
        .iter()
        .filter(|r| resource.is_none_or(|p| glob(p, r)))
    {
        let mut focus = universe.focus(r);
        for action in &universe.actions {
            if let Some(a) = access(
                snap,
                universe,
                (&mut contexts, &mut focus),
                (principal, action, r),
                budget,
            )? && !emit(a)
            {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// One request two bundles decide differently.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    /// `gained` (allowed by the new bundle only) or `lost`.
    pub change: &'static str,
    /// The request, as `verdict eval --requests` reads it: the
    /// (principal, action, resource) under the first class that changed.
    pub witness: serde_json::Value,
    /// The context class of the witness.
    pub context: String,
    /// Whether the change holds under every context class.
    pub every_context: bool,
    /// The context classes under which it changed (by name); empty when
    /// `every_context`.
    pub contexts: Vec<String>,
    /// The old bundle's decision of the witness and the statements that
    /// decided.
    pub old: Side,
    /// The new bundle's.
    pub new: Side,
}

/// One bundle's decision of a witness.
#[derive(Clone, Debug, Serialize)]
pub struct Side {
    /// `Allow`, `ExplicitDeny` or `ImplicitDeny`.
    pub decision: &'static str,
    /// The statements that decided, as `matched` of a decision.
    pub matched: serde_json::Value,
}

/// What two bundles decide differently over the union of their universes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Diff {
    /// Requests decided on both sides.
    pub compared: u64,
    /// Access the new bundle grants that the old did not, one entry per
    /// (principal, action, resource).
    pub gained: Vec<Change>,
    /// Access the new bundle takes away.
    pub lost: Vec<Change>,
}

fn side(d: &Decision) -> Side {
    Side {
        decision: d.outcome.as_str(),
        matched: matched(d),
    }
}

/// The classes of one (principal, action, resource) whose Allow changed
/// one way, with both decisions of the first.
struct Changed<'u> {
    first: Option<(&'u ContextClass, Decision, Decision)>,
    classes: Vec<&'u str>,
}

impl<'u> Changed<'u> {
    fn new() -> Self {
        Self {
            first: None,
            classes: Vec::new(),
        }
    }

    fn add(&mut self, class: &'u ContextClass, old: &Decision, new: &Decision) {
        self.classes.push(&class.name);
        if self.first.is_none() {
            self.first = Some((class, old.clone(), new.clone()));
        }
    }

    /// The change, if any class changed; `compared` classes were decided.
    fn finish(
        self,
        change: &'static str,
        (principal, action, resource): (&str, &str, &str),
        compared: usize,
    ) -> Option<Change> {
        let (class, old, new) = self.first?;
        let context: serde_json::Map<String, serde_json::Value> = class
            .pairs
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(v)))
            .collect();
        let every_context = self.classes.len() == compared;
        Some(Change {
            change,
            witness: serde_json::json!({
                "principal": principal, "action": action,
                "resource": resource, "context": context,
            }),
            context: class.name.clone(),
            every_context,
            contexts: if every_context {
                Vec::new()
            } else {
                self.classes.into_iter().map(str::to_owned).collect()
            },
            old: side(&old),
            new: side(&new),
        })
    }
}

/// Compare one (principal, action, resource) on both sides over every
/// context class, adding what differs to `out` (at most one gained and
/// one lost change). A class that sets no key either side's applicable
/// statements read takes each side's no-context decision.
fn compare<'u>(
    (old, new): (&Snapshot, &Snapshot),
    (contexts, relevant): (&mut [Prepared<'u>], &[&str]),
    request: (&str, &str, &str),
    now: SystemTime,
    out: &mut Diff,
) {
    let Some(mut base) = base(request.0, request.1, request.2) else {
        return;
    };
    let (mut gained, mut lost) = (Changed::new(), Changed::new());
    let mut compared = 0;
    let mut plain: Option<(Decision, Decision)> = None;
    for prepared in contexts.iter_mut() {
        let decided;
        let (a, b) = match &plain {
            Some(p) if !super::relevance::touches(&prepared.keys, relevant) => {
                if prepared.context.is_none() {
                    continue;
                }
                (&p.0, &p.1)
            }
            _ => {
                let (Some(a), Some(b)) = (
                    decide(old, &mut base, prepared, now),
                    decide(new, &mut base, prepared, now),
                ) else {
                    continue;
                };
                decided = (a, b);
                (&decided.0, &decided.1)
            }
        };
        compared += 1;
        match (a.outcome == Outcome::Allow, b.outcome == Outcome::Allow) {
            (false, true) => gained.add(prepared.class, a, b),
            (true, false) => lost.add(prepared.class, a, b),
            _ => {}
        }
        if plain.is_none() && prepared.class.pairs.is_empty() {
            plain = Some((a.clone(), b.clone()));
        }
    }
    out.compared += compared as u64;
    out.gained
        .extend(gained.finish("gained", request, compared));
    out.lost.extend(lost.finish("lost", request, compared));
}

/// Every request of `universe` whose Allow differs between `old` and `new`
/// (each a loaded bundle and its compiled snapshot). Only the requests a
/// statement or fact that differs bears on can differ
/// ([`super::change`]); of those, the ones some `Allow` can reach on
/// either side are compared.
pub fn diff(old: (&Bundle, &Snapshot), new: (&Bundle, &Snapshot), universe: &Universe) -> Diff {
    let (by_principal, by_resource) =
        super::change::scopes(old.0, new.0, &universe.principals, &universe.resources);
    let now = SystemTime::now();
    let trust = old.1.bundle.options.trust_session_tags || new.1.bundle.options.trust_session_tags;
    let mut contexts = prepare(universe, &[old.1, new.1]);
    let mut out = Diff::default();
    for (resource, r_scope) in universe.resources.iter().zip(&by_resource) {
        let lower = resource.to_ascii_lowercase();
        let principals: Vec<_> = universe
            .principals
            .iter()
            .zip(&by_principal)
            .filter(|(_, p)| !r_scope.is_empty() || p.may_match(&lower))
            .collect();
        if principals.is_empty() {
            continue;
        }
        let mut focus = universe.focus(resource);
        for action in &universe.actions {
            let (service, name) = action.split_once(':').unwrap_or((action, ""));
            let name = name.to_ascii_lowercase();
            let by_resource = r_scope.may_differ((service, &name), &lower);
            for (principal, p_scope) in &principals {
                if !(by_resource || p_scope.may_differ((service, &name), &lower))
                    || !focus.iter_mut().any(|f| f.may_allow(principal, action))
                {
                    continue;
                }
                let relevant: Vec<&str> = focus
                    .iter_mut()
                    .flat_map(|f| f.keys(principal, action, trust).0)
                    .collect();
                compare(
                    (old.1, new.1),
                    (&mut contexts, &relevant),
                    (principal, action, resource),
                    now,
                    &mut out,
                );
            }
        }
    }
    out
}

//! The questions: who can use a resource (`who_can`), what a principal can
//! reach (`what_can`), and which requests two bundles decide differently
//! (`diff`). Each decides every request of its slice of the universe with
//! the evaluator that serves Authorize ([`crate::eval::logic::evaluate`]).

use std::time::SystemTime;

use serde::Serialize;

use super::relevance::{Focus, Who};
use super::universe::{ContextClass, Universe, glob};
use crate::bundle::Bundle;
use crate::compile::Snapshot;
use crate::eval::{
    Context, Decision, MatchedStatements, Outcome, Request, RequestLimits, RequestParts, logic,
};
use crate::policy::PolicyKind;

/// One principal's access to one resource with one action.
#[derive(Clone, Debug)]
pub struct Access {
    /// The principal.
    pub principal: String,
    /// The action.
    pub action: String,
    /// Actions no statement tells apart from `action`: decided the same
    /// way, so allowed the same way.
    pub same_for: Vec<String>,
    /// The resource.
    pub resource: String,
    /// Whether every context class is allowed (no condition stands in the way).
    pub unconditional: bool,
    /// The context classes under which the request is allowed (by name);
    /// empty when it is allowed under every class (`unconditional`).
    pub allowed_when: Vec<String>,
    /// The statements that allowed it under the first of those classes, as
    /// `matched` of a decision.
    pub allowed_by: MatchedStatements,
    /// The explicit denies that stop it under other classes.
    pub denied_when: Vec<Denial>,
}

impl Access {
    /// How it is allowed, in words: a key policy statement, an identity
    /// statement reached through the key policy's delegation, a grant…
    pub fn path(&self) -> String {
        path(&self.allowed_by)
    }
}

/// [`Access`] as JSON: its fields, with `path` after `allowed_when`.
#[derive(Serialize)]
struct AccessJson<'a> {
    principal: &'a str,
    action: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    same_for: &'a [String],
    resource: &'a str,
    unconditional: bool,
    allowed_when: &'a [String],
    path: String,
    allowed_by: &'a MatchedStatements,
    denied_when: &'a [Denial],
}

impl Serialize for Access {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        AccessJson {
            principal: &self.principal,
            action: &self.action,
            same_for: &self.same_for,
            resource: &self.resource,
            unconditional: self.unconditional,
            allowed_when: &self.allowed_when,
            path: self.path(),
            allowed_by: &self.allowed_by,
            denied_when: &self.denied_when,
        }
        .serialize(s)
    }
}

/// An explicit deny under one context class.
#[derive(Clone, Debug, Serialize)]
pub struct Denial {
    /// The context class.
    pub context: String,
    /// The deny statements.
    pub by: MatchedStatements,
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

/// `slot`'s request made ready for `action`: the one kept there with its
/// action changed, or a new [`base`] request; `None` when not valid.
fn ready<'s>(
    slot: &'s mut Option<Request>,
    (principal, action, resource): (&str, &str, &str),
) -> Option<&'s mut Request> {
    match slot {
        Some(request) => request.set_action(action, &RequestLimits::default()).ok()?,
        None => *slot = Some(base(principal, action, resource)?),
    }
    slot.as_mut()
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

/// The path of an allowing decision's statements, in words.
fn path(matched: &MatchedStatements) -> String {
    let through_iam = matched
        .iter()
        .any(|o| matches!(o.kind, PolicyKind::Identity | PolicyKind::Group));
    let steps: Vec<String> = matched
        .iter()
        .map(|m| {
            let at = m.index.map_or_else(String::new, |i| format!("#{i}"));
            let sid = m
                .sid
                .as_deref()
                .map_or_else(String::new, |s| format!(" ({s})"));
            match m.kind {
                PolicyKind::Grant => format!("grant {}", m.policy_id),
                PolicyKind::KeyPolicy if through_iam => {
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
    (who, action, resource): (Who<'_>, &str, &str),
    (slot, budget): (&mut Option<Request>, &mut Budget),
) -> Result<Option<Access>, Exhausted> {
    if !focus.iter_mut().any(|f| f.may_allow(who, action)) {
        return Ok(None);
    }
    let principal = who.arn;
    let now = SystemTime::now();
    let Some(request) = ready(slot, (principal, action, resource)) else {
        return Ok(None);
    };
    let trust = snap.bundle.options.trust_session_tags;
    let (mut relevant, mut sticky) = (Vec::new(), Vec::new());
    for f in focus.iter_mut() {
        let (all, when_allowed) = f.keys(who, action, trust);
        relevant.extend(all);
        sticky.extend(when_allowed);
    }
    // No context first: a class that sets no key the decision can read
    // is decided as it is; when that is Allow, so is a class that sets
    // none of the keys that can take an Allow away.
    budget.spend()?;
    let plain = logic::evaluate(snap, request, now);
    let allows = plain.outcome == Outcome::Allow;
    let like_plain = |class: &Prepared<'_>| {
        class.class.pairs.is_empty()
            || if allows {
                !class.defaulted && !super::relevance::touches(&class.keys, &sticky)
            } else {
                !super::relevance::touches(&class.keys, &relevant)
            }
    };
    let classes = if contexts.iter().all(&like_plain) {
        // Every class is decided as no context is.
        if !allows {
            return Ok(None);
        }
        Classes {
            unconditional: true,
            ..Classes::default()
        }
    } else {
        let mut classes = Classes::default();
        for (at, class) in contexts.iter_mut().enumerate() {
            if class.context.is_none() {
                continue;
            }
            let d = if like_plain(class) {
                None
            } else {
                budget.spend()?;
                match decide(snap, request, class, now) {
                    Some(d) => Some(d),
                    None => continue,
                }
            };
            classes.add(at, d, plain.outcome);
        }
        classes.unconditional = classes.allowed_when.len() == classes.decided;
        classes
    };
    // The first class that allows: no context when it does.
    let Some(first) = (if allows {
        Some(&plain)
    } else {
        classes.first.as_ref()
    }) else {
        return Ok(None);
    };
    let name = |at: usize| contexts.get(at).map(|c| c.class.name.clone());
    Ok(Some(Access {
        principal: principal.to_owned(),
        action: action.to_owned(),
        same_for: universe.same_as.get(action).cloned().unwrap_or_default(),
        resource: resource.to_owned(),
        unconditional: classes.unconditional,
        allowed_by: MatchedStatements::of(first),
        allowed_when: if classes.unconditional {
            Vec::new()
        } else {
            classes
                .allowed_when
                .iter()
                .filter_map(|at| name(*at))
                .collect()
        },
        denied_when: classes
            .denied_when
            .into_iter()
            .filter_map(|(at, d)| {
                Some(Denial {
                    context: name(at)?,
                    by: MatchedStatements::of(d.as_ref().unwrap_or(&plain)),
                })
            })
            .collect(),
    }))
}

/// What the context classes of one (principal, action, resource) decided.
#[derive(Default)]
struct Classes {
    /// Indexes of the classes that allow.
    allowed_when: Vec<usize>,
    /// Indexes of the classes that deny explicitly, with their decision
    /// (`None`: the same as no context's).
    denied_when: Vec<(usize, Option<Decision>)>,
    /// The first decision that allowed under a class of its own.
    first: Option<Decision>,
    /// How many classes were decided (or taken as no context).
    decided: usize,
    /// Whether every class allows.
    unconditional: bool,
}

impl Classes {
    /// Count class `at`'s decision: `d`, or no context's (`plain`) when
    /// `None`.
    fn add(&mut self, at: usize, d: Option<Decision>, plain: Outcome) {
        self.decided += 1;
        match (d.as_ref().map_or(plain, |d| d.outcome), d) {
            (Outcome::Allow, d) => {
                self.allowed_when.push(at);
                if self.first.is_none() {
                    self.first = d;
                }
            }
            (Outcome::ExplicitDeny, d) => self.denied_when.push((at, d)),
            (Outcome::ImplicitDeny, _) => {}
        }
    }
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
    // Each principal's request, made once and kept for every action.
    let mut requests: Vec<Option<Request>> = universe.principals.iter().map(|_| None).collect();
    for action in actions {
        for ((at, principal), slot) in universe.principals.iter().enumerate().zip(&mut requests) {
            let who = Who {
                arn: principal,
                at: Some(at),
            };
            if let Some(a) = access(
                snap,
                universe,
                (&mut contexts, &mut focus),
                (who, action, resource),
                (slot, budget),
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
    let who = Who {
        arn: principal,
        at: universe.principals.iter().position(|p| p == principal),
    };
    for r in universe
        .resources
        .iter()
        .filter(|r| resource.is_none_or(|p| glob(p, r)))
    {
        let mut focus = universe.focus(r);
        let mut request = None;
        for action in &universe.actions {
            if let Some(a) = access(
                snap,
                universe,
                (&mut contexts, &mut focus),
                (who, action, r),
                (&mut request, budget),
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
    pub matched: MatchedStatements,
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
        matched: MatchedStatements::of(d),
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
            .enumerate()
            .zip(&by_principal)
            .filter(|(_, p)| !r_scope.is_empty() || p.may_match(&lower))
            .map(|((at, arn), p)| (Who { arn, at: Some(at) }, p))
            .collect();
        if principals.is_empty() {
            continue;
        }
        let mut focus = universe.focus(resource);
        for action in &universe.actions {
            let (service, name) = action.split_once(':').unwrap_or((action, ""));
            let name = name.to_ascii_lowercase();
            let by_resource = r_scope.may_differ((service, &name), &lower);
            for &(who, p_scope) in &principals {
                if !(by_resource || p_scope.may_differ((service, &name), &lower))
                    || !focus.iter_mut().any(|f| f.may_allow(who, action))
                {
                    continue;
                }
                let relevant: Vec<&str> = focus
                    .iter_mut()
                    .flat_map(|f| f.keys(who, action, trust).0)
                    .collect();
                compare(
                    (old.1, new.1),
                    (&mut contexts, &relevant),
                    (who.arn, action, resource),
                    now,
                    &mut out,
                );
            }
        }
    }
    out
}

//! Where two bundles can decide differently: for each principal and each
//! resource, the statements that one bundle has and the other lacks, and
//! whether anything else it is decided on differs.
//!
//! A decision reads, about its principal, the statements of its identity
//! and group policies, of its permissions boundary and of its account's SCP
//! levels, and facts (its ARN and path, tags, unique id, whether it has a
//! boundary, its account's organization); about its resource, the
//! statements of its policy and of its account's RCP levels, its grants and
//! facts (tags, account, key properties and state). A grant one side has
//! and the other lacks may change the KMS actions on its key. If the facts are the
//! same on both sides, and every statement one side has in a role (identity,
//! boundary, an SCP or RCP level, the resource policy) the other has in the
//! same role, the two decide every request the same. Otherwise a request can
//! be decided differently only if it is about a principal or resource whose
//! facts differ ([`Scope::all`]) or its action and resource fit a statement
//! that differs ([`Scope::spans`]). `verdict diff` decides only those.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::relevance::{covers, resource_globs};
use crate::bundle::{Bundle, Policy};
use crate::policy::{ActionPattern, Block, Statement};

/// A statement that differs: its action block and the resources it may
/// match ([`resource_globs`]).
#[derive(Debug)]
pub(crate) struct Span {
    action: Block<ActionPattern>,
    resources: Option<Box<[String]>>,
}

/// What differs about one principal or one resource.
#[derive(Debug, Default)]
pub(crate) struct Scope {
    /// A fact differs: every request about it may be decided differently.
    pub(crate) all: bool,
    /// The statements that differ.
    pub(crate) spans: Vec<Span>,
}

impl Scope {
    /// Whether nothing differs.
    pub(crate) fn is_empty(&self) -> bool {
        !self.all && self.spans.is_empty()
    }

    /// Whether a request about the lower-cased `resource` may be decided
    /// differently (for some action).
    pub(crate) fn may_match(&self, resource: &str) -> bool {
        self.all
            || self
                .spans
                .iter()
                .any(|s| super::relevance::may_match(s.resources.as_deref(), resource))
    }

    /// Whether a request of `action` (`service`, lower-cased name) on the
    /// lower-cased `resource` may be decided differently.
    pub(crate) fn may_differ(&self, action: (&str, &str), resource: &str) -> bool {
        self.all
            || self.spans.iter().any(|s| {
                covers(&s.action, action)
                    && super::relevance::may_match(s.resources.as_deref(), resource)
            })
    }
}

/// Statements by role and by what they say (not where they stand).
type Bag<'a> = BTreeMap<(String, String), &'a Statement>;

/// What a statement says, as text: every element that decides, not its
/// `Sid` or its place in the file.
fn says(s: &Statement) -> String {
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}",
        s.effect, s.action, s.resource, s.principal, s.conditions
    )
}

fn add<'a>(bag: &mut Bag<'a>, role: &str, policy: &'a Policy) {
    for s in &policy.document.statements {
        bag.insert((role.to_owned(), says(s)), s);
    }
}

/// The scope of two bags and two fact texts.
fn scope(old: (&Bag<'_>, &str), new: (&Bag<'_>, &str)) -> Scope {
    if old.1 != new.1 {
        return Scope {
            all: true,
            spans: Vec::new(),
        };
    }
    let spans = old
        .0
        .iter()
        .filter(|(k, _)| !new.0.contains_key(*k))
        .chain(new.0.iter().filter(|(k, _)| !old.0.contains_key(*k)))
        .map(|(_, s)| Span {
            action: s.action.clone(),
            resources: resource_globs(s.resource.as_ref()),
        })
        .collect();
    Scope { all: false, spans }
}

/// A principal's statements by role, and its facts as text.
fn principal_side<'a>(b: &'a Bundle, principal: &str) -> (Bag<'a>, String) {
    let mut bag = Bag::new();
    let mut facts = String::new();
    if let Some(i) = super::relevance::identity(b, principal) {
        let _ = write!(
            facts,
            "{}|{:?}|{:?}|{}",
            i.arn_text,
            i.tags,
            i.unique_id,
            i.boundary.is_some()
        );
        for p in &i.policies {
            add(&mut bag, "identity", p);
        }
        for p in i.groups.iter().flat_map(|g| g.policies.iter()) {
            add(&mut bag, "identity", p);
        }
        if let Some(p) = &i.boundary {
            add(&mut bag, "boundary", p);
        }
    }
    let account = super::relevance::account_of(principal).and_then(|a| b.accounts.get(a));
    if let Some(a) = account {
        let _ = write!(
            facts,
            "|{:?}|{:?}|{:?}",
            a.org_id,
            a.org_paths,
            a.scps.as_ref().map(Vec::len)
        );
        for (level, policies) in a.scps.iter().flatten().enumerate() {
            for p in policies {
                add(&mut bag, &format!("scp{level}"), p);
            }
        }
    } else {
        facts.push_str("|no account");
    }
    (bag, facts)
}

/// A resource's statements by role, its facts as text, and its grants as
/// text.
fn resource_side<'a>(b: &'a Bundle, resource: &str) -> (Bag<'a>, String, BTreeSet<String>) {
    let mut bag = Bag::new();
    let mut facts = String::new();
    let entry = b.resources.get(resource);
    if let Some(e) = entry {
        let _ = write!(facts, "{:?}|{:?}|{:?}", e.tags, e.account, e.key);
        if let Some(p) = &e.policy {
            add(&mut bag, "resource", p);
        }
    }
    let grants = b
        .grants_by_key
        .get(resource)
        .into_iter()
        .flatten()
        .map(|g| format!("{g:?}"))
        .collect();
    let account = super::relevance::account_of(resource)
        .or_else(|| entry.and_then(|e| e.account.as_deref()))
        .and_then(|a| b.accounts.get(a));
    if let Some(a) = account {
        let _ = write!(facts, "|{:?}", a.rcps.as_ref().map(Vec::len));
        for (level, policies) in a.rcps.iter().flatten().enumerate() {
            for p in policies {
                add(&mut bag, &format!("rcp{level}"), p);
            }
        }
    }
    (bag, facts, grants)
}

/// What a grant that one side has and the other lacks may change: the
/// KMS actions on its key.
fn grant_span() -> Span {
    Span {
        action: Block {
            negated: false,
            items: Box::new([ActionPattern::Named {
                service: "kms".into(),
                name: "*".into(),
            }]),
        },
        resources: None,
    }
}

/// What differs between `old` and `new`, per principal and per resource
/// (in the order given).
pub(crate) fn scopes(
    old: &Bundle,
    new: &Bundle,
    principals: &[String],
    resources: &[String],
) -> (Vec<Scope>, Vec<Scope>) {
    let by_principal = principals
        .iter()
        .map(|p| {
            let (a, b) = (principal_side(old, p), principal_side(new, p));
            scope((&a.0, &a.1), (&b.0, &b.1))
        })
        .collect();
    let by_resource = resources
        .iter()
        .map(|r| {
            let (a, b) = (resource_side(old, r), resource_side(new, r));
            let mut s = scope((&a.0, &a.1), (&b.0, &b.1));
            if a.2 != b.2 {
                s.spans.push(grant_span());
            }
            s
        })
        .collect();
    (by_principal, by_resource)
}

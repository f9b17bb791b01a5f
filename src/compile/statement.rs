//! Compiled policies and statements: matchers for actions, resources and
//! principals, compiled conditions, and a per-policy action index so that a
//! request looks only at the statements that can apply.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::condition::{CCondition, CText, KeySource};
use super::pattern::Matcher;
use crate::policy::locate::Position;
use crate::policy::principal::PrincipalArn;
use crate::policy::template::Template;
use crate::policy::*;

/// A compiled `Action`/`NotAction` block.
#[derive(Clone, Debug)]
pub struct CActions {
    /// `NotAction`.
    pub negated: bool,
    /// `*` is listed.
    pub any: bool,
    /// `service:pattern` values (lower-cased).
    pub named: Box<[(Box<str>, Matcher)]>,
}

impl CActions {
    fn compile(b: &Block<ActionPattern>) -> Self {
        let mut any = false;
        let mut named = Vec::new();
        for p in &b.items {
            match p {
                ActionPattern::Any => any = true,
                ActionPattern::Named { service, name } => {
                    named.push((service.clone(), Matcher::glob(name)))
                }
            }
        }
        Self {
            negated: b.negated,
            any,
            named: named.into(),
        }
    }

    /// Whether the block matches `service:name` (both lower-cased).
    pub fn matches(&self, service: &str, name: &str) -> bool {
        let hit = self.any
            || self
                .named
                .iter()
                .any(|(s, m)| **s == *service && m.matches(name, false));
        hit != self.negated
    }
}

/// A compiled `Resource` value.
#[derive(Clone, Debug)]
pub enum CResource {
    /// `*`.
    Any,
    /// An ARN pattern: 6 pieces, or fewer for a short pattern whose last
    /// piece absorbs the rest of the ARN.
    Arn {
        /// The pieces.
        pieces: Box<[CText]>,
        /// A short pattern whose last piece does not end in `*` (never matches).
        never: bool,
    },
}

/// A compiled `Resource`/`NotResource` block.
#[derive(Clone, Debug)]
pub struct CResources {
    /// `NotResource`.
    pub negated: bool,
    /// The values.
    pub items: Box<[CResource]>,
}

/// A principal value, with its canonical ARN precomputed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CPrincipal {
    /// `*`.
    Everyone,
    /// An account (id).
    Account(Box<str>),
    /// A user ARN.
    User(Box<str>),
    /// A role ARN.
    Role(Box<str>),
    /// A role-session ARN.
    Session(Box<str>),
    /// A federated-user ARN.
    Federated(Box<str>),
    /// A service principal.
    Service(Box<str>),
    /// Never matches (`Federated`, `CanonicalUser`).
    Never,
}

impl CPrincipal {
    /// Compile a principal entry (or grantee).
    pub fn compile(e: &PrincipalEntry) -> Self {
        match e {
            PrincipalEntry::Everyone => Self::Everyone,
            PrincipalEntry::Account(a) => Self::Account(a.clone()),
            PrincipalEntry::Arn(arn) => {
                let text: Box<str> = arn.to_string().into();
                match arn {
                    PrincipalArn::Root { account, .. } => Self::Account(account.clone()),
                    PrincipalArn::User { .. } => Self::User(text),
                    PrincipalArn::Role { .. } => Self::Role(text),
                    PrincipalArn::AssumedRole { .. } => Self::Session(text),
                    PrincipalArn::FederatedUser { .. } => Self::Federated(text),
                }
            }
            PrincipalEntry::Service(s) => Self::Service(s.clone()),
            PrincipalEntry::Unmatchable(_) => Self::Never,
        }
    }
}

/// A compiled `Principal`/`NotPrincipal` block.
#[derive(Clone, Debug)]
pub struct CPrincipals {
    /// `NotPrincipal`.
    pub negated: bool,
    /// The values.
    pub items: Box<[CPrincipal]>,
}

/// A compiled statement.
#[derive(Clone, Debug)]
pub struct CStatement {
    /// Index in `Statement`.
    pub index: u32,
    /// `Sid`.
    pub sid: Option<Arc<str>>,
    /// Effect.
    pub effect: Effect,
    /// `Action: "*"` (an org-gate `Allow` that is never listed).
    pub full_access: bool,
    /// Actions.
    pub actions: CActions,
    /// Resources (`None`: a key-policy statement without `Resource`).
    pub resources: Option<CResources>,
    /// Principals.
    pub principals: Option<CPrincipals>,
    /// Conditions.
    pub conditions: Box<[CCondition]>,
    /// Position in its file.
    pub position: Position,
    /// A condition or variable reads `aws:CurrentTime`/`aws:EpochTime`.
    pub mentions_clock: bool,
}

fn is_clock(source: &KeySource) -> bool {
    matches!(source, KeySource::CurrentTime | KeySource::EpochTime)
}

impl CStatement {
    /// Compile a validated statement.
    pub fn compile(st: &Statement) -> Self {
        let resources = st.resource.as_ref().map(|b| CResources {
            negated: b.negated,
            items: b
                .items
                .iter()
                .map(|r| match r {
                    ResourcePattern::Any => CResource::Any,
                    ResourcePattern::Arn(a) => CResource::Arn {
                        never: a.pieces.len() < 6
                            && !a.pieces.last().is_some_and(Template::ends_with_wildcard),
                        pieces: a.pieces.iter().map(|p| CText::compile(p, true)).collect(),
                    },
                })
                .collect(),
        });
        let conditions: Box<[CCondition]> = st.conditions.iter().map(CCondition::compile).collect();
        let mentions_clock = conditions.iter().any(|c| {
            is_clock(&c.key.source)
                || c.values.iter().any(|v| match v {
                    super::condition::CValue::Str(t) | super::condition::CValue::BoolVar(t) => {
                        t.variable_keys().any(|k| is_clock(&k.source))
                    }
                    super::condition::CValue::Arn(Some(pieces)) => pieces
                        .iter()
                        .any(|t| t.variable_keys().any(|k| is_clock(&k.source))),
                    _ => false,
                })
        }) || resources.as_ref().is_some_and(|r| {
            r.items.iter().any(|i| match i {
                CResource::Arn { pieces, .. } => pieces
                    .iter()
                    .any(|t| t.variable_keys().any(|k| is_clock(&k.source))),
                CResource::Any => false,
            })
        });
        Self {
            index: st.index,
            sid: st.sid.clone(),
            effect: st.effect,
            full_access: !st.action.negated && st.action.items.contains(&ActionPattern::Any),
            actions: CActions::compile(&st.action),
            resources,
            principals: st.principal.as_ref().map(|b| CPrincipals {
                negated: b.negated,
                items: b.items.iter().map(CPrincipal::compile).collect(),
            }),
            conditions,
            position: st.position,
            mentions_clock,
        }
    }
}

/// Interned action names (`service:name`, lower-cased) and services, shared
/// by every policy of a snapshot.
#[derive(Debug, Default)]
pub struct ActionTable {
    actions: FxHashMap<Box<str>, u32>,
    services: FxHashMap<Box<str>, u32>,
}

impl ActionTable {
    fn action_id(&mut self, key: &str) -> u32 {
        let n = u32::try_from(self.actions.len()).unwrap_or(u32::MAX);
        *self.actions.entry(key.into()).or_insert(n)
    }

    fn service_id(&mut self, service: &str) -> u32 {
        let n = u32::try_from(self.services.len()).unwrap_or(u32::MAX);
        *self.services.entry(service.into()).or_insert(n)
    }

    /// The id of an exact `service:name` (lower-cased), if any policy names it.
    pub fn lookup_action(&self, key: &str) -> Option<u32> {
        self.actions.get(key).copied()
    }

    /// The id of a service, if any policy names an action pattern of it.
    pub fn lookup_service(&self, service: &str) -> Option<u32> {
        self.services.get(service).copied()
    }
}

/// Statement indexes of one policy by action.
#[derive(Clone, Debug, Default)]
pub struct ActionIndex {
    /// (action id, statement), sorted.
    exact: Box<[(u32, u32)]>,
    /// (service id, statement) for wildcard name patterns, sorted.
    by_service: Box<[(u32, u32)]>,
    /// Statements with `Action: "*"`.
    any: Box<[u32]>,
    /// `NotAction` statements (checked for every request).
    negated: Box<[u32]>,
}

/// Policies smaller than this are scanned, not indexed.
const INDEX_MIN_STATEMENTS: usize = 8;

/// The request's action, resolved against a snapshot's [`ActionTable`].
#[derive(Clone, Copy, Debug)]
pub struct ActionKey<'r> {
    /// Service, lower-cased.
    pub service: &'r str,
    /// Name, lower-cased.
    pub name: &'r str,
    /// Exact action id.
    pub action_id: Option<u32>,
    /// Service id.
    pub service_id: Option<u32>,
}

/// The entries of a sorted (key, statement) list with this key.
fn range(list: &[(u32, u32)], key: u32) -> &[(u32, u32)] {
    let start = list.partition_point(|(k, _)| *k < key);
    let end = list.partition_point(|(k, _)| *k <= key);
    list.get(start..end).unwrap_or(&[])
}

/// A compiled policy.
#[derive(Clone, Debug)]
pub struct CPolicy {
    /// Policy id.
    pub id: Arc<str>,
    /// Statements.
    pub statements: Box<[CStatement]>,
    /// Action index (large policies only).
    pub index: Option<ActionIndex>,
}

/// Candidate statements of a policy for one request (their action matches).
pub type Candidates = SmallVec<[u32; 16]>;

impl CPolicy {
    /// Compile a document (no index).
    pub fn compile(id: Arc<str>, doc: &PolicyDocument) -> Self {
        Self {
            id,
            statements: doc.statements.iter().map(CStatement::compile).collect(),
            index: None,
        }
    }

    /// Build the action index, interning names in `table`.
    pub fn build_index(&mut self, table: &mut ActionTable) {
        if self.statements.len() < INDEX_MIN_STATEMENTS {
            return;
        }
        let mut exact = Vec::new();
        let mut by_service = Vec::new();
        let mut any = Vec::new();
        let mut negated = Vec::new();
        for (i, st) in self.statements.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            if st.actions.negated {
                negated.push(i);
                continue;
            }
            if st.actions.any {
                any.push(i);
                continue;
            }
            for (service, m) in st.actions.named.iter() {
                match m {
                    Matcher::Exact(name) => {
                        exact.push((table.action_id(&format!("{service}:{name}")), i))
                    }
                    _ => by_service.push((table.service_id(service), i)),
                }
            }
        }
        exact.sort_unstable();
        exact.dedup();
        by_service.sort_unstable();
        by_service.dedup();
        self.index = Some(ActionIndex {
            exact: exact.into(),
            by_service: by_service.into(),
            any: any.into(),
            negated: negated.into(),
        });
    }

    /// The statements that can apply to the action, deduplicated.
    pub fn candidates(&self, action: &ActionKey<'_>, out: &mut Candidates) {
        out.clear();
        let Some(ix) = &self.index else {
            for (i, st) in self.statements.iter().enumerate() {
                if st.actions.matches(action.service, action.name) {
                    out.push(u32::try_from(i).unwrap_or(u32::MAX));
                }
            }
            return;
        };
        if let Some(id) = action.action_id {
            out.extend(range(&ix.exact, id).iter().map(|(_, s)| *s));
        }
        if let Some(id) = action.service_id {
            for (_, s) in range(&ix.by_service, id) {
                let hit = self
                    .statements
                    .get(*s as usize)
                    .is_some_and(|st| st.actions.matches(action.service, action.name));
                if hit {
                    out.push(*s);
                }
            }
        }
        out.extend(ix.any.iter().copied());
        for s in ix.negated.iter() {
            let hit = self
                .statements
                .get(*s as usize)
                .is_some_and(|st| st.actions.matches(action.service, action.name));
            if hit {
                out.push(*s);
            }
        }
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }
}

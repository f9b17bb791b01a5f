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
        /// Bit `i` set: piece `i` (of the five case-insensitive ones) is plain
        /// text stored case-folded, so an ASCII request piece (which requests
        /// carry lower-cased) compares byte for byte.
        prefolded: u8,
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

fn compile_arn(pieces: &[Template]) -> CResource {
    let six = pieces.len() == 6;
    let mut prefolded = 0u8;
    let compiled = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| match p.parts() {
            [crate::policy::template::Part::Text(t)] if six && i < 5 => {
                prefolded |= 1 << i;
                CText::Plain(Matcher::glob(&crate::policy::glob::fold(t)))
            }
            _ => CText::compile(p, true),
        })
        .collect();
    CResource::Arn {
        never: pieces.len() < 6 && !pieces.last().is_some_and(Template::ends_with_wildcard),
        pieces: compiled,
        prefolded,
    }
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
                    ResourcePattern::Arn(a) => compile_arn(&a.pieces),
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

/// Statements indexed by action: exact names in a sorted list, wildcard
/// name patterns bucketed by service, `Action: "*"` and `NotAction` apart.
/// `T` says where a statement is (an index into one policy, or a policy and
/// statement for an identity's merged index).
#[derive(Clone, Debug)]
pub struct ActionIndex<T> {
    /// (action id, entry), sorted.
    exact: Box<[(u32, T)]>,
    /// (service id, entry) for wildcard name patterns, sorted.
    by_service: Box<[(u32, T)]>,
    /// Entries with `Action: "*"`.
    any: Box<[T]>,
    /// `NotAction` entries (checked for every request).
    negated: Box<[T]>,
}

impl<T> ActionIndex<T> {
    /// An index of nothing.
    pub fn empty() -> Self {
        Self {
            exact: Box::new([]),
            by_service: Box::new([]),
            any: Box::new([]),
            negated: Box::new([]),
        }
    }
}

impl<T: Copy + Ord> ActionIndex<T> {
    /// Index statements, interning their names in `table`. A statement is
    /// listed at most once for any one action: under its exact names, unless
    /// a wildcard pattern of the same service lists it under the service.
    pub fn build<'a>(
        entries: impl Iterator<Item = (T, &'a CStatement)>,
        table: &mut ActionTable,
    ) -> Self {
        let mut exact = Vec::new();
        let mut by_service = Vec::new();
        let mut any = Vec::new();
        let mut negated = Vec::new();
        for (entry, st) in entries {
            if st.actions.negated {
                negated.push(entry);
                continue;
            }
            if st.actions.any {
                any.push(entry);
                continue;
            }
            let wild_services: SmallVec<[&str; 4]> = st
                .actions
                .named
                .iter()
                .filter(|(_, m)| !matches!(m, Matcher::Exact(_)))
                .map(|(s, _)| &**s)
                .collect();
            for (service, m) in st.actions.named.iter() {
                match m {
                    Matcher::Exact(name) if !wild_services.contains(&&**service) => {
                        exact.push((table.action_id(&format!("{service}:{name}")), entry));
                    }
                    Matcher::Exact(_) => {}
                    _ => by_service.push((table.service_id(service), entry)),
                }
            }
        }
        exact.sort_unstable();
        exact.dedup();
        by_service.sort_unstable();
        by_service.dedup();
        any.sort_unstable();
        any.dedup();
        negated.sort_unstable();
        negated.dedup();
        Self {
            exact: exact.into(),
            by_service: by_service.into(),
            any: any.into(),
            negated: negated.into(),
        }
    }

    /// The entries whose statement's action matches, each once.
    pub fn candidates<'s, const N: usize>(
        &self,
        action: &ActionKey<'_>,
        statement: impl Fn(T) -> Option<&'s CStatement>,
        out: &mut SmallVec<[T; N]>,
    ) where
        [T; N]: smallvec::Array<Item = T>,
    {
        let matches =
            |e: T| statement(e).is_some_and(|st| st.actions.matches(action.service, action.name));
        if let Some(id) = action.action_id {
            out.extend(range(&self.exact, id).iter().map(|(_, e)| *e));
        }
        if let Some(id) = action.service_id {
            out.extend(
                range(&self.by_service, id)
                    .iter()
                    .map(|(_, e)| *e)
                    .filter(|e| matches(*e)),
            );
        }
        out.extend(self.any.iter().copied());
        out.extend(self.negated.iter().copied().filter(|e| matches(*e)));
    }
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
fn range<T>(list: &[(u32, T)], key: u32) -> &[(u32, T)] {
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
    pub index: Option<ActionIndex<u32>>,
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

    /// Build the action index (large policies only), interning names in `table`.
    pub fn build_index(&mut self, table: &mut ActionTable) {
        if self.statements.len() < INDEX_MIN_STATEMENTS {
            return;
        }
        let entries = self
            .statements
            .iter()
            .enumerate()
            .map(|(i, st)| (u32::try_from(i).unwrap_or(u32::MAX), st));
        self.index = Some(ActionIndex::build(entries, table));
    }

    /// The statements whose action matches, each once.
    pub fn candidates(&self, action: &ActionKey<'_>, out: &mut Candidates) {
        out.clear();
        match &self.index {
            Some(ix) => ix.candidates(action, |i| self.statements.get(i as usize), out),
            None => {
                for (i, st) in self.statements.iter().enumerate() {
                    if st.actions.matches(action.service, action.name) {
                        out.push(u32::try_from(i).unwrap_or(u32::MAX));
                    }
                }
            }
        }
    }
}

//! Compiled policies and statements: matchers for actions, resources and
//! principals, compiled conditions, and a per-policy action index so that a
//! request looks only at the statements that can apply.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::condition::{CCondition, CText, KeySource};
use super::pattern::{Matcher, Text};
use crate::policy::locate::Position;
use crate::policy::principal::PrincipalArn;
use crate::policy::template::Template;
use crate::policy::*;

/// A compiled `Action`/`NotAction` block.
#[derive(Clone, Debug)]
pub(crate) struct CActions {
    /// `NotAction`.
    pub(crate) negated: bool,
    /// `*` is listed.
    pub(crate) any: bool,
    /// `service:pattern` values (lower-cased).
    pub(crate) named: Box<[(Text, Matcher)]>,
}

impl CActions {
    fn compile(b: &Block<ActionPattern>) -> Self {
        let mut any = false;
        let mut named = Vec::new();
        for p in &b.items {
            match p {
                ActionPattern::Any => any = true,
                ActionPattern::Named { service, name } => {
                    named.push((Text::from(&**service), Matcher::glob(name)))
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
    pub(crate) fn matches(&self, service: &str, name: &str) -> bool {
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
#[allow(
    clippy::large_enum_variant,
    reason = "ARN pieces are kept inline on purpose: matching a statement should not chase pointers"
)]
pub(crate) enum CResource {
    /// `*`.
    Any,
    /// An ARN pattern: 6 pieces (a short pattern is padded, U43).
    Arn {
        /// The pieces (inline: matching one does not follow a pointer).
        pieces: SmallVec<[CText; 6]>,
        /// A short pattern without a wildcard in a policy that names
        /// principals (U43): it matches nothing.
        never: bool,
        /// Bit `i` set: piece `i` (of the five case-insensitive ones) is plain
        /// text stored case-folded, so an ASCII request piece (which requests
        /// carry lower-cased) compares byte for byte.
        prefolded: u8,
    },
}

/// A compiled `Resource`/`NotResource` block.
#[derive(Clone, Debug)]
pub(crate) struct CResources {
    /// `NotResource`.
    pub(crate) negated: bool,
    /// The values (the first inline).
    pub(crate) items: SmallVec<[CResource; 1]>,
}

/// A principal value, with its canonical ARN precomputed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CPrincipal {
    /// `*`.
    Everyone,
    /// An account (id).
    Account(Text),
    /// A user ARN.
    User(Text),
    /// A role ARN.
    Role(Text),
    /// A role-session ARN.
    Session(Text),
    /// A federated-user ARN.
    Federated(Text),
    /// A service principal.
    Service(Text),
    /// Never matches (`Federated`, `CanonicalUser`).
    Never,
}

impl CPrincipal {
    /// Compile a principal entry (or grantee).
    pub(crate) fn compile(e: &PrincipalEntry) -> Self {
        match e {
            PrincipalEntry::Everyone => Self::Everyone,
            PrincipalEntry::Account(a) => Self::Account(Text::from(&**a)),
            PrincipalEntry::Arn(arn) => {
                let text = Text::from(arn.to_string());
                match arn {
                    PrincipalArn::Root { account, .. } => Self::Account(Text::from(&**account)),
                    PrincipalArn::User { .. } => Self::User(text),
                    PrincipalArn::Role { .. } => Self::Role(text),
                    PrincipalArn::AssumedRole { .. } => Self::Session(text),
                    PrincipalArn::FederatedUser { .. } => Self::Federated(text),
                }
            }
            PrincipalEntry::Service(s) => Self::Service(Text::from(&**s)),
            PrincipalEntry::Unmatchable(_) => Self::Never,
        }
    }
}

/// A compiled `Principal`/`NotPrincipal` block.
#[derive(Clone, Debug)]
pub(crate) struct CPrincipals {
    /// `NotPrincipal`.
    pub(crate) negated: bool,
    /// The values.
    pub(crate) items: Box<[CPrincipal]>,
}

/// A compiled statement.
#[derive(Clone, Debug)]
pub struct CStatement {
    /// Index in `Statement`.
    pub(crate) index: u32,
    /// `Sid`.
    pub(crate) sid: Option<Arc<str>>,
    /// Effect.
    pub(crate) effect: Effect,
    /// `Action: "*"` (an org-gate `Allow` that is never listed).
    pub(crate) full_access: bool,
    /// Actions.
    pub(crate) actions: CActions,
    /// Resources (`None`: a key-policy statement without `Resource`).
    pub(crate) resources: Option<CResources>,
    /// Principals.
    pub(crate) principals: Option<CPrincipals>,
    /// Conditions.
    pub conditions: Box<[CCondition]>,
    /// Position in its file.
    pub position: Position,
    /// A condition or variable reads `aws:CurrentTime`/`aws:EpochTime`.
    pub(crate) mentions_clock: bool,
}

/// Compile an ARN pattern. A short one (fewer than six pieces, U43) is
/// padded with `*` pieces, except that in a policy whose statements name
/// principals (resource, key and trust policies) one without a wildcard
/// matches nothing.
fn compile_arn(pieces: &[Template], names_principals: bool) -> CResource {
    if pieces.len() < 6 {
        if names_principals && !pieces.iter().any(Template::has_wildcard) {
            return CResource::Arn {
                pieces: SmallVec::new(),
                never: true,
                prefolded: 0,
            };
        }
        let star = Template::plain("*");
        let padded: Vec<Template> = pieces
            .iter()
            .cloned()
            .chain(std::iter::repeat_n(star, 6 - pieces.len()))
            .collect();
        return compile_arn(&padded, names_principals);
    }
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
        never: false,
        pieces: compiled,
        prefolded,
    }
}

fn is_clock(source: &KeySource) -> bool {
    matches!(source, KeySource::CurrentTime | KeySource::EpochTime)
}

impl CStatement {
    /// Compile a validated statement.
    pub(crate) fn compile(st: &Statement) -> Self {
        let resources = st.resource.as_ref().map(|b| CResources {
            negated: b.negated,
            items: b
                .items
                .iter()
                .map(|r| match r {
                    ResourcePattern::Any => CResource::Any,
                    ResourcePattern::Arn(a) => compile_arn(&a.pieces, st.principal.is_some()),
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

/// A cheap test that rules a statement out by its resource without reading
/// the statement: for a statement whose only resource is an ARN pattern whose
/// resource part is plain text or plain text followed by `*`, the length of
/// that text and its last bytes. Kept in index entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ResFilter {
    /// Length of the literal resource part (0: no filter, admit everything).
    len: u16,
    /// The resource part is exactly the literal (no trailing `*`).
    exact: bool,
    /// Bytes kept from the end of the literal.
    tail_len: u8,
    /// The last bytes of the literal.
    tail: [u8; 8],
    /// The statement mentions a clock key (so skipping it must still note that).
    pub(crate) clock: bool,
}

impl ResFilter {
    fn of(st: &CStatement) -> Self {
        let mut f = Self {
            clock: st.mentions_clock,
            ..Self::default()
        };
        let Some(r) = &st.resources else { return f };
        let (
            [
                CResource::Arn {
                    pieces,
                    never: false,
                    ..
                },
            ],
            false,
        ) = (&*r.items, r.negated)
        else {
            return f;
        };
        let (literal, exact) = match pieces.get(5) {
            Some(CText::Plain(Matcher::Exact(s))) if pieces.len() == 6 => (s.as_str(), true),
            Some(CText::Plain(Matcher::Prefix(s))) if pieces.len() == 6 => (s.as_str(), false),
            _ => return f,
        };
        let (Ok(len), false) = (u16::try_from(literal.len()), literal.is_empty()) else {
            return f;
        };
        let bytes = literal.as_bytes();
        let k = bytes.len().min(8);
        f.len = len;
        f.exact = exact;
        f.tail_len = u8::try_from(k).unwrap_or(0);
        if let (Some(dst), Some(src)) = (f.tail.get_mut(..k), bytes.get(bytes.len() - k..)) {
            dst.copy_from_slice(src);
        }
        f
    }

    /// Whether a statement with this filter can match a request whose
    /// resource part is `rest` (`None`: the resource is not an ARN).
    #[inline]
    pub(crate) fn admits(&self, rest: Option<&str>) -> bool {
        if self.len == 0 {
            return true;
        }
        let Some(rest) = rest else { return false };
        let b = rest.as_bytes();
        let len = usize::from(self.len);
        let k = usize::from(self.tail_len);
        if (self.exact && b.len() != len) || b.len() < len {
            return false;
        }
        b.get(len - k..len) == self.tail.get(..k)
    }
}

/// Interned action names (`service:name`, lower-cased) and services, shared
/// by every policy of a snapshot.
#[derive(Debug, Default)]
pub(crate) struct ActionTable {
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
    #[inline]
    pub(crate) fn lookup_action(&self, key: &str) -> Option<u32> {
        self.actions.get(key).copied()
    }

    /// The id of a service, if any policy names an action pattern of it.
    #[inline]
    pub(crate) fn lookup_service(&self, service: &str) -> Option<u32> {
        self.services.get(service).copied()
    }
}

/// Statements indexed by action: exact names in a sorted key array with
/// ranges into contiguous entries, wildcard name patterns grouped by service
/// and distinct pattern, `Action: "*"` and `NotAction` apart. `T` says where a
/// statement is (an index into one policy, or a policy and statement for an
/// identity's merged index). The layout keeps a lookup to a few cache lines.
#[derive(Clone, Debug)]
pub(crate) struct ActionIndex<T> {
    /// Distinct action ids, sorted.
    exact_keys: Box<[u32]>,
    /// `exact_entries[bounds[i]..bounds[i + 1]]` are the entries of `exact_keys[i]`.
    exact_bounds: Box<[u32]>,
    /// Entries listed under exact names.
    exact_entries: Box<[T]>,
    /// (service id, name pattern, start, end) into `wild_entries`, sorted by service.
    wild: Box<[(u32, Matcher, u32, u32)]>,
    /// Entries listed under wildcard name patterns.
    wild_entries: Box<[T]>,
    /// Entries with `Action: "*"`.
    any: Box<[T]>,
    /// `NotAction` entries (checked for every request).
    negated: Box<[T]>,
}

impl<T> ActionIndex<T> {
    /// An index of nothing.
    pub(crate) fn empty() -> Self {
        Self {
            exact_keys: Box::new([]),
            exact_bounds: Box::new([0]),
            exact_entries: Box::new([]),
            wild: Box::new([]),
            wild_entries: Box::new([]),
            any: Box::new([]),
            negated: Box::new([]),
        }
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl<T: Copy + Ord> ActionIndex<T> {
    /// Index statements, interning their names in `table`. A statement is
    /// listed at most once for any one exact action: under its exact names,
    /// unless a wildcard pattern of the same service lists it (with all its
    /// patterns of that service) under the service.
    pub(crate) fn build<'a>(
        entries: impl Iterator<Item = (T, &'a CStatement)>,
        table: &mut ActionTable,
    ) -> Self {
        let mut exact: Vec<(u32, T)> = Vec::new();
        let mut wild: Vec<(u32, String, Matcher, T)> = Vec::new();
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
                    m => wild.push((
                        table.service_id(service),
                        format!("{m:?}"),
                        m.clone(),
                        entry,
                    )),
                }
            }
        }
        exact.sort_unstable();
        exact.dedup();
        let mut exact_keys = Vec::new();
        let mut exact_bounds = vec![0u32];
        for (i, (k, _)) in exact.iter().enumerate() {
            if exact_keys.last() != Some(k) {
                if i > 0 {
                    exact_bounds.push(to_u32(i));
                }
                exact_keys.push(*k);
            }
        }
        if !exact.is_empty() {
            exact_bounds.push(to_u32(exact.len()));
        }
        wild.sort_by(|a, b| (a.0, &a.1, a.3).cmp(&(b.0, &b.1, b.3)));
        wild.dedup_by(|a, b| (a.0, &a.1, a.3) == (b.0, &b.1, b.3));
        let mut groups: Vec<(u32, Matcher, u32, u32)> = Vec::new();
        let mut wild_entries = Vec::with_capacity(wild.len());
        let mut prev: Option<(u32, String)> = None;
        for (service, key, m, entry) in wild {
            let same = prev
                .as_ref()
                .is_some_and(|(s, k)| *s == service && *k == key);
            if !same {
                groups.push((
                    service,
                    m,
                    to_u32(wild_entries.len()),
                    to_u32(wild_entries.len()),
                ));
                prev = Some((service, key));
            }
            wild_entries.push(entry);
            if let Some(g) = groups.last_mut() {
                g.3 = to_u32(wild_entries.len());
            }
        }
        any.sort_unstable();
        any.dedup();
        negated.sort_unstable();
        negated.dedup();
        Self {
            exact_keys: exact_keys.into(),
            exact_bounds: exact_bounds.into(),
            exact_entries: exact.into_iter().map(|(_, e)| e).collect(),
            wild: groups.into(),
            wild_entries: wild_entries.into(),
            any: any.into(),
            negated: negated.into(),
        }
    }

    /// The entries whose statement's action matches, each once.
    #[inline]
    pub(crate) fn candidates<'s, const N: usize>(
        &self,
        action: &ActionKey<'_>,
        statement: impl Fn(T) -> Option<&'s CStatement>,
        out: &mut SmallVec<[T; N]>,
    ) where
        [T; N]: smallvec::Array<Item = T>,
    {
        if let Some(id) = action.action_id
            && let Ok(i) = self.exact_keys.binary_search(&id)
        {
            let start = self.exact_bounds.get(i).copied().unwrap_or(0) as usize;
            let end = self.exact_bounds.get(i + 1).copied().unwrap_or(0) as usize;
            out.extend(
                self.exact_entries
                    .get(start..end)
                    .unwrap_or(&[])
                    .iter()
                    .copied(),
            );
        }
        if let Some(id) = action.service_id {
            let first = self.wild.partition_point(|(s, ..)| *s < id);
            let before = out.len();
            let mut groups = 0;
            for (_, m, start, end) in self
                .wild
                .get(first..)
                .unwrap_or(&[])
                .iter()
                .take_while(|(s, ..)| *s == id)
            {
                if m.matches(action.name, false) {
                    groups += 1;
                    out.extend(
                        self.wild_entries
                            .get(*start as usize..*end as usize)
                            .unwrap_or(&[])
                            .iter()
                            .copied(),
                    );
                }
            }
            if groups > 1 {
                // A statement with several matching patterns: keep it once.
                if let Some(tail) = out.get_mut(before..) {
                    tail.sort_unstable();
                }
                let mut i = before + 1;
                while i < out.len() {
                    if out.get(i) == out.get(i - 1) {
                        out.remove(i);
                    } else {
                        i += 1;
                    }
                }
            }
        }
        out.extend(self.any.iter().copied());
        out.extend(self.negated.iter().copied().filter(|e| {
            statement(*e).is_some_and(|st| st.actions.matches(action.service, action.name))
        }));
    }
}

impl CStatement {
    /// The resource prefilter of this statement.
    pub(crate) fn filter(&self) -> ResFilter {
        ResFilter::of(self)
    }
}

/// Policies smaller than this are scanned, not indexed.
const INDEX_MIN_STATEMENTS: usize = 8;

/// The request's action, resolved against a snapshot's [`ActionTable`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ActionKey<'r> {
    /// Service, lower-cased.
    pub(crate) service: &'r str,
    /// Name, lower-cased.
    pub(crate) name: &'r str,
    /// Exact action id.
    pub(crate) action_id: Option<u32>,
    /// Service id.
    pub(crate) service_id: Option<u32>,
}

/// A compiled policy.
#[derive(Clone, Debug)]
pub struct CPolicy {
    /// Policy id.
    pub(crate) id: Arc<str>,
    /// Statements.
    pub statements: Box<[CStatement]>,
    /// Action index (large policies only).
    pub(crate) index: Option<ActionIndex<u32>>,
}

/// Candidate statements of a policy for one request (their action matches).
pub(crate) type Candidates = SmallVec<[u32; 16]>;

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
    pub(crate) fn build_index(&mut self, table: &mut ActionTable) {
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
    #[inline]
    pub(crate) fn candidates(&self, action: &ActionKey<'_>, out: &mut Candidates) {
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

//! Compiling a loaded bundle into an immutable [`Snapshot`], off the request
//! path: policies into matchers and indexes, each principal's effective
//! policy set resolved once, resources, accounts and grants indexed by key.
//!
//! The evaluator over a snapshot (`eval::logic`) decides exactly as the
//! reference interpreter does over the bundle; only faster.

pub(crate) mod condition;
pub(crate) mod pattern;
pub mod statement;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use rustc_hash::FxHashMap;

use crate::bundle::{Bundle, GrantConstraint, GrantOperation, KeyInfo, Policy, Tag};
use crate::policy::PolicyKind;
use statement::{ActionIndex, ActionTable, CPolicy, CPrincipal, ResFilter};

/// Evaluation settings (docs/configuration.md), compiled into a snapshot.
#[derive(Clone, Debug, Default)]
pub struct EvalOptions {
    /// Caller-sent `aws:PrincipalTag/*` values count for session callers (U4).
    pub trust_session_tags: bool,
    /// Fixed context keys added to every request that lacks them.
    pub default_context: Vec<(String, Vec<String>)>,
}

/// Index of a compiled policy in [`CompiledBundle::policies`].
pub(crate) type PolicyIdx = u32;

/// A statement of an identity's effective policy set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct IdEntry {
    /// The policy.
    pub(crate) policy: PolicyIdx,
    /// The statement in it.
    pub(crate) stmt: u32,
    /// How it is attached (`identity` or `group`).
    pub(crate) kind: PolicyKind,
    /// The statement's resource prefilter.
    pub(crate) filter: ResFilter,
}

/// A user or role with its effective policy set.
#[derive(Debug)]
pub(crate) struct CIdentity {
    /// ARN (canonical, with path).
    pub(crate) arn: Arc<str>,
    /// Identity policies, with the kind they count as (`identity` or `group`).
    pub policies: Box<[(PolicyIdx, PolicyKind)]>,
    /// Every statement of those policies, indexed by action once for the
    /// identity, so a request looks up its candidates in one place.
    pub(crate) index: ActionIndex<IdEntry>,
    /// Whether policies of kind `identity` (and of kind `group`) are attached.
    pub(crate) has_kind: (bool, bool),
    /// Permissions boundary.
    pub(crate) boundary: Option<PolicyIdx>,
    /// Tags, sorted by lower-cased key.
    pub(crate) tags: Box<[Tag]>,
    /// Unique id.
    pub(crate) unique_id: Option<Box<str>>,
    /// A service-linked role (SCPs do not bind it).
    pub(crate) service_linked: bool,
}

/// A resource entry.
#[derive(Debug)]
pub(crate) struct CResourceEntry {
    /// Resource-based or key policy.
    pub(crate) policy: Option<PolicyIdx>,
    /// Tags, sorted by lower-cased key.
    pub(crate) tags: Box<[Tag]>,
    /// Owner account for ARNs without one.
    pub(crate) account: Option<Box<str>>,
    /// Key properties.
    pub(crate) key: Option<KeyInfo>,
    /// Grants on this key, in file order.
    pub(crate) grants: Box<[u32]>,
}

/// An account entry.
#[derive(Debug, Default)]
pub(crate) struct CAccount {
    /// SCP levels.
    pub(crate) scps: Option<Box<[Box<[PolicyIdx]>]>>,
    /// RCP levels.
    pub(crate) rcps: Option<Box<[Box<[PolicyIdx]>]>>,
    /// Organization id.
    pub(crate) org_id: Option<Box<str>>,
    /// Organization paths.
    pub(crate) org_paths: Option<Box<[Box<str>]>>,
}

/// A grant.
#[derive(Debug)]
pub(crate) struct CGrant {
    /// Grant id.
    pub(crate) id: Arc<str>,
    /// Grantee.
    pub(crate) grantee: CPrincipal,
    /// Operations as a bit set over [`GrantOperation`].
    pub(crate) operations: u32,
    /// Constraint.
    pub(crate) constraint: Option<GrantConstraint>,
    /// Retiring principal.
    pub(crate) retiring: Option<CPrincipal>,
}

/// The bit of a grant operation.
pub(crate) fn op_bit(op: GrantOperation) -> u32 {
    let i = GrantOperation::ALL
        .iter()
        .position(|(_, o)| *o == op)
        .unwrap_or(31);
    1u32 << i
}

/// A compiled bundle.
#[derive(Debug)]
pub struct CompiledBundle {
    /// Every policy (files and inline documents).
    pub policies: Box<[CPolicy]>,
    /// Interned actions and services.
    pub(crate) actions: ActionTable,
    /// Identities.
    pub(crate) identities: Box<[CIdentity]>,
    /// Users by canonical ARN.
    pub(crate) users: FxHashMap<Box<str>, u32>,
    /// Roles by account, then exact name.
    pub roles: FxHashMap<Box<str>, FxHashMap<Box<str>, u32>>,
    /// Resources by canonical ARN.
    pub(crate) resources: FxHashMap<Box<str>, CResourceEntry>,
    /// Accounts.
    pub(crate) accounts: FxHashMap<Box<str>, CAccount>,
    /// Grants.
    pub(crate) grants: Box<[CGrant]>,
    /// Settings the evaluation depends on.
    pub(crate) options: CompiledOptions,
}

/// A `default_context` entry: (lower-cased key, key, values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DefaultEntry {
    /// Lower-cased key.
    pub(crate) lower: Box<str>,
    /// Key as configured.
    pub(crate) key: Box<str>,
    /// Values.
    pub(crate) values: Box<[String]>,
}

/// Evaluation settings, prepared for lookups.
#[derive(Debug, Default)]
pub(crate) struct CompiledOptions {
    /// Caller session tags count (U4).
    pub trust_session_tags: bool,
    /// `default_context`, sorted by lower-cased key.
    pub default_context: Box<[DefaultEntry]>,
}

/// An immutable, compiled bundle with what identifies it.
#[derive(Debug)]
pub struct Snapshot {
    /// `manifest.json` revision.
    pub revision: Arc<str>,
    /// `manifest.json` name.
    pub(crate) name: Option<String>,
    /// `manifest.json` serial (0 when absent).
    pub serial: u64,
    /// Where it was loaded from.
    pub source: String,
    /// When it was loaded.
    pub(crate) loaded_at: SystemTime,
    /// Distinct for every snapshot a process builds (cache keys use it, never the revision).
    pub(crate) generation: u64,
    /// The compiled content.
    pub bundle: CompiledBundle,
    /// What the bundle's signature said when it loaded.
    pub(crate) signature: crate::bundle::SignatureState,
    /// The bundle as loaded, kept only for access analysis (`analyzer`).
    pub model: Option<Arc<Bundle>>,
}

impl Snapshot {
    /// Compile a loaded bundle.
    pub fn compile(bundle: &Bundle, opts: &EvalOptions, generation: u64) -> Self {
        Self {
            revision: bundle.revision.clone(),
            name: bundle.name.clone(),
            serial: bundle.serial,
            source: bundle.source.clone(),
            loaded_at: SystemTime::now(),
            generation,
            bundle: compile(bundle, opts),
            signature: crate::bundle::SignatureState::Unsigned,
            model: None,
        }
    }
}

/// Compile a bundle.
pub(crate) fn compile(bundle: &Bundle, opts: &EvalOptions) -> CompiledBundle {
    // Policies, keyed by the identity of their `Arc` so that shared documents
    // compile once.
    let mut policies: Vec<CPolicy> = Vec::new();
    let mut by_ptr: HashMap<*const Policy, PolicyIdx> = HashMap::new();
    let mut intern = |p: &Arc<Policy>, policies: &mut Vec<CPolicy>| -> PolicyIdx {
        *by_ptr.entry(Arc::as_ptr(p)).or_insert_with(|| {
            policies.push(CPolicy::compile(p.id.clone(), &p.document));
            u32::try_from(policies.len() - 1).unwrap_or(u32::MAX)
        })
    };

    let mut identities = Vec::new();
    let mut users = FxHashMap::default();
    let mut roles: FxHashMap<Box<str>, FxHashMap<Box<str>, u32>> = FxHashMap::default();
    let mut add_identity = |i: &crate::bundle::Identity, policies: &mut Vec<CPolicy>| -> u32 {
        let mut set = Vec::new();
        for p in &i.policies {
            set.push((intern(p, policies), PolicyKind::Identity));
        }
        for g in &i.groups {
            for p in &g.policies {
                set.push((intern(p, policies), PolicyKind::Group));
            }
        }
        identities.push(CIdentity {
            arn: i.arn_text.clone(),
            has_kind: (
                set.iter().any(|(_, k)| *k == PolicyKind::Identity),
                set.iter().any(|(_, k)| *k == PolicyKind::Group),
            ),
            index: ActionIndex::empty(),
            policies: set.into(),
            boundary: i.boundary.as_ref().map(|p| intern(p, policies)),
            tags: i.tags.clone().into(),
            unique_id: i.unique_id.as_deref().map(Box::from),
            service_linked: i.is_service_linked_role(),
        });
        u32::try_from(identities.len() - 1).unwrap_or(u32::MAX)
    };
    let mut sorted_users: Vec<_> = bundle.users.iter().collect();
    sorted_users.sort_by(|a, b| a.0.cmp(b.0));
    for (arn, i) in sorted_users {
        let idx = add_identity(i, &mut policies);
        users.insert(Box::from(&**arn), idx);
    }
    let mut sorted_roles: Vec<_> = bundle.roles.iter().collect();
    sorted_roles.sort_by(|a, b| a.0.cmp(b.0));
    for ((account, name), i) in sorted_roles {
        let idx = add_identity(i, &mut policies);
        roles
            .entry(account.clone())
            .or_default()
            .insert(name.clone(), idx);
    }

    let mut grants = Vec::new();
    let mut grant_index: FxHashMap<*const crate::bundle::Grant, u32> = FxHashMap::default();
    for g in &bundle.grants {
        grant_index.insert(
            Arc::as_ptr(g),
            u32::try_from(grants.len()).unwrap_or(u32::MAX),
        );
        grants.push(CGrant {
            id: g.grant_id.clone(),
            grantee: CPrincipal::compile(&g.grantee),
            operations: g.operations.iter().fold(0, |acc, op| acc | op_bit(*op)),
            constraint: g.constraint.clone(),
            retiring: g.retiring_principal.as_ref().map(CPrincipal::compile),
        });
    }

    let mut resources = FxHashMap::default();
    for (arn, r) in &bundle.resources {
        let key_grants: Box<[u32]> = bundle
            .grants_by_key
            .get(arn)
            .map(|gs| {
                gs.iter()
                    .filter_map(|g| grant_index.get(&Arc::as_ptr(g)).copied())
                    .collect()
            })
            .unwrap_or_default();
        resources.insert(
            Box::from(&**arn),
            CResourceEntry {
                policy: r.policy.as_ref().map(|p| intern(p, &mut policies)),
                tags: r.tags.clone().into(),
                account: r.account.clone(),
                key: r.key.as_ref().map(|k| KeyInfo {
                    state: k.state,
                    aliases: k.aliases.clone(),
                    key_spec: k.key_spec.clone(),
                    key_usage: k.key_usage.clone(),
                    key_origin: k.key_origin.clone(),
                    aws_managed: k.aws_managed,
                }),
                grants: key_grants,
            },
        );
    }

    let mut accounts = FxHashMap::default();
    for (id, a) in &bundle.accounts {
        let mut levels = |l: &Option<Vec<Vec<Arc<Policy>>>>| {
            l.as_ref().map(|levels| {
                levels
                    .iter()
                    .map(|level| level.iter().map(|p| intern(p, &mut policies)).collect())
                    .collect()
            })
        };
        let scps = levels(&a.scps);
        let rcps = levels(&a.rcps);
        accounts.insert(
            id.clone(),
            CAccount {
                scps,
                rcps,
                org_id: a.org_id.clone(),
                org_paths: a.org_paths.clone().map(Into::into),
            },
        );
    }

    let mut table = ActionTable::default();
    for p in &mut policies {
        p.build_index(&mut table);
    }
    for identity in &mut identities {
        let entries = identity.policies.iter().flat_map(|&(policy, kind)| {
            policies
                .get(policy as usize)
                .into_iter()
                .flat_map(|p| p.statements.iter().enumerate())
                .map(move |(i, st)| {
                    let stmt = u32::try_from(i).unwrap_or(u32::MAX);
                    let filter = st.filter();
                    (
                        IdEntry {
                            policy,
                            stmt,
                            kind,
                            filter,
                        },
                        st,
                    )
                })
        });
        identity.index = ActionIndex::build(entries, &mut table);
    }
    let mut default_context: Vec<DefaultEntry> = opts
        .default_context
        .iter()
        .map(|(k, v)| DefaultEntry {
            lower: k.to_lowercase().into(),
            key: k.as_str().into(),
            values: v.clone().into(),
        })
        .collect();
    default_context.sort_by(|a, b| a.lower.cmp(&b.lower));
    default_context.dedup_by(|a, b| a.lower == b.lower);
    CompiledBundle {
        policies: policies.into(),
        actions: table,
        identities: identities.into(),
        users,
        roles,
        resources,
        accounts,
        grants: grants.into(),
        options: CompiledOptions {
            trust_session_tags: opts.trust_session_tags,
            default_context: default_context.into(),
        },
    }
}

impl CompiledBundle {
    /// A policy by index.
    pub(crate) fn policy(&self, idx: PolicyIdx) -> Option<&CPolicy> {
        self.policies.get(idx as usize)
    }

    /// A user by canonical ARN.
    pub(crate) fn user(&self, arn: &str) -> Option<&CIdentity> {
        self.users
            .get(arn)
            .and_then(|i| self.identities.get(*i as usize))
    }

    /// A role by account and exact name.
    pub(crate) fn role(&self, account: &str, name: &str) -> Option<&CIdentity> {
        self.roles
            .get(account)
            .and_then(|m| m.get(name))
            .and_then(|i| self.identities.get(*i as usize))
    }
}

//! What a decision says: the outcome, the statements that decided it, the
//! context keys that were missing, and, on request, why (docs/evaluation.md §8).

use std::sync::Arc;

use smallvec::SmallVec;

use crate::bundle::KeyState;
use crate::policy::locate::Position;
use crate::policy::{Effect, PolicyKind};

/// The outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Allowed.
    Allow,
    /// An applicable `Deny`.
    ExplicitDeny,
    /// No applicable `Allow` on a path that grants, or a gate refused.
    ImplicitDeny,
}

impl Outcome {
    /// The spelling used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "Allow",
            Self::ExplicitDeny => "ExplicitDeny",
            Self::ImplicitDeny => "ImplicitDeny",
        }
    }

    /// Parse the output spelling.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "Allow" => Some(Self::Allow),
            "ExplicitDeny" => Some(Self::ExplicitDeny),
            "ImplicitDeny" => Some(Self::ImplicitDeny),
            _ => None,
        }
    }
}

/// A statement (or grant) that decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchedStatement {
    /// Policy id (grant id for grants).
    pub(crate) policy_id: Arc<str>,
    /// Kind.
    pub(crate) kind: PolicyKind,
    /// Statement index (`None` for grants).
    pub(crate) index: Option<u32>,
    /// `Sid`.
    pub(crate) sid: Option<Arc<str>>,
    /// Effect.
    pub(crate) effect: Effect,
    /// SCP/RCP level, 0 = organization root.
    pub(crate) level: Option<u32>,
    /// Where the statement is (`None` for grants).
    pub position: Option<Position>,
}

impl MatchedStatement {
    /// The order of `matched`: kind, level, policy id (bytes), index.
    pub(crate) fn sort_key(&self) -> (PolicyKind, Option<u32>, &str, Option<u32>) {
        (self.kind, self.level, &self.policy_id, self.index)
    }
}

impl MatchedStatement {
    /// The entry a grant that allowed puts in `matched`.
    pub(crate) fn grant(id: &Arc<str>) -> Self {
        Self {
            policy_id: id.clone(),
            kind: PolicyKind::Grant,
            index: None,
            sid: None,
            effect: Effect::Allow,
            level: None,
            position: None,
        }
    }
}

/// The statements of a decision, inline for the common sizes.
pub(crate) type MatchedList = SmallVec<[MatchedStatement; 6]>;

/// Missing context keys, inline for the common sizes.
pub(crate) type MissingKeys = SmallVec<[Arc<str>; 4]>;

/// Sort and deduplicate a `matched` list (docs/evaluation.md §8).
pub(crate) fn normalize_matched(list: &mut MatchedList) {
    list.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    list.dedup_by(|a, b| a.sort_key() == b.sort_key());
}

/// A gate that refused (explain's `blocked_by`), in evaluation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Gate {
    /// A KMS operation that cannot be used across accounts.
    CrossAccountOp,
    /// A resource control policy level without an applicable `Allow`.
    Rcp,
    /// A service control policy level without an applicable `Allow`.
    Scp,
    /// A KMS key without a key policy (no `resources.json` entry).
    NoKeyPolicy,
    /// A permissions boundary without an applicable `Allow`.
    Boundary,
    /// A session policy without an applicable `Allow`, or a federated user without one.
    Session,
    /// The key's state refuses the operation.
    KeyState,
}

impl Gate {
    /// The spelling used in output.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::CrossAccountOp => "cross_account_op",
            Self::Rcp => "rcp",
            Self::Scp => "scp",
            Self::NoKeyPolicy => "no_key_policy",
            Self::Boundary => "boundary",
            Self::Session => "session",
            Self::KeyState => "key_state",
        }
    }

    /// Parse the output spelling.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        [
            Self::CrossAccountOp,
            Self::Rcp,
            Self::Scp,
            Self::NoKeyPolicy,
            Self::Boundary,
            Self::Session,
            Self::KeyState,
        ]
        .into_iter()
        .find(|g| g.as_str() == s)
    }
}

/// The gates of docs/evaluation.md §5–§7 as one decision found them: each
/// field says whether that gate lets the request through. Both evaluators
/// compute it their own way; it only names the results.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gates {
    /// Every SCP level has an applicable `Allow`, or no SCP applies.
    pub(crate) scp: bool,
    /// Every RCP level has an applicable `Allow`, or no RCP applies.
    pub(crate) rcp: bool,
    /// The permissions boundary allows, or there is none.
    pub(crate) boundary: bool,
    /// The session policy allows, or none applies (§5 step 6).
    pub(crate) session: bool,
    /// The identity path allows: an identity `Allow` (or the caller is the
    /// root), within the boundary and the session policy.
    pub(crate) identity: bool,
    /// The KMS operation may be used across accounts, or the call is not
    /// cross-account (§7.2).
    pub(crate) cross_account_op: bool,
    /// The KMS key has a key policy, or the resource is no KMS key (§7.1).
    pub(crate) key_policy: bool,
}

impl Gates {
    /// Whether the gates that close every path (the cross-account operation
    /// list, RCPs, SCPs, a key without a policy) let the request on.
    pub(crate) fn open(&self) -> bool {
        self.cross_account_op && self.rcp && self.scp && self.key_policy
    }

    /// explain's `blocked_by` for an `ImplicitDeny`, in evaluation order;
    /// `key_state` says whether the key state refused an allowed request.
    pub(crate) fn blocked_by(&self, key_state: bool) -> Vec<Gate> {
        [
            (self.cross_account_op, Gate::CrossAccountOp),
            (self.rcp, Gate::Rcp),
            (self.scp, Gate::Scp),
            (self.key_policy, Gate::NoKeyPolicy),
            (self.boundary, Gate::Boundary),
            (self.session, Gate::Session),
            (!key_state, Gate::KeyState),
        ]
        .into_iter()
        .filter_map(|(passed, gate)| (!passed).then_some(gate))
        .collect()
    }
}

/// A per-kind decision (explain's `decision_details`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KindDecision {
    /// An applicable `Allow` (all levels, for SCPs and RCPs).
    Allow,
    /// An applicable `Deny`.
    ExplicitDeny,
    /// Policies of the kind exist but none allows.
    ImplicitDeny,
    /// No policy of the kind takes part.
    NotApplicable,
}

impl KindDecision {
    /// The decision of policies of one kind that take part: a `Deny` wins,
    /// then an `Allow`.
    pub(crate) fn of(allow: bool, deny: bool) -> Self {
        if deny {
            Self::ExplicitDeny
        } else if allow {
            Self::Allow
        } else {
            Self::ImplicitDeny
        }
    }

    /// The spelling used in output.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "Allow",
            Self::ExplicitDeny => "ExplicitDeny",
            Self::ImplicitDeny => "ImplicitDeny",
            Self::NotApplicable => "NotApplicable",
        }
    }
}

/// Why (docs/evaluation.md §8 explain fields).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Explanation {
    /// The SCP gate passed or does not apply.
    pub(crate) allowed_by_organizations: bool,
    /// The boundary allows, or there is none.
    pub(crate) allowed_by_boundary: bool,
    /// The session policy allows, or none applies.
    pub(crate) allowed_by_session: bool,
    /// The RCP gate passed or does not apply.
    pub(crate) allowed_by_rcp: bool,
    /// The grant that allowed.
    pub(crate) grant_id: Option<Arc<str>>,
    /// Gates that refused, in evaluation order (ImplicitDeny only).
    pub(crate) blocked_by: Vec<Gate>,
    /// The key state, when the key-state gate refused.
    pub(crate) key_state: Option<KeyState>,
    /// Per-kind decisions of the caller's side (all kinds, same-account).
    pub(crate) caller_side: Vec<(PolicyKind, KindDecision)>,
    /// Per-kind decisions of the resource's side (cross-account only).
    pub(crate) resource_side: Vec<(PolicyKind, KindDecision)>,
    /// Context keys the caller sent that verdict derives itself and ignored.
    pub(crate) ignored_context_keys: Vec<String>,
    /// ImplicitDeny only: the Allow statements of identity, group, resource,
    /// key and trust policies whose action and principal matched but which
    /// did not allow, and those of each boundary, session policy, SCP or
    /// RCP level that refused (a `NoAllow` entry for each such policy with
    /// none), each with the first element that failed, sorted as `matched`
    /// is.
    pub(crate) near_misses: Vec<NearMiss>,
}

/// An Allow statement that came close: its action and principal matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NearMiss {
    /// The statement.
    pub(crate) statement: MatchedStatement,
    /// What did not match.
    pub(crate) failed: Failed,
}

/// The first element of a near miss that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failed {
    /// No `Resource` pattern matched (or `NotResource` named it).
    Resource,
    /// A key policy statement that names the caller's account (delegating
    /// to IAM) applied, and no identity or group policy allowed.
    Delegation,
    /// A grant to the caller for the operation whose encryption context
    /// constraint the request did not meet: the first pair it requires
    /// that the request lacks, or none when the request has every pair
    /// and more (an `EncryptionContextEquals` constraint).
    GrantConstraint {
        /// The missing (key, value).
        missing: Option<(String, String)>,
    },
    /// A `CreateGrant` through a grant to the caller asked for more than
    /// the grant gives (U34).
    GrantRequest {
        /// `kms:grantoperations` or `kms:grantconstrainttype`.
        key: String,
        /// The first operation asked for that the grant does not give, or
        /// the constraint type asked for, which does not keep the grant's
        /// constraint; `None`: the request lacks the key.
        value: Option<String>,
    },
    /// The policy belongs to a gate that refused (a boundary, a session
    /// policy, an SCP or RCP level) and none of its `Allow` statements'
    /// action and principal matched; the entry names the policy, with no
    /// statement index.
    NoAllow,
    /// A condition was false.
    Condition {
        /// Its position in the statement's conditions, in file order.
        index: u32,
        /// The operator, as written.
        operator: String,
        /// The key, lower-cased.
        key: String,
        /// The request's values of the key, sorted; `None`: absent.
        request: Option<Vec<String>>,
        /// The condition's values, as the policy writes them.
        policy: Vec<String>,
    },
}

/// Whether statements of this kind grant (the others are gates, whose
/// near misses count only when they refused).
pub(crate) fn grants_access(kind: PolicyKind) -> bool {
    matches!(
        kind,
        PolicyKind::Identity
            | PolicyKind::Group
            | PolicyKind::Resource
            | PolicyKind::KeyPolicy
            | PolicyKind::Trust
    )
}

/// A policy of a gate that refused an `ImplicitDeny`: its id, kind and
/// level (SCP and RCP levels).
pub(crate) type Refusing = (Arc<str>, PolicyKind, Option<u32>);

/// explain's near misses of an `ImplicitDeny` from the entries an
/// evaluator noted (`Allow` statements of every kind whose action and
/// principal matched but which did not apply, grants, delegations): those
/// of granting kinds, those of the `refusing` gate policies, and a
/// `NoAllow` entry for each refusing policy without one; in the order of
/// `matched`.
pub(crate) fn near_misses_of(noted: Vec<NearMiss>, refusing: &[Refusing]) -> Vec<NearMiss> {
    let refused = |s: &MatchedStatement| {
        refusing
            .iter()
            .any(|(id, kind, level)| *kind == s.kind && *level == s.level && *id == s.policy_id)
    };
    let mut out: Vec<NearMiss> = noted
        .into_iter()
        .filter(|n| {
            grants_access(n.statement.kind)
                || n.statement.kind == PolicyKind::Grant
                || refused(&n.statement)
        })
        .collect();
    for (id, kind, level) in refusing {
        let named = out.iter().any(|n| {
            n.statement.kind == *kind && n.statement.level == *level && n.statement.policy_id == *id
        });
        if !named {
            out.push(NearMiss {
                statement: MatchedStatement {
                    policy_id: id.clone(),
                    kind: *kind,
                    index: None,
                    sid: None,
                    effect: Effect::Allow,
                    level: *level,
                    position: None,
                },
                failed: Failed::NoAllow,
            });
        }
    }
    out.sort_by(|a, b| a.statement.sort_key().cmp(&b.statement.sort_key()));
    out
}

impl Explanation {
    /// Split per-kind decisions into explain's two sides: everything on the
    /// caller's side when the call stays in one account (sorted by kind),
    /// the resource's kinds apart when it crosses accounts.
    pub(crate) fn sides(
        cross: bool,
        caller: Vec<(PolicyKind, KindDecision)>,
        resource: Vec<(PolicyKind, KindDecision)>,
    ) -> SidedKinds {
        let (mut caller_side, resource_side) = if cross {
            (caller, resource)
        } else {
            (caller.into_iter().chain(resource).collect(), Vec::new())
        };
        caller_side.sort_by_key(|(k, _)| *k);
        (caller_side, resource_side)
    }
}

/// explain's caller side and resource side.
pub(crate) type SidedKinds = (
    Vec<(PolicyKind, KindDecision)>,
    Vec<(PolicyKind, KindDecision)>,
);

/// A decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Outcome.
    pub outcome: Outcome,
    /// The statements that decided, in the order of §8.
    pub(crate) matched: MatchedList,
    /// Context keys tested by plain operators and absent, lower-cased, sorted.
    pub(crate) missing_context_keys: MissingKeys,
    /// The bundle revision that decided.
    pub(crate) bundle_revision: Arc<str>,
    /// The serial of the bundle that decided (0: none given).
    pub(crate) bundle_serial: u64,
    /// Why, when the request asked.
    pub(crate) explanation: Option<Box<Explanation>>,
    /// Whether a condition read a clock key the server filled in (such a
    /// decision must not be cached).
    pub(crate) reads_server_clock: bool,
}

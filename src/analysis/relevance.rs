//! Which context keys can change the decision of a (principal, action,
//! resource): the keys that the conditions of every statement that could
//! take part in it test, or that its policy variables read. A context class
//! that sets none of them is decided as the request with no context is, so
//! it need not be decided again.
//!
//! And whether a (principal, action, resource) can be allowed at all: only
//! when an `Allow` of the principal's identity or group policies, or of the
//! resource's policy naming it (or anyone), covers the action and may
//! match the resource, or a grant on the resource names it (as grantee
//! or retiring principal, or by its account); roots and
//! service principals always may. `tests/analysis.rs` checks the answers
//! both prunings give against the reference interpreter on every request.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::bundle::{Bundle, GrantConstraint, Identity, Policy};
use crate::policy::principal::PrincipalArn;
use crate::policy::{
    ActionPattern, Block, ConditionValue, Effect, PrincipalEntry, ResourcePattern, Statement,
};

/// A statement's action block, the resources it may match and the
/// context keys it reads (lower-cased).
struct Reads {
    action: Block<ActionPattern>,
    /// Lower-cased globs of its resource patterns; `None` when it may
    /// match any resource ([`resource_globs`]).
    resources: Option<Box<[String]>>,
    keys: Vec<Box<str>>,
    /// The keys whose setting may make the statement stop applying or
    /// start denying: every key of a `Deny`; of an `Allow`, the keys of
    /// conditions that can hold with the key absent or that no-context
    /// requests carry (the clock, the region, the bundle's principal
    /// tags), and the keys variables read.
    /// A request allowed without context stays allowed under a class that
    /// sets none of them ([`Focus::keys`]).
    sticky: Vec<Box<str>>,
}

/// The statements of one policy, as [`Reads`] (those that read no key are
/// left out: they cannot make a context class differ).
fn reads(policy: &Policy) -> Vec<Reads> {
    policy
        .document
        .statements
        .iter()
        .filter_map(|s| {
            let keys = statement_keys(s);
            (!keys.is_empty()).then(|| Reads {
                action: s.action.clone(),
                resources: resource_globs(s.resource.as_ref()),
                sticky: if s.effect == Effect::Allow {
                    sticky_keys(s)
                } else {
                    keys.clone()
                },
                keys,
            })
        })
        .collect()
}

/// The request keys a key read by a statement is made from, itself
/// included: the evaluation derives `aws:CurrentTime` and `aws:EpochTime`
/// from each other, and `kms:EncryptionContextKeys` from the
/// `kms:EncryptionContext:` entries (a key ending in `:` stands for every
/// key it starts).
fn sources(key: &str) -> Vec<Box<str>> {
    match key {
        "aws:currenttime" | "aws:epochtime" => {
            vec!["aws:currenttime".into(), "aws:epochtime".into()]
        }
        "kms:encryptioncontextkeys" => vec![key.into(), "kms:encryptioncontext:".into()],
        _ => vec![key.into()],
    }
}

/// The keys a statement's conditions test and its variables read.
fn statement_keys(s: &Statement) -> Vec<Box<str>> {
    let mut keys: BTreeSet<Box<str>> = BTreeSet::new();
    for c in s.conditions.iter() {
        keys.insert(c.key.clone());
        for v in c.values.iter() {
            if let ConditionValue::String(t) = v {
                keys.extend(t.variables().map(|v| v.key.clone()));
            }
        }
    }
    for r in s.resource.iter().flat_map(|b| b.items.iter()) {
        if let ResourcePattern::Arn(p) = r {
            for piece in p.pieces.iter() {
                keys.extend(piece.variables().map(|v| v.key.clone()));
            }
        }
    }
    keys.iter().flat_map(|k| sources(k)).collect()
}

/// Whether a condition with operator `op` is false whenever its key is
/// absent (docs/evaluation.md §3): no `IfExists`, not `Null`, not
/// `ForAllValues`, and not negated unless under `ForAnyValue`.
fn false_when_absent(op: crate::policy::Operator) -> bool {
    use crate::policy::{BaseOperator, SetQualifier};
    !op.if_exists
        && op.base != BaseOperator::Null
        && match op.set {
            Some(SetQualifier::ForAllValues) => false,
            Some(SetQualifier::ForAnyValue) => true,
            None => !op.base.negated(),
        }
}

/// An `Allow` statement's [`Reads::sticky`] keys.
fn sticky_keys(s: &Statement) -> Vec<Box<str>> {
    let mut keys: BTreeSet<Box<str>> = BTreeSet::new();
    for c in s.conditions.iter() {
        // The clock and the region are there without context, and so are
        // the bundle's principal tags, which trusted session tags override.
        let present_without_context = matches!(
            &*c.key,
            "aws:currenttime" | "aws:epochtime" | "aws:requestedregion"
        ) || c.key.starts_with("aws:principaltag/");
        if present_without_context || !false_when_absent(c.op) {
            keys.insert(c.key.clone());
        }
        for v in c.values.iter() {
            match v {
                ConditionValue::String(t)
                | ConditionValue::Bool(crate::policy::BoolValue::Template(t)) => {
                    keys.extend(t.variables().map(|v| v.key.clone()));
                }
                _ => {}
            }
        }
    }
    for r in s.resource.iter().flat_map(|b| b.items.iter()) {
        if let ResourcePattern::Arn(p) = r {
            for piece in p.pieces.iter() {
                keys.extend(piece.variables().map(|v| v.key.clone()));
            }
        }
    }
    keys.iter().flat_map(|k| sources(k)).collect()
}

/// Whether the action `service:name` (`name` lower-cased) is in `block`.
pub(super) fn covers(block: &Block<ActionPattern>, (service, name): (&str, &str)) -> bool {
    let hit = block.items.iter().any(|p| match p {
        ActionPattern::Any => true,
        ActionPattern::Named {
            service: s,
            name: n,
        } => s.eq_ignore_ascii_case(service) && super::universe::glob(n, name),
    });
    hit != block.negated
}

/// The resources a statement's resource block may match, as lower-cased
/// globs: a superset of the evaluator's matching, compared case-blind
/// and with a `*` that may also cross a colon. `None` (any resource) for
/// a `Not…` block, a pattern with variables and a missing block.
pub(super) fn resource_globs(block: Option<&Block<ResourcePattern>>) -> Option<Box<[String]>> {
    let block = block.filter(|b| !b.negated)?;
    let mut out = Vec::new();
    for p in block.items.iter() {
        match p {
            ResourcePattern::Any => return None,
            ResourcePattern::Arn(arn) if arn.pieces.iter().any(|t| t.has_variables()) => {
                return None;
            }
            ResourcePattern::Arn(arn) => {
                let pieces: Vec<String> = arn.pieces.iter().map(|t| t.source()).collect();
                let mut glob = pieces.join(":").to_ascii_lowercase();
                if pieces.len() < 6 {
                    // A short pattern may stand for its missing pieces (U43).
                    glob.push('*');
                }
                out.push(glob);
            }
        }
    }
    Some(out.into())
}

/// Whether a statement matching `globs` ([`resource_globs`]) may match the
/// lower-cased `resource`.
pub(super) fn may_match(globs: Option<&[String]>, resource: &str) -> bool {
    resource == "*" || globs.is_none_or(|g| g.iter().any(|p| super::universe::glob(p, resource)))
}

/// An `Allow` statement that can allow on its own: its action block, the
/// resources it may match ([`resource_globs`]) and, in a resource policy,
/// the lower-cased names of the users, roles and federated users it may
/// name (`None`: anyone; an account or a service names none of them, as
/// an account's root is only reached with an identity policy's `Allow`).
struct Allows {
    action: Block<ActionPattern>,
    resources: Option<Box<[String]>>,
    names: Option<Box<[String]>>,
}

/// The lower-cased name a principal ARN names in [`name_of`]'s terms: a
/// user's, role's or federated user's name, a session's role; `None` for
/// a root.
fn arn_name(arn: &PrincipalArn) -> Option<String> {
    match arn {
        PrincipalArn::Root { .. } => None,
        PrincipalArn::User { name, .. }
        | PrincipalArn::Role { name, .. }
        | PrincipalArn::FederatedUser { name, .. } => Some(name.as_str().to_ascii_lowercase()),
        PrincipalArn::AssumedRole { role, .. } => Some(role.as_str().to_ascii_lowercase()),
    }
}

/// The names a resource policy statement's principal block may name.
fn principal_names(block: Option<&Block<PrincipalEntry>>) -> Option<Box<[String]>> {
    let block = block.filter(|b| !b.negated)?;
    let mut out = Vec::new();
    for e in block.items.iter() {
        match e {
            PrincipalEntry::Everyone => return None,
            PrincipalEntry::Arn(arn) => out.extend(arn_name(arn)),
            PrincipalEntry::Account(_)
            | PrincipalEntry::Service(_)
            | PrincipalEntry::Unmatchable(_) => {}
        }
    }
    Some(out.into())
}

/// The names the grants on a key may let act on it (grantees and retiring
/// principals); `None`: anyone (a grant to an account or a root).
fn grant_names(grants: &[Arc<crate::bundle::Grant>]) -> Option<Box<[String]>> {
    let mut out = Vec::new();
    for e in grants
        .iter()
        .flat_map(|g| std::iter::once(&g.grantee).chain(g.retiring_principal.as_ref()))
    {
        match e {
            PrincipalEntry::Arn(arn) => out.push(arn_name(arn)?),
            PrincipalEntry::Service(_) | PrincipalEntry::Unmatchable(_) => {}
            PrincipalEntry::Everyone | PrincipalEntry::Account(_) => return None,
        }
    }
    Some(out.into())
}

/// The `Allow` statements of a policy, as [`Allows`] (`resource_side`:
/// with the names their principal blocks may name).
fn allows(policy: &Policy, resource_side: bool) -> Vec<Allows> {
    policy
        .document
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Allow)
        .map(|s| Allows {
            action: s.action.clone(),
            resources: resource_globs(s.resource.as_ref()),
            names: if resource_side {
                principal_names(s.principal.as_ref())
            } else {
                None
            },
        })
        .collect()
}

/// How a principal ARN may be named in a resource policy, lower-cased: a
/// user's, role's or federated user's name, a session's role; `None` for
/// a root, a service principal or anything else (always a candidate).
fn name_of(principal: &str) -> Option<String> {
    let rest = principal.strip_prefix("arn:")?.splitn(5, ':').nth(4)?;
    let name = if let Some(r) = rest.strip_prefix("assumed-role/") {
        r.split('/').next()?
    } else if rest.starts_with("user/")
        || rest.starts_with("role/")
        || rest.starts_with("federated-user/")
    {
        rest.rsplit('/').next()?
    } else {
        return None;
    };
    Some(name.to_ascii_lowercase())
}

/// Whether a caller's value of `key` (lower-cased; a key ending in `:`
/// stands for every key it starts) can reach the decision of `principal`
/// doing `action`: verdict derives the others and ignores what the caller
/// sends (docs/evaluation.md §1).
fn caller_may_set(key: &str, principal: &str, action: &str, trust_session_tags: bool) -> bool {
    let session = principal.starts_with("arn:")
        && principal.split(':').nth(5).is_some_and(|rest| {
            rest.starts_with("assumed-role/") || rest.starts_with("federated-user/")
        });
    let create_key = action.eq_ignore_ascii_case("kms:CreateKey");
    !crate::eval::facts::derived_key(key, create_key, trust_session_tags && session)
}

/// The context keys each principal's and each resource's statements read.
#[derive(Default)]
pub(crate) struct Relevance {
    /// By principal: its identity, group and boundary policies, and its
    /// account's SCPs.
    principals: HashMap<String, Vec<PolicyReads>>,
    /// By resource: its resource policy, its account's RCPs, and the keys
    /// of its grants' constraints.
    resources: HashMap<String, (Vec<PolicyReads>, Vec<Box<str>>)>,
    /// By principal: the `Allow` statements of its identity and group
    /// policies.
    principal_allows: HashMap<String, Vec<PolicyAllows>>,
    /// By resource: the `Allow` statements of its policy, and the names
    /// its grants may let act ([`Grantees`]).
    resource_allows: HashMap<String, (Option<PolicyAllows>, Grantees)>,
}

/// Who a resource's grants may let act: `None` when it has no grant;
/// else the names ([`grant_names`]; `None`: anyone).
type Grantees = Option<Option<Box<[String]>>>;

/// The `Allow` statements of one policy.
type PolicyAllows = Arc<Vec<Allows>>;

/// The statements of one policy that read context keys.
type PolicyReads = Arc<Vec<Reads>>;

impl std::fmt::Debug for Relevance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relevance")
            .field("principals", &self.principals.len())
            .field("resources", &self.resources.len())
            .finish()
    }
}

/// Policies read once each, by address.
#[derive(Default)]
struct Cache {
    reads: HashMap<*const Policy, Arc<Vec<Reads>>>,
    allows: HashMap<(*const Policy, bool), PolicyAllows>,
}

impl Cache {
    fn of(&mut self, p: &Arc<Policy>) -> Arc<Vec<Reads>> {
        self.reads
            .entry(Arc::as_ptr(p))
            .or_insert_with(|| Arc::new(reads(p)))
            .clone()
    }

    fn allows(&mut self, p: &Arc<Policy>, resource_side: bool) -> PolicyAllows {
        self.allows
            .entry((Arc::as_ptr(p), resource_side))
            .or_insert_with(|| Arc::new(allows(p, resource_side)))
            .clone()
    }
}

/// The account of an ARN (its fifth piece).
pub(super) fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// The identity a principal ARN is (a user, a role, a session of a role).
pub(super) fn identity<'a>(b: &'a Bundle, arn: &str) -> Option<&'a Arc<Identity>> {
    if let Some(u) = b.users.get(arn) {
        return Some(u);
    }
    let account = account_of(arn)?;
    let rest = arn.splitn(6, ':').nth(5)?;
    let name = if let Some(r) = rest.strip_prefix("role/") {
        r.rsplit('/').next()?
    } else {
        rest.strip_prefix("assumed-role/")?.split('/').next()?
    };
    b.roles.get(&(Box::from(account), Box::from(name)))
}

impl Relevance {
    /// Read the bundle for the principals and resources of a universe.
    pub(crate) fn new(b: &Bundle, principals: &[String], resources: &[String]) -> Self {
        let mut cache = Cache::default();
        let mut by_principal = HashMap::new();
        let mut principal_allows = HashMap::new();
        for p in principals {
            let mut sets = Vec::new();
            if let Some(i) = identity(b, p) {
                let own = i.policies.iter();
                let groups = i.groups.iter().flat_map(|g| g.policies.iter());
                let allows = own.chain(groups).map(|pol| cache.allows(pol, false));
                principal_allows.insert(p.clone(), allows.collect());
                for pol in i.policies.iter().chain(i.boundary.iter()) {
                    sets.push(cache.of(pol));
                }
                for g in &i.groups {
                    sets.extend(g.policies.iter().map(|pol| cache.of(pol)));
                }
            }
            let scps = account_of(p)
                .and_then(|a| b.accounts.get(a))
                .and_then(|a| a.scps.as_ref());
            for level in scps.into_iter().flatten() {
                sets.extend(level.iter().map(|pol| cache.of(pol)));
            }
            by_principal.insert(p.clone(), sets);
        }
        let mut by_resource = HashMap::new();
        let mut resource_allows = HashMap::new();
        for r in resources {
            let mut sets = Vec::new();
            let policy = b.resources.get(r.as_str()).and_then(|x| x.policy.as_ref());
            if let Some(pol) = policy {
                sets.push(cache.of(pol));
            }
            let grants = b
                .grants_by_key
                .get(r.as_str())
                .filter(|g| !g.is_empty())
                .map(|g| grant_names(g));
            resource_allows.insert(
                r.clone(),
                (policy.map(|pol| cache.allows(pol, true)), grants),
            );
            let rcps = account_of(r)
                .and_then(|a| b.accounts.get(a))
                .and_then(|a| a.rcps.as_ref());
            for level in rcps.into_iter().flatten() {
                sets.extend(level.iter().map(|pol| cache.of(pol)));
            }
            let mut grant_keys = Vec::new();
            for g in b.grants_by_key.get(r.as_str()).into_iter().flatten() {
                if let Some(GrantConstraint::Equals(pairs) | GrantConstraint::Subset(pairs)) =
                    &g.constraint
                {
                    grant_keys.extend(pairs.iter().map(|(k, _)| {
                        Box::from(format!("kms:encryptioncontext:{}", k.to_ascii_lowercase()))
                    }));
                }
                // A grant's constraint compares the whole encryption
                // context: any encryption context key may count.
                grant_keys.push(Box::from("kms:encryptioncontext:"));
            }
            by_resource.insert(r.clone(), (sets, grant_keys));
        }
        Self {
            principals: by_principal,
            resources: by_resource,
            principal_allows,
            resource_allows,
        }
    }

    /// What may bear on the decisions about one resource, gathered once for
    /// every principal asked about.
    pub(crate) fn focus(&self, resource: &str) -> Focus<'_> {
        let lower = resource.to_ascii_lowercase();
        let (reads, grant_keys) = match self.resources.get(resource) {
            Some((sets, keys)) => (
                sets.iter()
                    .flat_map(|set| set.iter())
                    .filter(|r| may_match(r.resources.as_deref(), &lower))
                    .collect(),
                keys.iter().map(|k| &**k).collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        // A resource this reading did not cover may be allowed by anything.
        let (allows, grants) = match self.resource_allows.get(resource) {
            Some((policy, grants)) => (
                policy
                    .iter()
                    .flat_map(|set| set.iter())
                    .filter(|a| may_match(a.resources.as_deref(), &lower))
                    .collect(),
                grants.as_ref().map(|g| g.as_deref()),
            ),
            None => (Vec::new(), Some(None)),
        };
        Focus {
            relevance: self,
            lower,
            reads,
            grant_keys,
            allows,
            grants,
            principals: FxHashMap::default(),
            slots: Vec::new(),
            none: PrincipalStatements::default(),
            action: ActionFocus::default(),
        }
    }
}

/// What may bear on the decisions about one resource ([`Relevance::focus`]):
/// the resource's statements that may match it, and, gathered on first
/// use, each principal's.
pub(crate) struct Focus<'r> {
    relevance: &'r Relevance,
    /// The resource, lower-cased.
    lower: String,
    reads: Vec<&'r Reads>,
    grant_keys: Vec<&'r str>,
    allows: Vec<&'r Allows>,
    /// Who the resource's grants may let act ([`Grantees`]).
    grants: Option<Option<&'r [String]>>,
    principals: FxHashMap<String, PrincipalStatements<'r>>,
    /// The same, for principals asked about by their place in the
    /// universe's list.
    slots: Vec<Option<PrincipalStatements<'r>>>,
    /// What a principal without statements has.
    none: PrincipalStatements<'r>,
    /// The action asked about last, made ready ([`Focus::action`]).
    action: ActionFocus<'r>,
}

/// A principal asked about: its ARN, and its place in the universe's
/// list of principals when it has one (found faster than by name).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Who<'a> {
    pub(crate) arn: &'a str,
    pub(crate) at: Option<usize>,
}

/// The statements of `principal` that may match the resource `lower`
/// (lower-cased).
fn gather<'r>(relevance: &'r Relevance, lower: &str, principal: &str) -> PrincipalStatements<'r> {
    let reads = relevance.principals.get(principal).into_iter().flatten();
    let allows = relevance
        .principal_allows
        .get(principal)
        .into_iter()
        .flatten();
    PrincipalStatements {
        reads: reads
            .flat_map(|set| set.iter())
            .filter(|r| may_match(r.resources.as_deref(), lower))
            .collect(),
        allows: allows
            .flat_map(|set| set.iter())
            .filter(|a| may_match(a.resources.as_deref(), lower))
            .collect(),
        name: name_of(principal),
    }
}

/// A principal's statements that may match a resource.
#[derive(Default)]
struct PrincipalStatements<'r> {
    /// Those whose keys may bear on a decision.
    reads: Vec<&'r Reads>,
    /// Its `Allow`s.
    allows: Vec<&'r Allows>,
    /// Its name in [`name_of`]'s terms.
    name: Option<String>,
}

/// One action made ready for [`Focus::may_allow`] and [`Focus::keys`]:
/// the service and the lower-cased name, and the resource policy's
/// `Allow`s that cover it. Questions ask about one action for many
/// principals in a row, so this is kept for the last one.
#[derive(Default)]
struct ActionFocus<'r> {
    action: String,
    service: String,
    name: String,
    allows: Vec<&'r Allows>,
}

impl<'r> Focus<'r> {
    /// The principal's statements that may match the resource, gathered
    /// on its first use.
    fn principal(&mut self, who: Who<'_>) -> &PrincipalStatements<'r> {
        if let Some(at) = who.at {
            if self.slots.len() <= at {
                self.slots.resize_with(at + 1, || None);
            }
            let (relevance, lower) = (self.relevance, &self.lower);
            return match self.slots.get_mut(at) {
                Some(slot) => slot.get_or_insert_with(|| gather(relevance, lower, who.arn)),
                None => &self.none,
            };
        }
        if !self.principals.contains_key(who.arn) {
            let gathered = gather(self.relevance, &self.lower, who.arn);
            self.principals.insert(who.arn.to_owned(), gathered);
        }
        self.principals.get(who.arn).unwrap_or(&self.none)
    }

    /// What [`Focus::principal`] gathered for `who` (nothing before).
    fn gathered(&self, who: Who<'_>) -> &PrincipalStatements<'r> {
        let found = match who.at {
            Some(at) => self.slots.get(at).and_then(Option::as_ref),
            None => self.principals.get(who.arn),
        };
        found.unwrap_or(&self.none)
    }

    /// Make `action` the one asked about, unless it is already.
    fn action(&mut self, action: &str) {
        // (The empty action of a new focus is made ready like any other.)
        if self.action.action == action && !action.is_empty() {
            return;
        }
        let (service, name) = action.split_once(':').unwrap_or((action, ""));
        let name = name.to_ascii_lowercase();
        let allows = self
            .allows
            .iter()
            .copied()
            .filter(|a| covers(&a.action, (service, &name)))
            .collect();
        self.action = ActionFocus {
            action: action.to_owned(),
            service: service.to_owned(),
            name,
            allows,
        };
    }

    /// Whether some context may let `principal` do `action` on the
    /// resource: false only when no `Allow` can apply ([the module](self)).
    pub(crate) fn may_allow(&mut self, who: Who<'_>, action: &str) -> bool {
        self.action(action);
        self.principal(who);
        let p = self.gathered(who);
        let Some(name) = &p.name else {
            return true;
        };
        match self.grants {
            Some(None) => return true,
            Some(Some(names)) if names.contains(name) => return true,
            _ => {}
        }
        let a = &self.action;
        let by_resource = a
            .allows
            .iter()
            .any(|x| x.names.as_deref().is_none_or(|n| n.contains(name)));
        by_resource
            || p.allows
                .iter()
                .any(|x| covers(&x.action, (&a.service, &a.name)))
    }

    /// The keys (lower-cased) that can change the decision of this
    /// principal and action on the resource, and those that can change it
    /// when it is Allow without context ([`Reads::sticky`]); a key ending
    /// in `:` stands for every key it starts. `trust_session_tags` is the
    /// evaluation setting.
    pub(crate) fn keys(
        &mut self,
        who: Who<'_>,
        action: &str,
        trust_session_tags: bool,
    ) -> (Vec<&'r str>, Vec<&'r str>) {
        self.action(action);
        self.principal(who);
        let (service, name) = (&self.action.service, &self.action.name);
        let mut all: Vec<&'r str> = self.grant_keys.clone();
        let mut sticky: Vec<&'r str> = self.grant_keys.clone();
        let own = &self.gathered(who).reads;
        let settable = |k: &&str| caller_may_set(k, who.arn, action, trust_session_tags);
        for r in own.iter().chain(&self.reads) {
            if covers(&r.action, (service, name)) {
                all.extend(r.keys.iter().map(|k| &**k).filter(settable));
                sticky.extend(r.sticky.iter().map(|k| &**k).filter(settable));
            }
        }
        (all, sticky)
    }
}

/// Whether a context class setting `class_keys` (lower-cased) can be
/// decided differently from no context, given the `relevant` keys.
pub(crate) fn touches(class_keys: &[String], relevant: &[&str]) -> bool {
    class_keys.iter().any(|k| {
        relevant
            .iter()
            .any(|r| *r == k || (r.ends_with(':') && k.starts_with(r)))
    })
}

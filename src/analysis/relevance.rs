//! Which context keys can change the decision of a (principal, action,
//! resource): the keys that the conditions of every statement that could
//! take part in it test, or that its policy variables read. A context class
//! that sets none of them is decided as the request with no context is, so
//! it need not be decided again. `tests/analysis.rs` checks the answers
//! this pruning gives against the reference interpreter on every request.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::bundle::{Bundle, GrantConstraint, Identity, Policy};
use crate::policy::{ActionPattern, Block, ConditionValue, ResourcePattern, Statement};

/// A statement's action block and the context keys it reads (lower-cased).
struct Reads {
    action: Block<ActionPattern>,
    keys: Vec<Box<str>>,
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

/// Whether `action` (`service:Name`) is in `block`.
fn covers(block: &Block<ActionPattern>, action: &str) -> bool {
    let (service, name) = action.split_once(':').unwrap_or((action, ""));
    let name = name.to_ascii_lowercase();
    let hit = block.items.iter().any(|p| match p {
        ActionPattern::Any => true,
        ActionPattern::Named {
            service: s,
            name: n,
        } => s.eq_ignore_ascii_case(service) && super::universe::glob(n, &name),
    });
    hit != block.negated
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
}

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
struct Cache(HashMap<*const Policy, Arc<Vec<Reads>>>);

impl Cache {
    fn of(&mut self, p: &Arc<Policy>) -> Arc<Vec<Reads>> {
        self.0
            .entry(Arc::as_ptr(p))
            .or_insert_with(|| Arc::new(reads(p)))
            .clone()
    }
}

/// The account of an ARN (its fifth piece).
fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// The identity a principal ARN is (a user, a role, a session of a role).
fn identity<'a>(b: &'a Bundle, arn: &str) -> Option<&'a Arc<Identity>> {
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
        for p in principals {
            let mut sets = Vec::new();
            if let Some(i) = identity(b, p) {
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
        for r in resources {
            let mut sets = Vec::new();
            if let Some(pol) = b.resources.get(r.as_str()).and_then(|x| x.policy.as_ref()) {
                sets.push(cache.of(pol));
            }
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
        }
    }

    /// The keys (lower-cased) that can change the decision of this
    /// principal, action and resource; a key ending in `:` stands for every
    /// key it starts.
    pub(crate) fn keys(&self, principal: &str, action: &str, resource: &str) -> Vec<Box<str>> {
        let mut out = Vec::new();
        let sets = self.principals.get(principal).into_iter().flatten();
        let (resource_sets, grant_keys) = match self.resources.get(resource) {
            Some((s, g)) => (s.as_slice(), g.as_slice()),
            None => (&[][..], &[][..]),
        };
        for set in sets.chain(resource_sets) {
            for r in set.iter().filter(|r| covers(&r.action, action)) {
                out.extend(r.keys.iter().cloned());
            }
        }
        out.extend(grant_keys.iter().cloned());
        out
    }
}

/// Whether a context class setting `class_keys` can be decided
/// differently from no context, given the `relevant` keys.
pub(crate) fn touches(class_keys: &[(String, Vec<String>)], relevant: &[Box<str>]) -> bool {
    class_keys.iter().any(|(k, _)| {
        let k = k.to_ascii_lowercase();
        relevant
            .iter()
            .any(|r| **r == *k || (r.ends_with(':') && k.starts_with(&**r)))
    })
}

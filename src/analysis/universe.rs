//! The universe a bundle speaks about: the principals, actions, resources
//! and classes of request context that its policies can tell apart.
//!
//! - Principals: every user and role (and a session of each role), the root
//!   of every account the bundle names, the root of one account it does not
//!   name, every principal ARN and service principal a policy or grant
//!   names.
//! - Actions: every action a policy names; a wildcard expands through the
//!   IAM catalogue (`kms:*` to every KMS action); every KMS action always,
//!   and every operation a grant allows.
//! - Resources: every resource of `resources.json`, every literal ARN of a
//!   `Resource`, the key of every grant, and one ARN made up to match each
//!   wildcard pattern.
//! - Context classes: no context at all; for each key a condition tests,
//!   each value of the bundle it is compared with, one value that matches
//!   none, the numbers and dates just below and above each boundary, and an
//!   address inside and one outside each IP range; for each statement that
//!   tests several keys, one context that satisfies all its conditions at
//!   once; for each grant constraint, its encryption context.
//!
//! Each dimension is bounded ([`Bounds`]); what a bound cuts is listed in
//! [`Universe::cut`].

use std::collections::BTreeSet;

use crate::bundle::{Bundle, GrantConstraint};
use crate::policy::template::Template;
use crate::policy::{
    ActionPattern, ArnPattern, Block, Condition, ConditionValue, PrincipalEntry, ResourcePattern,
    Statement,
};

/// How large each dimension of a universe may grow.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Principals.
    pub max_principals: usize,
    /// Actions.
    pub max_actions: usize,
    /// Resources.
    pub max_resources: usize,
    /// Context classes.
    pub max_contexts: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            max_principals: 10_000,
            max_actions: 2_000,
            max_resources: 10_000,
            max_contexts: 256,
        }
    }
}

/// One class of request context: a name saying what it stands for, and
/// the context pairs of its representative request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContextClass {
    /// `no context`, or the pairs as `key=value` joined with `, `.
    pub name: String,
    /// The request's context.
    pub pairs: Vec<(String, Vec<String>)>,
}

impl ContextClass {
    fn of(pairs: Vec<(String, Vec<String>)>) -> Self {
        let name = if pairs.is_empty() {
            "no context".to_owned()
        } else {
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={}", v.join("|")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Self { name, pairs }
    }
}

/// The universe of a bundle.
#[derive(Clone, Debug, Default)]
pub struct Universe {
    /// Principal ARNs and service principals, sorted.
    pub principals: Vec<String>,
    /// Actions (`service:Name`), sorted.
    pub actions: Vec<String>,
    /// Resource ARNs, sorted.
    pub resources: Vec<String>,
    /// Context classes, `no context` first.
    pub contexts: Vec<ContextClass>,
    /// Actions no statement tells apart from an action of the universe:
    /// by that action, the others it stands for (decided the same way).
    pub same_as: std::collections::BTreeMap<String, Vec<String>>,
    /// What the bounds cut, one line per dimension that was cut.
    pub cut: Vec<String>,
    /// Per bundle read, which context keys can change which decisions.
    pub(crate) relevance: std::sync::Arc<Vec<super::relevance::Relevance>>,
}

/// A sample string matching a template: wildcards and variables stand in
/// as `x` (a variable's default when it has one).
fn sample(t: &Template) -> String {
    use crate::policy::template::Part;
    let mut out = String::new();
    for part in t.parts() {
        match part {
            Part::Text(s) => out.extend(
                s.chars()
                    .map(|c| if matches!(c, '*' | '?') { 'x' } else { c }),
            ),
            Part::Literal(s) => out.push_str(s.as_ref()),
            Part::Var(v) => out.push_str(v.default.as_deref().unwrap_or("x")),
        }
    }
    out
}

fn sample_arn(p: &ArnPattern) -> String {
    p.pieces.iter().map(sample).collect::<Vec<_>>().join(":")
}

/// The values of one condition to try, each a context value.
fn samples(c: &Condition) -> Vec<String> {
    let mut out = Vec::new();
    for v in &c.values {
        match v {
            ConditionValue::String(t) => out.push(sample(t)),
            ConditionValue::Number(d) | ConditionValue::Date(d) => out.extend(d.around()),
            ConditionValue::Bool(crate::policy::BoolValue::Literal(_)) => {
                out.extend(["true".to_owned(), "false".to_owned()]);
            }
            ConditionValue::Bool(crate::policy::BoolValue::Template(t)) => out.push(sample(t)),
            ConditionValue::Binary(bytes) => {
                use base64::Engine as _;
                out.push(base64::engine::general_purpose::STANDARD.encode(bytes));
            }
            ConditionValue::Ip(net) => {
                out.push(net.network().to_string());
                out.push(outside(net));
            }
            ConditionValue::Arn(p) => out.push(sample_arn(p)),
            ConditionValue::Null(_) => out.push("x".to_owned()),
            ConditionValue::Unreadable => {}
        }
    }
    out.push(NONE.to_owned());
    out
}

/// Whether `text` matches `pattern` (`*` any run, `?` one byte): the
/// catalogue's matcher.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    crate::policy::catalogue::wildcard_match(pattern.as_bytes(), text.as_bytes())
}

/// A value no policy compares with.
const NONE: &str = "verdict-analysis-none";

/// An address outside `net`.
fn outside(net: &ipnet::IpNet) -> String {
    for candidate in ["203.0.113.7", "198.51.100.7", "2001:db8::7", "192.0.2.7"] {
        if let Ok(ip) = candidate.parse::<std::net::IpAddr>()
            && ip.is_ipv4() == net.addr().is_ipv4()
            && !net.contains(&ip)
        {
            return candidate.to_owned();
        }
    }
    "0.0.0.1".to_owned()
}

/// Collects the universe, bounded.
struct Collect<'a> {
    /// The bundle being read.
    bundle: &'a Bundle,
    principals: BTreeSet<String>,
    actions: BTreeSet<String>,
    resources: BTreeSet<String>,
    /// Per key (as written), the values to try.
    keys: std::collections::BTreeMap<String, BTreeSet<String>>,
    /// Joint classes (statements testing several keys, grant constraints).
    joint: BTreeSet<Vec<(String, Vec<String>)>>,
    accounts: BTreeSet<String>,
    /// Every action pattern a statement names: (service, lower-cased name
    /// pattern).
    patterns: BTreeSet<(String, String)>,
    /// Services whose resources a statement grants with `"Resource": "*"`
    /// or `NotResource`.
    any_resource: BTreeSet<String>,
}

impl Universe {
    /// The universe of `bundle`, within `bounds`.
    pub fn of(bundle: &Bundle, bounds: Bounds) -> Self {
        Self::of_all(&[bundle], bounds)
    }

    /// The universe of `bundle` with these resources in it too (a resource
    /// a question names that the bundle does not).
    pub fn of_with(bundle: &Bundle, bounds: Bounds, resources: &[String]) -> Self {
        Self::collect(&[bundle], bounds, resources)
    }

    /// The universe of several bundles together (to compare them): what
    /// any of them names, with actions told apart when any tells them
    /// apart.
    pub fn of_all(bundles: &[&Bundle], bounds: Bounds) -> Self {
        Self::collect(bundles, bounds, &[])
    }

    fn collect(bundles: &[&Bundle], bounds: Bounds, extra: &[String]) -> Self {
        let Some(first) = bundles.first() else {
            return Self::default();
        };
        let mut c = Collect {
            bundle: first,
            principals: BTreeSet::new(),
            actions: BTreeSet::new(),
            resources: BTreeSet::new(),
            keys: Default::default(),
            joint: BTreeSet::new(),
            accounts: BTreeSet::new(),
            patterns: BTreeSet::new(),
            any_resource: BTreeSet::new(),
        };
        for b in bundles {
            c.bundle = b;
            c.identities();
            c.statements();
            c.grants();
        }
        c.defaults();
        c.resources.extend(extra.iter().cloned());
        let mut u = c.finish(bounds);
        u.relevance = std::sync::Arc::new(
            bundles
                .iter()
                .map(|b| super::relevance::Relevance::new(b, &u.principals, &u.resources))
                .collect(),
        );
        u
    }

    /// What may bear on the decisions about `resource`, in each bundle
    /// read.
    pub(crate) fn focus(&self, resource: &str) -> Vec<super::relevance::Focus<'_>> {
        self.relevance.iter().map(|r| r.focus(resource)).collect()
    }

    /// Requests the universe holds: principals × actions × resources ×
    /// context classes.
    pub fn size(&self) -> u128 {
        [
            self.principals.len(),
            self.actions.len(),
            self.resources.len(),
            self.contexts.len(),
        ]
        .iter()
        .map(|n| *n as u128)
        .product()
    }
}

/// The first `max` of `set`, noting in `cut` what was left out.
fn bounded(set: BTreeSet<String>, max: usize, what: &str, cut: &mut Vec<String>) -> Vec<String> {
    if set.len() > max {
        cut.push(format!(
            "{what}: {} of {} kept (the first, in order)",
            max,
            set.len()
        ));
    }
    set.into_iter().take(max).collect()
}

/// `no context` first, then the classes, within `max` in all.
fn with_empty(
    classes: BTreeSet<ContextClass>,
    max: usize,
    cut: &mut Vec<String>,
) -> Vec<ContextClass> {
    let mut out = vec![ContextClass::of(Vec::new())];
    if classes.len() + 1 > max {
        cut.push(format!(
            "context classes: {} of {} kept",
            max,
            classes.len() + 1
        ));
    }
    out.extend(classes.into_iter().take(max.saturating_sub(1)));
    out
}

impl Collect<'_> {
    fn account_root(&mut self, account: &str) {
        self.accounts.insert(account.to_owned());
    }

    fn identities(&mut self) {
        let b = self.bundle;
        for arn in b.users.keys() {
            self.principals.insert(arn.to_string());
        }
        for ((account, name), role) in &b.roles {
            self.principals.insert(role.arn_text.to_string());
            self.principals.insert(format!(
                "arn:aws:sts::{account}:assumed-role/{name}/verdict-analysis"
            ));
            self.account_root(account);
        }
        for u in b.users.values() {
            self.account_root(u.arn.account());
        }
        for account in b.accounts.keys() {
            self.account_root(account);
        }
        for (arn, r) in &b.resources {
            self.resources.insert(arn.to_string());
            if let Some(a) = &r.account {
                self.account_root(a);
            }
        }
    }

    fn statements(&mut self) {
        let b = self.bundle;
        let policies: Vec<_> = b.policies.values().cloned().collect();
        let inline = b
            .resources
            .values()
            .filter_map(|r| r.policy.clone())
            .chain(
                b.users
                    .values()
                    .flat_map(|u| u.policies.iter().cloned().chain(u.boundary.clone())),
            )
            .chain(
                b.roles
                    .values()
                    .flat_map(|r| r.policies.iter().cloned().chain(r.boundary.clone())),
            );
        for p in policies.into_iter().chain(inline) {
            for s in p.document.statements.iter() {
                self.statement(s);
            }
        }
    }

    fn statement(&mut self, s: &Statement) {
        self.action_block(&s.action);
        if let Some(r) = &s.resource {
            for item in r.items.iter() {
                match item {
                    ResourcePattern::Arn(p) => {
                        self.resources.insert(sample_arn(p));
                    }
                    ResourcePattern::Any => self.any_resource_of(&s.action),
                }
            }
            if r.negated {
                self.any_resource_of(&s.action);
            }
        }
        if let Some(p) = &s.principal {
            self.principal_block(p);
        }
        let mut joint: Vec<(String, Vec<String>)> = Vec::new();
        for c in s.conditions.iter() {
            let values = samples(c);
            if let Some(first) = values.first()
                && !matches!(c.op.base, crate::policy::BaseOperator::Null)
                && !joint
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case(&c.written_key))
            {
                joint.push((c.written_key.to_string(), vec![first.clone()]));
            }
            self.keys
                .entry(c.written_key.to_string())
                .or_default()
                .extend(values);
        }
        if joint.len() > 1 {
            joint.sort();
            self.joint.insert(joint);
        }
    }

    /// Note the services of `block` as granted on any resource.
    fn any_resource_of(&mut self, block: &Block<ActionPattern>) {
        for item in block.items.iter() {
            match item {
                ActionPattern::Named { service, .. } => {
                    self.any_resource.insert(service.to_string());
                }
                ActionPattern::Any => {
                    self.any_resource.insert("kms".to_owned());
                }
            }
        }
    }

    fn action_block(&mut self, block: &Block<ActionPattern>) {
        let catalogue = crate::policy::catalogue::catalogue();
        for item in block.items.iter() {
            if let ActionPattern::Named { service, name } = item {
                self.patterns
                    .insert((service.to_string(), name.to_string()));
            }
            match item {
                ActionPattern::Any => {}
                ActionPattern::Named { service, name } if name.contains(['*', '?']) => {
                    for a in catalogue.actions_matching(service, name) {
                        self.actions.insert(format!("{service}:{a}"));
                    }
                }
                ActionPattern::Named { service, name } => {
                    let written = catalogue
                        .actions_matching(service, name)
                        .first()
                        .map_or_else(|| name.to_string(), |a| (*a).to_owned());
                    self.actions.insert(format!("{service}:{written}"));
                }
            }
        }
    }

    fn principal_block(&mut self, block: &Block<PrincipalEntry>) {
        for item in block.items.iter() {
            match item {
                PrincipalEntry::Account(a) => self.account_root(a),
                PrincipalEntry::Arn(arn) => {
                    self.account_root(arn.account());
                    self.principals.insert(arn.to_string());
                }
                PrincipalEntry::Service(s) => {
                    self.principals.insert(s.to_string());
                }
                PrincipalEntry::Everyone | PrincipalEntry::Unmatchable(_) => {}
            }
        }
    }

    fn grants(&mut self) {
        for g in &self.bundle.grants {
            self.resources.insert(g.key.to_string());
            self.principal_block(&Block {
                negated: false,
                items: Box::new([g.grantee.clone()]),
            });
            for op in &g.operations {
                if let Some((name, _)) = crate::bundle::GrantOperation::ALL
                    .iter()
                    .find(|(_, o)| o == op)
                {
                    self.actions.insert(format!("kms:{name}"));
                }
            }
            let pairs = match &g.constraint {
                Some(GrantConstraint::Equals(p) | GrantConstraint::Subset(p)) => p,
                None => continue,
            };
            let mut joint: Vec<(String, Vec<String>)> = pairs
                .iter()
                .map(|(k, v)| (format!("kms:EncryptionContext:{k}"), vec![v.to_string()]))
                .collect();
            joint.sort();
            for (k, v) in &joint {
                self.keys
                    .entry(k.clone())
                    .or_default()
                    .extend(v.iter().cloned());
            }
            self.joint.insert(joint);
        }
    }

    /// Every KMS action, and the roots of the accounts named.
    fn defaults(&mut self) {
        let catalogue = crate::policy::catalogue::catalogue();
        for a in catalogue.actions_matching("kms", "*") {
            self.actions.insert(format!("kms:{a}"));
        }
        for account in &self.accounts {
            self.principals
                .insert(format!("arn:aws:iam::{account}:root"));
        }
        // One account the bundle does not name.
        let stranger = (0..1000u64)
            .map(|i| format!("{:012}", 999_999_999_999 - i))
            .find(|a| !self.accounts.contains(a))
            .unwrap_or_default();
        self.principals
            .insert(format!("arn:aws:iam::{stranger}:root"));
        // A resource of each service some statement grants on any resource,
        // in the first account named (else the stranger's).
        let account = self.accounts.iter().next().cloned().unwrap_or(stranger);
        for service in &self.any_resource {
            self.resources.insert(format!(
                "arn:aws:{service}:us-east-1:{account}:verdict-analysis/x"
            ));
        }
    }

    /// One action for each set of actions no statement tells apart: actions
    /// of a service other than KMS and STS (whose actions the evaluation
    /// treats each in its own way) that match exactly the same action
    /// patterns stand for each other. Returns the representatives, and for
    /// each the others it stands for.
    fn collapse(
        &self,
    ) -> (
        BTreeSet<String>,
        std::collections::BTreeMap<String, Vec<String>>,
    ) {
        type Signature = (String, Vec<bool>);
        let mut by_signature: std::collections::BTreeMap<Signature, Vec<String>> =
            Default::default();
        let mut kept = BTreeSet::new();
        for action in &self.actions {
            let (service, name) = action.split_once(':').unwrap_or((action, ""));
            if matches!(service, "kms" | "sts") {
                kept.insert(action.clone());
                continue;
            }
            let lower = name.to_ascii_lowercase();
            let signature = self
                .patterns
                .iter()
                .map(|(s, p)| s == service && glob(p, &lower))
                .collect();
            by_signature
                .entry((service.to_owned(), signature))
                .or_default()
                .push(action.clone());
        }
        let mut same_as = std::collections::BTreeMap::new();
        for (_, mut members) in by_signature {
            members.sort();
            let first = members.remove(0);
            kept.insert(first.clone());
            if !members.is_empty() {
                same_as.insert(first, members);
            }
        }
        (kept, same_as)
    }

    fn finish(mut self, bounds: Bounds) -> Universe {
        let mut cut = Vec::new();
        let (actions, same_as) = self.collapse();
        self.actions = actions;
        let mut classes: BTreeSet<ContextClass> = BTreeSet::new();
        for (key, values) in &self.keys {
            for v in values {
                classes.insert(ContextClass::of(vec![(key.clone(), vec![v.clone()])]));
            }
        }
        for joint in self.joint {
            classes.insert(ContextClass::of(joint));
        }
        // Only classes a request may carry (a sample value the request
        // limits refuse is left out).
        let limits = crate::eval::RequestLimits::default();
        classes.retain(|c| crate::eval::Context::new(c.pairs.clone(), &limits).is_ok());
        Universe {
            principals: bounded(
                self.principals,
                bounds.max_principals,
                "principals",
                &mut cut,
            ),
            actions: bounded(self.actions, bounds.max_actions, "actions", &mut cut),
            resources: bounded(self.resources, bounds.max_resources, "resources", &mut cut),
            contexts: with_empty(classes, bounds.max_contexts, &mut cut),
            same_as,
            cut,
            relevance: std::sync::Arc::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob(
            "arn:aws:kms:*:111122223333:key/*",
            "arn:aws:kms:us-west-2:111122223333:key/k1"
        ));
        assert!(!glob("arn:aws:kms:*:111122223333:key/*", "arn:aws:s3:::b"));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("get*", "getobject"));
    }
}

//! The reference interpreter: the evaluation logic of docs/evaluation.md §5–§8,
//! written to be read side by side with the spec, over the policy model as
//! written. It builds the whole derived context, resolves templates into
//! token lists and evaluates every statement; it allocates freely and is
//! not meant to be fast. It is the oracle the compiled evaluator is tested
//! against.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use crate::bundle::{Bundle, Grant, GrantConstraint, GrantOperation, KeyState};
use crate::policy::glob::{self, Tok, fold};
use crate::policy::principal::{PrincipalArn, split_arn};
use crate::policy::template::Template;
use crate::policy::value::{self, Decimal};
use crate::policy::*;

use super::EvalOptions;
use super::decision::*;
use super::facts::*;
use super::kms;
use super::request::Request;

/// Decide `req` against `bundle` the slow, plain way. `now` is the server
/// clock for `aws:CurrentTime`/`aws:EpochTime` when the caller sends neither.
pub fn evaluate(bundle: &Bundle, req: &Request, opts: &EvalOptions, now: SystemTime) -> Decision {
    let caller = CallerFacts::resolve(bundle, req);
    let resource = ResourceFacts::resolve(bundle, req, &caller);
    let ctx = derive_context(bundle, req, &caller, &resource, opts, now);
    let mut it = Interp {
        req,
        caller,
        ctx,
        missing: BTreeSet::new(),
        clock_read: false,
        trust_session_tags: opts.trust_session_tags,
        near: Vec::new(),
    };
    it.decide(bundle, &resource)
}

// === The derived context ===

/// One context entry after derivation.
#[derive(Clone, Debug)]
struct Entry {
    /// Key as sent (or as derived).
    key: String,
    values: Vec<String>,
}

/// The final context (docs/evaluation.md §1), keyed by lower-cased name.
#[derive(Debug)]
struct Ctx {
    map: BTreeMap<String, Entry>,
    server_clock: bool,
    ignored: Vec<String>,
}

impl Ctx {
    /// A key as a statement of `kind` sees it: `kms:ResourceAliases` is
    /// absent in key policies (§7.5).
    fn get(&self, lower: &str, kind: PolicyKind) -> Option<&Entry> {
        if kind == PolicyKind::KeyPolicy && lower == "kms:resourcealiases" {
            return None;
        }
        self.map.get(lower)
    }

    /// A variable's value: the key's single value, if it has exactly one.
    fn var(&self, lower: &str, kind: PolicyKind) -> Option<&str> {
        match self.get(lower, kind)?.values.as_slice() {
            [one] => Some(one.as_str()),
            _ => None,
        }
    }
}

fn format_time(secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(secs, 0).map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// §1: the context a decision sees: what the caller sent (less the keys
/// verdict derives), the bundle's default context, then the derived keys.
fn derive_context(
    bundle: &Bundle,
    req: &Request,
    caller: &CallerFacts<'_>,
    resource: &ResourceFacts<'_>,
    opts: &EvalOptions,
    now: SystemTime,
) -> Ctx {
    let (mut map, ignored) = sent_context(req, caller, opts);
    caller_keys(&mut map, bundle, req, caller, opts);
    resource_keys(&mut map, req, resource);
    let server_clock = clock_keys(&mut map, now);
    request_keys(&mut map, resource);
    Ctx {
        map,
        server_clock,
        ignored,
    }
}

type Map = BTreeMap<String, Entry>;

fn put(map: &mut Map, key: &str, values: Vec<String>) {
    map.insert(
        key.to_lowercase(),
        Entry {
            key: key.to_owned(),
            values,
        },
    );
}

fn one(s: &str) -> Vec<String> {
    vec![s.to_owned()]
}

/// The caller's context and the default context, without the keys verdict
/// derives (those are returned as ignored).
fn sent_context(req: &Request, caller: &CallerFacts<'_>, opts: &EvalOptions) -> (Map, Vec<String>) {
    let mut map = BTreeMap::new();
    let mut ignored = Vec::new();
    for e in req.context.entries() {
        if caller_value_ignored(&e.lower, req, caller, opts.trust_session_tags) {
            ignored.push(e.key.to_string());
            continue;
        }
        map.insert(
            e.lower.to_string(),
            Entry {
                key: e.key.to_string(),
                values: e.values.clone(),
            },
        );
    }
    for (k, v) in &opts.default_context {
        let lower = k.to_lowercase();
        if caller_value_ignored(&lower, req, caller, opts.trust_session_tags) {
            continue;
        }
        map.entry(lower).or_insert_with(|| Entry {
            key: k.clone(),
            values: v.clone(),
        });
    }
    (map, ignored)
}

/// Who is calling: principal keys, tags, organization.
fn caller_keys(
    map: &mut Map,
    bundle: &Bundle,
    req: &Request,
    caller: &CallerFacts<'_>,
    opts: &EvalOptions,
) {
    let principal_arn = match caller.form {
        Form::Root | Form::User | Form::FederatedUser => caller.self_arn,
        Form::RoleArn | Form::AssumedRole => caller.role_arn,
        Form::Service => None,
    };
    if let Some(a) = principal_arn {
        put(map, "aws:PrincipalArn", one(a));
    }
    let principal_type = match caller.form {
        Form::Root => Some("Account"),
        Form::User => Some("User"),
        Form::RoleArn | Form::AssumedRole => Some("AssumedRole"),
        Form::FederatedUser => Some("FederatedUser"),
        Form::Service => None,
    };
    if let Some(t) = principal_type {
        put(map, "aws:PrincipalType", one(t));
    }
    let userid = match (&req.caller, caller.form) {
        (_, Form::Root) => caller.account.map(str::to_owned),
        (_, Form::User) => caller
            .identity
            .and_then(|i| i.unique_id.as_deref())
            .map(str::to_owned),
        (
            super::request::Caller::Arn(PrincipalArn::AssumedRole { session, .. }),
            Form::AssumedRole,
        ) => caller
            .identity
            .and_then(|i| i.unique_id.as_deref())
            .map(|u| format!("{u}:{session}")),
        (super::request::Caller::Arn(PrincipalArn::FederatedUser { account, name, .. }), _) => {
            Some(format!("{account}:{name}"))
        }
        _ => None,
    };
    if let Some(u) = userid {
        put(map, "aws:userid", vec![u]);
    }
    if let super::request::Caller::Arn(PrincipalArn::User { name, .. }) = &req.caller {
        put(map, "aws:username", one(name));
    }
    if let Some(pa) = caller.account {
        put(map, "aws:PrincipalAccount", one(pa));
        put(map, "kms:CallerAccount", one(pa));
    }
    put(
        map,
        "aws:PrincipalIsAWSService",
        one(if caller.form == Form::Service {
            "true"
        } else {
            "false"
        }),
    );
    let trusted_tags = opts.trust_session_tags && caller.carries_session_tags();
    if let Some(identity) = caller.identity {
        for t in &identity.tags {
            let key = format!("aws:PrincipalTag/{}", t.key);
            if trusted_tags && map.contains_key(&key.to_lowercase()) {
                continue;
            }
            put(map, &key, one(&t.value));
        }
    }
    if let Some(acct) = caller.account.and_then(|a| bundle.accounts.get(a)) {
        if let Some(org) = &acct.org_id {
            put(map, "aws:PrincipalOrgID", one(org));
        }
        if let Some(paths) = &acct.org_paths {
            put(
                map,
                "aws:PrincipalOrgPaths",
                paths.iter().map(|p| p.to_string()).collect(),
            );
        }
    }
}

/// What is being accessed: resource tags, the key's facts, the account.
fn resource_keys(map: &mut Map, req: &Request, resource: &ResourceFacts<'_>) {
    if let Some(entry) = resource.entry {
        for t in &entry.tags {
            put(map, &format!("aws:ResourceTag/{}", t.key), one(&t.value));
        }
        if let Some(key) = &entry.key {
            if !key.aliases.is_empty() {
                put(
                    map,
                    "kms:ResourceAliases",
                    key.aliases.iter().map(|a| a.to_string()).collect(),
                );
            }
            if !is_create_key(req) {
                for (name, v) in [
                    ("kms:KeySpec", &key.key_spec),
                    ("kms:KeyUsage", &key.key_usage),
                    ("kms:KeyOrigin", &key.key_origin),
                ] {
                    if let Some(v) = v {
                        put(map, name, one(v));
                    }
                }
            }
        }
    }
    if resource.account_known
        && let Some(ra) = resource.account
    {
        put(map, "aws:ResourceAccount", one(ra));
    }
}

/// `aws:CurrentTime` and `aws:EpochTime`, each from the other or from the
/// server clock; true when the server clock filled them.
fn clock_keys(map: &mut Map, now: SystemTime) -> bool {
    let mut server_clock = false;
    let current = map.get("aws:currenttime").map(|e| e.values.clone());
    let epoch = map.get("aws:epochtime").map(|e| e.values.clone());
    match (current, epoch) {
        (Some(_), Some(_)) => {}
        (Some(ct), None) => {
            if let [v] = ct.as_slice()
                && let Some(d) = value::parse_date(v)
            {
                put(map, "aws:EpochTime", vec![d.to_string()]);
            }
        }
        (None, Some(et)) => {
            if let [v] = et.as_slice()
                && let Some(t) = v.parse::<i64>().ok().and_then(format_time)
            {
                put(map, "aws:CurrentTime", vec![t]);
            }
        }
        (None, None) => {
            server_clock = true;
            let secs = match now.duration_since(SystemTime::UNIX_EPOCH) {
                Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
            };
            put(map, "aws:EpochTime", vec![secs.to_string()]);
            if let Some(t) = format_time(secs) {
                put(map, "aws:CurrentTime", vec![t]);
            }
        }
    }
    server_clock
}

/// Keys derived from the request itself: the encryption context's keys (in
/// their original spelling) and the region.
fn request_keys(map: &mut Map, resource: &ResourceFacts<'_>) {
    if !map.contains_key("kms:encryptioncontextkeys") {
        let keys: Vec<String> = map
            .iter()
            .filter(|(k, _)| k.starts_with(ENCRYPTION_CONTEXT_PREFIX))
            .map(|(_, e)| {
                e.key
                    .chars()
                    .skip(ENCRYPTION_CONTEXT_PREFIX.chars().count())
                    .collect()
            })
            .collect();
        if !keys.is_empty() {
            put(map, "kms:EncryptionContextKeys", keys);
        }
    }
    if !map.contains_key("aws:requestedregion")
        && let Some(region) = resource.region()
    {
        put(map, "aws:RequestedRegion", one(region));
    }
}

// === Statements ===

/// How strongly a principal entry names the caller (§2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    /// The caller's account.
    Account,
    /// The caller's role.
    Role,
    /// The caller itself, or everyone.
    Direct,
}

/// An applicable statement.
struct Hit<'p> {
    st: &'p Statement,
    strength: Strength,
}

/// One evaluated policy.
struct PolicyEval<'p> {
    id: Arc<str>,
    kind: PolicyKind,
    level: Option<u32>,
    hits: Vec<Hit<'p>>,
}

impl PolicyEval<'_> {
    fn matched(&self, hit: &Hit<'_>) -> MatchedStatement {
        MatchedStatement {
            policy_id: self.id.clone(),
            kind: self.kind,
            index: Some(hit.st.index),
            sid: hit.st.sid.clone(),
            effect: hit.st.effect,
            level: self.level,
            position: Some(hit.st.position),
        }
    }

    fn with_effect(&self, effect: Effect) -> impl Iterator<Item = &Hit<'_>> {
        self.hits.iter().filter(move |h| h.st.effect == effect)
    }

    fn allows(&self) -> bool {
        self.with_effect(Effect::Allow).next().is_some()
    }

    fn denies(&self) -> bool {
        self.with_effect(Effect::Deny).next().is_some()
    }

    /// The `Allow`s whose principal names the caller with `strength`
    /// (every `Allow` for `None`).
    fn allows_with(&self, strength: Option<Strength>) -> Vec<MatchedStatement> {
        self.with_effect(Effect::Allow)
            .filter(|h| strength.is_none_or(|s| h.strength == s))
            .map(|h| self.matched(h))
            .collect()
    }

    /// `Allow`s listed for an org gate: all but `Action: "*"` ones.
    fn org_allow_list(&self) -> Vec<MatchedStatement> {
        self.with_effect(Effect::Allow)
            .filter(|h| h.st.action.negated || !h.st.action.items.contains(&ActionPattern::Any))
            .map(|h| self.matched(h))
            .collect()
    }

    fn kind_decision(&self) -> KindDecision {
        if self.denies() {
            KindDecision::ExplicitDeny
        } else if self.allows() {
            KindDecision::Allow
        } else {
            KindDecision::ImplicitDeny
        }
    }
}

/// One identity of the caller's chain, as `NotPrincipal` tests it.
enum Link<'a> {
    Account(Option<&'a str>),
    Arn(Option<&'a str>),
    Service(Option<&'a str>),
}

impl Link<'_> {
    /// Whether a `NotPrincipal` entry lists this identity.
    fn named_by(&self, entry: &PrincipalEntry) -> bool {
        match (entry, self) {
            (PrincipalEntry::Everyone, _) => true,
            (PrincipalEntry::Account(a), Link::Account(Some(x))) => **a == **x,
            (PrincipalEntry::Arn(a), Link::Arn(Some(x))) => a.to_string() == *x,
            (PrincipalEntry::Service(s), Link::Service(Some(x))) => **s == **x,
            _ => false,
        }
    }
}

/// The policies that take part in a decision.
struct Participants<'b> {
    /// The resource is a KMS key (§7).
    kms: bool,
    /// `kms:RetireGrant` on a key: grants alone decide.
    retire: bool,
    /// `sts:AssumeRole` and its kin on a role: the role's trust policy
    /// must allow, as a key policy must (U45).
    trust: bool,
    /// Caller and resource are in different known accounts.
    cross: bool,
    scp: Option<&'b Vec<Vec<Arc<crate::bundle::Policy>>>>,
    rcp: Option<&'b Vec<Vec<Arc<crate::bundle::Policy>>>>,
    /// The resource or key policy.
    rbp: Option<&'b crate::bundle::Policy>,
    /// `KeyPolicy` on a KMS key, `Resource` otherwise.
    rbp_kind: PolicyKind,
    /// The grants on the key, in bundle order.
    grants: Vec<&'b Arc<Grant>>,
    key: Option<&'b crate::bundle::KeyInfo>,
    /// A KMS key without a `resources.json` entry, so without a key policy.
    no_key_policy: bool,
}

/// Every participating policy, evaluated.
struct Evals<'p> {
    scp: Option<Vec<Vec<PolicyEval<'p>>>>,
    rcp: Option<Vec<Vec<PolicyEval<'p>>>>,
    rbp: Option<PolicyEval<'p>>,
    /// Identity policies, then the groups' policies.
    identities: Vec<PolicyEval<'p>>,
    boundary: Option<PolicyEval<'p>>,
    session: Option<PolicyEval<'p>>,
}

impl Evals<'_> {
    fn organizations(&self) -> impl Iterator<Item = &PolicyEval<'_>> {
        let scp = self.scp.iter().flatten().flatten();
        scp.chain(self.rcp.iter().flatten().flatten())
    }

    /// Every applicable `Deny`, of any policy.
    fn denies(&self) -> Vec<MatchedStatement> {
        self.organizations()
            .chain(&self.rbp)
            .chain(&self.identities)
            .chain(&self.boundary)
            .chain(&self.session)
            .flat_map(|e| e.with_effect(Effect::Deny).map(|h| e.matched(h)))
            .collect()
    }

    /// The SCP and RCP `Allow`s an allowed decision lists.
    fn org_allows(&self) -> Vec<MatchedStatement> {
        self.organizations()
            .flat_map(PolicyEval::org_allow_list)
            .collect()
    }

    /// The caller-side `Allow`s listed for a path through a principal of
    /// `strength`: none for the caller itself, the boundary's and session
    /// policy's for its role, and the identity policies' too for its account.
    fn path_allows(&self, strength: Strength) -> Vec<MatchedStatement> {
        let all = |e: &PolicyEval<'_>| e.allows_with(None);
        let boundary_session = self.boundary.iter().chain(&self.session).flat_map(all);
        match strength {
            Strength::Direct => Vec::new(),
            Strength::Role => boundary_session.collect(),
            Strength::Account => self
                .identities
                .iter()
                .flat_map(all)
                .chain(boundary_session)
                .collect(),
        }
    }
}

/// A path that allows, and the statements it lists (without the
/// organizations' `Allow`s).
struct Allowed {
    list: Vec<MatchedStatement>,
    /// The grant that allowed.
    grant: Option<Arc<str>>,
}

impl Allowed {
    fn by_grant(id: &Arc<str>, path: Vec<MatchedStatement>) -> Self {
        let mut list = vec![MatchedStatement::grant(id)];
        list.extend(path);
        Self {
            list,
            grant: Some(id.clone()),
        }
    }
}

/// Where a decision ended, for its explanation.
struct Reached {
    gates: Gates,
    outcome: Outcome,
    grant: Option<Arc<str>>,
    key_state: Option<KeyState>,
}

struct Interp<'a> {
    req: &'a Request,
    caller: CallerFacts<'a>,
    ctx: Ctx,
    missing: BTreeSet<String>,
    clock_read: bool,
    trust_session_tags: bool,
    /// With explain: Allow statements of granting kinds whose action and
    /// principal matched but which did not apply.
    near: Vec<NearMiss>,
}

impl<'a> Interp<'a> {
    /// The near misses of an ImplicitDeny: those noted, the grants that
    /// came close, and each resource, key or trust policy statement that
    /// applied but allows only through IAM (it names the caller's account,
    /// or the call crosses accounts) when no identity or group policy
    /// allowed a caller that needs one (any but a root).
    fn near_misses(&self, p: &Participants<'_>, e: &Evals<'_>, g: &Gates) -> Vec<NearMiss> {
        let mut near = self.near.clone();
        near.extend(self.grant_misses(p));
        let iam_allowed = e.identities.iter().any(PolicyEval::allows);
        let root = self.caller.form == Form::Root;
        if let Some(rbp) = e.rbp.as_ref()
            && self.req.explain
            && !iam_allowed
            && !root
        {
            for hit in &rbp.hits {
                let needs_iam = hit.strength == Strength::Account || p.cross;
                if hit.st.effect == Effect::Allow && needs_iam {
                    near.push(NearMiss {
                        statement: rbp.matched(hit),
                        failed: Failed::Delegation,
                    });
                }
            }
        }
        near_misses_of(near, &Self::refusing(e, g))
    }

    /// The gate policies that refused: every policy of an SCP or RCP level
    /// none of whose policies allowed; the boundary, the session policy
    /// when their gate is shut.
    fn refusing(e: &Evals<'_>, g: &Gates) -> Vec<Refusing> {
        let mut out = Vec::new();
        for levels in [&e.scp, &e.rcp].into_iter().flatten() {
            for level in levels {
                if !level.iter().any(PolicyEval::allows) {
                    out.extend(level.iter().map(|x| (x.id.clone(), x.kind, x.level)));
                }
            }
        }
        let shut = [(&e.boundary, g.boundary), (&e.session, g.session)];
        for (eval, open) in shut {
            if let Some(x) = eval.as_ref().filter(|_| !open) {
                out.push((x.id.clone(), x.kind, x.level));
            }
        }
        out
    }

    /// Note a near miss of `st` (an Allow statement of a granting kind,
    /// with explain on).
    fn note_near(
        &mut self,
        id: &Arc<str>,
        st: &Statement,
        (kind, level): (PolicyKind, Option<u32>),
        failed: Failed,
    ) {
        if !self.req.explain || st.effect != Effect::Allow {
            return;
        }
        let (index, position) = (Some(st.index), Some(st.position));
        let statement = MatchedStatement {
            kind,
            level,
            effect: st.effect,
            policy_id: Arc::clone(id),
            sid: st.sid.as_ref().map(Arc::clone),
            index,
            position,
        };
        self.near.push(NearMiss { failed, statement });
    }

    fn eval_policy<'p>(
        &mut self,
        id: Arc<str>,
        document: &'p PolicyDocument,
        kind: PolicyKind,
        level: Option<u32>,
        has_boundary: bool,
    ) -> PolicyEval<'p> {
        let mut hits = Vec::new();
        for st in &document.statements {
            if !self.action_matches(&st.action) {
                continue;
            }
            if self.ctx.server_clock && mentions_clock(st) {
                self.clock_read = true;
            }
            // A trust policy names no resource: it speaks of its role (U45).
            let resource_ok = match &st.resource {
                Some(block) => self.resource_matches(block, kind),
                None => kind == PolicyKind::Trust,
            };
            let strength = if kind.has_principals() {
                match &st.principal {
                    Some(block) => self.principal_matches(block, has_boundary),
                    None => None,
                }
            } else {
                Some(Strength::Direct)
            };
            if !resource_ok {
                if strength.is_some() {
                    self.note_near(&id, st, (kind, level), Failed::Resource);
                }
                continue;
            }
            let Some(strength) = strength else { continue };
            // Every condition is evaluated, for missing_context_keys (§8).
            let mut all = true;
            let mut first_false = None;
            for (i, c) in st.conditions.iter().enumerate() {
                if c.op.reports_missing()
                    && self.ctx.get(&c.key, kind).is_none()
                    && !caller_value_ignored(
                        &c.key,
                        self.req,
                        &self.caller,
                        self.trust_session_tags,
                    )
                {
                    self.missing.insert(c.key.to_string());
                }
                if !self.condition(c, kind) {
                    all = false;
                    first_false.get_or_insert((i, c));
                }
            }
            if all {
                hits.push(Hit { st, strength });
            } else if let Some((i, c)) = first_false {
                let request = self.ctx.get(&c.key, kind).map(|e| {
                    let mut values = e.values.clone();
                    values.sort();
                    values
                });
                let failed = Failed::Condition {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    operator: c.op.to_string(),
                    key: c.key.to_string(),
                    request,
                    policy: c.written_values.iter().map(|v| v.to_string()).collect(),
                };
                self.note_near(&id, st, (kind, level), failed);
            }
        }
        PolicyEval {
            id,
            kind,
            level,
            hits,
        }
    }

    fn level_evals<'p>(
        &mut self,
        levels: Option<&'p Vec<Vec<Arc<crate::bundle::Policy>>>>,
        kind: PolicyKind,
        has_boundary: bool,
    ) -> Option<Vec<Vec<PolicyEval<'p>>>> {
        let levels = levels?;
        let mut out = Vec::with_capacity(levels.len());
        for (l, level) in levels.iter().enumerate() {
            let l = u32::try_from(l).unwrap_or(u32::MAX);
            let mut evals = Vec::with_capacity(level.len());
            for p in level {
                evals.push(self.eval_policy(
                    p.id.clone(),
                    &p.document,
                    kind,
                    Some(l),
                    has_boundary,
                ));
            }
            out.push(evals);
        }
        Some(out)
    }

    fn action_matches(&self, block: &Block<ActionPattern>) -> bool {
        let any = block.items.iter().any(|p| match p {
            ActionPattern::Any => true,
            ActionPattern::Named { service, name } => {
                **service == *self.req.service()
                    && glob::matches(
                        &glob::resolve(&Template::plain(name), true, &|_| None).unwrap_or_default(),
                        self.req.name(),
                        false,
                    )
            }
        });
        any != block.negated
    }

    fn resource_matches(&self, block: &Block<ResourcePattern>, kind: PolicyKind) -> bool {
        let any = block.items.iter().any(|p| match p {
            ResourcePattern::Any => true,
            ResourcePattern::Arn(arn) => self.arn_resource_matches(arn, kind),
        });
        any != block.negated
    }

    /// §2.4: piece by piece, the first five ignoring case. A short pattern
    /// (U43) stands for itself followed by `*` pieces, except in a policy
    /// that names principals, where one without any wildcard names nothing.
    fn arn_resource_matches(&self, pattern: &ArnPattern, kind: PolicyKind) -> bool {
        let Some(pieces) = split_arn(&self.req.resource) else {
            return false;
        };
        let lookup = |k: &str| self.ctx.var(k, kind);
        let mut written: Vec<Template> = pattern.pieces.to_vec();
        if written.len() < 6 {
            if kind.has_principals() && written.iter().all(|p| !p.has_wildcard()) {
                return false;
            }
            written.resize(6, Template::plain("*"));
        }
        written
            .iter()
            .zip(pieces.iter())
            .enumerate()
            .all(|(i, (p, r))| {
                glob::resolve(p, true, &lookup).is_some_and(|toks| glob::matches(&toks, r, i < 5))
            })
    }

    fn entry_strength(&self, entry: &PrincipalEntry) -> Option<Strength> {
        let c = &self.caller;
        match entry {
            PrincipalEntry::Everyone => Some(Strength::Direct),
            PrincipalEntry::Account(a) => (c.account == Some(&**a)).then_some(Strength::Account),
            PrincipalEntry::Arn(arn) => {
                let text = arn.to_string();
                match arn {
                    PrincipalArn::User { .. } => (c.form == Form::User
                        && c.self_arn == Some(&*text))
                    .then_some(Strength::Direct),
                    PrincipalArn::Role { .. } => {
                        (matches!(c.form, Form::RoleArn | Form::AssumedRole)
                            && c.role_arn == Some(&*text))
                        .then_some(Strength::Role)
                    }
                    PrincipalArn::AssumedRole { .. } => (c.form == Form::AssumedRole
                        && c.self_arn == Some(&*text))
                    .then_some(Strength::Direct),
                    PrincipalArn::FederatedUser { .. } => (c.form == Form::FederatedUser
                        && c.self_arn == Some(&*text))
                    .then_some(Strength::Direct),
                    PrincipalArn::Root { account, .. } => {
                        (c.account == Some(&**account)).then_some(Strength::Account)
                    }
                }
            }
            PrincipalEntry::Service(s) => (c.service == Some(&**s)).then_some(Strength::Direct),
            PrincipalEntry::Unmatchable(_) => None,
        }
    }

    fn principal_matches(
        &self,
        block: &Block<PrincipalEntry>,
        has_boundary: bool,
    ) -> Option<Strength> {
        if !block.negated {
            // Principal: the strongest entry that names the caller.
            let mut best = None;
            for entry in &block.items {
                best = best.max(self.entry_strength(entry));
            }
            return best;
        }
        // NotPrincipal: exempt only when every identity of the caller's chain
        // is listed, and never a caller with a permissions boundary (U9).
        if has_boundary {
            return Some(Strength::Direct);
        }
        let names = |link: &Link<'_>| block.items.iter().any(|e| link.named_by(e));
        let chain = self.chain();
        let exempt = chain.iter().all(names);
        (!exempt).then_some(Strength::Direct)
    }

    /// The identities a request comes from, outermost first: the account,
    /// then the role, then the session or user itself; a service alone.
    fn chain(&self) -> Vec<Link<'_>> {
        let c = &self.caller;
        let account = Link::Account(c.account);
        match c.form {
            Form::Service => vec![Link::Service(c.service)],
            Form::Root => vec![account],
            Form::RoleArn => vec![account, Link::Arn(c.role_arn)],
            Form::AssumedRole => vec![account, Link::Arn(c.role_arn), Link::Arn(c.self_arn)],
            Form::User | Form::FederatedUser => vec![account, Link::Arn(c.self_arn)],
        }
    }

    /// §3 pseudocode.
    fn condition(&self, c: &Condition, kind: PolicyKind) -> bool {
        // U46: a condition none of whose values its operator can read is false.
        if c.values.iter().all(|v| *v == ConditionValue::Unreadable) {
            return false;
        }
        let entry = self.ctx.get(&c.key, kind);
        let present = entry.is_some();
        if c.op.base == BaseOperator::Null {
            return c
                .values
                .iter()
                .any(|v| matches!(v, ConditionValue::Null(b) if *b != present));
        }
        let vals: &[String] = entry.map_or(&[], |e| e.values.as_slice());
        let neg = c.op.base.negated();
        let pos = c.op.base.positive();
        let lookup = |k: &str| self.ctx.var(k, kind);
        let resolved: Vec<Resolved> = c
            .values
            .iter()
            .filter_map(|v| resolve_value(v, &lookup))
            .collect();
        let is_arn_operator = c.op.base.value_type() == ValueType::Arn;
        let one = |rv: &str| {
            // U38: a value that is not an ARN satisfies no ARN operator,
            // positive or negated.
            if is_arn_operator && split_arn(rv).is_none() {
                return false;
            }
            let any = resolved.iter().any(|pv| compare(pos, rv, pv));
            if neg { !any } else { any }
        };
        match c.op.set {
            Some(SetQualifier::ForAllValues) => {
                !present || vals.is_empty() || vals.iter().all(|v| one(v))
            }
            Some(SetQualifier::ForAnyValue) => present && vals.iter().any(|v| one(v)),
            None => match vals {
                [] => c.op.if_exists || neg,
                [v] => one(v),
                _ => false,
            },
        }
    }

    // === The decision (§5–§7), phase by phase ===
    //
    // context (`derive_context`) → participants → statements → gates →
    // allow path → key state → result, as the compiled evaluator names them.

    /// The policies that take part (§5 step 1, §6, §7.1).
    fn participants(&self, bundle: &'a Bundle, resource: &ResourceFacts<'a>) -> Participants<'a> {
        let kms = resource.is_kms_key;
        let retire = kms && is_retire_grant(self.req);
        let trust = !kms && resource.is_role() && is_trust_action(self.req);
        let key = resource.entry.and_then(|e| e.key.as_ref());
        let account_of = |a: Option<&str>| a.and_then(|a| bundle.accounts.get(a));
        // SCPs bind every caller but AWS services and service-linked roles.
        let scp = match self.caller.bound_by_scps() {
            true => account_of(self.caller.account).and_then(|a| a.scps.as_ref()),
            false => None,
        };
        // RCPs never bind RetireGrant or an AWS managed key.
        let rcp = match retire || key.is_some_and(|k| k.aws_managed) {
            true => None,
            false => account_of(resource.account).and_then(|a| a.rcps.as_ref()),
        };
        let grants = match kms {
            true => bundle
                .grants_by_key
                .get(self.req.resource.as_str())
                .map(|g| g.iter().collect())
                .unwrap_or_default(),
            false => Vec::new(),
        };
        Participants {
            kms,
            retire,
            trust,
            cross: is_cross_account(&self.caller, resource),
            scp,
            rcp,
            // A role's entry holds its trust policy: it speaks to the
            // trust actions only (U45).
            rbp: match (retire, resource.is_role(), trust) {
                (true, _, _) | (false, true, false) => None,
                _ => resource.entry.and_then(|e| e.policy.as_deref()),
            },
            rbp_kind: match (kms, trust) {
                (true, _) => PolicyKind::KeyPolicy,
                (false, true) => PolicyKind::Trust,
                (false, false) => PolicyKind::Resource,
            },
            grants,
            key,
            no_key_policy: kms && resource.entry.is_none(),
        }
    }

    /// Every statement of every participating policy (§5 steps 2–3).
    fn statements(&mut self, p: &Participants<'a>) -> Evals<'a> {
        let identity = self.caller.identity;
        let has_boundary = identity.is_some_and(|i| i.boundary.is_some());
        let one = |it: &mut Self, policy: &'a crate::bundle::Policy, kind| {
            it.eval_policy(
                policy.id.clone(),
                &policy.document,
                kind,
                None,
                has_boundary,
            )
        };
        let scp = self.level_evals(p.scp, PolicyKind::Scp, has_boundary);
        let rcp = self.level_evals(p.rcp, PolicyKind::Rcp, has_boundary);
        let rbp = p.rbp.map(|policy| one(self, policy, p.rbp_kind));
        let mut identities = Vec::new();
        if let Some(i) = identity {
            let own = i.policies.iter().map(|x| (x, PolicyKind::Identity));
            let groups = i
                .groups
                .iter()
                .flat_map(|g| g.policies.iter().map(|x| (x, PolicyKind::Group)));
            for (policy, kind) in own.chain(groups) {
                identities.push(one(self, policy, kind));
            }
        }
        let boundary = identity
            .and_then(|i| i.boundary.as_ref())
            .map(|b| one(self, b, PolicyKind::Boundary));
        let session = self.req.session_policy.as_ref().map(|sp| {
            self.eval_policy(
                Arc::from("session_policy"),
                &sp.document,
                PolicyKind::Session,
                None,
                has_boundary,
            )
        });
        Evals {
            scp,
            rcp,
            rbp,
            identities,
            boundary,
            session,
        }
    }

    /// The gates (§5 steps 4–6, §6, §7.1–§7.2).
    fn gates(&self, p: &Participants<'_>, e: &Evals<'_>) -> Gates {
        // Each level of an organization's policies needs an Allow.
        let every_level_allows = |levels: &Option<Vec<Vec<PolicyEval<'_>>>>| match levels {
            None => true,
            Some(ls) => ls.iter().all(|l| l.iter().any(PolicyEval::allows)),
        };
        let boundary = match &e.boundary {
            None => true,
            Some(b) => b.allows(),
        };
        // §5 step 6: a role session's session policy must allow if there is
        // one; a federated user always has one, and it must allow.
        let session = match (self.caller.form, &e.session) {
            (Form::AssumedRole | Form::RoleArn, None) => true,
            (Form::AssumedRole | Form::RoleArn | Form::FederatedUser, Some(s)) => s.allows(),
            (Form::FederatedUser, None) => false,
            _ => true,
        };
        let root = self.caller.form == Form::Root;
        let any_identity_allow = e.identities.iter().any(PolicyEval::allows);
        let op = (self.req.service(), self.req.name());
        Gates {
            scp: every_level_allows(&e.scp),
            rcp: every_level_allows(&e.rcp),
            boundary,
            session,
            identity: (root || any_identity_allow) && boundary && session,
            cross_account_op: !p.kms || !p.cross || kms::cross_account_allowed(op.0, op.1),
            key_policy: !p.no_key_policy,
        }
    }

    /// The path that allows, with the statements it lists (§5 steps 4–7,
    /// §7.3–§7.4).
    fn allow(&self, p: &Participants<'_>, e: &Evals<'_>, g: &Gates) -> Option<Allowed> {
        if !(g.cross_account_op && g.rcp && g.scp && g.key_policy) {
            return None;
        }
        let mut allowed = if p.trust {
            // Like a key policy, without grants (U45).
            self.key_allow(p, e, g)
        } else if !p.kms {
            self.resource_allow(p, e, g)
        } else if p.retire {
            self.retire_allow(p, e, g)
        } else {
            self.key_allow(p, e, g)
                .or_else(|| self.grant_allow(p, e, g))
        }?;
        let mut list = e.org_allows();
        list.append(&mut allowed.list);
        allowed.list = list;
        Some(allowed)
    }

    /// Any resource but a KMS key (§5 step 7).
    fn resource_allow(&self, p: &Participants<'_>, e: &Evals<'_>, g: &Gates) -> Option<Allowed> {
        let rbp =
            |s: Option<Strength>| e.rbp.as_ref().map(|r| r.allows_with(s)).unwrap_or_default();
        let plain = |list| Some(Allowed { list, grant: None });
        if p.cross {
            // Across accounts both sides must allow.
            let on_resource = rbp(None);
            if on_resource.is_empty() || !g.identity {
                return None;
            }
            return plain([on_resource, e.path_allows(Strength::Account)].concat());
        }
        let direct = rbp(Some(Strength::Direct));
        let role = rbp(Some(Strength::Role));
        if !direct.is_empty() {
            plain(direct)
        } else if !role.is_empty() && g.boundary && g.session {
            plain([role, e.path_allows(Strength::Role)].concat())
        } else if g.identity {
            plain(e.path_allows(Strength::Account))
        } else {
            None
        }
    }

    /// The key policy (§7.3 steps 5–6): a statement naming the caller or
    /// its role decides for its own account; across accounts, and for a
    /// statement naming the account, the identity path must allow too.
    fn key_allow(&self, p: &Participants<'_>, e: &Evals<'_>, g: &Gates) -> Option<Allowed> {
        let kp = |s: Strength| {
            e.rbp
                .as_ref()
                .map(|r| r.allows_with(Some(s)))
                .unwrap_or_default()
        };
        let with = |list: Vec<MatchedStatement>, rest: Vec<MatchedStatement>| {
            Some(Allowed {
                list: [list, rest].concat(),
                grant: None,
            })
        };
        let direct = kp(Strength::Direct);
        if !direct.is_empty() {
            return match (p.cross, g.identity) {
                (false, _) => with(direct, Vec::new()),
                (true, true) => with(direct, e.path_allows(Strength::Account)),
                (true, false) => None,
            };
        }
        let role = kp(Strength::Role);
        if !role.is_empty() && g.boundary && g.session {
            return match (p.cross, g.identity) {
                (false, _) => with(role, e.path_allows(Strength::Role)),
                (true, true) => with(role, e.path_allows(Strength::Account)),
                (true, false) => None,
            };
        }
        let account = kp(Strength::Account);
        if !account.is_empty() && g.identity {
            return with(account, e.path_allows(Strength::Account));
        }
        None
    }

    /// Whether a principal of `strength` reaches the caller: a role's
    /// through the boundary and session policy, an account's through the
    /// whole identity path.
    fn reached(g: &Gates, s: Strength) -> bool {
        match s {
            Strength::Direct => true,
            Strength::Role => g.boundary && g.session,
            Strength::Account => g.identity,
        }
    }

    /// A grant on the key (§7.3 step 7, §7.4).
    fn grant_allow(&self, p: &Participants<'_>, e: &Evals<'_>, g: &Gates) -> Option<Allowed> {
        let (grant, s) = p.grants.iter().find_map(|grant| {
            if !self.grant_applies(grant) {
                return None;
            }
            let s = self.entry_strength(&grant.grantee)?;
            Self::reached(g, s).then_some((grant, s))
        })?;
        Some(Allowed::by_grant(&grant.grant_id, e.path_allows(s)))
    }

    /// §7.4: RetireGrant is authorized by grants alone, through the
    /// retiring principal or a grantee the grant lets retire it.
    fn retire_allow(&self, p: &Participants<'_>, e: &Evals<'_>, g: &Gates) -> Option<Allowed> {
        let wanted = self.ctx.map.get("verdict:grantid").map(|e| &e.values);
        for grant in &p.grants {
            if wanted.is_some_and(|w| *w != [grant.grant_id.to_string()]) {
                continue;
            }
            let mut strengths = self.retiring_strengths(grant);
            strengths.sort_by(|a, b| b.cmp(a));
            if let Some(s) = strengths.into_iter().find(|s| Self::reached(g, *s)) {
                return Some(Allowed::by_grant(&grant.grant_id, e.path_allows(s)));
            }
        }
        None
    }

    /// How strongly the principals that may retire `grant` name the caller.
    fn retiring_strengths(&self, grant: &Grant) -> Vec<Strength> {
        let mut strengths = Vec::new();
        if let Some(r) = &grant.retiring_principal {
            strengths.extend(self.entry_strength(r));
        }
        if grant.operations.contains(&GrantOperation::RetireGrant) {
            strengths.extend(self.entry_strength(&grant.grantee));
        }
        strengths
    }

    /// The key state gate (§7.5), on a KMS request that was allowed.
    fn refusing_key_state(&self, p: &Participants<'_>) -> Option<KeyState> {
        let key = p.key?;
        let refuses = kms::key_state_refuses(self.req.service(), self.req.name(), key.state);
        refuses.then_some(key.state)
    }

    /// explain's fields (§8).
    fn explain(&self, p: &Participants<'_>, e: &Evals<'_>, r: &Reached) -> Box<Explanation> {
        let levels = |levels: &Option<Vec<Vec<PolicyEval<'_>>>>| match levels {
            None => KindDecision::NotApplicable,
            Some(ls) => KindDecision::of(
                ls.iter().all(|l| l.iter().any(PolicyEval::allows)),
                ls.iter().flatten().any(PolicyEval::denies),
            ),
        };
        let of_kind = |k: PolicyKind| {
            let evals: Vec<_> = e.identities.iter().filter(|x| x.kind == k).collect();
            match evals.is_empty() {
                true => KindDecision::NotApplicable,
                false => KindDecision::of(
                    evals.iter().any(|x| x.allows()),
                    evals.iter().any(|x| x.denies()),
                ),
            }
        };
        let single = |x: &Option<PolicyEval<'_>>| {
            x.as_ref()
                .map_or(KindDecision::NotApplicable, PolicyEval::kind_decision)
        };
        let caller = vec![
            (PolicyKind::Scp, levels(&e.scp)),
            (PolicyKind::Identity, of_kind(PolicyKind::Identity)),
            (PolicyKind::Group, of_kind(PolicyKind::Group)),
            (PolicyKind::Boundary, single(&e.boundary)),
            (PolicyKind::Session, single(&e.session)),
        ];
        let mut resource = vec![
            (PolicyKind::Rcp, levels(&e.rcp)),
            (p.rbp_kind, single(&e.rbp)),
        ];
        if p.kms {
            resource.push((PolicyKind::Grant, self.grant_kind_decision(p)));
        }
        let (caller_side, resource_side) = Explanation::sides(p.cross, caller, resource);
        let g = &r.gates;
        Box::new(Explanation {
            allowed_by_organizations: g.scp,
            allowed_by_boundary: g.boundary,
            allowed_by_session: g.session,
            allowed_by_rcp: g.rcp,
            grant_id: r.grant.clone(),
            blocked_by: match r.outcome {
                Outcome::ImplicitDeny => g.blocked_by(r.key_state.is_some()),
                _ => Vec::new(),
            },
            key_state: r.key_state,
            caller_side,
            resource_side,
            ignored_context_keys: self.ctx.ignored.clone(),
            near_misses: match r.outcome {
                Outcome::ImplicitDeny => self.near_misses(p, e, g),
                _ => Vec::new(),
            },
        })
    }

    /// explain's grant decision: some grant on the key would serve this
    /// operation for this caller, whatever the other gates say.
    fn grant_kind_decision(&self, p: &Participants<'_>) -> KindDecision {
        if p.grants.is_empty() {
            return KindDecision::NotApplicable;
        }
        let serves = |grant: &Grant| match p.retire {
            true => !self.retiring_strengths(grant).is_empty(),
            false => self.grant_applies(grant) && self.entry_strength(&grant.grantee).is_some(),
        };
        KindDecision::of(p.grants.iter().any(|g| serves(g)), false)
    }

    /// The phases in order.
    fn decide(&mut self, bundle: &'a Bundle, resource: &ResourceFacts<'a>) -> Decision {
        let p = self.participants(bundle, resource);
        let e = self.statements(&p);
        let gates = self.gates(&p, &e);
        let denies = e.denies();
        let mut reached = Reached {
            gates,
            outcome: Outcome::ImplicitDeny,
            grant: None,
            key_state: None,
        };
        let matched = if !denies.is_empty() {
            reached.outcome = Outcome::ExplicitDeny;
            denies
        } else if let Some(allowed) = self.allow(&p, &e, &gates) {
            match self.refusing_key_state(&p) {
                Some(state) => {
                    reached.key_state = Some(state);
                    Vec::new()
                }
                None => {
                    reached.outcome = Outcome::Allow;
                    reached.grant = allowed.grant;
                    allowed.list
                }
            }
        } else {
            Vec::new()
        };
        let mut matched: MatchedList = matched.into();
        normalize_matched(&mut matched);
        let explanation = self.req.explain.then(|| self.explain(&p, &e, &reached));
        Decision {
            outcome: reached.outcome,
            matched,
            missing_context_keys: std::mem::take(&mut self.missing)
                .into_iter()
                .map(Arc::from)
                .collect(),
            bundle_revision: bundle.revision.clone(),
            bundle_serial: bundle.serial,
            explanation,
            reads_server_clock: self.clock_read,
        }
    }

    /// §7.4: whether grant `g` serves this request: its operations hold the
    /// request's, and its constraint holds (for `CreateGrant`, U34: the
    /// grant asked for stays within it).
    fn grant_applies(&self, g: &Grant) -> bool {
        let op = match (
            self.req.service(),
            GrantOperation::parse_ignore_case(self.req.name()),
        ) {
            ("kms", Some(op)) if g.operations.contains(&op) => op,
            _ => return false,
        };
        match op {
            GrantOperation::DescribeKey | GrantOperation::RetireGrant => true,
            GrantOperation::CreateGrant => self.create_grant_within(g),
            _ => g
                .constraint
                .as_ref()
                .is_none_or(|c| self.context_satisfies(c)),
        }
    }

    /// The grants to the caller for this operation whose constraint the
    /// request's encryption context does not meet, with the first pair it
    /// lacks.
    fn grant_misses(&self, p: &Participants<'_>) -> Vec<NearMiss> {
        if p.retire || self.req.service() != "kms" {
            return Vec::new();
        }
        let Some(op) = GrantOperation::parse_ignore_case(self.req.name()) else {
            return Vec::new();
        };
        let plain_use = !matches!(
            op,
            GrantOperation::DescribeKey | GrantOperation::RetireGrant | GrantOperation::CreateGrant
        );
        let mut out = Vec::new();
        for grant in &p.grants {
            if op == GrantOperation::CreateGrant
                && grant.operations.contains(&op)
                && self.entry_strength(&grant.grantee).is_some()
                && let Some(failed) = self.create_grant_beyond(grant)
            {
                out.push(NearMiss {
                    statement: MatchedStatement::grant(&grant.grant_id),
                    failed,
                });
            }
            let Some(c) = grant.constraint.as_ref() else {
                continue;
            };
            if !plain_use
                || !grant.operations.contains(&op)
                || self.entry_strength(&grant.grantee).is_none()
                || self.context_satisfies(c)
            {
                continue;
            }
            let (GrantConstraint::Equals(pairs) | GrantConstraint::Subset(pairs)) = c;
            let lacking = pairs
                .iter()
                .find(|pair| !self.context_has(pair))
                .map(|(k, v)| (k.to_string(), v.to_string()));
            out.push(NearMiss {
                statement: MatchedStatement::grant(&grant.grant_id),
                failed: Failed::GrantConstraint { missing: lacking },
            });
        }
        out
    }

    /// Whether the request's encryption context holds this pair (as one value).
    fn context_has(&self, (k, v): &(Box<str>, Box<str>)) -> bool {
        let skip = ENCRYPTION_CONTEXT_PREFIX.chars().count();
        self.ctx.map.iter().any(|(lower, e)| {
            lower.starts_with(ENCRYPTION_CONTEXT_PREFIX)
                && e.key.chars().skip(skip).collect::<String>() == **k
                && e.values == [v.to_string()]
        })
    }

    /// U34: the operations and the constraint type a `CreateGrant` asks for
    /// lie within grant `g`.
    fn create_grant_within(&self, g: &Grant) -> bool {
        self.create_grant_beyond(g).is_none()
    }

    /// What a `CreateGrant` asks for that grant `g` does not give: the
    /// first operation outside it (or no `kms:GrantOperations` at all),
    /// else a constraint type that does not keep its constraint.
    fn create_grant_beyond(&self, g: &Grant) -> Option<Failed> {
        let values = |k: &str| self.ctx.map.get(k).map(|e| e.values.as_slice());
        let failed = |key: &str, value: Option<&String>| Failed::GrantRequest {
            key: key.to_string(),
            value: value.cloned(),
        };
        let Some(asked) = values("kms:grantoperations") else {
            return Some(failed("kms:grantoperations", None));
        };
        let outside = asked
            .iter()
            .find(|v| GrantOperation::parse(v).is_none_or(|o| !g.operations.contains(&o)));
        if outside.is_some() {
            return Some(failed("kms:grantoperations", outside));
        }
        let kind = values("kms:grantconstrainttype");
        let constraint_within = match (&g.constraint, kind) {
            (None, _) => true,
            (Some(GrantConstraint::Equals(_)), Some([t])) => t == "EncryptionContextEquals",
            (Some(GrantConstraint::Subset(_)), Some([t])) => {
                ["EncryptionContextEquals", "EncryptionContextSubset"].contains(&t.as_str())
            }
            _ => false,
        };
        (!constraint_within)
            .then(|| failed("kms:grantconstrainttype", kind.and_then(|k| k.first())))
    }

    /// Whether the request's encryption context (its single-valued
    /// `kms:EncryptionContext:` keys, as spelt) satisfies a constraint.
    fn context_satisfies(&self, c: &GrantConstraint) -> bool {
        let skip = ENCRYPTION_CONTEXT_PREFIX.chars().count();
        let context: Vec<(String, &[String])> = self
            .ctx
            .map
            .iter()
            .filter(|(lower, _)| lower.starts_with(ENCRYPTION_CONTEXT_PREFIX))
            .map(|(_, e)| (e.key.chars().skip(skip).collect(), e.values.as_slice()))
            .collect();
        let present = |(k, v): &(Box<str>, Box<str>)| {
            context
                .iter()
                .any(|(ck, cv)| **ck == **k && *cv == [v.to_string()])
        };
        match c {
            GrantConstraint::Subset(want) => want.iter().all(present),
            GrantConstraint::Equals(want) => {
                context.len() == want.len() && want.iter().all(present)
            }
        }
    }
}

/// Whether a statement mentions a clock key (in a condition or a variable).
fn mentions_clock(st: &Statement) -> bool {
    let var_is_clock = |t: &Template| t.variables().any(|v| CLOCK_KEYS.contains(&&*v.key));
    st.conditions.iter().any(|c| {
        CLOCK_KEYS.contains(&&*c.key)
            || c.values.iter().any(|v| match v {
                ConditionValue::String(t) | ConditionValue::Bool(BoolValue::Template(t)) => {
                    var_is_clock(t)
                }
                ConditionValue::Arn(a) => a.pieces.iter().any(var_is_clock),
                _ => false,
            })
    }) || st.resource.as_ref().is_some_and(|b| {
        b.items.iter().any(|r| match r {
            ResourcePattern::Arn(a) => a.pieces.iter().any(var_is_clock),
            ResourcePattern::Any => false,
        })
    })
}

// === Condition values ===

/// A policy value after variable substitution.
enum Resolved {
    /// String operators: the literal text and its glob tokens.
    Both(String, Vec<Tok>),
    /// ARN pieces (ARN operators); `None` when the value has fewer than six.
    Arn(Option<Vec<Vec<Tok>>>),
    Number(value::OwnedDecimal),
    Date(value::OwnedDecimal),
    Bool(bool),
    Binary(Box<[u8]>),
    Ip(ipnet::IpNet),
}

fn resolve_value<'a>(
    v: &ConditionValue,
    lookup: &dyn Fn(&str) -> Option<&'a str>,
) -> Option<Resolved> {
    Some(match v {
        ConditionValue::String(t) => {
            let toks = glob::resolve(t, true, lookup)?;
            let text = literal(glob::resolve(t, false, lookup)?);
            Resolved::Both(text, toks)
        }
        ConditionValue::Number(d) => Resolved::Number(d.clone()),
        ConditionValue::Date(d) => Resolved::Date(d.clone()),
        ConditionValue::Bool(BoolValue::Literal(b)) => Resolved::Bool(*b),
        ConditionValue::Bool(BoolValue::Template(t)) => {
            let text = literal(glob::resolve(t, false, lookup)?);
            Resolved::Bool(value::parse_bool(&text)?)
        }
        ConditionValue::Binary(b) => Resolved::Binary(b.clone()),
        ConditionValue::Ip(n) => Resolved::Ip(*n),
        ConditionValue::Arn(a) => {
            if a.pieces.len() != 6 {
                Resolved::Arn(None)
            } else {
                let mut pieces = Vec::with_capacity(6);
                for p in &a.pieces {
                    pieces.push(glob::resolve(p, true, lookup)?);
                }
                Resolved::Arn(Some(pieces))
            }
        }
        ConditionValue::Null(_) | ConditionValue::Unreadable => return None,
    })
}

/// The text of a resolved template read without wildcards.
fn literal(toks: Vec<Tok>) -> String {
    toks.into_iter()
        .filter_map(|t| match t {
            Tok::Ch(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// The positive comparison of a request value with a resolved policy value.
fn compare(op: BaseOperator, rv: &str, pv: &Resolved) -> bool {
    use BaseOperator as O;
    match (op, pv) {
        (O::StringEquals, Resolved::Both(text, _)) => rv == text,
        (O::StringEqualsIgnoreCase, Resolved::Both(text, _)) => fold(rv) == fold(text),
        (O::StringLike, Resolved::Both(_, toks)) => glob::matches(toks, rv, false),
        (_, Resolved::Number(p) | Resolved::Date(p)) => {
            let (want, parsed) = match pv {
                Resolved::Number(_) => (ValueType::Numeric, Decimal::parse(rv)),
                _ => (ValueType::Date, value::parse_date(rv)),
            };
            op.value_type() == want && parsed.is_some_and(|r| op.admits(r.cmp(&p.as_decimal())))
        }
        // U13: `Bool` reads `true` (any case) as true, anything else as false.
        (O::Bool, Resolved::Bool(b)) => *b == matches!(rv.to_ascii_lowercase().as_str(), "true"),
        (O::BinaryEquals, Resolved::Binary(b)) => {
            value::parse_base64(rv).is_some_and(|r| *r == **b)
        }
        (O::IpAddress, Resolved::Ip(net)) => {
            value::parse_ip_addr(rv).is_some_and(|a| value::ip_in(net, a))
        }
        (O::ArnEquals | O::ArnLike, Resolved::Arn(pieces)) => {
            let (Some(pieces), Some(parts)) = (pieces, split_arn(rv)) else {
                return false;
            };
            pieces
                .iter()
                .zip(parts.iter())
                .all(|(p, r)| glob::matches(p, r, false))
        }
        _ => false,
    }
}

//! The reference interpreter: the evaluation logic of evaluation.md §5–§8,
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

/// The final context (evaluation.md §1), keyed by lower-cased name.
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

fn derive_context(
    bundle: &Bundle,
    req: &Request,
    caller: &CallerFacts<'_>,
    resource: &ResourceFacts<'_>,
    opts: &EvalOptions,
    now: SystemTime,
) -> Ctx {
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
    let put = |map: &mut BTreeMap<String, Entry>, key: &str, values: Vec<String>| {
        map.insert(
            key.to_lowercase(),
            Entry {
                key: key.to_owned(),
                values,
            },
        );
    };
    let one = |s: &str| vec![s.to_owned()];

    // Who is calling.
    let principal_arn = match caller.form {
        Form::Root | Form::User | Form::FederatedUser => caller.self_arn,
        Form::RoleArn | Form::AssumedRole => caller.role_arn,
        Form::Service => None,
    };
    if let Some(a) = principal_arn {
        put(&mut map, "aws:PrincipalArn", one(a));
    }
    let principal_type = match caller.form {
        Form::Root => Some("Account"),
        Form::User => Some("User"),
        Form::RoleArn | Form::AssumedRole => Some("AssumedRole"),
        Form::FederatedUser => Some("FederatedUser"),
        Form::Service => None,
    };
    if let Some(t) = principal_type {
        put(&mut map, "aws:PrincipalType", one(t));
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
        put(&mut map, "aws:userid", vec![u]);
    }
    if let super::request::Caller::Arn(PrincipalArn::User { name, .. }) = &req.caller {
        put(&mut map, "aws:username", one(name));
    }
    if let Some(pa) = caller.account {
        put(&mut map, "aws:PrincipalAccount", one(pa));
        put(&mut map, "kms:CallerAccount", one(pa));
    }
    put(
        &mut map,
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
            put(&mut map, &key, one(&t.value));
        }
    }
    if let Some(acct) = caller.account.and_then(|a| bundle.accounts.get(a)) {
        if let Some(org) = &acct.org_id {
            put(&mut map, "aws:PrincipalOrgID", one(org));
        }
        if let Some(paths) = &acct.org_paths {
            put(
                &mut map,
                "aws:PrincipalOrgPaths",
                paths.iter().map(|p| p.to_string()).collect(),
            );
        }
    }

    // What is being accessed.
    if let Some(entry) = resource.entry {
        for t in &entry.tags {
            put(
                &mut map,
                &format!("aws:ResourceTag/{}", t.key),
                one(&t.value),
            );
        }
        if let Some(key) = &entry.key {
            if !key.aliases.is_empty() {
                put(
                    &mut map,
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
                        put(&mut map, name, one(v));
                    }
                }
            }
        }
    }
    if resource.account_known
        && let Some(ra) = resource.account
    {
        put(&mut map, "aws:ResourceAccount", one(ra));
    }

    // The clock.
    let mut server_clock = false;
    let current = map.get("aws:currenttime").map(|e| e.values.clone());
    let epoch = map.get("aws:epochtime").map(|e| e.values.clone());
    match (current, epoch) {
        (Some(_), Some(_)) => {}
        (Some(ct), None) => {
            if let [v] = ct.as_slice()
                && let Some(d) = value::parse_date(v)
            {
                put(&mut map, "aws:EpochTime", vec![d.to_string()]);
            }
        }
        (None, Some(et)) => {
            if let [v] = et.as_slice()
                && let Some(t) = v.parse::<i64>().ok().and_then(format_time)
            {
                put(&mut map, "aws:CurrentTime", vec![t]);
            }
        }
        (None, None) => {
            server_clock = true;
            let secs = match now.duration_since(SystemTime::UNIX_EPOCH) {
                Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
            };
            put(&mut map, "aws:EpochTime", vec![secs.to_string()]);
            if let Some(t) = format_time(secs) {
                put(&mut map, "aws:CurrentTime", vec![t]);
            }
        }
    }

    // Encryption context keys, in their original spelling.
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
            put(&mut map, "kms:EncryptionContextKeys", keys);
        }
    }
    if !map.contains_key("aws:requestedregion")
        && let Some(region) = resource.region
    {
        put(&mut map, "aws:RequestedRegion", one(region));
    }
    Ctx {
        map,
        server_clock,
        ignored,
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

    fn allow_list(&self) -> Vec<MatchedStatement> {
        self.with_effect(Effect::Allow)
            .map(|h| self.matched(h))
            .collect()
    }

    fn allows_with(&self, strength: Strength) -> Vec<MatchedStatement> {
        self.with_effect(Effect::Allow)
            .filter(|h| h.strength == strength)
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

struct Interp<'a> {
    req: &'a Request,
    caller: CallerFacts<'a>,
    ctx: Ctx,
    missing: BTreeSet<String>,
    clock_read: bool,
    trust_session_tags: bool,
}

impl Interp<'_> {
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
            let resource_ok = match &st.resource {
                Some(block) => self.resource_matches(block, kind),
                None => false,
            };
            if !resource_ok {
                continue;
            }
            let strength = if kind.has_principals() {
                match &st.principal {
                    Some(block) => self.principal_matches(block, has_boundary),
                    None => None,
                }
            } else {
                Some(Strength::Direct)
            };
            let Some(strength) = strength else { continue };
            // Every condition is evaluated, for missing_context_keys (§8).
            let mut all = true;
            for c in &st.conditions {
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
                }
            }
            if all {
                hits.push(Hit { st, strength });
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

    /// §2.4: piece by piece; the first five case-insensitively; a short
    /// pattern ending in `*` absorbs the rest of the ARN.
    fn arn_resource_matches(&self, pattern: &ArnPattern, kind: PolicyKind) -> bool {
        let Some(pieces) = split_arn(&self.req.resource) else {
            return false;
        };
        let lookup = |k: &str| self.ctx.var(k, kind);
        let n = pattern.pieces.len();
        if n == 6 {
            return pattern
                .pieces
                .iter()
                .zip(pieces.iter())
                .enumerate()
                .all(|(i, (p, r))| {
                    glob::resolve(p, true, &lookup)
                        .is_some_and(|toks| glob::matches(&toks, r, i < 5))
                });
        }
        let Some(last) = pattern.pieces.last() else {
            return false;
        };
        if !last.ends_with_wildcard() {
            return false;
        }
        for (i, p) in pattern.pieces.iter().enumerate().take(n - 1) {
            let ok = glob::resolve(p, true, &lookup)
                .is_some_and(|toks| pieces.get(i).is_some_and(|r| glob::matches(&toks, r, true)));
            if !ok {
                return false;
            }
        }
        let rest = pieces.get(n - 1..).map(|r| r.join(":")).unwrap_or_default();
        glob::resolve(last, true, &lookup).is_some_and(|toks| glob::matches(&toks, &rest, true))
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
            return block
                .items
                .iter()
                .filter_map(|e| self.entry_strength(e))
                .max();
        }
        // NotPrincipal: exempt only when every identity of the caller's chain
        // is listed, and never a caller with a permissions boundary (U9).
        if has_boundary {
            return Some(Strength::Direct);
        }
        let c = &self.caller;
        let listed_account = block.items.iter().any(|e| match e {
            PrincipalEntry::Everyone => true,
            PrincipalEntry::Account(a) => c.account == Some(&**a),
            _ => false,
        });
        let listed = |arn: Option<&str>| {
            block.items.iter().any(|e| match e {
                PrincipalEntry::Everyone => true,
                PrincipalEntry::Arn(a) => arn.is_some_and(|x| a.to_string() == x),
                _ => false,
            })
        };
        let exempt = match c.form {
            Form::Root => listed_account,
            Form::User | Form::FederatedUser => listed_account && listed(c.self_arn),
            Form::AssumedRole => listed_account && listed(c.role_arn) && listed(c.self_arn),
            Form::RoleArn => listed_account && listed(c.role_arn),
            Form::Service => block.items.iter().any(|e| match e {
                PrincipalEntry::Everyone => true,
                PrincipalEntry::Service(s) => c.service == Some(&**s),
                _ => false,
            }),
        };
        (!exempt).then_some(Strength::Direct)
    }

    /// §3 pseudocode.
    fn condition(&self, c: &Condition, kind: PolicyKind) -> bool {
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
        let one = |rv: &str| {
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

    fn decide(&mut self, bundle: &Bundle, resource: &ResourceFacts<'_>) -> Decision {
        let req = self.req;
        let caller = self.caller;
        let kms = resource.is_kms_key;
        let retire = kms && is_retire_grant(req);
        let cross = is_cross_account(&caller, resource);
        let identity = caller.identity;
        let has_boundary = identity.is_some_and(|i| i.boundary.is_some());
        let key_info = resource.entry.and_then(|e| e.key.as_ref());

        // The policies that take part.
        let scp_levels = if caller.bound_by_scps() {
            caller
                .account
                .and_then(|a| bundle.accounts.get(a))
                .and_then(|a| a.scps.as_ref())
        } else {
            None
        };
        let rcp_levels = if retire || key_info.is_some_and(|k| k.aws_managed) {
            None
        } else {
            resource
                .account
                .and_then(|a| bundle.accounts.get(a))
                .and_then(|a| a.rcps.as_ref())
        };
        let rbp = if retire {
            None
        } else {
            resource.entry.and_then(|e| e.policy.as_deref())
        };
        let rbp_kind = if kms {
            PolicyKind::KeyPolicy
        } else {
            PolicyKind::Resource
        };

        let scp = self.level_evals(scp_levels, PolicyKind::Scp, has_boundary);
        let rcp = self.level_evals(rcp_levels, PolicyKind::Rcp, has_boundary);
        let rbp_eval =
            rbp.map(|p| self.eval_policy(p.id.clone(), &p.document, rbp_kind, None, has_boundary));
        let mut id_evals = Vec::new();
        if let Some(i) = identity {
            for p in &i.policies {
                id_evals.push(self.eval_policy(
                    p.id.clone(),
                    &p.document,
                    PolicyKind::Identity,
                    None,
                    has_boundary,
                ));
            }
            for g in &i.groups {
                for p in &g.policies {
                    id_evals.push(self.eval_policy(
                        p.id.clone(),
                        &p.document,
                        PolicyKind::Group,
                        None,
                        has_boundary,
                    ));
                }
            }
        }
        let pb_eval = identity.and_then(|i| i.boundary.as_ref()).map(|p| {
            self.eval_policy(
                p.id.clone(),
                &p.document,
                PolicyKind::Boundary,
                None,
                has_boundary,
            )
        });
        let sp_eval = req.session_policy.as_ref().map(|sp| {
            self.eval_policy(
                Arc::from("session_policy"),
                &sp.document,
                PolicyKind::Session,
                None,
                has_boundary,
            )
        });

        let all: Vec<&PolicyEval<'_>> = scp
            .iter()
            .flatten()
            .flatten()
            .chain(rcp.iter().flatten().flatten())
            .chain(rbp_eval.iter())
            .chain(id_evals.iter())
            .chain(pb_eval.iter())
            .chain(sp_eval.iter())
            .collect();

        // Gates.
        let levels_ok = |levels: &Option<Vec<Vec<PolicyEval<'_>>>>| {
            levels
                .as_ref()
                .is_none_or(|ls| ls.iter().all(|l| l.iter().any(PolicyEval::allows)))
        };
        let scp_ok = levels_ok(&scp);
        let rcp_ok = levels_ok(&rcp);
        let pb_ok = pb_eval.as_ref().is_none_or(PolicyEval::allows);
        let sp_ok = match caller.form {
            Form::AssumedRole | Form::RoleArn => sp_eval.as_ref().is_none_or(PolicyEval::allows),
            Form::FederatedUser => sp_eval.as_ref().is_some_and(PolicyEval::allows),
            _ => true,
        };
        let id_ok = id_evals.iter().any(PolicyEval::allows);
        let identity_ok = (caller.form == Form::Root || id_ok) && pb_ok && sp_ok;
        let cross_op_blocked =
            kms && cross && !kms::cross_account_allowed(req.service(), req.name());
        let no_key_policy = kms && resource.entry.is_none();

        let id_allows = || {
            id_evals
                .iter()
                .flat_map(PolicyEval::allow_list)
                .collect::<Vec<_>>()
        };
        let pb_allows = || {
            pb_eval
                .iter()
                .flat_map(PolicyEval::allow_list)
                .collect::<Vec<_>>()
        };
        let sp_allows = || {
            sp_eval
                .iter()
                .flat_map(PolicyEval::allow_list)
                .collect::<Vec<_>>()
        };
        let org_extra: Vec<MatchedStatement> = scp
            .iter()
            .flatten()
            .flatten()
            .chain(rcp.iter().flatten().flatten())
            .flat_map(PolicyEval::org_allow_list)
            .collect();

        // Grants on a key.
        let grants: Vec<&Arc<Grant>> = if kms {
            bundle
                .grants_by_key
                .get(req.resource.as_str())
                .map(|g| g.iter().collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };

        let denies: Vec<MatchedStatement> = all
            .iter()
            .flat_map(|e| e.with_effect(Effect::Deny).map(|h| e.matched(h)))
            .collect();

        let mut grant_used: Option<Arc<str>> = None;
        let mut key_state_blocked: Option<KeyState> = None;
        let (outcome, matched) = if !denies.is_empty() {
            (Outcome::ExplicitDeny, denies)
        } else {
            let path_ok = |s: Strength| match s {
                Strength::Direct => true,
                Strength::Role => pb_ok && sp_ok,
                Strength::Account => identity_ok,
            };
            let path_list = |s: Strength| -> Vec<MatchedStatement> {
                match s {
                    Strength::Direct => Vec::new(),
                    Strength::Role => [pb_allows(), sp_allows()].concat(),
                    Strength::Account => [id_allows(), pb_allows(), sp_allows()].concat(),
                }
            };
            let allow: Option<Vec<MatchedStatement>> = if !kms {
                if cross_op_blocked || !rcp_ok || !scp_ok {
                    None
                } else if !cross {
                    let rbp_with = |s| {
                        rbp_eval
                            .as_ref()
                            .map(|e| e.allows_with(s))
                            .unwrap_or_default()
                    };
                    let direct = rbp_with(Strength::Direct);
                    let role = rbp_with(Strength::Role);
                    if !direct.is_empty() {
                        Some([org_extra.clone(), direct].concat())
                    } else if !role.is_empty() && pb_ok && sp_ok {
                        Some([org_extra.clone(), role, pb_allows(), sp_allows()].concat())
                    } else if identity_ok {
                        Some([org_extra.clone(), id_allows(), pb_allows(), sp_allows()].concat())
                    } else {
                        None
                    }
                } else {
                    let rbp_all = rbp_eval
                        .as_ref()
                        .map(PolicyEval::allow_list)
                        .unwrap_or_default();
                    (identity_ok && !rbp_all.is_empty()).then(|| {
                        [
                            org_extra.clone(),
                            rbp_all,
                            id_allows(),
                            pb_allows(),
                            sp_allows(),
                        ]
                        .concat()
                    })
                }
            } else if cross_op_blocked || !rcp_ok || !scp_ok || no_key_policy {
                None
            } else if retire {
                // §7.4: RetireGrant is authorized by grants alone.
                let wanted = self
                    .ctx
                    .map
                    .get("verdict:grantid")
                    .map(|e| e.values.clone());
                let mut found = None;
                for g in &grants {
                    if let Some(w) = &wanted
                        && w.as_slice() != [g.grant_id.to_string()]
                    {
                        continue;
                    }
                    let mut strengths = Vec::new();
                    if let Some(r) = &g.retiring_principal {
                        strengths.extend(self.entry_strength(r));
                    }
                    if g.operations.contains(&GrantOperation::RetireGrant) {
                        strengths.extend(self.entry_strength(&g.grantee));
                    }
                    strengths.sort();
                    strengths.reverse();
                    if let Some(s) = strengths.into_iter().find(|s| path_ok(*s)) {
                        found = Some((g.grant_id.clone(), s));
                        break;
                    }
                }
                found.map(|(id, s)| {
                    let entry = grant_matched(&id);
                    grant_used = Some(id);
                    [org_extra.clone(), vec![entry], path_list(s)].concat()
                })
            } else {
                let kp = |s| {
                    rbp_eval
                        .as_ref()
                        .map(|e| e.allows_with(s))
                        .unwrap_or_default()
                };
                let direct = kp(Strength::Direct);
                let role = kp(Strength::Role);
                let account = kp(Strength::Account);
                if !direct.is_empty() && (!cross || identity_ok) {
                    let ids = if cross {
                        [id_allows(), pb_allows(), sp_allows()].concat()
                    } else {
                        Vec::new()
                    };
                    Some([org_extra.clone(), direct, ids].concat())
                } else if !role.is_empty() && pb_ok && sp_ok && (!cross || identity_ok) {
                    let ids = if cross { id_allows() } else { Vec::new() };
                    Some([org_extra.clone(), role, ids, pb_allows(), sp_allows()].concat())
                } else if !account.is_empty() && identity_ok {
                    Some(
                        [
                            org_extra.clone(),
                            account,
                            id_allows(),
                            pb_allows(),
                            sp_allows(),
                        ]
                        .concat(),
                    )
                } else {
                    let mut found = None;
                    for g in &grants {
                        if !self.grant_applies(g) {
                            continue;
                        }
                        if let Some(s) = self.entry_strength(&g.grantee).filter(|s| path_ok(*s)) {
                            found = Some((g.grant_id.clone(), s));
                            break;
                        }
                    }
                    found.map(|(id, s)| {
                        let entry = grant_matched(&id);
                        grant_used = Some(id);
                        [org_extra.clone(), vec![entry], path_list(s)].concat()
                    })
                }
            };
            match allow {
                Some(list) => {
                    if let Some(k) = key_info
                        .filter(|k| kms::key_state_refuses(req.service(), req.name(), k.state))
                    {
                        key_state_blocked = Some(k.state);
                        grant_used = None;
                        (Outcome::ImplicitDeny, Vec::new())
                    } else {
                        (Outcome::Allow, list)
                    }
                }
                None => (Outcome::ImplicitDeny, Vec::new()),
            }
        };
        let mut matched: MatchedList = matched.into();
        normalize_matched(&mut matched);

        let explanation = req.explain.then(|| {
            let mut blocked_by = Vec::new();
            if outcome == Outcome::ImplicitDeny {
                if cross_op_blocked {
                    blocked_by.push(Gate::CrossAccountOp);
                }
                if !rcp_ok {
                    blocked_by.push(Gate::Rcp);
                }
                if !scp_ok {
                    blocked_by.push(Gate::Scp);
                }
                if no_key_policy {
                    blocked_by.push(Gate::NoKeyPolicy);
                }
                if !pb_ok {
                    blocked_by.push(Gate::Boundary);
                }
                if !sp_ok {
                    blocked_by.push(Gate::Session);
                }
                if key_state_blocked.is_some() {
                    blocked_by.push(Gate::KeyState);
                }
            }
            let levels_decision = |levels: &Option<Vec<Vec<PolicyEval<'_>>>>| match levels {
                None => KindDecision::NotApplicable,
                Some(ls) => {
                    if ls.iter().flatten().any(PolicyEval::denies) {
                        KindDecision::ExplicitDeny
                    } else if ls.iter().all(|l| l.iter().any(PolicyEval::allows)) {
                        KindDecision::Allow
                    } else {
                        KindDecision::ImplicitDeny
                    }
                }
            };
            let many = |evals: &[&PolicyEval<'_>]| {
                if evals.is_empty() {
                    KindDecision::NotApplicable
                } else if evals.iter().any(|e| e.denies()) {
                    KindDecision::ExplicitDeny
                } else if evals.iter().any(|e| e.allows()) {
                    KindDecision::Allow
                } else {
                    KindDecision::ImplicitDeny
                }
            };
            let of_kind =
                |k: PolicyKind| many(&id_evals.iter().filter(|e| e.kind == k).collect::<Vec<_>>());
            let opt = |e: &Option<PolicyEval<'_>>| {
                e.as_ref()
                    .map_or(KindDecision::NotApplicable, PolicyEval::kind_decision)
            };
            let caller_kinds = vec![
                (PolicyKind::Scp, levels_decision(&scp)),
                (PolicyKind::Identity, of_kind(PolicyKind::Identity)),
                (PolicyKind::Group, of_kind(PolicyKind::Group)),
                (PolicyKind::Boundary, opt(&pb_eval)),
                (PolicyKind::Session, opt(&sp_eval)),
            ];
            let mut resource_kinds = vec![
                (PolicyKind::Rcp, levels_decision(&rcp)),
                (rbp_kind, opt(&rbp_eval)),
            ];
            if kms {
                let grant_decision = if grants.is_empty() {
                    KindDecision::NotApplicable
                } else if grants.iter().any(|g| {
                    if retire {
                        g.retiring_principal
                            .as_ref()
                            .and_then(|r| self.entry_strength(r))
                            .is_some()
                            || (g.operations.contains(&GrantOperation::RetireGrant)
                                && self.entry_strength(&g.grantee).is_some())
                    } else {
                        self.grant_applies(g) && self.entry_strength(&g.grantee).is_some()
                    }
                }) {
                    KindDecision::Allow
                } else {
                    KindDecision::ImplicitDeny
                };
                resource_kinds.push((PolicyKind::Grant, grant_decision));
            }
            let (mut caller_side, resource_side) = if cross {
                (caller_kinds, resource_kinds)
            } else {
                (
                    caller_kinds.into_iter().chain(resource_kinds).collect(),
                    Vec::new(),
                )
            };
            caller_side.sort_by_key(|(k, _)| *k);
            Box::new(Explanation {
                allowed_by_organizations: scp_ok,
                allowed_by_boundary: pb_ok,
                allowed_by_session: sp_ok,
                allowed_by_rcp: rcp_ok,
                grant_id: grant_used.clone(),
                blocked_by,
                key_state: key_state_blocked,
                caller_side,
                resource_side,
                ignored_context_keys: self.ctx.ignored.clone(),
            })
        });

        Decision {
            outcome,
            matched,
            missing_context_keys: std::mem::take(&mut self.missing)
                .into_iter()
                .map(Arc::from)
                .collect(),
            bundle_revision: bundle.revision.clone(),
            explanation,
            reads_server_clock: self.clock_read,
        }
    }

    /// §7.4: operation, constraint (or, for CreateGrant, U34's checks).
    fn grant_applies(&self, g: &Grant) -> bool {
        if self.req.service() != "kms" {
            return false;
        }
        let Some(op) = GrantOperation::parse_ignore_case(self.req.name()) else {
            return false;
        };
        if !g.operations.contains(&op) {
            return false;
        }
        match op {
            GrantOperation::DescribeKey | GrantOperation::RetireGrant => true,
            GrantOperation::CreateGrant => {
                let Some(ops) = self.ctx.map.get("kms:grantoperations") else {
                    return false;
                };
                if !ops
                    .values
                    .iter()
                    .all(|v| GrantOperation::parse(v).is_some_and(|o| g.operations.contains(&o)))
                {
                    return false;
                }
                match &g.constraint {
                    None => true,
                    Some(c) => {
                        let ty = self
                            .ctx
                            .map
                            .get("kms:grantconstrainttype")
                            .map(|e| e.values.as_slice());
                        match (c, ty) {
                            (GrantConstraint::Equals(_), Some([t])) => {
                                t == "EncryptionContextEquals"
                            }
                            (GrantConstraint::Subset(_), Some([t])) => {
                                t == "EncryptionContextEquals" || t == "EncryptionContextSubset"
                            }
                            _ => false,
                        }
                    }
                }
            }
            _ => match &g.constraint {
                None => true,
                Some(c) => {
                    let pairs: Vec<(String, &[String])> = self
                        .ctx
                        .map
                        .iter()
                        .filter(|(k, _)| k.starts_with(ENCRYPTION_CONTEXT_PREFIX))
                        .map(|(_, e)| {
                            (
                                e.key
                                    .chars()
                                    .skip(ENCRYPTION_CONTEXT_PREFIX.chars().count())
                                    .collect(),
                                e.values.as_slice(),
                            )
                        })
                        .collect();
                    let has = |k: &str, v: &str| {
                        pairs
                            .iter()
                            .any(|(pk, pv)| pk == k && *pv == [v.to_owned()])
                    };
                    match c {
                        GrantConstraint::Subset(want) => want.iter().all(|(k, v)| has(k, v)),
                        GrantConstraint::Equals(want) => {
                            pairs.len() == want.len() && want.iter().all(|(k, v)| has(k, v))
                        }
                    }
                }
            },
        }
    }
}

fn grant_matched(id: &Arc<str>) -> MatchedStatement {
    MatchedStatement {
        policy_id: id.clone(),
        kind: PolicyKind::Grant,
        index: None,
        sid: None,
        effect: Effect::Allow,
        level: None,
        position: None,
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
            let text: String = glob::resolve(t, false, lookup)?
                .into_iter()
                .filter_map(|t| match t {
                    Tok::Ch(c) => Some(c),
                    _ => None,
                })
                .collect();
            Resolved::Both(text, toks)
        }
        ConditionValue::Number(d) => Resolved::Number(d.clone()),
        ConditionValue::Date(d) => Resolved::Date(d.clone()),
        ConditionValue::Bool(BoolValue::Literal(b)) => Resolved::Bool(*b),
        ConditionValue::Bool(BoolValue::Template(t)) => {
            let text: String = glob::resolve(t, false, lookup)?
                .into_iter()
                .filter_map(|t| match t {
                    Tok::Ch(c) => Some(c),
                    _ => None,
                })
                .collect();
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
        ConditionValue::Null(_) => return None,
    })
}

/// The positive comparison of a request value with a resolved policy value.
fn compare(op: BaseOperator, rv: &str, pv: &Resolved) -> bool {
    use BaseOperator as O;
    match (op, pv) {
        (O::StringEquals, Resolved::Both(text, _)) => rv == text,
        (O::StringEqualsIgnoreCase, Resolved::Both(text, _)) => fold(rv) == fold(text),
        (O::StringLike, Resolved::Both(_, toks)) => glob::matches(toks, rv, false),
        (
            O::NumericEquals
            | O::NumericLessThan
            | O::NumericLessThanEquals
            | O::NumericGreaterThan
            | O::NumericGreaterThanEquals,
            Resolved::Number(p),
        ) => Decimal::parse(rv).is_some_and(|r| ordered(op, r.cmp(&p.as_decimal()))),
        (
            O::DateEquals
            | O::DateLessThan
            | O::DateLessThanEquals
            | O::DateGreaterThan
            | O::DateGreaterThanEquals,
            Resolved::Date(p),
        ) => value::parse_date(rv).is_some_and(|r| ordered(op, r.cmp(&p.as_decimal()))),
        (O::Bool, Resolved::Bool(b)) => value::parse_bool(rv) == Some(*b),
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

fn ordered(op: BaseOperator, ord: std::cmp::Ordering) -> bool {
    use BaseOperator as O;
    use std::cmp::Ordering::*;
    match op {
        O::NumericEquals | O::DateEquals => ord == Equal,
        O::NumericLessThan | O::DateLessThan => ord == Less,
        O::NumericLessThanEquals | O::DateLessThanEquals => ord != Greater,
        O::NumericGreaterThan | O::DateGreaterThan => ord == Greater,
        O::NumericGreaterThanEquals | O::DateGreaterThanEquals => ord != Less,
        _ => false,
    }
}

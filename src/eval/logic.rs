//! The compiled evaluator: evaluation.md §5–§8 over a [`Snapshot`], for
//! every request the service answers. It looks only at the policies that
//! take part and, through each policy's action index, only at statements
//! whose action can match; matchers never allocate, and neither does a
//! decision without `explain` in the common case.
//!
//! The reference interpreter (`eval::reference`) states the same rules
//! plainly; the two are compared on random bundles and requests.

use std::sync::Arc;
use std::time::SystemTime;

use smallvec::SmallVec;

use super::decision::*;
use super::env::Env;
use super::facts::Form;
use super::kms;
use super::request::Request;
use crate::bundle::{GrantConstraint, GrantOperation, KeyState};
use crate::compile::condition::{CCondition, CKey, CText, CValue};
use crate::compile::pattern::equals_segments;
use crate::compile::statement::{
    ActionKey, CPolicy, CPrincipal, CPrincipals, CResource, CResources, CStatement, Candidates,
};
use crate::compile::{CGrant, IdEntry, PolicyIdx, Snapshot, op_bit};
use crate::policy::value::{self, Decimal};
use crate::policy::{BaseOperator, Effect, PolicyKind, SetQualifier};

/// How strongly a principal value names the caller (§2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    Account,
    Role,
    Direct,
}

/// An applicable statement.
#[derive(Clone, Copy)]
struct Hit<'s> {
    policy: &'s CPolicy,
    st: &'s CStatement,
    kind: PolicyKind,
    level: Option<u32>,
    strength: Strength,
}

impl Hit<'_> {
    fn matched(&self) -> MatchedStatement {
        MatchedStatement {
            policy_id: self.policy.id.clone(),
            kind: self.kind,
            index: Some(self.st.index),
            sid: self.st.sid.clone(),
            effect: self.st.effect,
            level: self.level,
            position: Some(self.st.position),
        }
    }
}

/// What one evaluated policy contributed.
#[derive(Clone, Copy, Default)]
struct Summary {
    allow: bool,
    deny: bool,
}

type Hits<'s> = SmallVec<[Hit<'s>; 16]>;

struct Eval<'s> {
    env: Env<'s>,
    action: ActionKey<'s>,
    hits: Hits<'s>,
    missing: MissingKeys,
    has_boundary: bool,
    candidates: Candidates,
}

/// Decide `req` against a snapshot. `now` is the server clock for
/// `aws:CurrentTime`/`aws:EpochTime` when the caller sends neither.
pub fn evaluate(snap: &Snapshot, req: &Request, now: SystemTime) -> Decision {
    let bundle = &snap.bundle;
    let env = Env::new(bundle, req, now);
    let action = ActionKey {
        service: req.service(),
        name: req.name(),
        action_id: bundle.actions.lookup_action(&req.action_key),
        service_id: bundle.actions.lookup_service(req.service()),
    };
    let has_boundary = env.caller.identity.is_some_and(|i| i.boundary.is_some());
    let mut ev = Eval {
        env,
        action,
        hits: Hits::new(),
        missing: MissingKeys::new(),
        has_boundary,
        candidates: Candidates::new(),
    };
    ev.decide(snap)
}

/// [`evaluate`] within `max_match_steps` wildcard-matching steps; `None`
/// when the request needs more (its decision is then unknown, and the
/// caller must refuse it).
pub fn evaluate_within(
    snap: &Snapshot,
    req: &Request,
    now: SystemTime,
    max_match_steps: u64,
) -> Option<Decision> {
    let (decision, held) =
        crate::compile::pattern::with_match_budget(max_match_steps, || evaluate(snap, req, now));
    held.then_some(decision)
}

impl<'s> Eval<'s> {
    // === Statements ===

    fn policy(&mut self, policy: &'s CPolicy, kind: PolicyKind, level: Option<u32>) -> Summary {
        let mut sum = Summary::default();
        let mut candidates = std::mem::take(&mut self.candidates);
        policy.candidates(&self.action, &mut candidates);
        for &i in candidates.iter() {
            let Some(st) = policy.statements.get(i as usize) else {
                continue;
            };
            if let Some(strength) = self.statement(st, kind) {
                match st.effect {
                    Effect::Allow => sum.allow = true,
                    Effect::Deny => sum.deny = true,
                }
                self.hits.push(Hit {
                    policy,
                    st,
                    kind,
                    level,
                    strength,
                });
            }
        }
        self.candidates = candidates;
        sum
    }

    /// Whether a statement whose action matched applies, and how strongly
    /// its principal names the caller.
    fn statement(&mut self, st: &'s CStatement, kind: PolicyKind) -> Option<Strength> {
        if st.mentions_clock && self.env.server_clock() {
            self.env.clock_read.set(true);
        }
        let resources = st.resources.as_ref()?;
        if !self.resources(resources, kind) {
            return None;
        }
        let strength = if kind.has_principals() {
            self.principals(st.principals.as_ref()?)?
        } else {
            Strength::Direct
        };
        for c in st.conditions.iter() {
            if c.op.reports_missing()
                && !self.env.ignored(&c.key.source)
                && self.env.lookup(&c.key, kind).is_none()
                && !self.missing.contains(&c.key.lower)
            {
                self.missing.push(c.key.lower.clone());
            }
        }
        st.conditions
            .iter()
            .all(|c| self.condition(c, kind))
            .then_some(strength)
    }

    fn resources(&self, block: &'s CResources, kind: PolicyKind) -> bool {
        let lookup = |k: &CKey| self.env.var(k, kind);
        let any = block.items.iter().any(|r| match r {
            CResource::Any => true,
            CResource::Arn {
                pieces,
                never,
                prefolded,
            } => {
                if *never {
                    return false;
                }
                let Some(parts) = self.env.res.pieces else {
                    return false;
                };
                let n = pieces.len();
                if let ([p0, p1, p2, p3, p4, p5], [r0, r1, r2, r3, r4, r5]) = (&**pieces, &parts) {
                    // The resource part first: it differs most often.
                    if p5.matches(r5, true, false, &lookup) != Some(true) {
                        return false;
                    }
                    return [(p0, r0), (p1, r1), (p2, r2), (p3, r3), (p4, r4)]
                        .into_iter()
                        .enumerate()
                        .all(|(i, (p, r))| {
                            let fold = prefolded & (1 << i) == 0 || !r.is_ascii();
                            p.matches(r, true, fold, &lookup) == Some(true)
                        });
                }
                let (Some(last), Some(first_rest)) =
                    (pieces.last(), parts.get(n.saturating_sub(1)))
                else {
                    return false;
                };
                for (i, p) in pieces.iter().enumerate().take(n - 1) {
                    let ok = parts
                        .get(i)
                        .is_some_and(|r| p.matches(r, true, true, &lookup) == Some(true));
                    if !ok {
                        return false;
                    }
                }
                let resource = self.env.req.resource.as_str();
                let offset =
                    (first_rest.as_ptr() as usize).saturating_sub(resource.as_ptr() as usize);
                let rest = resource.get(offset..).unwrap_or("");
                last.matches(rest, true, true, &lookup) == Some(true)
            }
        });
        any != block.negated
    }

    fn entry_strength(&self, p: &CPrincipal) -> Option<Strength> {
        let c = &self.env.caller;
        let eq = |a: Option<&str>, b: &str| a == Some(b);
        match p {
            CPrincipal::Everyone => Some(Strength::Direct),
            CPrincipal::Account(a) => eq(c.account, a).then_some(Strength::Account),
            CPrincipal::User(u) => {
                (c.form == Form::User && eq(c.self_arn, u)).then_some(Strength::Direct)
            }
            CPrincipal::Role(r) => (matches!(c.form, Form::RoleArn | Form::AssumedRole)
                && eq(c.role_arn, r))
            .then_some(Strength::Role),
            CPrincipal::Session(s) => {
                (c.form == Form::AssumedRole && eq(c.self_arn, s)).then_some(Strength::Direct)
            }
            CPrincipal::Federated(f) => {
                (c.form == Form::FederatedUser && eq(c.self_arn, f)).then_some(Strength::Direct)
            }
            CPrincipal::Service(s) => eq(c.service, s).then_some(Strength::Direct),
            CPrincipal::Never => None,
        }
    }

    fn principals(&self, block: &CPrincipals) -> Option<Strength> {
        if !block.negated {
            return block
                .items
                .iter()
                .filter_map(|e| self.entry_strength(e))
                .max();
        }
        if self.has_boundary {
            return Some(Strength::Direct);
        }
        let c = &self.env.caller;
        let listed_account = block.items.iter().any(|e| match e {
            CPrincipal::Everyone => true,
            CPrincipal::Account(a) => c.account == Some(&**a),
            _ => false,
        });
        let listed = |arn: Option<&str>| {
            block.items.iter().any(|e| match e {
                CPrincipal::Everyone => true,
                CPrincipal::User(a)
                | CPrincipal::Role(a)
                | CPrincipal::Session(a)
                | CPrincipal::Federated(a) => arn == Some(&**a),
                _ => false,
            })
        };
        let exempt = match c.form {
            Form::Root => listed_account,
            Form::User | Form::FederatedUser => listed_account && listed(c.self_arn),
            Form::AssumedRole => listed_account && listed(c.role_arn) && listed(c.self_arn),
            Form::RoleArn => listed_account && listed(c.role_arn),
            Form::Service => block.items.iter().any(|e| match e {
                CPrincipal::Everyone => true,
                CPrincipal::Service(s) => c.service == Some(&**s),
                _ => false,
            }),
        };
        (!exempt).then_some(Strength::Direct)
    }

    // === Conditions (§3) ===

    fn condition(&self, c: &'s CCondition, kind: PolicyKind) -> bool {
        let vals = self.env.lookup(&c.key, kind);
        if c.op.base == BaseOperator::Null {
            let present = vals.is_some();
            return c
                .values
                .iter()
                .any(|v| matches!(v, CValue::Null(b) if *b != present));
        }
        let neg = c.op.base.negated();
        let pos = c.op.base.positive();
        let one = |rv: &str| {
            let any = c.values.iter().any(|pv| self.compare(pos, rv, pv, kind));
            any != neg
        };
        match c.op.set {
            Some(SetQualifier::ForAllValues) => vals.is_none_or(|v| v.iter().all(one)),
            Some(SetQualifier::ForAnyValue) => vals.is_some_and(|v| v.iter().any(one)),
            None => {
                let Some(v) = vals else {
                    return c.op.if_exists || neg;
                };
                let mut it = v.iter();
                match (it.next(), it.next()) {
                    (None, _) => c.op.if_exists || neg,
                    (Some(x), None) => one(x),
                    _ => false,
                }
            }
        }
    }

    /// The positive comparison of a request value with a policy value;
    /// false when a variable leaves the policy value without a value.
    fn compare(&self, op: BaseOperator, rv: &str, pv: &'s CValue, kind: PolicyKind) -> bool {
        use BaseOperator as O;
        let lookup = |k: &CKey| self.env.var(k, kind);
        match (op, pv) {
            (O::StringEquals, CValue::Str(t)) => t.matches(rv, false, false, &lookup) == Some(true),
            (O::StringEqualsIgnoreCase, CValue::Str(t)) => {
                t.matches(rv, false, true, &lookup) == Some(true)
            }
            (O::StringLike, CValue::Str(t)) => t.matches(rv, true, false, &lookup) == Some(true),
            (
                O::NumericEquals
                | O::NumericLessThan
                | O::NumericLessThanEquals
                | O::NumericGreaterThan
                | O::NumericGreaterThanEquals,
                CValue::Number(p),
            ) => Decimal::parse(rv).is_some_and(|r| ordered(op, r.cmp(&p.as_decimal()))),
            (
                O::DateEquals
                | O::DateLessThan
                | O::DateLessThanEquals
                | O::DateGreaterThan
                | O::DateGreaterThanEquals,
                CValue::Date(p),
            ) => value::parse_date(rv).is_some_and(|r| ordered(op, r.cmp(&p.as_decimal()))),
            (O::Bool, CValue::Bool(b)) => value::parse_bool(rv) == Some(*b),
            (O::Bool, CValue::BoolVar(t)) => {
                let CText::Template(parts) = t else {
                    return false;
                };
                let Some(segs) = CText::segments(parts, false, &lookup) else {
                    return false;
                };
                let want = if equals_segments(&segs, "true", true) {
                    true
                } else if equals_segments(&segs, "false", true) {
                    false
                } else {
                    return false;
                };
                value::parse_bool(rv) == Some(want)
            }
            (O::BinaryEquals, CValue::Binary(b)) => binary_equals(rv, b),
            (O::IpAddress, CValue::Ip(net)) => {
                value::parse_ip_addr(rv).is_some_and(|a| value::ip_in(net, a))
            }
            (O::ArnEquals | O::ArnLike, CValue::Arn(pieces)) => {
                let (Some(pieces), Some(parts)) = (pieces, crate::policy::principal::split_arn(rv))
                else {
                    return false;
                };
                pieces
                    .iter()
                    .zip(parts.iter())
                    .all(|(p, r)| p.matches(r, true, false, &lookup) == Some(true))
            }
            _ => false,
        }
    }

    // === Grants (§7.4) ===

    fn grant_applies(&self, g: &CGrant) -> bool {
        if self.action.service != "kms" {
            return false;
        }
        let Some(op) = GrantOperation::parse_ignore_case(self.action.name) else {
            return false;
        };
        if g.operations & op_bit(op) == 0 {
            return false;
        }
        match op {
            GrantOperation::DescribeKey | GrantOperation::RetireGrant => true,
            GrantOperation::CreateGrant => {
                let Some(ops) = self.env.caller_values("kms:grantoperations") else {
                    return false;
                };
                let within = ops.iter().all(|v| {
                    GrantOperation::parse(v).is_some_and(|o| g.operations & op_bit(o) != 0)
                });
                if !within {
                    return false;
                }
                match &g.constraint {
                    None => true,
                    Some(c) => match (c, self.env.caller_values("kms:grantconstrainttype")) {
                        (GrantConstraint::Equals(_), Some([t])) => t == "EncryptionContextEquals",
                        (GrantConstraint::Subset(_), Some([t])) => {
                            t == "EncryptionContextEquals" || t == "EncryptionContextSubset"
                        }
                        _ => false,
                    },
                }
            }
            _ => match &g.constraint {
                None => true,
                Some(c) => {
                    let has = |k: &str, v: &str| {
                        self.env
                            .encryption_context()
                            .any(|(pk, pv)| pk == k && matches!(pv, [one] if one == v))
                    };
                    match c {
                        GrantConstraint::Subset(want) => want.iter().all(|(k, v)| has(k, v)),
                        GrantConstraint::Equals(want) => {
                            self.env.encryption_context().count() == want.len()
                                && want.iter().all(|(k, v)| has(k, v))
                        }
                    }
                }
            },
        }
    }

    // === The decision (§5–§7) ===

    fn levels(
        &mut self,
        snap: &'s Snapshot,
        levels: Option<&'s [Box<[PolicyIdx]>]>,
        kind: PolicyKind,
    ) -> Option<(bool, bool)> {
        let levels = levels?;
        let (mut all_allow, mut any_deny) = (true, false);
        for (l, level) in levels.iter().enumerate() {
            let l = u32::try_from(l).unwrap_or(u32::MAX);
            let mut allow = false;
            for &p in level.iter() {
                if let Some(policy) = snap.bundle.policy(p) {
                    let s = self.policy(policy, kind, Some(l));
                    allow |= s.allow;
                    any_deny |= s.deny;
                }
            }
            all_allow &= allow;
        }
        Some((all_allow, any_deny))
    }

    fn decide(&mut self, snap: &'s Snapshot) -> Decision {
        let bundle = &snap.bundle;
        let req = self.env.req;
        let caller = self.env.caller;
        let res = self.env.res;
        let kms = res.is_kms_key;
        let retire = kms && req.service() == "kms" && req.name() == "retiregrant";
        let cross = matches!((caller.account, res.account), (Some(pa), Some(ra)) if pa != ra);
        let identity = caller.identity;
        let key_info = res.entry.and_then(|e| e.key.as_ref());

        // The policies that take part.
        let bound_by_scps =
            caller.form != Form::Service && !identity.is_some_and(|i| i.service_linked);
        let scp_levels = if bound_by_scps {
            self.env.caller_account.and_then(|a| a.scps.as_deref())
        } else {
            None
        };
        let rcp_levels = if retire || key_info.is_some_and(|k| k.aws_managed) {
            None
        } else {
            res.account
                .and_then(|a| bundle.accounts.get(a))
                .and_then(|a| a.rcps.as_deref())
        };
        let rbp = if retire {
            None
        } else {
            res.entry
                .and_then(|e| e.policy)
                .and_then(|p| bundle.policy(p))
        };
        let rbp_kind = if kms {
            PolicyKind::KeyPolicy
        } else {
            PolicyKind::Resource
        };

        let scp = self.levels(snap, scp_levels, PolicyKind::Scp);
        let rcp = self.levels(snap, rcp_levels, PolicyKind::Rcp);
        let rbp_sum = rbp.map(|p| self.policy(p, rbp_kind, None));
        let mut id_sum = Summary::default();
        let (mut identity_kind, mut group_kind) = (None::<Summary>, None::<Summary>);
        if let Some(i) = identity {
            if i.has_kind.0 {
                identity_kind = Some(Summary::default());
            }
            if i.has_kind.1 {
                group_kind = Some(Summary::default());
            }
            let mut entries: SmallVec<[IdEntry; 16]> = SmallVec::new();
            let statement = |e: IdEntry| {
                bundle
                    .policy(e.policy)
                    .and_then(|p| p.statements.get(e.stmt as usize))
            };
            i.index.candidates(&self.action, statement, &mut entries);
            let rest = self.env.res.pieces.map(|p| p[5]);
            for e in entries {
                if !e.filter.admits(rest) {
                    // Ruled out by its resource; the clock note still holds.
                    if e.filter.clock && self.env.server_clock() {
                        self.env.clock_read.set(true);
                    }
                    continue;
                }
                let (Some(policy), Some(st)) = (bundle.policy(e.policy), statement(e)) else {
                    continue;
                };
                let Some(strength) = self.statement(st, e.kind) else {
                    continue;
                };
                let slot = if e.kind == PolicyKind::Group {
                    &mut group_kind
                } else {
                    &mut identity_kind
                };
                let acc = slot.get_or_insert_with(Summary::default);
                match st.effect {
                    Effect::Allow => {
                        acc.allow = true;
                        id_sum.allow = true;
                    }
                    Effect::Deny => {
                        acc.deny = true;
                        id_sum.deny = true;
                    }
                }
                self.hits.push(Hit {
                    policy,
                    st,
                    kind: e.kind,
                    level: None,
                    strength,
                });
            }
        }
        let pb_sum = identity
            .and_then(|i| i.boundary)
            .and_then(|p| bundle.policy(p))
            .map(|p| self.policy(p, PolicyKind::Boundary, None));
        let sp_sum = req
            .session_policy
            .as_ref()
            .map(|sp| self.policy(&sp.compiled, PolicyKind::Session, None));

        // Gates.
        let scp_ok = scp.is_none_or(|(allow, _)| allow);
        let rcp_ok = rcp.is_none_or(|(allow, _)| allow);
        let pb_ok = pb_sum.is_none_or(|s| s.allow);
        let sp_ok = match caller.form {
            Form::AssumedRole | Form::RoleArn => sp_sum.is_none_or(|s| s.allow),
            Form::FederatedUser => sp_sum.is_some_and(|s| s.allow),
            _ => true,
        };
        let identity_ok = (caller.form == Form::Root || id_sum.allow) && pb_ok && sp_ok;
        let cross_op_blocked =
            kms && cross && !kms::cross_account_allowed(req.service(), req.name());
        let no_key_policy = kms && res.entry.is_none();
        let any_deny = self.hits.iter().any(|h| h.st.effect == Effect::Deny);

        let rbp_has = |hits: &Hits<'s>, s: Strength| {
            hits.iter()
                .any(|h| h.kind == rbp_kind && h.st.effect == Effect::Allow && h.strength == s)
        };
        let grants: &[u32] = if kms {
            res.entry.map_or(&[], |e| &e.grants)
        } else {
            &[]
        };

        let mut grant_used: Option<(&'s CGrant, Strength)> = None;
        let mut key_state_blocked: Option<KeyState> = None;
        // Which allows the deciding path lists: a bit set over the paths below.
        let mut path: Option<Path> = None;
        let outcome = if any_deny {
            Outcome::ExplicitDeny
        } else {
            let path_ok = |s: Strength| match s {
                Strength::Direct => true,
                Strength::Role => pb_ok && sp_ok,
                Strength::Account => identity_ok,
            };
            if !kms {
                if cross_op_blocked || !rcp_ok || !scp_ok {
                } else if !cross {
                    if rbp_has(&self.hits, Strength::Direct) {
                        path = Some(Path::Rbp(Some(Strength::Direct), false));
                    } else if rbp_has(&self.hits, Strength::Role) && pb_ok && sp_ok {
                        path = Some(Path::Rbp(Some(Strength::Role), false));
                    } else if identity_ok {
                        path = Some(Path::Identity);
                    }
                } else {
                    let rbp_any = self
                        .hits
                        .iter()
                        .any(|h| h.kind == rbp_kind && h.st.effect == Effect::Allow);
                    if identity_ok && rbp_any {
                        path = Some(Path::Rbp(None, true));
                    }
                }
            } else if cross_op_blocked || !rcp_ok || !scp_ok || no_key_policy {
            } else if retire {
                let wanted = self.env.grant_id();
                for &gi in grants {
                    let Some(g) = bundle.grants.get(gi as usize) else {
                        continue;
                    };
                    if let Some(w) = wanted
                        && w != Some(&*g.id)
                    {
                        continue;
                    }
                    let mut best: Option<Strength> = None;
                    for s in [
                        g.retiring.as_ref().and_then(|r| self.entry_strength(r)),
                        if g.operations & op_bit(GrantOperation::RetireGrant) != 0 {
                            self.entry_strength(&g.grantee)
                        } else {
                            None
                        },
                    ]
                    .into_iter()
                    .flatten()
                    {
                        if path_ok(s) && best.is_none_or(|b| s > b) {
                            best = Some(s);
                        }
                    }
                    if let Some(s) = best {
                        grant_used = Some((g, s));
                        path = Some(Path::Grant);
                        break;
                    }
                }
            } else if rbp_has(&self.hits, Strength::Direct) && (!cross || identity_ok) {
                path = Some(Path::Rbp(Some(Strength::Direct), cross));
            } else if rbp_has(&self.hits, Strength::Role)
                && pb_ok
                && sp_ok
                && (!cross || identity_ok)
            {
                path = Some(Path::Rbp(Some(Strength::Role), cross));
            } else if rbp_has(&self.hits, Strength::Account) && identity_ok {
                path = Some(Path::Rbp(Some(Strength::Account), true));
            } else {
                for &gi in grants {
                    let Some(g) = bundle.grants.get(gi as usize) else {
                        continue;
                    };
                    if !self.grant_applies(g) {
                        continue;
                    }
                    if let Some(s) = self.entry_strength(&g.grantee).filter(|s| path_ok(*s)) {
                        grant_used = Some((g, s));
                        path = Some(Path::Grant);
                        break;
                    }
                }
            }
            match path {
                Some(_) => {
                    if let Some(k) = key_info.filter(|k| {
                        kms && kms::key_state_refuses(req.service(), req.name(), k.state)
                    }) {
                        key_state_blocked = Some(k.state);
                        path = None;
                        grant_used = None;
                        Outcome::ImplicitDeny
                    } else {
                        Outcome::Allow
                    }
                }
                None => Outcome::ImplicitDeny,
            }
        };

        let mut matched = MatchedList::new();
        match outcome {
            Outcome::ExplicitDeny => {
                matched.extend(
                    self.hits
                        .iter()
                        .filter(|h| h.st.effect == Effect::Deny)
                        .map(Hit::matched),
                );
            }
            Outcome::Allow => {
                let allows = |h: &&Hit<'s>| h.st.effect == Effect::Allow;
                // SCP and RCP allows other than `Action: "*"`.
                matched.extend(
                    self.hits
                        .iter()
                        .filter(allows)
                        .filter(|h| {
                            matches!(h.kind, PolicyKind::Scp | PolicyKind::Rcp) && !h.st.full_access
                        })
                        .map(Hit::matched),
                );
                let (rbp_strength, ids, pb_sp) = match path {
                    Some(Path::Rbp(s, with_ids)) => {
                        matched.extend(
                            self.hits
                                .iter()
                                .filter(allows)
                                .filter(|h| h.kind == rbp_kind && s.is_none_or(|s| h.strength == s))
                                .map(Hit::matched),
                        );
                        let pb_sp = with_ids || s == Some(Strength::Role);
                        (s, with_ids, pb_sp)
                    }
                    Some(Path::Identity) => (None, true, true),
                    Some(Path::Grant) => {
                        if let Some((g, _)) = grant_used {
                            matched.push(grant_matched(&g.id));
                        }
                        let s = grant_used.map(|(_, s)| s);
                        (
                            None,
                            s == Some(Strength::Account),
                            s != Some(Strength::Direct),
                        )
                    }
                    None => (None, false, false),
                };
                let _ = rbp_strength;
                if ids {
                    matched.extend(
                        self.hits
                            .iter()
                            .filter(allows)
                            .filter(|h| matches!(h.kind, PolicyKind::Identity | PolicyKind::Group))
                            .map(Hit::matched),
                    );
                }
                if pb_sp {
                    matched.extend(
                        self.hits
                            .iter()
                            .filter(allows)
                            .filter(|h| {
                                matches!(h.kind, PolicyKind::Boundary | PolicyKind::Session)
                            })
                            .map(Hit::matched),
                    );
                }
            }
            Outcome::ImplicitDeny => {}
        }
        normalize_matched(&mut matched);
        let mut missing = std::mem::take(&mut self.missing);
        missing.sort_unstable();

        let explanation = req.explain.then(|| {
            let mut blocked_by = Vec::new();
            if outcome == Outcome::ImplicitDeny {
                for (failed, gate) in [
                    (cross_op_blocked, Gate::CrossAccountOp),
                    (!rcp_ok, Gate::Rcp),
                    (!scp_ok, Gate::Scp),
                    (no_key_policy, Gate::NoKeyPolicy),
                    (!pb_ok, Gate::Boundary),
                    (!sp_ok, Gate::Session),
                    (key_state_blocked.is_some(), Gate::KeyState),
                ] {
                    if failed {
                        blocked_by.push(gate);
                    }
                }
            }
            let levels_decision = |l: Option<(bool, bool)>| match l {
                None => KindDecision::NotApplicable,
                Some((_, true)) => KindDecision::ExplicitDeny,
                Some((true, false)) => KindDecision::Allow,
                Some((false, false)) => KindDecision::ImplicitDeny,
            };
            let one = |s: Option<Summary>| match s {
                None => KindDecision::NotApplicable,
                Some(s) if s.deny => KindDecision::ExplicitDeny,
                Some(s) if s.allow => KindDecision::Allow,
                Some(_) => KindDecision::ImplicitDeny,
            };
            let caller_kinds = [
                (PolicyKind::Scp, levels_decision(scp)),
                (PolicyKind::Identity, one(identity_kind)),
                (PolicyKind::Group, one(group_kind)),
                (PolicyKind::Boundary, one(pb_sum)),
                (PolicyKind::Session, one(sp_sum)),
            ];
            let mut resource_kinds = vec![
                (PolicyKind::Rcp, levels_decision(rcp)),
                (rbp_kind, one(rbp_sum)),
            ];
            if kms {
                let decision = if grants.is_empty() {
                    KindDecision::NotApplicable
                } else if grants
                    .iter()
                    .filter_map(|gi| bundle.grants.get(*gi as usize))
                    .any(|g| {
                        if retire {
                            g.retiring
                                .as_ref()
                                .and_then(|r| self.entry_strength(r))
                                .is_some()
                                || (g.operations & op_bit(GrantOperation::RetireGrant) != 0
                                    && self.entry_strength(&g.grantee).is_some())
                        } else {
                            self.grant_applies(g) && self.entry_strength(&g.grantee).is_some()
                        }
                    })
                {
                    KindDecision::Allow
                } else {
                    KindDecision::ImplicitDeny
                };
                resource_kinds.push((PolicyKind::Grant, decision));
            }
            let (mut caller_side, resource_side): (Vec<_>, Vec<_>) = if cross {
                (caller_kinds.to_vec(), resource_kinds)
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
                grant_id: grant_used.map(|(g, _)| g.id.clone()),
                blocked_by,
                key_state: key_state_blocked,
                caller_side,
                resource_side,
                ignored_context_keys: req
                    .context
                    .entries()
                    .iter()
                    .filter(|e| {
                        self.env
                            .ignored(&crate::compile::condition::KeySource::classify(&e.lower))
                    })
                    .map(|e| e.key.to_string())
                    .collect(),
            })
        });

        Decision {
            outcome,
            matched,
            missing_context_keys: missing,
            bundle_revision: snap.revision.clone(),
            explanation,
            reads_server_clock: self.env.clock_read.get(),
        }
    }
}

/// The path that allowed (§5 step 4–7, §7.3 steps 5–7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// A resource or key policy: the statements of this strength (all
    /// strengths for `None`), with the identity path's statements when the
    /// flag is set.
    Rbp(Option<Strength>, bool),
    /// Identity policies (with boundary and session policy).
    Identity,
    /// A grant.
    Grant,
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

/// `BinaryEquals`: decode the request value into a stack buffer when it fits.
fn binary_equals(rv: &str, want: &[u8]) -> bool {
    use base64::Engine as _;
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut buf = [0u8; 1024];
    match engine.decode_slice(rv, &mut buf) {
        Ok(n) => buf.get(..n) == Some(want),
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            engine.decode(rv).is_ok_and(|v| v == want)
        }
        Err(_) => false,
    }
}

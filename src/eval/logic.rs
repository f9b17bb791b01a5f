//! The compiled evaluator: docs/evaluation.md §5–§8 over a [`Snapshot`], for
//! every request the service answers. It looks only at the policies that
//! take part and, through each policy's action index, only at statements
//! whose action can match; matchers never allocate, and neither does a
//! decision without `explain` in the common case.
//!
//! The reference interpreter (`eval::reference`) states the same rules
//! plainly; the two are compared on random bundles and requests.

use std::time::SystemTime;

use smallvec::SmallVec;

use super::decision::*;
use super::env::Env;
use super::facts::{Form, is_trust_action};
use super::kms;
use super::request::Request;
use crate::bundle::{GrantConstraint, GrantOperation, KeyInfo, KeyState};
use crate::compile::condition::{CCondition, CKey, CText, CValue};
use crate::compile::pattern::equals_segments;
use crate::compile::statement::{
    ActionKey, CPolicy, CPrincipal, CPrincipals, CResource, CResources, CStatement, Candidates,
};
use crate::compile::{CGrant, IdEntry, PolicyIdx, Snapshot, op_bit};
use crate::policy::value::{self, Decimal};
use crate::policy::{BaseOperator, Effect, PolicyKind, SetQualifier, ValueType};

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
    #[inline]
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

/// What one evaluated policy (or the policies of one kind) contributed.
#[derive(Clone, Copy, Default)]
struct Summary {
    allow: bool,
    deny: bool,
}

impl Summary {
    fn add(&mut self, effect: Effect) {
        match effect {
            Effect::Allow => self.allow = true,
            Effect::Deny => self.deny = true,
        }
    }
}

type Hits<'s> = SmallVec<[Hit<'s>; 16]>;

struct Eval<'s> {
    env: Env<'s>,
    action: ActionKey<'s>,
    hits: Hits<'s>,
    missing: MissingKeys,
    has_boundary: bool,
    candidates: Candidates,
    /// With explain: the Allow statements that came close.
    near: Vec<NearMiss>,
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
        near: Vec::new(),
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
                sum.add(st.effect);
                self.hits.push(Hit {
                    policy,
                    st,
                    kind,
                    level,
                    strength,
                });
            } else {
                self.near_miss(policy, st, kind, level, None);
            }
        }
        self.candidates = candidates;
        sum
    }

    /// With explain, note an Allow statement of a granting kind whose
    /// action matched and that did not apply, if its principal matched:
    /// the first element that failed (`Failed::Resource` when the caller
    /// already knows that).
    fn near_miss(
        &mut self,
        policy: &'s CPolicy,
        st: &'s CStatement,
        kind: PolicyKind,
        level: Option<u32>,
        known: Option<Failed>,
    ) {
        if !self.env.req.explain || st.effect != Effect::Allow {
            return;
        }
        let Some(failed) = known.or_else(|| self.why_not(st, kind)) else {
            return;
        };
        let statement = MatchedStatement {
            policy_id: policy.id.clone(),
            kind,
            index: Some(st.index),
            sid: st.sid.clone(),
            effect: st.effect,
            level,
            position: Some(st.position),
        };
        self.near.push(NearMiss { statement, failed });
    }

    /// explain's near misses of an ImplicitDeny: the statements noted while
    /// deciding, the key policy statements that delegated to IAM where no
    /// identity or group policy allowed, and the grants that came close;
    /// those of gates only for the policies that refused.
    fn near_misses(&self, snap: &'s Snapshot, d: &Decided<'s>) -> Vec<NearMiss> {
        let mut near = self.near.clone();
        near.extend(self.delegations(&d.said, &d.participants));
        near.extend(self.grant_near_misses(snap, &d.participants));
        near_misses_of(near, &self.refusing(snap, d))
    }

    /// The policies of the gates that refused: each policy of an SCP or RCP
    /// level without an applicable `Allow`, the boundary and the session
    /// policy when they did not allow.
    fn refusing(&self, snap: &'s Snapshot, d: &Decided<'s>) -> Vec<Refusing> {
        let mut out = Vec::new();
        for (kind, levels) in [
            (PolicyKind::Scp, d.participants.scp),
            (PolicyKind::Rcp, d.participants.rcp),
        ] {
            for (l, level) in levels.unwrap_or_default().iter().enumerate() {
                let l = u32::try_from(l).ok();
                let allowed = self
                    .hits
                    .iter()
                    .any(|h| h.kind == kind && h.level == l && h.st.effect == Effect::Allow);
                if !allowed {
                    let ids = level.iter().filter_map(|&p| snap.bundle.policy(p));
                    out.extend(ids.map(|p| (p.id.clone(), kind, l)));
                }
            }
        }
        let boundary = self.env.caller.identity.and_then(|i| i.boundary);
        if let Some(b) = boundary.and_then(|b| snap.bundle.policy(b))
            && !d.gates.boundary
        {
            out.push((b.id.clone(), PolicyKind::Boundary, None));
        }
        if let Some(sp) = self.env.req.session_policy.as_ref()
            && !d.gates.session
        {
            out.push((sp.compiled.id.clone(), PolicyKind::Session, None));
        }
        out
    }

    /// The resource, key or trust policy statements that applied but allow
    /// only through the caller's identity policies (they name its account,
    /// or the call crosses accounts), when no identity or group policy
    /// allowed (and the caller is no root, whose identity path needs none).
    fn delegations(&self, said: &Said, p: &Participants<'s>) -> Vec<NearMiss> {
        let mut near = Vec::new();
        let iam_allows =
            said.identities.is_some_and(|s| s.allow) || said.groups.is_some_and(|s| s.allow);
        let root = self.env.caller.form == Form::Root;
        if self.env.req.explain && !iam_allows && !root {
            for h in self.hits.iter().filter(|h| {
                h.kind == p.rbp_kind
                    && h.st.effect == Effect::Allow
                    && (h.strength == Strength::Account || p.cross)
            }) {
                near.push(NearMiss {
                    statement: h.matched(),
                    failed: Failed::Delegation,
                });
            }
        }
        near
    }

    /// explain's near misses among the key's grants: each grant to the
    /// caller for this operation whose encryption context constraint the
    /// request does not meet.
    fn grant_near_misses(&self, snap: &'s Snapshot, p: &Participants<'s>) -> Vec<NearMiss> {
        let op = match GrantOperation::parse_ignore_case(self.action.name) {
            Some(op) if self.action.service == "kms" && !p.retire => op,
            _ => return Vec::new(),
        };
        let to_caller = |g: &&CGrant| {
            g.operations & op_bit(op) != 0 && self.entry_strength(&g.grantee).is_some()
        };
        if op == GrantOperation::CreateGrant {
            return p
                .grants
                .iter()
                .filter_map(|&gi| snap.bundle.grants.get(gi as usize))
                .filter(to_caller)
                .filter_map(|g| {
                    Some(NearMiss {
                        statement: MatchedStatement::grant(&g.id),
                        failed: self.create_grant_shortfall(g)?,
                    })
                })
                .collect();
        }
        if matches!(
            op,
            GrantOperation::DescribeKey | GrantOperation::RetireGrant
        ) {
            return Vec::new();
        }
        let has = |k: &str, v: &str| {
            self.env
                .encryption_context()
                .any(|(pk, pv)| pk == k && matches!(pv, [one] if one == v))
        };
        p.grants
            .iter()
            .filter_map(|&gi| snap.bundle.grants.get(gi as usize))
            .filter(to_caller)
            .filter(|g| g.constraint.is_some() && !self.grant_applies(g))
            .map(|g| {
                let want = match &g.constraint {
                    Some(GrantConstraint::Equals(w) | GrantConstraint::Subset(w)) => &w[..],
                    None => &[][..],
                };
                let missing = want
                    .iter()
                    .find(|(k, v)| !has(k, v))
                    .map(|(k, v)| (k.to_string(), v.to_string()));
                NearMiss {
                    statement: MatchedStatement::grant(&g.id),
                    failed: Failed::GrantConstraint { missing },
                }
            })
            .collect()
    }

    /// Why a statement whose action matched did not apply: its resource,
    /// or its first false condition; `None` when its principal did not
    /// match (then it was never close).
    fn why_not(&self, st: &'s CStatement, kind: PolicyKind) -> Option<Failed> {
        let resource_ok = match st.resources.as_ref() {
            Some(resources) => self.resources(resources, kind),
            None => kind == PolicyKind::Trust,
        };
        if kind.has_principals() {
            self.principals(st.principals.as_ref()?)?;
        }
        if !resource_ok {
            return Some(Failed::Resource);
        }
        let (i, c) = st
            .conditions
            .iter()
            .enumerate()
            .find(|(_, c)| !self.condition(c, kind))?;
        let request = self.env.lookup(&c.key, kind).map(|v| {
            let mut values: Vec<String> = v.iter().map(str::to_owned).collect();
            values.sort();
            values
        });
        Some(Failed::Condition {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            operator: c.op.to_string(),
            key: c.key.lower.to_string(),
            request,
            policy: c.written_values.iter().map(|v| v.to_string()).collect(),
        })
    }

    /// Whether a statement whose action matched applies, and how strongly
    /// its principal names the caller.
    fn statement(&mut self, st: &'s CStatement, kind: PolicyKind) -> Option<Strength> {
        if st.mentions_clock && self.env.server_clock() {
            self.env.clock_read.set(true);
        }
        match st.resources.as_ref() {
            Some(resources) if self.resources(resources, kind) => {}
            // A trust policy's statements apply to the role itself (U45).
            None if kind == PolicyKind::Trust => {}
            _ => return None,
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
                // Compiling padded every short pattern to six pieces (U43).
                false
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
        // U46: compiling left out the values the operator cannot read; a
        // condition left with none is false.
        if c.values.is_empty() {
            return false;
        }
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
        // U38: a negated ARN operator is false for a value that is no ARN.
        let arn_negated = neg && c.op.base.value_type() == ValueType::Arn;
        let one = |rv: &str| {
            if arn_negated && crate::policy::principal::split_arn(rv).is_none() {
                return false;
            }
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
            (_, CValue::Number(p)) if op.value_type() == ValueType::Numeric => {
                Decimal::parse(rv).is_some_and(|r| op.admits(r.cmp(&p.as_decimal())))
            }
            (_, CValue::Date(p)) if op.value_type() == ValueType::Date => {
                value::parse_date(rv).is_some_and(|r| op.admits(r.cmp(&p.as_decimal())))
            }
            // U13 (second edition): a request value is `true` when it says
            // so, ignoring case, and `false` whatever else it says.
            (O::Bool, CValue::Bool(b)) => rv.eq_ignore_ascii_case("true") == *b,
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
                rv.eq_ignore_ascii_case("true") == want
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
            GrantOperation::CreateGrant => self.create_grant_shortfall(g).is_none(),
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

    /// U34: what a `CreateGrant` asks for beyond grant `g` (the grant it
    /// creates must keep within `g`'s operations and constraint); `None`
    /// when it keeps within.
    fn create_grant_shortfall(&self, g: &CGrant) -> Option<Failed> {
        let short = |key: &str, value: Option<&String>| {
            Some(Failed::GrantRequest {
                key: key.to_owned(),
                value: value.cloned(),
            })
        };
        let Some(ops) = self.env.caller_values("kms:grantoperations") else {
            return short("kms:grantoperations", None);
        };
        let outside = ops
            .iter()
            .find(|v| GrantOperation::parse(v).is_none_or(|o| g.operations & op_bit(o) == 0));
        if let Some(v) = outside {
            return short("kms:grantoperations", Some(v));
        }
        let asked = self.env.caller_values("kms:grantconstrainttype");
        let keeps = match (&g.constraint, asked) {
            (None, _) => true,
            (Some(GrantConstraint::Equals(_)), Some([t])) => t == "EncryptionContextEquals",
            (Some(GrantConstraint::Subset(_)), Some([t])) => {
                t == "EncryptionContextEquals" || t == "EncryptionContextSubset"
            }
            _ => false,
        };
        if keeps {
            None
        } else {
            short("kms:grantconstrainttype", asked.and_then(|a| a.first()))
        }
    }

    // === The decision (§5–§7), phase by phase ===
    //
    // context (`Env::new`) → participants → statements → gates → allow path
    // → key state → result. The reference interpreter has the same phases.

    /// The policies that take part (§5 step 1, §6, §7.1).
    #[inline]
    fn participants(&self, snap: &'s Snapshot) -> Participants<'s> {
        let bundle = &snap.bundle;
        let (req, caller, res) = (self.env.req, self.env.caller, self.env.res);
        let kms = res.is_kms_key;
        let retire = kms && req.service() == "kms" && req.name() == "retiregrant";
        let key = res.entry.and_then(|e| e.key.as_ref());
        let bound_by_scps =
            caller.form != Form::Service && !caller.identity.is_some_and(|i| i.service_linked);
        let scp = bound_by_scps
            .then(|| self.env.caller_account.and_then(|a| a.scps.as_deref()))
            .flatten();
        let rcp_exempt = retire || key.is_some_and(|k| k.aws_managed);
        let rcp = (!rcp_exempt)
            .then(|| res.account.and_then(|a| bundle.accounts.get(a)))
            .flatten()
            .and_then(|a| a.rcps.as_deref());
        // U45: a role's entry holds its trust policy, which takes part in
        // the trust actions alone.
        let role = !kms && res.is_role();
        let trust = role && is_trust_action(req);
        let rbp = (!retire && (!role || trust))
            .then(|| res.entry.and_then(|e| e.policy))
            .flatten()
            .and_then(|p| bundle.policy(p));
        Participants {
            kms,
            retire,
            trust,
            cross: matches!((caller.account, res.account), (Some(pa), Some(ra)) if pa != ra),
            scp,
            rcp,
            rbp,
            rbp_kind: if kms {
                PolicyKind::KeyPolicy
            } else if trust {
                PolicyKind::Trust
            } else {
                PolicyKind::Resource
            },
            grants: if kms {
                res.entry.map_or(&[], |e| &e.grants)
            } else {
                &[]
            },
            key,
        }
    }

    /// Every statement of every participating policy that can match (§5
    /// steps 2–3): the applicable ones become hits; what each kind said.
    #[inline]
    fn statements(&mut self, snap: &'s Snapshot, p: &Participants<'s>) -> Said {
        let identity = self.env.caller.identity;
        let scp = self.levels(snap, p.scp, PolicyKind::Scp);
        let rcp = self.levels(snap, p.rcp, PolicyKind::Rcp);
        let rbp = p.rbp.map(|policy| self.policy(policy, p.rbp_kind, None));
        let (identities, groups) = self.identity_statements(snap);
        let boundary = identity
            .and_then(|i| i.boundary)
            .and_then(|b| snap.bundle.policy(b))
            .map(|b| self.policy(b, PolicyKind::Boundary, None));
        let session = self
            .env
            .req
            .session_policy
            .as_ref()
            .map(|sp| self.policy(&sp.compiled, PolicyKind::Session, None));
        Said {
            scp,
            rcp,
            rbp,
            identities,
            groups,
            boundary,
            session,
        }
    }

    /// The caller's identity and group policies, through the identity's
    /// action index: what its own policies and its groups' policies said
    /// (`None` when it has none of that kind).
    #[inline]
    fn identity_statements(&mut self, snap: &'s Snapshot) -> (Option<Summary>, Option<Summary>) {
        let Some(identity) = self.env.caller.identity else {
            return (None, None);
        };
        let bundle = &snap.bundle;
        let mut own = identity.has_kind.0.then(Summary::default);
        let mut groups = identity.has_kind.1.then(Summary::default);
        let mut entries: SmallVec<[IdEntry; 16]> = SmallVec::new();
        let statement = |e: IdEntry| {
            bundle
                .policy(e.policy)
                .and_then(|p| p.statements.get(e.stmt as usize))
        };
        identity
            .index
            .candidates(&self.action, statement, &mut entries);
        let rest = self.env.res.pieces.map(|p| p[5]);
        for e in entries {
            if !e.filter.admits(rest) {
                // Ruled out by its resource; the clock note still holds.
                if e.filter.clock && self.env.server_clock() {
                    self.env.clock_read.set(true);
                }
                if self.env.req.explain
                    && let (Some(policy), Some(st)) = (bundle.policy(e.policy), statement(e))
                {
                    self.near_miss(policy, st, e.kind, None, Some(Failed::Resource));
                }
                continue;
            }
            let (Some(policy), Some(st)) = (bundle.policy(e.policy), statement(e)) else {
                continue;
            };
            let Some(strength) = self.statement(st, e.kind) else {
                self.near_miss(policy, st, e.kind, None, None);
                continue;
            };
            let slot = if e.kind == PolicyKind::Group {
                &mut groups
            } else {
                &mut own
            };
            slot.get_or_insert_with(Summary::default).add(st.effect);
            self.hits.push(Hit {
                policy,
                st,
                kind: e.kind,
                level: None,
                strength,
            });
        }
        (own, groups)
    }

    fn levels(
        &mut self,
        snap: &'s Snapshot,
        levels: Option<&'s [Box<[PolicyIdx]>]>,
        kind: PolicyKind,
    ) -> Option<Levels> {
        let levels = levels?;
        let mut said = Levels {
            all_allow: true,
            any_deny: false,
        };
        for (l, level) in levels.iter().enumerate() {
            let l = u32::try_from(l).unwrap_or(u32::MAX);
            let mut allow = false;
            for &p in level.iter() {
                if let Some(policy) = snap.bundle.policy(p) {
                    let s = self.policy(policy, kind, Some(l));
                    allow |= s.allow;
                    said.any_deny |= s.deny;
                }
            }
            said.all_allow &= allow;
        }
        Some(said)
    }

    /// The gates (§5 steps 4–6, §6, §7.1–§7.2).
    #[inline]
    fn gates(&self, p: &Participants<'s>, said: &Said) -> Gates {
        let caller = self.env.caller;
        let boundary = said.boundary.is_none_or(|s| s.allow);
        let session = match caller.form {
            Form::AssumedRole | Form::RoleArn => said.session.is_none_or(|s| s.allow),
            Form::FederatedUser => said.session.is_some_and(|s| s.allow),
            _ => true,
        };
        let identity_allows = [said.identities, said.groups]
            .iter()
            .flatten()
            .any(|s| s.allow);
        let (req, res) = (self.env.req, self.env.res);
        Gates {
            scp: said.scp.is_none_or(|l| l.all_allow),
            rcp: said.rcp.is_none_or(|l| l.all_allow),
            boundary,
            session,
            identity: (caller.form == Form::Root || identity_allows) && boundary && session,
            cross_account_op: !(p.kms
                && p.cross
                && !kms::cross_account_allowed(req.service(), req.name())),
            key_policy: !(p.kms && res.entry.is_none()),
        }
    }

    /// Whether a principal of `strength` reaches the caller along its own
    /// path: a role's needs the boundary and session policy, an account's
    /// the whole identity path (§5, §7.3).
    #[inline]
    fn reaches(gates: &Gates, strength: Strength) -> bool {
        match strength {
            Strength::Direct => true,
            Strength::Role => gates.boundary && gates.session,
            Strength::Account => gates.identity,
        }
    }

    /// Whether the resource or key policy has an applicable `Allow` whose
    /// principal names the caller with `strength` (any strength for `None`).
    #[inline]
    fn rbp_allows(&self, p: &Participants<'s>, strength: Option<Strength>) -> bool {
        self.hits.iter().any(|h| {
            h.kind == p.rbp_kind
                && h.st.effect == Effect::Allow
                && strength.is_none_or(|s| h.strength == s)
        })
    }

    /// The path that allows, if any (§5 steps 4–7, §7.3–§7.4).
    #[inline]
    fn allow_path(&self, snap: &'s Snapshot, p: &Participants<'s>, g: &Gates) -> Option<Path<'s>> {
        if !g.open() {
            None
        } else if p.trust {
            // U45: the trust policy must allow, as a key policy must.
            self.key_path(p, g)
        } else if !p.kms {
            self.resource_path(p, g)
        } else if p.retire {
            self.retire_path(snap, p, g)
        } else {
            self.key_path(p, g).or_else(|| self.grant_path(snap, p, g))
        }
    }

    /// Any resource but a KMS key: the resource policy, then the identity
    /// path; across accounts both must allow (§5 step 7).
    #[inline]
    fn resource_path(&self, p: &Participants<'s>, g: &Gates) -> Option<Path<'s>> {
        if p.cross {
            return (g.identity && self.rbp_allows(p, None)).then_some(Path::Rbp(None, true));
        }
        if self.rbp_allows(p, Some(Strength::Direct)) {
            Some(Path::Rbp(Some(Strength::Direct), false))
        } else if self.rbp_allows(p, Some(Strength::Role)) && g.boundary && g.session {
            Some(Path::Rbp(Some(Strength::Role), false))
        } else {
            g.identity.then_some(Path::Identity)
        }
    }

    /// A KMS key's key policy (§7.3 steps 5–6).
    #[inline]
    fn key_path(&self, p: &Participants<'s>, g: &Gates) -> Option<Path<'s>> {
        let same_or_identity = !p.cross || g.identity;
        [Strength::Direct, Strength::Role, Strength::Account]
            .into_iter()
            .find(|&s| {
                let reach = match s {
                    Strength::Account => g.identity,
                    _ => Self::reaches(g, s) && same_or_identity,
                };
                reach && self.rbp_allows(p, Some(s))
            })
            .map(|s| Path::Rbp(Some(s), p.cross || s == Strength::Account))
    }

    /// A grant on the key whose operation, constraint and grantee fit
    /// (§7.3 step 7, §7.4).
    #[inline]
    fn grant_path(&self, snap: &'s Snapshot, p: &Participants<'s>, g: &Gates) -> Option<Path<'s>> {
        p.grants
            .iter()
            .filter_map(|&gi| snap.bundle.grants.get(gi as usize))
            .filter(|grant| self.grant_applies(grant))
            .find_map(|grant| {
                let s = self.entry_strength(&grant.grantee)?;
                Self::reaches(g, s).then_some(Path::Grant(grant, s))
            })
    }

    /// `RetireGrant`: grants alone, through the retiring principal or a
    /// grantee allowed to retire (§7.4).
    fn retire_path(&self, snap: &'s Snapshot, p: &Participants<'s>, g: &Gates) -> Option<Path<'s>> {
        let wanted = self.env.grant_id();
        for &gi in p.grants {
            let Some(grant) = snap.bundle.grants.get(gi as usize) else {
                continue;
            };
            if wanted.is_some_and(|w| w != Some(&*grant.id)) {
                continue;
            }
            let best = self.retirers(grant).filter(|&s| Self::reaches(g, s)).max();
            if let Some(s) = best {
                return Some(Path::Grant(grant, s));
            }
        }
        None
    }

    /// How strongly each principal that may retire `grant` names the caller.
    fn retirers(&self, grant: &CGrant) -> impl Iterator<Item = Strength> {
        let retiring = grant.retiring.as_ref().and_then(|r| self.entry_strength(r));
        let grantee = (grant.operations & op_bit(GrantOperation::RetireGrant) != 0)
            .then(|| self.entry_strength(&grant.grantee))
            .flatten();
        retiring.into_iter().chain(grantee)
    }

    /// The key state gate on an allowed KMS request (§7.6).
    #[inline]
    fn key_state(&self, p: &Participants<'s>) -> Option<KeyState> {
        let (req, key) = (self.env.req, p.key?);
        (p.kms && kms::key_state_refuses(req.service(), req.name(), key.state)).then_some(key.state)
    }

    /// The statements that decided (§8).
    fn matched(
        &self,
        outcome: Outcome,
        path: Option<Path<'s>>,
        rbp_kind: PolicyKind,
    ) -> MatchedList {
        let mut matched = MatchedList::new();
        match (outcome, path) {
            (Outcome::ExplicitDeny, _) => matched.extend(
                self.hits
                    .iter()
                    .filter(|h| h.st.effect == Effect::Deny)
                    .map(Hit::matched),
            ),
            (Outcome::Allow, Some(path)) => {
                let listed = Listed::of(path);
                let keep = |h: &&Hit<'s>| {
                    h.st.effect == Effect::Allow
                        && match h.kind {
                            PolicyKind::Scp | PolicyKind::Rcp => !h.st.full_access,
                            PolicyKind::Identity | PolicyKind::Group => listed.identities,
                            PolicyKind::Boundary | PolicyKind::Session => listed.boundary_session,
                            k if k == rbp_kind => listed
                                .rbp
                                .is_some_and(|s| s.is_none_or(|s| h.strength == s)),
                            _ => false,
                        }
                };
                matched.extend(self.hits.iter().filter(keep).map(Hit::matched));
                if let Path::Grant(grant, _) = path {
                    matched.push(MatchedStatement::grant(&grant.id));
                }
            }
            _ => {}
        }
        normalize_matched(&mut matched);
        matched
    }

    /// explain's fields (§8).
    fn explain(&self, snap: &'s Snapshot, d: &Decided<'s>) -> Box<Explanation> {
        let (p, said, gates) = (&d.participants, &d.said, &d.gates);
        let levels = |l: Option<Levels>| {
            l.map_or(KindDecision::NotApplicable, |l| {
                KindDecision::of(l.all_allow, l.any_deny)
            })
        };
        let one = |s: Option<Summary>| {
            s.map_or(KindDecision::NotApplicable, |s| {
                KindDecision::of(s.allow, s.deny)
            })
        };
        let caller = vec![
            (PolicyKind::Scp, levels(said.scp)),
            (PolicyKind::Identity, one(said.identities)),
            (PolicyKind::Group, one(said.groups)),
            (PolicyKind::Boundary, one(said.boundary)),
            (PolicyKind::Session, one(said.session)),
        ];
        let mut resource = vec![
            (PolicyKind::Rcp, levels(said.rcp)),
            (p.rbp_kind, one(said.rbp)),
        ];
        if p.kms {
            resource.push((PolicyKind::Grant, self.grants_decision(snap, p)));
        }
        let (caller_side, resource_side) = Explanation::sides(p.cross, caller, resource);
        let denied = d.outcome == Outcome::ImplicitDeny;
        Box::new(Explanation {
            allowed_by_organizations: gates.scp,
            allowed_by_boundary: gates.boundary,
            allowed_by_session: gates.session,
            allowed_by_rcp: gates.rcp,
            grant_id: match d.path {
                Some(Path::Grant(grant, _)) => Some(grant.id.clone()),
                _ => None,
            },
            blocked_by: if denied {
                gates.blocked_by(d.key_state.is_some())
            } else {
                Vec::new()
            },
            key_state: d.key_state,
            caller_side,
            resource_side,
            ignored_context_keys: self.ignored_keys(),
            near_misses: if denied {
                self.near_misses(snap, d)
            } else {
                Vec::new()
            },
        })
    }

    /// explain's grant decision: whether some grant on the key would serve
    /// this operation for this caller, ignoring the other gates.
    fn grants_decision(&self, snap: &'s Snapshot, p: &Participants<'s>) -> KindDecision {
        if p.grants.is_empty() {
            return KindDecision::NotApplicable;
        }
        let serves = |grant: &&'s CGrant| {
            if p.retire {
                self.retirers(grant).next().is_some()
            } else {
                self.grant_applies(grant) && self.entry_strength(&grant.grantee).is_some()
            }
        };
        let any = p
            .grants
            .iter()
            .filter_map(|&gi| snap.bundle.grants.get(gi as usize))
            .any(|grant| serves(&grant));
        KindDecision::of(any, false)
    }

    /// Context keys the caller sent that verdict derives and so ignored.
    fn ignored_keys(&self) -> Vec<String> {
        self.env
            .req
            .context
            .entries()
            .iter()
            .filter(|e| {
                self.env
                    .ignored(&crate::compile::condition::KeySource::classify(&e.lower))
            })
            .map(|e| e.key.to_string())
            .collect()
    }

    /// The phases in order.
    fn decide(&mut self, snap: &'s Snapshot) -> Decision {
        let participants = self.participants(snap);
        let said = self.statements(snap, &participants);
        let gates = self.gates(&participants, &said);
        let (outcome, path, key_state) = if self.hits.iter().any(|h| h.st.effect == Effect::Deny) {
            (Outcome::ExplicitDeny, None, None)
        } else {
            match self.allow_path(snap, &participants, &gates) {
                None => (Outcome::ImplicitDeny, None, None),
                Some(path) => match self.key_state(&participants) {
                    Some(state) => (Outcome::ImplicitDeny, None, Some(state)),
                    None => (Outcome::Allow, Some(path), None),
                },
            }
        };
        let matched = self.matched(outcome, path, participants.rbp_kind);
        let mut missing = std::mem::take(&mut self.missing);
        missing.sort_unstable();
        let explanation = self.env.req.explain.then(|| {
            let decided = Decided {
                participants,
                said,
                gates,
                outcome,
                path,
                key_state,
            };
            self.explain(snap, &decided)
        });
        Decision {
            outcome,
            matched,
            missing_context_keys: missing,
            bundle_revision: snap.revision.clone(),
            bundle_serial: snap.serial,
            explanation,
            reads_server_clock: self.env.clock_read.get(),
        }
    }
}

/// The policies that take part in a decision.
struct Participants<'s> {
    /// The resource is a KMS key (§7).
    kms: bool,
    /// The request is `kms:RetireGrant` on a key: grants alone decide.
    retire: bool,
    /// A trust action on a role: its trust policy decides as a key policy
    /// does (U45).
    trust: bool,
    /// Caller and resource are in different known accounts.
    cross: bool,
    /// The caller's SCP levels, when SCPs bind it.
    scp: Option<&'s [Box<[PolicyIdx]>]>,
    /// The resource's RCP levels, when RCPs bind it.
    rcp: Option<&'s [Box<[PolicyIdx]>]>,
    /// The resource or key policy.
    rbp: Option<&'s CPolicy>,
    /// `KeyPolicy` on a KMS key, `Resource` otherwise.
    rbp_kind: PolicyKind,
    /// The grants on the key (empty for other resources).
    grants: &'s [u32],
    /// The key's facts.
    key: Option<&'s KeyInfo>,
}

/// What each kind of participating policy said.
struct Said {
    scp: Option<Levels>,
    rcp: Option<Levels>,
    rbp: Option<Summary>,
    identities: Option<Summary>,
    groups: Option<Summary>,
    boundary: Option<Summary>,
    session: Option<Summary>,
}

/// What SCP or RCP levels said.
#[derive(Clone, Copy)]
struct Levels {
    /// Every level has an applicable `Allow`.
    all_allow: bool,
    /// Some level has an applicable `Deny`.
    any_deny: bool,
}

/// Everything a decision found, for its explanation.
struct Decided<'s> {
    participants: Participants<'s>,
    said: Said,
    gates: Gates,
    outcome: Outcome,
    path: Option<Path<'s>>,
    key_state: Option<KeyState>,
}

/// The path that allowed (§5 step 4–7, §7.3 steps 5–7).
#[derive(Clone, Copy)]
enum Path<'s> {
    /// A resource or key policy: the statements of this strength (all
    /// strengths for `None`), with the identity path's statements when the
    /// flag is set.
    Rbp(Option<Strength>, bool),
    /// Identity policies (with boundary and session policy).
    Identity,
    /// A grant, whose grantee or retiring principal names the caller with
    /// this strength.
    Grant(&'s CGrant, Strength),
}

/// Which `Allow` statements a path lists in `matched` (§8).
struct Listed {
    /// The resource or key policy's, of this strength (`Some(None)`: all).
    rbp: Option<Option<Strength>>,
    /// Identity and group policies'.
    identities: bool,
    /// The boundary's and the session policy's.
    boundary_session: bool,
}

impl Listed {
    fn of(path: Path<'_>) -> Self {
        match path {
            Path::Rbp(s, with_identities) => Self {
                rbp: Some(s),
                identities: with_identities,
                boundary_session: with_identities || s == Some(Strength::Role),
            },
            Path::Identity => Self {
                rbp: None,
                identities: true,
                boundary_session: true,
            },
            Path::Grant(_, s) => Self {
                rbp: None,
                identities: s == Strength::Account,
                boundary_session: s != Strength::Direct,
            },
        }
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

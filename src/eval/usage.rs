//! The statement-usage ledger: for one compiled snapshot, how many
//! decisions each of its statements and grants took part in (`matched`),
//! apart for `Allow` and `ExplicitDeny`. Fixed memory: two counters per
//! statement and per grant, laid out when the ledger is made; counting
//! allocates nothing and takes no lock.
//!
//! A decision's `matched` entries name their policy by the very `Arc` the
//! snapshot compiled (and a grant by its id's), so an entry is found by
//! that allocation's address. Entries of any other snapshot, or of a
//! request's own session policy, are not the snapshot's and are not
//! counted; a decision holds its `Arc`s, so no address it names can be
//! reused by another policy while it exists.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxHashMap;

use super::decision::{Decision, MatchedStatement, Outcome};
use crate::compile::Snapshot;
use crate::policy::PolicyKind;

/// The ledger of one snapshot.
#[derive(Debug)]
pub struct Usage {
    /// The snapshot's generation (distinct per snapshot a process builds).
    generation: u64,
    /// Each policy's first slot and its number of statements, by the
    /// address of its id.
    policies: FxHashMap<usize, (u32, u32)>,
    /// Each grant's slot, by the address of its id.
    grants: FxHashMap<usize, u32>,
    /// Two counters per slot: `Allow`, then `ExplicitDeny`.
    counts: Box<[AtomicU64]>,
    /// Decisions recorded (every outcome).
    decisions: AtomicU64,
}

/// One statement's or grant's count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Used {
    /// The policy id, or the grant id.
    pub policy_id: Arc<str>,
    /// The statement's index (none for a grant).
    pub index: Option<u32>,
    /// The statement's `Sid`.
    pub sid: Option<Arc<str>>,
    /// Decisions it took part in that allowed.
    pub allow: u64,
    /// Decisions it took part in that denied explicitly.
    pub deny: u64,
}

/// The address that identifies a policy or grant id.
fn address(id: &Arc<str>) -> usize {
    Arc::as_ptr(id).cast::<u8>() as usize
}

impl Usage {
    /// An empty ledger for `snap`.
    pub fn new(snap: &Snapshot) -> Self {
        let mut policies = FxHashMap::default();
        let mut next: u32 = 0;
        for p in snap.bundle.policies.iter() {
            // A statement's slot is its first slot plus its index.
            let len = p.statements.iter().map(|s| s.index + 1).max().unwrap_or(0);
            policies.insert(address(&p.id), (next, len));
            next = next.saturating_add(len);
        }
        let mut grants = FxHashMap::default();
        for g in snap.bundle.grants.iter() {
            grants.insert(address(&g.id), next);
            next = next.saturating_add(1);
        }
        let slots = usize::try_from(next).unwrap_or(usize::MAX);
        Self {
            generation: snap.generation,
            policies,
            grants,
            counts: (0..slots.saturating_mul(2))
                .map(|_| AtomicU64::new(0))
                .collect(),
            decisions: AtomicU64::new(0),
        }
    }

    /// The generation of the snapshot this ledger counts for.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The slot of a `matched` entry, when it is this snapshot's.
    fn slot(&self, m: &MatchedStatement) -> Option<usize> {
        let at = address(&m.policy_id);
        let slot = if m.kind == PolicyKind::Grant {
            *self.grants.get(&at)?
        } else {
            let &(first, len) = self.policies.get(&at)?;
            let index = m.index.filter(|i| *i < len)?;
            first.checked_add(index)?
        };
        usize::try_from(slot).ok()
    }

    /// Slot `slot`'s counter of `Allow`s (`side` 0) or explicit denies (1).
    fn counter(&self, slot: usize, side: usize) -> Option<&AtomicU64> {
        self.counts.get(slot.checked_mul(2)?.checked_add(side)?)
    }

    /// Count one decision: each statement and grant it lists in `matched`.
    pub fn record(&self, d: &Decision) {
        self.decisions.fetch_add(1, Ordering::Relaxed);
        let side = match d.outcome {
            Outcome::Allow => 0,
            Outcome::ExplicitDeny => 1,
            Outcome::ImplicitDeny => return,
        };
        for m in d.matched.iter() {
            if let Some(counter) = self.slot(m).and_then(|s| self.counter(s, side)) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Decisions recorded.
    pub fn decisions(&self) -> u64 {
        self.decisions.load(Ordering::Relaxed)
    }

    /// Every statement and grant of `snap` (the snapshot this ledger was
    /// made for) with its counts, in the snapshot's order: policies and
    /// their statements, then grants.
    pub fn report(&self, snap: &Snapshot) -> Vec<Used> {
        let count = |slot: usize, side: usize| {
            self.counter(slot, side)
                .map_or(0, |c| c.load(Ordering::Relaxed))
        };
        let mut out = Vec::new();
        for p in snap.bundle.policies.iter() {
            let Some(&(first, _)) = self.policies.get(&address(&p.id)) else {
                continue;
            };
            for st in p.statements.iter() {
                let slot = usize::try_from(first.saturating_add(st.index)).unwrap_or(usize::MAX);
                out.push(Used {
                    policy_id: p.id.clone(),
                    index: Some(st.index),
                    sid: st.sid.clone(),
                    allow: count(slot, 0),
                    deny: count(slot, 1),
                });
            }
        }
        for g in snap.bundle.grants.iter() {
            let Some(&slot) = self.grants.get(&address(&g.id)) else {
                continue;
            };
            let slot = usize::try_from(slot).unwrap_or(usize::MAX);
            out.push(Used {
                policy_id: g.id.clone(),
                index: None,
                sid: None,
                allow: count(slot, 0),
                deny: count(slot, 1),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::SystemTime;

    use super::*;
    use crate::bundle::{LoadOptions, load};
    use crate::eval::{EvalOptions, Request, RequestLimits, RequestParts, logic};

    fn example() -> Snapshot {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bundles/kms");
        let loaded = load(&dir, &LoadOptions::default()).unwrap();
        Snapshot::compile(&loaded.bundle, &EvalOptions::default(), 1)
    }

    /// Every principal of the example bundle doing each of a few actions on
    /// each of its keys.
    fn requests() -> Vec<Request> {
        let principals = [
            "arn:aws:iam::111122223333:user/alice",
            "arn:aws:iam::111122223333:user/dave",
            "arn:aws:iam::111122223333:root",
            "arn:aws:iam::111122223333:role/PaymentsWorker",
            "arn:aws:iam::111122223333:role/ops/KeyAdmin",
        ];
        let keys = [
            "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-west-2:111122223333:key/2222bbbb-33cc-44dd-55ee-666666ffffff",
        ];
        let actions = [
            "kms:Decrypt",
            "kms:Encrypt",
            "kms:DisableKey",
            "kms:DescribeKey",
        ];
        let mut out = Vec::new();
        for p in principals {
            for k in keys {
                for a in actions {
                    let parts = RequestParts {
                        principal: p.into(),
                        action: a.into(),
                        resource: k.into(),
                        context: vec![(
                            "kms:EncryptionContext:dept".into(),
                            vec!["payments".into()],
                        )],
                        ..RequestParts::default()
                    };
                    out.push(Request::new(parts, &RequestLimits::default()).unwrap());
                }
            }
        }
        out
    }

    #[test]
    fn counts_equal_a_recount_of_the_decisions() {
        let snap = example();
        let usage = Usage::new(&snap);
        let mut recount: HashMap<(String, Option<u32>), (u64, u64)> = HashMap::new();
        let mut outcomes = (0, 0);
        for r in requests() {
            let d = logic::evaluate(&snap, &r, SystemTime::now());
            usage.record(&d);
            for m in d.matched.iter() {
                let c = recount
                    .entry((m.policy_id.to_string(), m.index))
                    .or_default();
                match d.outcome {
                    Outcome::Allow => c.0 += 1,
                    Outcome::ExplicitDeny => c.1 += 1,
                    Outcome::ImplicitDeny => {}
                }
            }
            match d.outcome {
                Outcome::Allow => outcomes.0 += 1,
                Outcome::ExplicitDeny => outcomes.1 += 1,
                Outcome::ImplicitDeny => {}
            }
        }
        // The requests reach allows, denies and grants.
        assert!(outcomes.0 > 0 && outcomes.1 > 0, "{outcomes:?}");
        assert_eq!(usage.decisions(), requests().len() as u64);
        let report = usage.report(&snap);
        let statements: usize = snap
            .bundle
            .policies
            .iter()
            .map(|p| p.statements.len())
            .sum();
        assert_eq!(report.len(), statements + snap.bundle.grants.len());
        for u in &report {
            let want = recount
                .remove(&(u.policy_id.to_string(), u.index))
                .unwrap_or_default();
            assert_eq!((u.allow, u.deny), want, "{u:?}");
        }
        assert!(recount.is_empty(), "counted nowhere: {recount:?}");
        assert!(report.iter().any(|u| u.index.is_none() && u.allow > 0));
    }

    #[test]
    fn another_snapshots_decisions_are_not_counted() {
        let (snap, other) = (example(), example());
        let usage = Usage::new(&snap);
        for r in requests() {
            usage.record(&logic::evaluate(&other, &r, SystemTime::now()));
        }
        assert!(
            usage
                .report(&snap)
                .iter()
                .all(|u| u.allow == 0 && u.deny == 0)
        );
    }
}

//! The decision cache: a bounded, expiring moka cache owned by the service.
//!
//! It can never serve a wrong or stale answer: an entry records the snapshot
//! generation it was decided under and the whole request (principal, action,
//! resource, every context key and value, session policy, `explain`), and a
//! hit is used only when all of it equals the request at hand, so neither a
//! hash collision nor a reload can return another request's decision. The
//! key is a keyed hash of the same fields, computed without allocating.
//! Decisions that read a clock key the server filled in are not stored.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use crate::eval::{Decision, Request};

/// Context entries as sent: (key, values).
type ContextCopy = Box<[(Box<str>, Box<[String]>)]>;

struct Entry {
    generation: u64,
    principal: Box<str>,
    action: Box<str>,
    resource: Box<str>,
    context: ContextCopy,
    session_policy: Option<Box<str>>,
    explain: bool,
    decision: Decision,
}

impl Entry {
    fn is_for(&self, generation: u64, req: &Request) -> bool {
        self.generation == generation
            && self.explain == req.explain
            && *self.principal == *req.principal
            && *self.action == *req.action
            && *self.resource == *req.resource
            && self.session_policy.as_deref()
                == req.session_policy.as_ref().map(|s| s.text.as_str())
            && self.context.len() == req.context.entries().len()
            && self
                .context
                .iter()
                .zip(req.context.entries())
                .all(|((k, v), e)| **k == *e.key && **v == *e.values)
    }
}

/// The decision cache (disabled when built with zero entries).
pub struct DecisionCache {
    cache: Option<moka::sync::Cache<u64, Arc<Entry>>>,
    hasher: std::hash::RandomState,
}

impl DecisionCache {
    /// A cache of at most `max_entries` decisions, each kept at most `ttl`.
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        let cache = (max_entries > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build()
        });
        Self {
            cache,
            hasher: std::hash::RandomState::new(),
        }
    }

    /// Whether the cache is on.
    pub fn enabled(&self) -> bool {
        self.cache.is_some()
    }

    fn key(&self, generation: u64, req: &Request) -> u64 {
        let mut h = self.hasher.build_hasher();
        generation.hash(&mut h);
        req.principal.hash(&mut h);
        req.action.hash(&mut h);
        req.resource.hash(&mut h);
        for e in req.context.entries() {
            e.key.hash(&mut h);
            e.values.hash(&mut h);
        }
        req.session_policy
            .as_ref()
            .map(|s| s.text.as_str())
            .hash(&mut h);
        req.explain.hash(&mut h);
        h.finish()
    }

    /// The cached decision for this request under this snapshot generation.
    pub fn get(&self, generation: u64, req: &Request) -> Option<Decision> {
        let cache = self.cache.as_ref()?;
        let entry = cache.get(&self.key(generation, req))?;
        entry
            .is_for(generation, req)
            .then(|| entry.decision.clone())
    }

    /// Remember a decision, unless it read a server-filled clock key.
    pub fn insert(&self, generation: u64, req: &Request, decision: &Decision) {
        let Some(cache) = &self.cache else { return };
        if decision.reads_server_clock {
            return;
        }
        let entry = Entry {
            generation,
            principal: req.principal.as_str().into(),
            action: req.action.as_str().into(),
            resource: req.resource.as_str().into(),
            context: req
                .context
                .entries()
                .iter()
                .map(|e| (e.key.clone(), e.values.clone().into_boxed_slice()))
                .collect(),
            session_policy: req.session_policy.as_ref().map(|s| s.text.as_str().into()),
            explain: req.explain,
            decision: decision.clone(),
        };
        cache.insert(self.key(generation, req), Arc::new(entry));
    }

    /// Entries held now (approximate).
    pub fn len(&self) -> u64 {
        self.cache
            .as_ref()
            .map_or(0, moka::sync::Cache::entry_count)
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{Outcome, RequestLimits, RequestParts};

    fn req(ctx: &[(&str, &[&str])], explain: bool) -> Request {
        Request::new(
            RequestParts {
                principal: "arn:aws:iam::111122223333:user/a".into(),
                action: "s3:GetObject".into(),
                resource: "arn:aws:s3:::b/k".into(),
                context: ctx
                    .iter()
                    .map(|(k, v)| ((*k).into(), v.iter().map(|s| (*s).to_owned()).collect()))
                    .collect(),
                session_policy: None,
                explain,
            },
            &RequestLimits::default(),
        )
        .unwrap()
    }

    fn decision(outcome: Outcome, clock: bool) -> Decision {
        Decision {
            outcome,
            matched: Default::default(),
            missing_context_keys: Default::default(),
            bundle_revision: "r".into(),
            explanation: None,
            reads_server_clock: clock,
        }
    }

    #[test]
    fn hits_only_the_same_request_and_generation() {
        let c = DecisionCache::new(100, Duration::from_secs(60));
        let a = req(&[("k", &["1"])], false);
        c.insert(1, &a, &decision(Outcome::Allow, false));
        assert_eq!(c.get(1, &a).map(|d| d.outcome), Some(Outcome::Allow));
        assert!(c.get(2, &a).is_none(), "another generation");
        assert!(
            c.get(1, &req(&[("k", &["2"])], false)).is_none(),
            "another value"
        );
        assert!(
            c.get(1, &req(&[("k", &["1", "2"])], false)).is_none(),
            "more values"
        );
        assert!(
            c.get(1, &req(&[("k", &["1"]), ("j", &[])], false))
                .is_none(),
            "another key"
        );
        assert!(c.get(1, &req(&[("k", &["1"])], true)).is_none(), "explain");
    }

    #[test]
    fn clock_reading_decisions_are_not_stored() {
        let c = DecisionCache::new(100, Duration::from_secs(60));
        let a = req(&[], false);
        c.insert(1, &a, &decision(Outcome::Allow, true));
        assert!(c.get(1, &a).is_none());
    }

    #[test]
    fn disabled() {
        let c = DecisionCache::new(0, Duration::from_secs(60));
        let a = req(&[], false);
        c.insert(1, &a, &decision(Outcome::Allow, false));
        assert!(!c.enabled());
        assert!(c.get(1, &a).is_none());
    }
}

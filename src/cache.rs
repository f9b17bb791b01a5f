//! The decision cache: a bounded, expiring moka cache owned by the service.
//!
//! It is keyed on the request exactly as received (the protobuf message,
//! before validation), so that a hit skips validation, evaluation and every
//! allocation of building a request: a hit costs a hash, a lookup and an
//! equality check, and `Authorize` then sends the response bytes the entry
//! encoded on its first hit (`Entry::hit_response`). It can never serve a
//! wrong or stale answer: an entry records the snapshot generation it was
//! decided under and a copy of the whole request (principal, action,
//! resource, every context key and value, session policy, `explain`), and a
//! hit is used only when all of it equals the request at hand, so neither a
//! hash collision nor a reload can return another request's decision. Only
//! requests that passed validation are ever stored, and the copy an entry
//! keeps is taken once the request is found valid (validation depends on
//! the request and the process's fixed configuration alone, so an equal
//! request is valid too). The key is a keyed hash of the same fields,
//! computed without allocating; decisions that read a clock key the server
//! filled in are not stored.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;

use crate::compile::pattern::str_eq;
use crate::eval::Decision;
use crate::proto::{AuthorizeRequest, ContextValues};

/// Context entries as sent: (key, values).
type ContextCopy = Box<[(String, Vec<String>)]>;

/// A cached decision and the request it answers.
pub struct Entry {
    generation: u64,
    request: RequestCopy,
    decision: Decision,
    /// The encoded response of a hit, made on the first hit.
    hit_response: OnceLock<Bytes>,
}

impl Entry {
    fn is_for(&self, generation: u64, r: &AuthorizeRequest) -> bool {
        self.generation == generation && self.request.equals(r)
    }

    /// The decision.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// The encoded response every hit on this entry sends, encoded by
    /// `encode` on the first hit (so that a miss pays nothing for it).
    pub fn hit_response(&self, encode: impl FnOnce(&Decision) -> Bytes) -> Bytes {
        self.hit_response
            .get_or_init(|| encode(&self.decision))
            .clone()
    }
}

/// The bytes a request's strings take in memory, each string and value
/// counted with its header.
fn request_bytes(r: &AuthorizeRequest) -> u64 {
    const STRING: usize = std::mem::size_of::<String>();
    let strings = r.principal.len() + r.action.len() + r.resource.len() + r.session_policy.len();
    let context: usize = r
        .context
        .iter()
        .map(|(k, v)| STRING + k.len() + v.values.iter().map(|s| STRING + s.len()).sum::<usize>())
        .sum();
    u64::try_from(strings + context).unwrap_or(u64::MAX)
}

impl Entry {
    /// The bytes this entry holds, roughly: its request copy (measured when
    /// it was taken), the decision's lists and a fixed overhead.
    fn weight(&self) -> u64 {
        let decision = self.decision.matched.len()
            * std::mem::size_of::<crate::eval::MatchedStatement>()
            + self
                .decision
                .missing_context_keys
                .iter()
                .map(|k| 16 + k.len())
                .sum::<usize>()
            + self.decision.explanation.as_ref().map_or(0, |_| 1024);
        self.request
            .bytes
            .saturating_add(u64::try_from(decision).unwrap_or(u64::MAX))
            + ENTRY_OVERHEAD_BYTES
    }
}

/// A request as received, kept for its cache entry once it was found valid
/// (the service decides from a copy when it may store the answer).
pub struct RequestCopy {
    principal: String,
    action: String,
    resource: String,
    context: ContextCopy,
    session_policy: String,
    explain: bool,
    /// [`request_bytes`] of the request copied.
    bytes: u64,
}

impl RequestCopy {
    /// Keeps `r` (its strings as they are, never copied or shrunk), whose
    /// [`DecisionCache::storable`] size is `bytes`. Every
    /// field is named, so a field added to the message does not compile
    /// until the copy (and then its equality check and key) takes it in.
    pub fn new(r: AuthorizeRequest, bytes: u64) -> Self {
        let AuthorizeRequest {
            principal,
            action,
            resource,
            context,
            session_policy,
            explain,
        } = r;
        Self {
            principal,
            action,
            resource,
            context: context
                .into_iter()
                .map(|(k, v)| (k, v.values))
                .collect(),
            session_policy,
            explain,
            bytes,
        }
    }

    /// Whether `r` is the request this is a copy of, field by field.
    fn equals(&self, r: &AuthorizeRequest) -> bool {
        self.explain == r.explain
            && str_eq(&self.principal, &r.principal)
            && str_eq(&self.action, &r.action)
            && str_eq(&self.resource, &r.resource)
            && str_eq(&self.session_policy, &r.session_policy)
            && self.context.len() == r.context.len()
            && self.context.iter().all(|(k, v)| {
                r.context.get(&**k).is_some_and(|sent| {
                    sent.values.len() == v.len()
                        && sent.values.iter().zip(v.iter()).all(|(a, b)| str_eq(a, b))
                })
            })
    }
}

/// A decision as the service holds it: freshly evaluated, or shared with
/// the cache (a hit costs no copy of the decision).
#[expect(
    clippy::large_enum_variant,
    reason = "a fresh decision is moved a few times on its way out; boxing it would allocate on every uncached decision"
)]
pub enum Answer {
    /// Evaluated for this request (and not stored).
    Fresh(Decision),
    /// Held by the cache.
    Shared(Arc<Entry>),
}

impl std::ops::Deref for Answer {
    type Target = Decision;

    fn deref(&self) -> &Decision {
        match self {
            Self::Fresh(d) => d,
            Self::Shared(e) => &e.decision,
        }
    }
}

/// A request's cache key (a keyed hash; equality is checked on every hit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key(u64);

/// How much the cache may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// Entries (0 turns the cache off).
    pub max_entries: u64,
    /// Bytes, every entry weighed by the size of its request and decision.
    pub max_bytes: u64,
    /// Requests larger than this (as received) are not stored.
    pub max_entry_bytes: u64,
    /// How long an entry is kept.
    pub ttl: Duration,
}

/// The decision cache (disabled when built with zero entries).
pub struct DecisionCache {
    cache: Option<moka::sync::Cache<u64, Arc<Entry>, foldhash::fast::RandomState>>,
    hasher: foldhash::fast::RandomState,
    max_entry_bytes: u64,
}

/// What an entry weighs besides its strings: the entry, its `Arc`, moka's
/// node and the decision's fixed part.
const ENTRY_OVERHEAD_BYTES: u64 = 512;

impl DecisionCache {
    /// A cache within `limits`. Entries are weighed in bytes, and each weighs
    /// at least `max_bytes / max_entries`, so that both bounds hold.
    pub fn new(limits: CacheLimits) -> Self {
        let cache = (limits.max_entries > 0 && limits.max_bytes > 0).then(|| {
            let floor = u32::try_from(limits.max_bytes / limits.max_entries)
                .unwrap_or(u32::MAX)
                .max(1);
            moka::sync::Cache::builder()
                .max_capacity(limits.max_bytes)
                .weigher(move |_, entry: &Arc<Entry>| {
                    u32::try_from(entry.weight()).unwrap_or(u32::MAX).max(floor)
                })
                .time_to_live(limits.ttl)
                // The keys are hashes already; a fast seeded hasher is enough.
                .build_with_hasher(foldhash::fast::RandomState::default())
        });
        Self {
            cache,
            hasher: foldhash::fast::RandomState::default(),
            max_entry_bytes: limits.max_entry_bytes,
        }
    }

    /// Whether the cache is on.
    pub fn enabled(&self) -> bool {
        self.cache.is_some()
    }

    /// The key of a request under a snapshot generation. Context entries
    /// are combined independently of their order (the map's order is not
    /// the sender's).
    pub fn key(&self, generation: u64, r: &AuthorizeRequest) -> Key {
        let mut h = self.hasher.build_hasher();
        generation.hash(&mut h);
        r.principal.hash(&mut h);
        r.action.hash(&mut h);
        r.resource.hash(&mut h);
        r.session_policy.hash(&mut h);
        r.explain.hash(&mut h);
        let mut context = 0u64;
        for (k, ContextValues { values }) in &r.context {
            let mut e = self.hasher.build_hasher();
            k.hash(&mut e);
            values.hash(&mut e);
            context = context.wrapping_add(e.finish());
        }
        r.context.len().hash(&mut h);
        context.hash(&mut h);
        Key(h.finish())
    }

    /// The cached decision for this request under this snapshot generation.
    pub fn get(&self, key: Key, generation: u64, r: &AuthorizeRequest) -> Option<Answer> {
        let cache = self.cache.as_ref()?;
        let entry = cache.get(&key.0)?;
        entry.is_for(generation, r).then_some(Answer::Shared(entry))
    }

    /// The size of a request (see [`RequestCopy`]) when the cache is on and
    /// the request is small enough to be stored.
    pub fn storable(&self, r: &AuthorizeRequest) -> Option<u64> {
        self.cache.as_ref()?;
        let bytes = request_bytes(r);
        (bytes <= self.max_entry_bytes).then_some(bytes)
    }

    /// Remember a decision for the request `copy` was taken of (under `key`),
    /// unless it read a server-filled clock key or there is no copy; returns
    /// it as an answer either way.
    pub fn insert(
        &self,
        key: Key,
        generation: u64,
        copy: Option<RequestCopy>,
        decision: Decision,
    ) -> Answer {
        let (Some(cache), Some(copy)) = (&self.cache, copy) else {
            return Answer::Fresh(decision);
        };
        if decision.reads_server_clock {
            return Answer::Fresh(decision);
        }
        let entry = Arc::new(Entry {
            generation,
            request: copy,
            decision,
            hit_response: OnceLock::new(),
        });
        cache.insert(key.0, entry.clone());
        Answer::Shared(entry)
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
    use crate::eval::Outcome;

    fn req(ctx: &[(&str, &[&str])], explain: bool) -> AuthorizeRequest {
        AuthorizeRequest {
            principal: "arn:aws:iam::111122223333:user/a".into(),
            action: "s3:GetObject".into(),
            resource: "arn:aws:s3:::b/k".into(),
            context: ctx
                .iter()
                .map(|(k, v)| {
                    (
                        (*k).into(),
                        ContextValues {
                            values: v.iter().map(|s| (*s).to_owned()).collect(),
                        },
                    )
                })
                .collect(),
            session_policy: String::new(),
            explain,
        }
    }

    /// What the service keeps of a request for its entry.
    fn copy(c: &DecisionCache, r: &AuthorizeRequest) -> Option<RequestCopy> {
        c.storable(r)
            .map(|bytes| RequestCopy::new(r.clone(), bytes))
    }

    fn limits(max_entries: u64) -> CacheLimits {
        CacheLimits {
            max_entries,
            max_bytes: 1 << 20,
            max_entry_bytes: 8192,
            ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn large_requests_are_not_stored_and_bytes_are_bounded() {
        let c = DecisionCache::new(limits(1000));
        let big = "v".repeat(9000);
        let r = req(&[("k", &[big.as_str()])], false);
        assert!(copy(&c, &r).is_none());
        let small = req(&[("k", &["v"])], false);
        assert!(copy(&c, &small).is_some());
        // 1,000 entries of about 7 KiB each do not fit in 1 MiB.
        let value = "v".repeat(7000);
        for i in 0..1000 {
            let r = req(
                &[("k", &[value.as_str()]), ("i", &[i.to_string().as_str()])],
                false,
            );
            let key = c.key(1, &r);
            let kept = copy(&c, &r);
            assert!(kept.is_some());
            c.insert(key, 1, kept, decision(Outcome::Allow, false));
        }
        c.cache.as_ref().unwrap().run_pending_tasks();
        let held = c.cache.as_ref().unwrap().weighted_size();
        assert!(held <= 1 << 20, "{held}");
        assert!(c.len() < 160, "{}", c.len());
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

    fn put(c: &DecisionCache, generation: u64, r: &AuthorizeRequest, d: Decision) -> Answer {
        c.insert(c.key(generation, r), generation, copy(c, r), d)
    }

    fn get(c: &DecisionCache, generation: u64, r: &AuthorizeRequest) -> Option<Outcome> {
        c.get(c.key(generation, r), generation, r)
            .map(|a| a.outcome)
    }

    #[test]
    fn hits_only_the_same_request_and_generation() {
        let c = DecisionCache::new(limits(100));
        let a = req(&[("k", &["1"]), ("j", &["x", "y"])], false);
        put(&c, 1, &a, decision(Outcome::Allow, false));
        assert_eq!(get(&c, 1, &a), Some(Outcome::Allow));
        assert!(get(&c, 2, &a).is_none(), "another generation");
        for (other, why) in [
            (
                req(&[("k", &["2"]), ("j", &["x", "y"])], false),
                "another value",
            ),
            (
                req(&[("k", &["1"]), ("j", &["y", "x"])], false),
                "values in another order",
            ),
            (req(&[("k", &["1"])], false), "fewer keys"),
            (
                req(&[("k", &["1"]), ("j", &["x", "y"]), ("i", &[])], false),
                "another key",
            ),
            (
                req(&[("K", &["1"]), ("j", &["x", "y"])], false),
                "a key spelled otherwise",
            ),
            (req(&[("k", &["1"]), ("j", &["x", "y"])], true), "explain"),
        ] {
            assert!(get(&c, 1, &other).is_none(), "{why}");
        }
        let mut b = a.clone();
        b.principal = "arn:aws:iam::111122223333:user/A".into();
        assert!(get(&c, 1, &b).is_none(), "another principal");
        let mut b = a.clone();
        b.session_policy = "{}".into();
        assert!(get(&c, 1, &b).is_none(), "a session policy");
    }

    #[test]
    fn a_colliding_key_is_never_a_hit() {
        let c = DecisionCache::new(limits(100));
        let a = req(&[], false);
        let b = req(&[("k", &["1"])], false);
        // Store a's decision under b's key: the lookup must see it is not b's.
        c.insert(
            c.key(1, &b),
            1,
            copy(&c, &a),
            decision(Outcome::Allow, false),
        );
        assert!(c.get(c.key(1, &b), 1, &b).is_none());
    }

    #[test]
    fn clock_reading_decisions_are_not_stored() {
        let c = DecisionCache::new(limits(100));
        let a = req(&[], false);
        put(&c, 1, &a, decision(Outcome::Allow, true));
        assert!(get(&c, 1, &a).is_none());
    }

    #[test]
    fn disabled() {
        let c = DecisionCache::new(limits(0));
        let a = req(&[], false);
        assert!(copy(&c, &a).is_none());
        put(&c, 1, &a, decision(Outcome::Allow, false));
        assert!(!c.enabled());
        assert!(get(&c, 1, &a).is_none());
    }
}

//! The decision cache: a bounded, expiring moka cache of decisions, generic
//! over what an entry keeps of the request it answers ([`Stored`]; the
//! service defines it on the request as received).
//!
//! A hit costs a hash, a lookup and an equality check, and `Authorize` then
//! sends the response bytes the entry encoded on its first hit
//! (`Entry::hit_response`). It can never serve a wrong or stale answer: an
//! entry records the snapshot generation it was decided under and the whole
//! request, and a hit is used only when the generation and
//! [`Stored::matches`] agree, so neither a hash collision nor a reload can
//! return another request's decision. Decisions that read a clock key the
//! server filled in are not stored. Entries are weighed in bytes.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;

use crate::eval::Decision;

/// What an entry keeps of the request it answers.
pub trait Stored: Send + Sync + 'static {
    /// The request as it arrives, before anything is made of it.
    type Sent: ?Sized;

    /// What a stored copy of `sent` weighs, in bytes.
    fn size(sent: &Self::Sent) -> u64;

    /// Feeds every field of `sent` to `h`; requests that [`Stored::matches`]
    /// finds equal must hash equal. Parts hashed on their own (to combine
    /// them in any order) are hashed with `keyed`, the cache's own seed.
    fn hash<B: BuildHasher>(sent: &Self::Sent, keyed: &B, h: &mut B::Hasher);

    /// Whether `sent` is the request this was kept of, field by field.
    fn matches(&self, sent: &Self::Sent) -> bool;

    /// [`Stored::size`] of the request this was kept of.
    fn bytes(&self) -> u64;
}

/// A cached decision and the request it answers.
pub(crate) struct Entry<S> {
    generation: u64,
    request: S,
    decision: Decision,
    /// The encoded response of a hit, made on the first hit.
    hit_response: OnceLock<Bytes>,
}

impl<S: Stored> Entry<S> {
    fn is_for(&self, generation: u64, sent: &S::Sent) -> bool {
        self.generation == generation && self.request.matches(sent)
    }

    /// The bytes this entry holds, roughly: its request, the decision's
    /// lists and a fixed overhead.
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
            .bytes()
            .saturating_add(u64::try_from(decision).unwrap_or(u64::MAX))
            + ENTRY_OVERHEAD_BYTES
    }
}

impl<S> Entry<S> {
    /// The encoded response every hit on this entry sends, encoded by
    /// `encode` on the first hit (so that a miss pays nothing for it).
    pub(crate) fn hit_response(&self, encode: impl FnOnce(&Decision) -> Bytes) -> Bytes {
        self.hit_response
            .get_or_init(|| encode(&self.decision))
            .clone()
    }
}

/// A decision as the service holds it: freshly evaluated, or shared with
/// the cache (a hit costs no copy of the decision).
#[expect(
    clippy::large_enum_variant,
    reason = "a fresh decision is moved a few times on its way out; boxing it would allocate on every uncached decision"
)]
pub(crate) enum Answer<S> {
    /// Evaluated for this request (and not stored).
    Fresh(Decision),
    /// Held by the cache.
    Shared(Arc<Entry<S>>),
}

impl<S> std::ops::Deref for Answer<S> {
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
pub(crate) struct Key(u64);

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
pub struct DecisionCache<S> {
    cache: Option<moka::sync::Cache<u64, Arc<Entry<S>>, foldhash::fast::RandomState>>,
    hasher: foldhash::fast::RandomState,
    max_entry_bytes: u64,
}

/// What an entry weighs besides its request: the entry, its `Arc`, moka's
/// node and the decision's fixed part.
const ENTRY_OVERHEAD_BYTES: u64 = 512;

impl<S: Stored> DecisionCache<S> {
    /// A cache within `limits`. Entries are weighed in bytes, and each weighs
    /// at least `max_bytes / max_entries`, so that both bounds hold.
    pub fn new(limits: CacheLimits) -> Self {
        let cache = (limits.max_entries > 0 && limits.max_bytes > 0).then(|| {
            let floor = u32::try_from(limits.max_bytes / limits.max_entries)
                .unwrap_or(u32::MAX)
                .max(1);
            moka::sync::Cache::builder()
                .max_capacity(limits.max_bytes)
                .weigher(move |_, entry: &Arc<Entry<S>>| {
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
    pub(crate) fn enabled(&self) -> bool {
        self.cache.is_some()
    }

    /// The key of a request under a snapshot generation.
    pub(crate) fn key(&self, generation: u64, sent: &S::Sent) -> Key {
        let mut h = self.hasher.build_hasher();
        generation.hash(&mut h);
        S::hash(sent, &self.hasher, &mut h);
        Key(h.finish())
    }

    /// The cached decision for this request under this snapshot generation.
    pub(crate) fn get(&self, key: Key, generation: u64, sent: &S::Sent) -> Option<Answer<S>> {
        let cache = self.cache.as_ref()?;
        let entry = cache.get(&key.0)?;
        entry
            .is_for(generation, sent)
            .then_some(Answer::Shared(entry))
    }

    /// The size of a request when the cache is on and the request is small
    /// enough to be stored.
    pub(crate) fn storable(&self, sent: &S::Sent) -> Option<u64> {
        self.cache.as_ref()?;
        let bytes = S::size(sent);
        (bytes <= self.max_entry_bytes).then_some(bytes)
    }

    /// Remember a decision for the request `kept` (under `key`), unless it
    /// read a server-filled clock key or nothing was kept; returns it as an
    /// answer either way.
    pub(crate) fn insert(
        &self,
        key: Key,
        generation: u64,
        kept: Option<S>,
        decision: Decision,
    ) -> Answer<S> {
        let (Some(cache), Some(request)) = (&self.cache, kept) else {
            return Answer::Fresh(decision);
        };
        if decision.reads_server_clock {
            return Answer::Fresh(decision);
        }
        let entry = Arc::new(Entry {
            generation,
            request,
            decision,
            hit_response: OnceLock::new(),
        });
        cache.insert(key.0, entry.clone());
        Answer::Shared(entry)
    }

    /// Entries held now (approximate).
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.cache
            .as_ref()
            .map_or(0, moka::sync::Cache::entry_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Outcome;

    /// A request of one string, kept whole.
    struct Text(String);

    impl Stored for Text {
        type Sent = str;

        fn size(sent: &str) -> u64 {
            sent.len() as u64
        }

        fn hash<B: BuildHasher>(sent: &str, _: &B, h: &mut B::Hasher) {
            sent.hash(h);
        }

        fn matches(&self, sent: &str) -> bool {
            self.0 == sent
        }

        fn bytes(&self) -> u64 {
            self.0.len() as u64
        }
    }

    fn limits(max_entries: u64) -> CacheLimits {
        CacheLimits {
            max_entries,
            max_bytes: 1 << 20,
            max_entry_bytes: 8192,
            ttl: Duration::from_secs(60),
        }
    }

    fn decision(outcome: Outcome, clock: bool) -> Decision {
        Decision {
            outcome,
            matched: Default::default(),
            missing_context_keys: Default::default(),
            bundle_revision: "r".into(),
            bundle_serial: 0,
            explanation: None,
            reads_server_clock: clock,
        }
    }

    fn put(c: &DecisionCache<Text>, generation: u64, r: &str, d: Decision) {
        let kept = c.storable(r).map(|_| Text(r.to_owned()));
        c.insert(c.key(generation, r), generation, kept, d);
    }

    fn get(c: &DecisionCache<Text>, generation: u64, r: &str) -> Option<Outcome> {
        c.get(c.key(generation, r), generation, r)
            .map(|a| a.outcome)
    }

    #[test]
    fn large_requests_are_not_stored_and_bytes_are_bounded() {
        let c = DecisionCache::<Text>::new(limits(1000));
        assert!(c.storable(&"v".repeat(9000)).is_none());
        assert!(c.storable("v").is_some());
        // 1,000 entries of about 7 KiB each do not fit in 1 MiB.
        for i in 0..1000 {
            put(
                &c,
                1,
                &format!("{i}{}", "v".repeat(7000)),
                decision(Outcome::Allow, false),
            );
        }
        c.cache.as_ref().unwrap().run_pending_tasks();
        let held = c.cache.as_ref().unwrap().weighted_size();
        assert!(held <= 1 << 20, "{held}");
        assert!(c.len() < 160, "{}", c.len());
    }

    #[test]
    fn hits_only_the_same_request_and_generation() {
        let c = DecisionCache::<Text>::new(limits(100));
        put(&c, 1, "a", decision(Outcome::Allow, false));
        assert_eq!(get(&c, 1, "a"), Some(Outcome::Allow));
        assert!(get(&c, 2, "a").is_none(), "another generation");
        assert!(get(&c, 1, "b").is_none(), "another request");
    }

    #[test]
    fn a_colliding_key_is_never_a_hit() {
        let c = DecisionCache::<Text>::new(limits(100));
        // Store a's decision under b's key: the lookup must see it is not b's.
        c.insert(
            c.key(1, "b"),
            1,
            Some(Text("a".into())),
            decision(Outcome::Allow, false),
        );
        assert!(c.get(c.key(1, "b"), 1, "b").is_none());
    }

    #[test]
    fn clock_reading_decisions_are_not_stored() {
        let c = DecisionCache::<Text>::new(limits(100));
        put(&c, 1, "a", decision(Outcome::Allow, true));
        assert!(get(&c, 1, "a").is_none());
    }

    #[test]
    fn disabled() {
        let c = DecisionCache::<Text>::new(limits(0));
        assert!(c.storable("a").is_none());
        put(&c, 1, "a", decision(Outcome::Allow, false));
        assert!(!c.enabled());
        assert!(get(&c, 1, "a").is_none());
    }
}

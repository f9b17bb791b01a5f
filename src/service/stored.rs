//! What a cache entry keeps of an `Authorize` request: the request as
//! received, its key and its equality check, each naming every field of
//! the message (a field added to it does not compile until all three take
//! it in).

use std::hash::{BuildHasher, Hash, Hasher};

use crate::cache::Stored;
use crate::compile::pattern::str_eq;
use crate::proto::{AuthorizeRequest, ContextValues};

/// The service's decision cache.
pub type Cache = crate::cache::DecisionCache<RequestCopy>;

/// Context entries as sent: (key, values).
type ContextCopy = Box<[(String, Vec<String>)]>;

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
    /// [`Stored::size`] is `bytes`. Every
    /// field is named, so a field added to the message does not compile
    /// until the copy (and then its equality check and key) takes it in.
    pub(crate) fn new(r: AuthorizeRequest, bytes: u64) -> Self {
        let AuthorizeRequest {
            principal,
            action,
            resource,
            context,
            session_policy,
            explain,
            // Which bundle may answer, checked before any of this (the
            // cache is per bundle): never part of the decision or its key.
            min_serial: _,
        } = r;
        Self {
            principal,
            action,
            resource,
            context: context.into_iter().map(|(k, v)| (k, v.values)).collect(),
            session_policy,
            explain,
            bytes,
        }
    }
}

impl Stored for RequestCopy {
    type Sent = AuthorizeRequest;

    fn size(r: &AuthorizeRequest) -> u64 {
        request_bytes(r)
    }

    /// Context entries are combined independently of their order (the map's
    /// order is not the sender's). Every field is named.
    fn hash<B: BuildHasher>(r: &AuthorizeRequest, keyed: &B, h: &mut B::Hasher) {
        let AuthorizeRequest {
            principal,
            action,
            resource,
            context,
            session_policy,
            explain,
            // Which bundle may answer, checked before any of this (the
            // cache is per bundle): never part of the decision or its key.
            min_serial: _,
        } = r;
        principal.hash(h);
        action.hash(h);
        resource.hash(h);
        session_policy.hash(h);
        explain.hash(h);
        let mut combined = 0u64;
        for (k, ContextValues { values }) in context {
            let mut e = keyed.build_hasher();
            k.hash(&mut e);
            values.hash(&mut e);
            combined = combined.wrapping_add(e.finish());
        }
        context.len().hash(h);
        combined.hash(h);
    }

    /// Every field is named.
    fn matches(&self, r: &AuthorizeRequest) -> bool {
        let AuthorizeRequest {
            principal,
            action,
            resource,
            context,
            session_policy,
            explain,
            // Which bundle may answer, checked before any of this (the
            // cache is per bundle): never part of the decision or its key.
            min_serial: _,
        } = r;
        self.explain == *explain
            && str_eq(&self.principal, principal)
            && str_eq(&self.action, action)
            && str_eq(&self.resource, resource)
            && str_eq(&self.session_policy, session_policy)
            && self.context.len() == context.len()
            && self.context.iter().all(|(k, v)| {
                context.get(k).is_some_and(|sent| {
                    sent.values.len() == v.len()
                        && sent.values.iter().zip(v.iter()).all(|(a, b)| str_eq(a, b))
                })
            })
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{CacheLimits, DecisionCache};
    use crate::eval::{Decision, Outcome};
    use std::time::Duration;

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
            min_serial: 0,
        }
    }

    fn decision(outcome: Outcome) -> Decision {
        Decision {
            outcome,
            matched: Default::default(),
            missing_context_keys: Default::default(),
            bundle_revision: "r".into(),
            bundle_serial: 0,
            explanation: None,
            reads_server_clock: false,
        }
    }

    fn put(c: &DecisionCache<RequestCopy>, generation: u64, r: &AuthorizeRequest, d: Decision) {
        let kept = c
            .storable(r)
            .map(|bytes| RequestCopy::new(r.clone(), bytes));
        c.insert(c.key(generation, r), generation, kept, d);
    }

    fn get(
        c: &DecisionCache<RequestCopy>,
        generation: u64,
        r: &AuthorizeRequest,
    ) -> Option<Outcome> {
        c.get(c.key(generation, r), generation, r)
            .map(|a| a.outcome)
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
    fn a_request_too_large_is_not_stored() {
        let c = DecisionCache::<RequestCopy>::new(limits(1000));
        let big = "v".repeat(9000);
        assert!(c.storable(&req(&[("k", &[big.as_str()])], false)).is_none());
        assert!(c.storable(&req(&[("k", &["v"])], false)).is_some());
    }

    #[test]
    fn hits_only_the_same_request_and_generation() {
        let c = DecisionCache::<RequestCopy>::new(limits(100));
        let a = req(&[("k", &["1"]), ("j", &["x", "y"])], false);
        put(&c, 1, &a, decision(Outcome::Allow));
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
    fn context_order_does_not_change_the_key() {
        let c = DecisionCache::<RequestCopy>::new(limits(100));
        let a = req(&[("k", &["1"]), ("j", &["2"]), ("i", &["3"])], false);
        let b = req(&[("i", &["3"]), ("k", &["1"]), ("j", &["2"])], false);
        assert_eq!(c.key(1, &a), c.key(1, &b));
        put(&c, 1, &a, decision(Outcome::Allow));
        assert_eq!(get(&c, 1, &b), Some(Outcome::Allow));
    }
}

//! The request context as the compiled evaluator sees it: derived keys are
//! computed on demand from the request, the caller's identity and the
//! resource, without building a map and without allocating (docs/evaluation.md §1).

use std::cell::{Cell, OnceCell};
use std::time::SystemTime;

use arrayvec::ArrayString;

use super::facts::{ENCRYPTION_CONTEXT_PREFIX, Form, is_create_key};
use super::request::{Caller, ContextEntry, Request};
use crate::compile::condition::{CKey, KeySource};
use crate::compile::{CAccount, CIdentity, CResourceEntry, CompiledBundle, DefaultEntry};
use crate::policy::PolicyKind;
use crate::policy::principal::PrincipalArn;
use crate::policy::value;

/// A short string built during evaluation, on the stack when it fits.
#[derive(Debug)]
pub(crate) enum Scratch {
    /// Fits inline.
    Inline(ArrayString<96>),
    /// Does not.
    Heap(String),
}

impl Scratch {
    fn build(f: impl Fn(&mut dyn std::fmt::Write) -> std::fmt::Result) -> Self {
        let mut inline = ArrayString::<96>::new();
        if f(&mut inline).is_ok() {
            return Self::Inline(inline);
        }
        let mut heap = String::new();
        let _ = f(&mut heap);
        Self::Heap(heap)
    }

    fn as_str(&self) -> &str {
        match self {
            Self::Inline(s) => s,
            Self::Heap(s) => s,
        }
    }
}

/// The values of a key.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Values<'a> {
    /// One value.
    One(&'a str),
    /// The caller's values.
    List(&'a [String]),
    /// Values from the bundle.
    Boxed(&'a [Box<str>]),
    /// `kms:EncryptionContextKeys` derived from the request's
    /// `kms:EncryptionContext:<k>` entries and the configured defaults.
    EcKeys(&'a [ContextEntry], &'a [DefaultEntry]),
}

/// The part of a key after `kms:EncryptionContext:`, in its original spelling.
fn ec_suffix(key: &str) -> &str {
    let skip = ENCRYPTION_CONTEXT_PREFIX.chars().count();
    key.char_indices()
        .nth(skip)
        .map_or("", |(i, _)| key.get(i..).unwrap_or(""))
}

impl<'a> Values<'a> {
    /// Iterate the values.
    pub(crate) fn iter(self) -> impl Iterator<Item = &'a str> {
        let (one, list, boxed, ec) = match self {
            Self::One(s) => (Some(s), None, None, None),
            Self::List(l) => (None, Some(l), None, None),
            Self::Boxed(b) => (None, None, Some(b), None),
            Self::EcKeys(r, d) => (None, None, None, Some((r, d))),
        };
        let ec_iter = ec.into_iter().flat_map(|(req, defaults)| {
            let from_defaults = defaults
                .iter()
                .filter(move |d| req.binary_search_by(|e| (*e.lower).cmp(&d.lower)).is_err())
                .map(|d| (&*d.lower, &*d.key));
            // Both lists are sorted by lower-cased key; merge them.
            MergeByKey {
                a: req.iter().map(|e| (&*e.lower, &*e.key)).peekable(),
                b: from_defaults.peekable(),
            }
            .map(|(_, key)| ec_suffix(key))
        });
        one.into_iter()
            .chain(list.into_iter().flatten().map(String::as_str))
            .chain(boxed.into_iter().flatten().map(|b| &**b))
            .chain(ec_iter)
    }

    /// How many values.
    pub(crate) fn len(self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::List(l) => l.len(),
            Self::Boxed(b) => b.len(),
            Self::EcKeys(..) => self.iter().count(),
        }
    }

    /// Whether there are no values.
    pub(crate) fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// The value, if there is exactly one (a policy variable's value).
    pub(crate) fn single(self) -> Option<&'a str> {
        let mut it = self.iter();
        match (it.next(), it.next()) {
            (Some(v), None) => Some(v),
            _ => None,
        }
    }
}

struct MergeByKey<A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<'x, A, B> Iterator for MergeByKey<A, B>
where
    A: Iterator<Item = (&'x str, &'x str)>,
    B: Iterator<Item = (&'x str, &'x str)>,
{
    type Item = (&'x str, &'x str);
    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) => {
                if x.0 <= y.0 {
                    self.a.next()
                } else {
                    self.b.next()
                }
            }
            (Some(_), None) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

/// The caller, resolved in a compiled bundle.
pub(crate) type CallerView<'a> = super::facts::CallerOf<'a, CIdentity>;

/// The resource, resolved in a compiled bundle.
pub(crate) type ResourceView<'a> = super::facts::ResourceOf<'a, CResourceEntry>;

/// Everything a decision reads, borrowed.
pub(crate) struct Env<'a> {
    /// The compiled bundle.
    pub bundle: &'a CompiledBundle,
    /// The request.
    pub(crate) req: &'a Request,
    /// The caller.
    pub(crate) caller: CallerView<'a>,
    /// The resource.
    pub(crate) res: ResourceView<'a>,
    /// The caller's account entry.
    pub(crate) caller_account: Option<&'a CAccount>,
    create_key: bool,
    trusted_tags: bool,
    now: SystemTime,
    userid: OnceCell<Option<Scratch>>,
    derived_time: OnceCell<Option<Scratch>>,
    derived_epoch: OnceCell<Option<Scratch>>,
    /// Set when a statement whose action matched mentions a clock key the server filled.
    pub(crate) clock_read: Cell<bool>,
}

impl<'a> Env<'a> {
    /// Resolve the request against the bundle.
    pub(crate) fn new(bundle: &'a CompiledBundle, req: &'a Request, now: SystemTime) -> Self {
        let self_arn = req.caller_arn();
        let caller = match &req.caller {
            Caller::Service(name) => CallerView::service(name),
            Caller::Arn(arn) => {
                let (form, identity) = match arn {
                    PrincipalArn::Root { .. } => (Form::Root, None),
                    PrincipalArn::User { .. } => {
                        (Form::User, self_arn.and_then(|a| bundle.user(a)))
                    }
                    PrincipalArn::Role { account, name, .. } => {
                        (Form::RoleArn, bundle.role(account, name))
                    }
                    PrincipalArn::AssumedRole { account, role, .. } => {
                        (Form::AssumedRole, bundle.role(account, role))
                    }
                    PrincipalArn::FederatedUser { .. } => (Form::FederatedUser, None),
                };
                let role_arn = match form {
                    Form::RoleArn | Form::AssumedRole => {
                        identity.map(|i| &*i.arn).or(req.role_arn.as_deref())
                    }
                    _ => None,
                };
                CallerView {
                    form,
                    account: Some(arn.account()),
                    identity,
                    self_arn,
                    role_arn,
                    service: None,
                }
            }
        };
        let entry = bundle
            .resources
            .get(req.resource.as_str())
            .map(|e| (e, e.account.as_deref()));
        let res = ResourceView::new(&req.resource, entry, caller.account);
        let trusted_tags = bundle.options.trust_session_tags
            && matches!(caller.form, Form::AssumedRole | Form::FederatedUser);
        Self {
            bundle,
            req,
            caller_account: caller.account.and_then(|a| bundle.accounts.get(a)),
            caller,
            res,
            create_key: is_create_key(req),
            trusted_tags,
            now,
            userid: OnceCell::new(),
            derived_time: OnceCell::new(),
            derived_epoch: OnceCell::new(),
            clock_read: Cell::new(false),
        }
    }

    /// Whether the caller's value of a key is ignored (verdict derives it).
    pub(crate) fn ignored(&self, source: &KeySource) -> bool {
        match source {
            KeySource::Caller
            | KeySource::CurrentTime
            | KeySource::EpochTime
            | KeySource::EncryptionContextKeys
            | KeySource::RequestedRegion => false,
            KeySource::PrincipalTag(_) => !self.trusted_tags,
            KeySource::KeySpec | KeySource::KeyUsage | KeySource::KeyOrigin => !self.create_key,
            _ => true,
        }
    }

    /// The caller's entry (or the configured default) for a lower-cased key.
    fn caller_get(&self, lower: &str) -> Option<&'a [String]> {
        if let Some(e) = self.req.context.get(lower) {
            return Some(&e.values);
        }
        let defaults = &self.bundle.options.default_context;
        defaults
            .binary_search_by(|d| (*d.lower).cmp(lower))
            .ok()
            .and_then(|i| defaults.get(i))
            .map(|d| &*d.values)
    }

    /// Whether the server clock fills `aws:CurrentTime` and `aws:EpochTime`.
    pub(crate) fn server_clock(&self) -> bool {
        self.caller_get("aws:currenttime").is_none() && self.caller_get("aws:epochtime").is_none()
    }

    fn now_secs(&self) -> i64 {
        match self.now.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }

    fn tag<'t>(tags: &'t [crate::bundle::Tag], key: &str) -> Option<&'t str> {
        tags.binary_search_by(|t| (*t.key_lower).cmp(key))
            .ok()
            .and_then(|i| tags.get(i))
            .map(|t| &*t.value)
    }

    /// The values of a key as a statement of `kind` sees it.
    pub(crate) fn lookup<'e>(&'e self, key: &CKey, kind: PolicyKind) -> Option<Values<'e>> {
        let c = &self.caller;
        let one = |s: &'e str| Some(Values::One(s));
        match &key.source {
            KeySource::Caller => self.caller_get(&key.lower).map(Values::List),
            KeySource::PrincipalArn => match c.form {
                Form::Root | Form::User | Form::FederatedUser => c.self_arn.and_then(one),
                Form::RoleArn | Form::AssumedRole => c.role_arn.and_then(one),
                Form::Service => None,
            },
            KeySource::PrincipalType => match c.form {
                Form::Root => one("Account"),
                Form::User => one("User"),
                Form::RoleArn | Form::AssumedRole => one("AssumedRole"),
                Form::FederatedUser => one("FederatedUser"),
                Form::Service => None,
            },
            KeySource::UserId => self.userid().and_then(one),
            KeySource::UserName => match &self.req.caller {
                Caller::Arn(PrincipalArn::User { name, .. }) => one(name),
                _ => None,
            },
            KeySource::PrincipalAccount | KeySource::CallerAccount => c.account.and_then(one),
            KeySource::IsAwsService => one(if c.form == Form::Service {
                "true"
            } else {
                "false"
            }),
            KeySource::OrgId => self
                .caller_account
                .and_then(|a| a.org_id.as_deref())
                .and_then(one),
            KeySource::OrgPaths => self
                .caller_account
                .and_then(|a| a.org_paths.as_deref())
                .map(Values::Boxed),
            KeySource::PrincipalTag(k) => {
                if self.trusted_tags
                    && let Some(v) = self.caller_get(&key.lower)
                {
                    return Some(Values::List(v));
                }
                c.identity.and_then(|i| Self::tag(&i.tags, k)).and_then(one)
            }
            KeySource::ResourceTag(k) => self
                .res
                .entry
                .and_then(|e| Self::tag(&e.tags, k))
                .and_then(one),
            KeySource::ResourceAccount => {
                if self.res.account_known {
                    self.res.account.and_then(one)
                } else {
                    None
                }
            }
            KeySource::ResourceAliases => {
                if kind == PolicyKind::KeyPolicy {
                    return None;
                }
                let aliases = self
                    .res
                    .entry
                    .and_then(|e| e.key.as_ref())
                    .map(|k| &*k.aliases)?;
                (!aliases.is_empty()).then_some(Values::Boxed(aliases))
            }
            KeySource::KeySpec | KeySource::KeyUsage | KeySource::KeyOrigin => {
                if self.create_key {
                    return self.caller_get(&key.lower).map(Values::List);
                }
                let k = self.res.entry.and_then(|e| e.key.as_ref())?;
                let v = match key.source {
                    KeySource::KeySpec => &k.key_spec,
                    KeySource::KeyUsage => &k.key_usage,
                    _ => &k.key_origin,
                };
                v.as_deref().and_then(one)
            }
            KeySource::CurrentTime => self.current_time(),
            KeySource::EpochTime => self.epoch_time(),
            KeySource::EncryptionContextKeys => self.encryption_context_keys(),
            KeySource::RequestedRegion => {
                if let Some(v) = self.caller_get("aws:requestedregion") {
                    return Some(Values::List(v));
                }
                self.res
                    .pieces
                    .map(|p| p[3])
                    .filter(|r| !r.is_empty())
                    .and_then(one)
            }
        }
    }

    /// `aws:CurrentTime`: as sent, else from `aws:EpochTime`, else the
    /// server clock.
    fn current_time(&self) -> Option<Values<'_>> {
        if let Some(v) = self.caller_get("aws:currenttime") {
            return Some(Values::List(v));
        }
        self.derived_time
            .get_or_init(|| {
                let secs = match self.caller_get("aws:epochtime") {
                    Some([v]) => v.parse::<i64>().ok()?,
                    Some(_) => return None,
                    None => self.now_secs(),
                };
                let t = chrono::DateTime::from_timestamp(secs, 0)?;
                use chrono::{Datelike, Timelike};
                Some(Scratch::build(|w| {
                    write!(
                        w,
                        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                        t.year(),
                        t.month(),
                        t.day(),
                        t.hour(),
                        t.minute(),
                        t.second()
                    )
                }))
            })
            .as_ref()
            .map(|s| Values::One(s.as_str()))
    }

    /// `aws:EpochTime`: as sent, else from `aws:CurrentTime`, else the
    /// server clock.
    fn epoch_time(&self) -> Option<Values<'_>> {
        if let Some(v) = self.caller_get("aws:epochtime") {
            return Some(Values::List(v));
        }
        self.derived_epoch
            .get_or_init(|| match self.caller_get("aws:currenttime") {
                Some([v]) => {
                    let d = value::parse_date(v)?;
                    Some(Scratch::build(|w| write!(w, "{d}")))
                }
                Some(_) => None,
                None => {
                    let secs = self.now_secs();
                    Some(Scratch::build(|w| write!(w, "{secs}")))
                }
            })
            .as_ref()
            .map(|s| Values::One(s.as_str()))
    }

    /// `kms:EncryptionContextKeys`: as sent, else the keys of the request's
    /// (and the default context's) `kms:EncryptionContext:` entries.
    fn encryption_context_keys(&self) -> Option<Values<'_>> {
        if let Some(v) = self.caller_get("kms:encryptioncontextkeys") {
            return Some(Values::List(v));
        }
        let entries = self.req.context.entries();
        let start = entries.partition_point(|e| *e.lower < *ENCRYPTION_CONTEXT_PREFIX);
        let end = entries.partition_point(|e| {
            *e.lower < *ENCRYPTION_CONTEXT_PREFIX || e.lower.starts_with(ENCRYPTION_CONTEXT_PREFIX)
        });
        let defaults = &self.bundle.options.default_context;
        let ds = defaults.partition_point(|d| *d.lower < *ENCRYPTION_CONTEXT_PREFIX);
        let de = defaults.partition_point(|d| {
            *d.lower < *ENCRYPTION_CONTEXT_PREFIX || d.lower.starts_with(ENCRYPTION_CONTEXT_PREFIX)
        });
        let v = Values::EcKeys(
            entries.get(start..end).unwrap_or(&[]),
            defaults.get(ds..de).unwrap_or(&[]),
        );
        (!v.is_empty()).then_some(v)
    }

    fn userid(&self) -> Option<&str> {
        self.userid
            .get_or_init(|| {
                let c = &self.caller;
                match (&self.req.caller, c.form) {
                    (_, Form::Root) => c.account.map(|a| Scratch::build(|w| w.write_str(a))),
                    (_, Form::User) => c
                        .identity
                        .and_then(|i| i.unique_id.as_deref())
                        .map(|u| Scratch::build(|w| w.write_str(u))),
                    (Caller::Arn(PrincipalArn::AssumedRole { session, .. }), Form::AssumedRole) => {
                        c.identity
                            .and_then(|i| i.unique_id.as_deref())
                            .map(|u| Scratch::build(|w| write!(w, "{u}:{session}")))
                    }
                    (Caller::Arn(PrincipalArn::FederatedUser { account, name, .. }), _) => {
                        Some(Scratch::build(|w| write!(w, "{account}:{name}")))
                    }
                    _ => None,
                }
            })
            .as_ref()
            .map(Scratch::as_str)
    }

    /// A variable's value: the key's single value.
    pub(crate) fn var<'e>(&'e self, key: &CKey, kind: PolicyKind) -> Option<&'e str> {
        self.lookup(key, kind)?.single()
    }

    /// The request's encryption-context pairs (key after the prefix, values).
    pub(crate) fn encryption_context(&self) -> impl Iterator<Item = (&'a str, &'a [String])> + '_ {
        let entries = self.req.context.entries();
        let start = entries.partition_point(|e| *e.lower < *ENCRYPTION_CONTEXT_PREFIX);
        let from_request = entries
            .get(start..)
            .unwrap_or(&[])
            .iter()
            .take_while(|e| e.lower.starts_with(ENCRYPTION_CONTEXT_PREFIX))
            .map(|e| (&*e.lower, ec_suffix(&e.key), &*e.values));
        let defaults = &self.bundle.options.default_context;
        let from_defaults = defaults
            .iter()
            .filter(|d| d.lower.starts_with(ENCRYPTION_CONTEXT_PREFIX))
            .filter(move |d| self.req.context.get(&d.lower).is_none())
            .map(|d| (&*d.lower, ec_suffix(&d.key), &*d.values));
        from_request.chain(from_defaults).map(|(_, k, v)| (k, v))
    }

    /// The `verdict:GrantId` of a RetireGrant request: `None` when absent,
    /// `Some(None)` when present without exactly one value.
    pub(crate) fn grant_id(&self) -> Option<Option<&'a str>> {
        self.caller_get("verdict:grantid").map(|v| match v {
            [one] => Some(one.as_str()),
            _ => None,
        })
    }

    /// A caller value by lower-cased key.
    pub(crate) fn caller_values(&self, lower: &str) -> Option<&'a [String]> {
        self.caller_get(lower)
    }
}

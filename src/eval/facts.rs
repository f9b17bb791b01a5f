//! Facts about a request that every evaluator derives the same way: who the
//! caller is in the bundle, which account owns the resource, and which
//! context keys verdict derives itself (so that a caller cannot spoof them).

#[cfg(feature = "reference")]
use crate::bundle::{Bundle, Identity, Resource};
#[cfg(feature = "reference")]
use crate::policy::principal::PrincipalArn;
use crate::policy::principal::split_arn;

#[cfg(feature = "reference")]
use super::request::Caller;
use super::request::Request;

/// The caller's form (docs/evaluation.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// `arn:P:iam::A:root`.
    Root,
    /// An IAM user.
    User,
    /// A role ARN as the caller: a session with no session name (U29).
    RoleArn,
    /// A role session.
    AssumedRole,
    /// A federated user.
    FederatedUser,
    /// A service principal.
    Service,
}

/// The caller, resolved against a bundle whose users and roles are `I`
/// (the policy model for the reference interpreter, the compiled model for
/// the fast path).
#[derive(Debug)]
pub(crate) struct CallerOf<'a, I> {
    /// Form.
    pub(crate) form: Form,
    /// Account (PA); none for service principals.
    pub(crate) account: Option<&'a str>,
    /// The listed user or role.
    pub(crate) identity: Option<&'a I>,
    /// The caller's own canonical ARN (none for services).
    pub(crate) self_arn: Option<&'a str>,
    /// For sessions and role-ARN callers: the role ARN, with the bundle's path when listed.
    pub(crate) role_arn: Option<&'a str>,
    /// For service principals: the name.
    pub(crate) service: Option<&'a str>,
}

impl<I> Clone for CallerOf<'_, I> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I> Copy for CallerOf<'_, I> {}

impl<'a, I> CallerOf<'a, I> {
    /// A service principal as the caller.
    pub(crate) fn service(name: &'a str) -> Self {
        Self {
            form: Form::Service,
            account: None,
            identity: None,
            self_arn: None,
            role_arn: None,
            service: Some(name),
        }
    }
}

#[cfg(feature = "reference")]
/// The caller, resolved against the bundle as loaded.
pub(crate) type CallerFacts<'a> = CallerOf<'a, Identity>;

#[cfg(feature = "reference")]
impl<'a> CallerFacts<'a> {
    /// Resolve the request's caller in the bundle.
    pub(crate) fn resolve(bundle: &'a Bundle, req: &'a Request) -> Self {
        let arn = match &req.caller {
            Caller::Arn(arn) => arn,
            Caller::Service(name) => return Self::service(name),
        };
        let self_arn = req.caller_arn();
        // The identity the bundle holds for the caller: the user, or the
        // role behind a role ARN or a role session.
        let identity = match arn {
            PrincipalArn::User { .. } => self_arn.and_then(|a| bundle.user(a)),
            PrincipalArn::Role { account, name, .. }
            | PrincipalArn::AssumedRole {
                account,
                role: name,
                ..
            } => bundle.role(account, name),
            PrincipalArn::Root { .. } | PrincipalArn::FederatedUser { .. } => None,
        };
        let form = match arn {
            PrincipalArn::Root { .. } => Form::Root,
            PrincipalArn::User { .. } => Form::User,
            PrincipalArn::Role { .. } => Form::RoleArn,
            PrincipalArn::AssumedRole { .. } => Form::AssumedRole,
            PrincipalArn::FederatedUser { .. } => Form::FederatedUser,
        };
        // A role's ARN as the bundle spells it, else as the request gave it.
        let role_arn = matches!(form, Form::RoleArn | Form::AssumedRole)
            .then(|| identity.map(|i| &*i.arn_text).or(req.role_arn.as_deref()))
            .flatten();
        Self {
            form,
            account: Some(arn.account()),
            identity: identity.map(|a| &**a),
            self_arn,
            role_arn,
            service: None,
        }
    }

    /// Whether the caller is a session whose tags may come from the request.
    pub(crate) fn carries_session_tags(&self) -> bool {
        matches!(self.form, Form::AssumedRole | Form::FederatedUser)
    }

    /// Whether SCPs bind the caller (not services, not service-linked roles).
    pub(crate) fn bound_by_scps(&self) -> bool {
        self.form != Form::Service && !self.identity.is_some_and(Identity::is_service_linked_role)
    }
}

/// The resource, resolved against a bundle whose `resources.json` entries
/// are `E` (see [`CallerOf`]).
#[derive(Debug)]
pub(crate) struct ResourceOf<'a, E> {
    /// The `resources.json` entry whose key equals the resource.
    pub(crate) entry: Option<&'a E>,
    /// Whether the resource is a KMS key (`arn:*:kms:*:*:key/*`).
    pub(crate) is_kms_key: bool,
    /// The resource account (RA).
    pub(crate) account: Option<&'a str>,
    /// Whether RA is known from the ARN or the entry (`aws:ResourceAccount` present).
    pub(crate) account_known: bool,
    /// The six pieces of the resource ARN (none for `*` or a malformed one).
    pub(crate) pieces: Option<[&'a str; 6]>,
}

impl<E> Clone for ResourceOf<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for ResourceOf<'_, E> {}

impl<'a, E> ResourceOf<'a, E> {
    /// Resolve `resource`, whose bundle entry (if any) is `entry` with the
    /// account it names: RA is the ARN's account, else the entry's, else
    /// the caller's (then it is not known).
    #[inline]
    pub(crate) fn new(
        resource: &'a str,
        entry: Option<(&'a E, Option<&'a str>)>,
        caller_account: Option<&'a str>,
    ) -> Self {
        let pieces = split_arn(resource);
        // U44: an account piece that is no account id (`aws` in
        // `arn:aws:iam::aws:policy/…`) counts as empty.
        let arn_account = pieces
            .map(|p| p[4])
            .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()));
        let (account, account_known) = match arn_account.or(entry.and_then(|e| e.1)) {
            Some(a) => (Some(a), true),
            None => (caller_account, false),
        };
        Self {
            entry: entry.map(|e| e.0),
            is_kms_key: pieces.is_some_and(|[a, _, service, _, _, rest]| {
                a.eq_ignore_ascii_case("arn")
                    && service.eq_ignore_ascii_case("kms")
                    && rest.starts_with("key/")
            }),
            account,
            account_known,
            pieces,
        }
    }

    /// Whether the resource is an IAM role (`arn:*:iam::*:role/…`), whose
    /// entry holds its trust policy (U45).
    pub(crate) fn is_role(&self) -> bool {
        self.pieces.is_some_and(|[_, _, service, _, _, rest]| {
            service.eq_ignore_ascii_case("iam") && rest.starts_with("role/")
        })
    }

    /// The ARN's region piece, if not empty.
    #[cfg(feature = "reference")]
    pub(crate) fn region(&self) -> Option<&'a str> {
        self.pieces.map(|p| p[3]).filter(|r| !r.is_empty())
    }
}

#[cfg(feature = "reference")]
/// The resource, resolved against the bundle as loaded.
pub(crate) type ResourceFacts<'a> = ResourceOf<'a, Resource>;

#[cfg(feature = "reference")]
impl<'a> ResourceFacts<'a> {
    /// Resolve the request's resource in the bundle.
    pub(crate) fn resolve(bundle: &'a Bundle, req: &'a Request, caller: &CallerFacts<'a>) -> Self {
        let entry = bundle
            .resources
            .get(req.resource.as_str())
            .map(|r| (&**r, r.account.as_deref()));
        Self::new(&req.resource, entry, caller.account)
    }
}

#[cfg(feature = "reference")]
/// Whether the request is cross-account (PA ≠ RA). Service principals never are.
pub(crate) fn is_cross_account(caller: &CallerFacts<'_>, resource: &ResourceFacts<'_>) -> bool {
    match (caller.account, resource.account) {
        (Some(pa), Some(ra)) => pa != ra,
        _ => false,
    }
}

#[cfg(feature = "reference")]
/// Whether the caller's value of a (lower-cased) key is ignored because
/// verdict derives the key (docs/evaluation.md §1).
pub(crate) fn caller_value_ignored(
    lower: &str,
    req: &Request,
    caller: &CallerFacts<'_>,
    trust_session_tags: bool,
) -> bool {
    derived_key(
        lower,
        is_create_key(req),
        trust_session_tags && caller.carries_session_tags(),
    )
}

/// Whether verdict derives a (lower-cased) key, so that a caller's value of
/// it is ignored (docs/evaluation.md §1): on `kms:CreateKey` (`create_key`)
/// the key properties are the caller's, and caller principal tags count
/// when `session_tags_count` (a session caller, `trust_session_tags` on).
pub(crate) fn derived_key(lower: &str, create_key: bool, session_tags_count: bool) -> bool {
    match lower {
        "aws:principalarn"
        | "aws:principaltype"
        | "aws:userid"
        | "aws:username"
        | "aws:principalaccount"
        | "kms:calleraccount"
        | "aws:principalisawsservice"
        | "aws:principalorgid"
        | "aws:principalorgpaths"
        | "aws:resourceaccount"
        | "kms:resourcealiases" => true,
        "kms:keyspec" | "kms:keyusage" | "kms:keyorigin" => !create_key,
        _ => {
            lower.starts_with("aws:resourcetag/")
                || (lower.starts_with("aws:principaltag/") && !session_tags_count)
        }
    }
}

/// The actions a role's trust policy governs (U45).
const TRUST_ACTIONS: &[&str] = &[
    "assumerole",
    "assumerolewithsaml",
    "assumerolewithwebidentity",
    "tagsession",
    "setsourceidentity",
    "setcontext",
];

/// Whether the action is one a role's trust policy governs (U45), on a
/// role: the `sts:` actions that take one.
pub(crate) fn is_trust_action(req: &Request) -> bool {
    req.service() == "sts" && TRUST_ACTIONS.contains(&req.name())
}

/// Whether the action is `kms:CreateKey` (whose key properties come from the caller).
pub(crate) fn is_create_key(req: &Request) -> bool {
    req.service() == "kms" && req.name() == "createkey"
}

#[cfg(feature = "reference")]
/// Whether the action is `kms:RetireGrant`.
pub(crate) fn is_retire_grant(req: &Request) -> bool {
    req.service() == "kms" && req.name() == "retiregrant"
}

/// Prefix of encryption-context keys (lower-cased).
pub(crate) const ENCRYPTION_CONTEXT_PREFIX: &str = "kms:encryptioncontext:";

#[cfg(feature = "reference")]
/// Keys the server fills from its clock when the caller does not send them.
pub(crate) const CLOCK_KEYS: &[&str] = &["aws:currenttime", "aws:epochtime"];

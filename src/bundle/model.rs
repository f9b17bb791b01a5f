//! A loaded bundle: policies resolved to documents, identities, resources,
//! accounts and grants, with every reference checked.

use std::collections::HashMap;
use std::sync::Arc;

use crate::policy::PolicyDocument;
use crate::policy::PrincipalEntry;
use crate::policy::locate::SourceText;
use crate::policy::principal::PrincipalArn;

/// A policy document with its identity.
#[derive(Debug)]
pub struct Policy {
    /// The id decisions name: the `policies/` path without `.json`, or
    /// `<file>#<JSON pointer>` for an inline document.
    pub(crate) id: Arc<str>,
    /// The bundle file holding it.
    pub file: Arc<str>,
    /// JSON pointer of the document inside that file (`""` for a `policies/` file).
    #[expect(
        dead_code,
        reason = "the loaded model keeps what the bundle says; no decision reads it"
    )]
    pub(crate) pointer: String,
    /// The validated document.
    pub document: PolicyDocument,
}

/// A user's or role's tag, as `aws:PrincipalTag/<key>` or `aws:ResourceTag/<key>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tag {
    /// Key as written.
    pub(crate) key: Box<str>,
    /// Key lower-cased (condition keys compare ignoring case).
    pub(crate) key_lower: Box<str>,
    /// Value.
    pub(crate) value: Box<str>,
}

/// An IAM group.
#[derive(Debug)]
pub(crate) struct Group {
    /// Group ARN (canonical).
    #[expect(
        dead_code,
        reason = "the loaded model keeps what the bundle says; no decision reads it"
    )]
    pub(crate) arn: Arc<str>,
    /// Its identity policies.
    pub policies: Vec<Arc<Policy>>,
}

/// An IAM user or role of `principals.json`.
#[derive(Debug)]
pub struct Identity {
    /// The user or role ARN (canonical, with its path).
    pub(crate) arn: PrincipalArn,
    /// The same, as text.
    pub(crate) arn_text: Arc<str>,
    /// Identity policies attached directly.
    pub policies: Vec<Arc<Policy>>,
    /// Groups (users only).
    pub(crate) groups: Vec<Arc<Group>>,
    /// Permissions boundary.
    pub(crate) boundary: Option<Arc<Policy>>,
    /// Tags, sorted by lower-cased key.
    pub(crate) tags: Vec<Tag>,
    /// Unique id (`AIDA…`, `AROA…`).
    pub(crate) unique_id: Option<Arc<str>>,
}

impl Identity {
    /// Whether the path marks a service-linked role (SCPs do not bind it).
    pub(crate) fn is_service_linked_role(&self) -> bool {
        matches!(&self.arn, PrincipalArn::Role { path, .. } if path.starts_with("/aws-service-role/"))
    }
}

/// KMS key state (`resources.json` `state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum KeyState {
    /// `Enabled`.
    Enabled,
    /// `Disabled`.
    Disabled,
    /// `PendingDeletion`.
    PendingDeletion,
    /// `PendingReplicaDeletion`.
    PendingReplicaDeletion,
    /// `PendingImport`.
    PendingImport,
    /// `Unavailable`.
    Unavailable,
    /// `Creating`.
    Creating,
    /// `Updating`.
    Updating,
}

impl KeyState {
    /// Parse the bundle spelling.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Enabled" => Self::Enabled,
            "Disabled" => Self::Disabled,
            "PendingDeletion" => Self::PendingDeletion,
            "PendingReplicaDeletion" => Self::PendingReplicaDeletion,
            "PendingImport" => Self::PendingImport,
            "Unavailable" => Self::Unavailable,
            "Creating" => Self::Creating,
            "Updating" => Self::Updating,
            _ => return None,
        })
    }

    /// The bundle spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "Enabled",
            Self::Disabled => "Disabled",
            Self::PendingDeletion => "PendingDeletion",
            Self::PendingReplicaDeletion => "PendingReplicaDeletion",
            Self::PendingImport => "PendingImport",
            Self::Unavailable => "Unavailable",
            Self::Creating => "Creating",
            Self::Updating => "Updating",
        }
    }
}

/// Properties of a KMS key entry.
#[derive(Debug)]
pub(crate) struct KeyInfo {
    /// State.
    pub(crate) state: KeyState,
    /// Alias names (`alias/…`).
    pub(crate) aliases: Vec<Box<str>>,
    /// `kms:KeySpec`.
    pub(crate) key_spec: Option<Box<str>>,
    /// `kms:KeyUsage`.
    pub(crate) key_usage: Option<Box<str>>,
    /// `kms:KeyOrigin`.
    pub(crate) key_origin: Option<Box<str>>,
    /// An AWS managed key (RCPs do not apply).
    pub(crate) aws_managed: bool,
}

/// A `resources.json` entry.
#[derive(Debug)]
pub(crate) struct Resource {
    /// The resource ARN (canonical).
    #[expect(
        dead_code,
        reason = "the loaded model keeps what the bundle says; no decision reads it"
    )]
    pub(crate) arn: Arc<str>,
    /// Resource-based policy (key policy for keys).
    pub(crate) policy: Option<Arc<Policy>>,
    /// Tags, sorted by lower-cased key.
    pub(crate) tags: Vec<Tag>,
    /// Owner account for ARNs without one.
    pub(crate) account: Option<Box<str>>,
    /// Key properties, for KMS key entries.
    pub(crate) key: Option<KeyInfo>,
}

/// An `accounts.json` entry.
#[derive(Debug, Default)]
pub(crate) struct Account {
    /// SCP levels, organization root first; `None` when not in an organization's scope.
    pub(crate) scps: Option<Vec<Vec<Arc<Policy>>>>,
    /// RCP levels, organization root first.
    pub(crate) rcps: Option<Vec<Vec<Arc<Policy>>>>,
    /// `aws:PrincipalOrgID`.
    pub(crate) org_id: Option<Box<str>>,
    /// `aws:PrincipalOrgPaths`.
    pub(crate) org_paths: Option<Vec<Box<str>>>,
}

/// KMS grant operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum GrantOperation {
    /// `Decrypt`.
    Decrypt,
    /// `Encrypt`.
    Encrypt,
    /// `GenerateDataKey`.
    GenerateDataKey,
    /// `GenerateDataKeyPair`.
    GenerateDataKeyPair,
    /// `GenerateDataKeyPairWithoutPlaintext`.
    GenerateDataKeyPairWithoutPlaintext,
    /// `GenerateDataKeyWithoutPlaintext`.
    GenerateDataKeyWithoutPlaintext,
    /// `GenerateMac`.
    GenerateMac,
    /// `ReEncryptFrom`.
    ReEncryptFrom,
    /// `ReEncryptTo`.
    ReEncryptTo,
    /// `Sign`.
    Sign,
    /// `Verify`.
    Verify,
    /// `VerifyMac`.
    VerifyMac,
    /// `CreateGrant`.
    CreateGrant,
    /// `DescribeKey`.
    DescribeKey,
    /// `GetPublicKey`.
    GetPublicKey,
    /// `RetireGrant`.
    RetireGrant,
    /// `DeriveSharedSecret`.
    DeriveSharedSecret,
    /// `Encapsulate`.
    Encapsulate,
    /// `Decapsulate`.
    Decapsulate,
}

impl GrantOperation {
    /// Every operation, with its name.
    pub(crate) const ALL: &'static [(&'static str, GrantOperation)] = &[
        ("Decrypt", Self::Decrypt),
        ("Encrypt", Self::Encrypt),
        ("GenerateDataKey", Self::GenerateDataKey),
        ("GenerateDataKeyPair", Self::GenerateDataKeyPair),
        (
            "GenerateDataKeyPairWithoutPlaintext",
            Self::GenerateDataKeyPairWithoutPlaintext,
        ),
        (
            "GenerateDataKeyWithoutPlaintext",
            Self::GenerateDataKeyWithoutPlaintext,
        ),
        ("GenerateMac", Self::GenerateMac),
        ("ReEncryptFrom", Self::ReEncryptFrom),
        ("ReEncryptTo", Self::ReEncryptTo),
        ("Sign", Self::Sign),
        ("Verify", Self::Verify),
        ("VerifyMac", Self::VerifyMac),
        ("CreateGrant", Self::CreateGrant),
        ("DescribeKey", Self::DescribeKey),
        ("GetPublicKey", Self::GetPublicKey),
        ("RetireGrant", Self::RetireGrant),
        ("DeriveSharedSecret", Self::DeriveSharedSecret),
        ("Encapsulate", Self::Encapsulate),
        ("Decapsulate", Self::Decapsulate),
    ];

    /// Parse an operation name, exactly as KMS spells it.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, op)| *op)
    }

    /// Parse an operation name ignoring case (request actions).
    pub(crate) fn parse_ignore_case(s: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, op)| *op)
    }
}

/// A grant constraint on the encryption context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum GrantConstraint {
    /// The request's pairs equal these exactly.
    Equals(Vec<(Box<str>, Box<str>)>),
    /// These pairs all appear in the request.
    Subset(Vec<(Box<str>, Box<str>)>),
}

/// A KMS grant.
#[derive(Debug)]
pub(crate) struct Grant {
    /// Grant id.
    pub(crate) grant_id: Arc<str>,
    /// Key ARN (canonical).
    pub(crate) key: Arc<str>,
    /// Grantee (an account, user, role, session, federated user or service).
    pub(crate) grantee: PrincipalEntry,
    /// Operations.
    pub(crate) operations: Vec<GrantOperation>,
    /// Constraint.
    pub(crate) constraint: Option<GrantConstraint>,
    /// Retiring principal.
    pub(crate) retiring_principal: Option<PrincipalEntry>,
}

/// A loaded bundle.
#[derive(Debug)]
pub struct Bundle {
    /// `manifest.json` `revision`.
    pub revision: Arc<str>,
    /// `manifest.json` `name`.
    pub(crate) name: Option<String>,
    /// `manifest.json` `serial` (0 when absent).
    pub serial: u64,
    /// Where it was loaded from.
    pub source: String,
    /// `policies/` documents by id.
    pub policies: HashMap<Arc<str>, Arc<Policy>>,
    /// Groups by canonical ARN.
    #[expect(
        dead_code,
        reason = "the loaded model keeps what the bundle says; no decision reads it"
    )]
    pub(crate) groups: HashMap<Arc<str>, Arc<Group>>,
    /// Users by canonical ARN.
    pub(crate) users: HashMap<Arc<str>, Arc<Identity>>,
    /// Roles by (account, exact name).
    pub roles: HashMap<(Box<str>, Box<str>), Arc<Identity>>,
    /// Resources by canonical ARN.
    pub(crate) resources: HashMap<Arc<str>, Arc<Resource>>,
    /// Accounts by id.
    pub(crate) accounts: HashMap<Box<str>, Account>,
    /// Grants, in file order.
    pub(crate) grants: Vec<Arc<Grant>>,
    /// Grants by canonical key ARN.
    pub(crate) grants_by_key: HashMap<Arc<str>, Vec<Arc<Grant>>>,
    /// `tests/` files (only when loaded for `check`/`test`).
    pub(crate) tests: Vec<TestFileText>,
}

/// A `tests/` file's text.
#[derive(Debug)]
pub(crate) struct TestFileText {
    /// Path inside the bundle.
    pub path: String,
    /// Text.
    pub(crate) text: SourceText,
}

impl Bundle {
    #[cfg(feature = "reference")]
    /// The user of this ARN, if listed (canonical ARN).
    pub(crate) fn user(&self, canonical_arn: &str) -> Option<&Arc<Identity>> {
        self.users.get(canonical_arn)
    }

    #[cfg(feature = "reference")]
    /// The role of this account and exact name, whatever its path.
    pub(crate) fn role(&self, account: &str, name: &str) -> Option<&Arc<Identity>> {
        self.roles.get(&(Box::from(account), Box::from(name)))
    }
}

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
    pub id: Arc<str>,
    /// The bundle file holding it.
    pub file: Arc<str>,
    /// JSON pointer of the document inside that file (`""` for a `policies/` file).
    pub pointer: String,
    /// The validated document.
    pub document: PolicyDocument,
}

/// A user's or role's tag, as `aws:PrincipalTag/<key>` or `aws:ResourceTag/<key>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    /// Key as written.
    pub key: Box<str>,
    /// Key lower-cased (condition keys compare ignoring case).
    pub key_lower: Box<str>,
    /// Value.
    pub value: Box<str>,
}

/// An IAM group.
#[derive(Debug)]
pub struct Group {
    /// Group ARN (canonical).
    pub arn: Arc<str>,
    /// Its identity policies.
    pub policies: Vec<Arc<Policy>>,
}

/// An IAM user or role of `principals.json`.
#[derive(Debug)]
pub struct Identity {
    /// The user or role ARN (canonical, with its path).
    pub arn: PrincipalArn,
    /// The same, as text.
    pub arn_text: Arc<str>,
    /// Identity policies attached directly.
    pub policies: Vec<Arc<Policy>>,
    /// Groups (users only).
    pub groups: Vec<Arc<Group>>,
    /// Permissions boundary.
    pub boundary: Option<Arc<Policy>>,
    /// Tags, sorted by lower-cased key.
    pub tags: Vec<Tag>,
    /// Unique id (`AIDA…`, `AROA…`).
    pub unique_id: Option<Arc<str>>,
}

impl Identity {
    /// Whether the path marks a service-linked role (SCPs do not bind it).
    pub fn is_service_linked_role(&self) -> bool {
        matches!(&self.arn, PrincipalArn::Role { path, .. } if path.starts_with("/aws-service-role/"))
    }
}

/// KMS key state (`resources.json` `state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyState {
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
    pub fn parse(s: &str) -> Option<Self> {
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
    pub fn as_str(self) -> &'static str {
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
pub struct KeyInfo {
    /// State.
    pub state: KeyState,
    /// Alias names (`alias/…`).
    pub aliases: Vec<Box<str>>,
    /// `kms:KeySpec`.
    pub key_spec: Option<Box<str>>,
    /// `kms:KeyUsage`.
    pub key_usage: Option<Box<str>>,
    /// `kms:KeyOrigin`.
    pub key_origin: Option<Box<str>>,
    /// An AWS managed key (RCPs do not apply).
    pub aws_managed: bool,
}

/// A `resources.json` entry.
#[derive(Debug)]
pub struct Resource {
    /// The resource ARN (canonical).
    pub arn: Arc<str>,
    /// Resource-based policy (key policy for keys).
    pub policy: Option<Arc<Policy>>,
    /// Tags, sorted by lower-cased key.
    pub tags: Vec<Tag>,
    /// Owner account for ARNs without one.
    pub account: Option<Box<str>>,
    /// Key properties, for KMS key entries.
    pub key: Option<KeyInfo>,
}

/// An `accounts.json` entry.
#[derive(Debug, Default)]
pub struct Account {
    /// SCP levels, organization root first; `None` when not in an organization's scope.
    pub scps: Option<Vec<Vec<Arc<Policy>>>>,
    /// RCP levels, organization root first.
    pub rcps: Option<Vec<Vec<Arc<Policy>>>>,
    /// `aws:PrincipalOrgID`.
    pub org_id: Option<Box<str>>,
    /// `aws:PrincipalOrgPaths`.
    pub org_paths: Option<Vec<Box<str>>>,
}

/// KMS grant operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrantOperation {
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
    pub const ALL: &'static [(&'static str, GrantOperation)] = &[
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
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, op)| *op)
    }

    /// Parse an operation name ignoring case (request actions).
    pub fn parse_ignore_case(s: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, op)| *op)
    }
}

/// A grant constraint on the encryption context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantConstraint {
    /// The request's pairs equal these exactly.
    Equals(Vec<(Box<str>, Box<str>)>),
    /// These pairs all appear in the request.
    Subset(Vec<(Box<str>, Box<str>)>),
}

/// A KMS grant.
#[derive(Debug)]
pub struct Grant {
    /// Grant id.
    pub grant_id: Arc<str>,
    /// Key ARN (canonical).
    pub key: Arc<str>,
    /// Grantee (an account, user, role, session, federated user or service).
    pub grantee: PrincipalEntry,
    /// Operations.
    pub operations: Vec<GrantOperation>,
    /// Constraint.
    pub constraint: Option<GrantConstraint>,
    /// Retiring principal.
    pub retiring_principal: Option<PrincipalEntry>,
}

/// A loaded bundle.
#[derive(Debug)]
pub struct Bundle {
    /// `manifest.json` `revision`.
    pub revision: Arc<str>,
    /// `manifest.json` `name`.
    pub name: Option<String>,
    /// Where it was loaded from.
    pub source: String,
    /// `policies/` documents by id.
    pub policies: HashMap<Arc<str>, Arc<Policy>>,
    /// Groups by canonical ARN.
    pub groups: HashMap<Arc<str>, Arc<Group>>,
    /// Users by canonical ARN.
    pub users: HashMap<Arc<str>, Arc<Identity>>,
    /// Roles by (account, exact name).
    pub roles: HashMap<(Box<str>, Box<str>), Arc<Identity>>,
    /// Resources by canonical ARN.
    pub resources: HashMap<Arc<str>, Arc<Resource>>,
    /// Accounts by id.
    pub accounts: HashMap<Box<str>, Account>,
    /// Grants, in file order.
    pub grants: Vec<Arc<Grant>>,
    /// Grants by canonical key ARN.
    pub grants_by_key: HashMap<Arc<str>, Vec<Arc<Grant>>>,
    /// `tests/` files (only when loaded for `check`/`test`).
    pub tests: Vec<TestFileText>,
}

/// A `tests/` file's text.
#[derive(Debug)]
pub struct TestFileText {
    /// Path inside the bundle.
    pub path: String,
    /// Text.
    pub text: SourceText,
}

impl Bundle {
    /// The user of this ARN, if listed (canonical ARN).
    pub fn user(&self, canonical_arn: &str) -> Option<&Arc<Identity>> {
        self.users.get(canonical_arn)
    }

    /// The role of this account and exact name, whatever its path.
    pub fn role(&self, account: &str, name: &str) -> Option<&Arc<Identity>> {
        self.roles.get(&(Box::from(account), Box::from(name)))
    }
}

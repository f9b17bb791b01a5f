//! What loading a bundle found: errors that stop it loading and warnings
//! that do not, each naming its file, JSON pointer and line:column.

use std::fmt;

use crate::policy::locate::Position;
use crate::policy::{PolicyErrorKind, PolicyWarningKind};

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Severity {
    /// Stops the bundle loading.
    Error,
    /// Reported; the bundle still loads, and probably does not do what its
    /// author meant (`check --strict` counts it as an error).
    Warning,
    /// Reported; the bundle does what AWS would do with it, and could be
    /// tidier (`--strict` leaves it alone).
    Suggestion,
}

impl Severity {
    /// The severity of a finding that does not stop a load.
    pub(crate) fn of_warning(finding: &Finding) -> Self {
        if finding.is_suggestion() {
            Self::Suggestion
        } else {
            Self::Warning
        }
    }

    /// The word `check` prints.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Suggestion => "suggestion",
        }
    }
}

/// One finding, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub(crate) severity: Severity,
    /// Path of the file inside the bundle (`""` for the bundle as a whole).
    pub file: String,
    /// JSON pointer inside the file (`""` for the whole file).
    pub(crate) pointer: String,
    /// Line and column in the file, when known.
    pub position: Option<Position>,
    /// What was found.
    pub(crate) finding: Finding,
}

/// What was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Finding {
    /// A policy document error.
    #[error("{0}")]
    Policy(PolicyErrorKind),
    /// A policy document warning.
    #[error("{0}")]
    PolicyWarning(PolicyWarningKind),
    /// A bundle error.
    #[error("{0}")]
    Bundle(BundleErrorKind),
    /// A bundle warning.
    #[error("{0}")]
    BundleWarning(BundleWarningKind),
    /// Extra context for a policy finding: where the document is attached.
    #[error("{finding} (attached as {place} at {at})")]
    Attached {
        /// The finding.
        finding: Box<Finding>,
        /// How it is attached.
        place: &'static str,
        /// The attachment (file and pointer).
        at: String,
    },
}

/// Bundle errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BundleErrorKind {
    /// I/O failure.
    #[error("cannot read: {0}")]
    Io(String),
    /// Not UTF-8.
    #[error("not UTF-8 text")]
    Utf8,
    /// JSON syntax or shape error.
    #[error("{0}")]
    Json(String),
    /// Over a size limit.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes ({setting})")]
    TooLarge {
        /// What.
        what: &'static str,
        /// Actual size.
        size: u64,
        /// Limit.
        limit: u64,
        /// The setting that sets the limit.
        setting: &'static str,
    },
    /// Too many files.
    #[error("the bundle holds more than {0} files (max_bundle_files)")]
    TooManyFiles(usize),
    /// Nesting deeper than the limit.
    #[error("JSON nesting deeper than {0} levels (max_json_depth)")]
    TooDeep(usize),
    /// A string longer than the limit.
    #[error("string of {len} bytes, over the limit of {limit} bytes (max_string_bytes)")]
    StringTooLong {
        /// Length.
        len: usize,
        /// Limit.
        limit: usize,
    },
    /// Directories nested deeper than the limit.
    #[error("directories nested deeper than {0} levels")]
    DirectoryTooDeep(usize),
    /// A symlink whose target is outside the bundle directory.
    #[error("a symlink leads outside the bundle directory; it is not followed")]
    SymlinkOutside,
    /// A directory reached a second time (a symlink loop).
    #[error("a directory reached a second time (a symlink loop); it is not walked again")]
    DirectoryLoop,
    /// A FIFO, socket or device where a file belongs.
    #[error("not a regular file (a FIFO, socket or device is never opened)")]
    NotRegularFile,
    /// An archive entry escaping the bundle.
    #[error("archive entry `{0}` is not a relative path inside the bundle")]
    ArchivePath(String),
    /// No manifest.
    #[error("`manifest.json` is missing")]
    MissingManifest,
    /// Empty revision.
    #[error("`revision` must be a non-empty string")]
    EmptyRevision,
    /// A value that is neither a policy id nor a document.
    #[error("expected a policy id (string) or an inline policy document (object)")]
    PolicyRef,
    /// An id naming no `policies/` file.
    #[error("no policy `{0}` (expected `policies/{0}.json`)")]
    UnknownPolicy(String),
    /// A group ARN that is not a key of `groups`.
    #[error("group `{0}` is not defined under `groups`")]
    UnknownGroup(String),
    /// A malformed group ARN.
    #[error("`{0}` is not an IAM group ARN (`arn:aws:iam::ACCOUNT:group/[PATH/]NAME`)")]
    GroupArn(String),
    /// A principals key that is not a user or role ARN.
    #[error("`{value}` is not an IAM user or role ARN: {reason}")]
    PrincipalKey {
        /// The key.
        value: String,
        /// Why.
        reason: String,
    },
    /// `groups` on a role.
    #[error("`groups` applies to users only")]
    GroupsOnRole,
    /// Two users or roles of one account whose names differ only in case, or
    /// one role under two paths.
    #[error("{kind} name `{name}` of account {account} is also defined as `{other}`")]
    DuplicateName {
        /// `user` or `role`.
        kind: &'static str,
        /// The name.
        name: String,
        /// Account.
        account: String,
        /// The other ARN.
        other: String,
    },
    /// Two tag keys equal ignoring case.
    #[error("tag key `{0}` repeats (tag keys compare ignoring case in conditions)")]
    DuplicateTag(String),
    /// A resources key that is not an ARN.
    #[error("`{0}` is not an ARN")]
    ResourceArn(String),
    /// KMS key entry without `policy`.
    #[error("a KMS key entry needs a `policy` (its key policy)")]
    KeyPolicyRequired,
    /// A key-only field on another resource.
    #[error("`{0}` applies to KMS key entries (`arn:*:kms:*:*:key/*`) only")]
    KeyOnlyField(&'static str),
    /// Unknown key state.
    #[error("unknown key state `{0}`")]
    KeyState(String),
    /// An alias that is not `alias/…`.
    #[error("alias `{0}` must start with `alias/`")]
    Alias(String),
    /// Not a 12-digit account id.
    #[error("`{0}` is not a 12-digit account id")]
    Account(String),
    /// Bad `scps`/`rcps` shape.
    #[error("{0}")]
    Levels(&'static str),
    /// A repeated grant id.
    #[error("grant id `{0}` repeats")]
    DuplicateGrant(String),
    /// A grant key without a resources entry.
    #[error("grant key `{0}` has no entry in resources.json")]
    GrantKey(String),
    /// A malformed grantee or retiring principal.
    #[error(
        "`{value}` is not a grantee (account, user, role, role session, federated user or service principal): {reason}"
    )]
    Grantee {
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// Unknown grant operation.
    #[error("unknown grant operation `{0}`")]
    GrantOperation(String),
    /// Both constraints.
    #[error(
        "`constraints` holds at most one of `encryption_context_equals` and `encryption_context_subset`"
    )]
    GrantConstraints,
    /// An empty list where values are needed.
    #[error("`{0}` must not be empty")]
    Empty(&'static str),
    /// Invalid test case.
    #[error("{0}")]
    TestCase(String),
    /// The bundle's signature does not hold (public keys are configured):
    /// nothing of it is read.
    #[error("{0}")]
    Signature(String),
}

/// Bundle warnings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BundleWarningKind {
    /// A file outside the bundle's names.
    #[error("unknown file, ignored")]
    UnknownFile,
    /// A resource entry whose owner account cannot be known.
    #[error(
        "resource has a `policy` but its ARN has no account piece and the entry no `account`; requests on it count as same-account"
    )]
    ResourceWithoutAccount,
    /// An archive entry that is not a regular file.
    #[error("archive entry is not a regular file, ignored")]
    ArchiveEntry,
}

impl BundleErrorKind {
    /// The error's stable code (`check` prints it with the message).
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Io(_) => "E-IO",
            Self::Utf8 => "E-UTF8",
            Self::Json(_) => "E-JSON",
            Self::TooLarge { .. } => "E-TOO-LARGE",
            Self::TooManyFiles(_) => "E-TOO-MANY-FILES",
            Self::TooDeep(_) => "E-TOO-DEEP",
            Self::StringTooLong { .. } => "E-STRING-TOO-LONG",
            Self::DirectoryTooDeep(_) => "E-DIRECTORY-TOO-DEEP",
            Self::SymlinkOutside => "E-SYMLINK-OUTSIDE",
            Self::DirectoryLoop => "E-DIRECTORY-LOOP",
            Self::NotRegularFile => "E-NOT-REGULAR-FILE",
            Self::ArchivePath(_) => "E-ARCHIVE-PATH",
            Self::MissingManifest => "E-MISSING-MANIFEST",
            Self::EmptyRevision => "E-EMPTY-REVISION",
            Self::PolicyRef => "E-POLICY-REF",
            Self::UnknownPolicy(_) => "E-UNKNOWN-POLICY",
            Self::UnknownGroup(_) => "E-UNKNOWN-GROUP",
            Self::GroupArn(_) => "E-GROUP-ARN",
            Self::PrincipalKey { .. } => "E-PRINCIPAL-KEY",
            Self::GroupsOnRole => "E-GROUPS-ON-ROLE",
            Self::DuplicateName { .. } => "E-DUPLICATE-NAME",
            Self::DuplicateTag(_) => "E-DUPLICATE-TAG",
            Self::ResourceArn(_) => "E-RESOURCE-ARN",
            Self::KeyPolicyRequired => "E-KEY-POLICY-REQUIRED",
            Self::KeyOnlyField(_) => "E-KEY-ONLY-FIELD",
            Self::KeyState(_) => "E-KEY-STATE",
            Self::Alias(_) => "E-ALIAS",
            Self::Account(_) => "E-ACCOUNT",
            Self::Levels(_) => "E-LEVELS",
            Self::DuplicateGrant(_) => "E-DUPLICATE-GRANT",
            Self::GrantKey(_) => "E-GRANT-KEY",
            Self::Grantee { .. } => "E-GRANTEE",
            Self::GrantOperation(_) => "E-GRANT-OPERATION",
            Self::GrantConstraints => "E-GRANT-CONSTRAINTS",
            Self::Empty(_) => "E-EMPTY",
            Self::TestCase(_) => "E-TEST-CASE",
            Self::Signature(_) => "E-SIGNATURE",
        }
    }
}

impl BundleWarningKind {
    /// The warning's stable code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::UnknownFile => "W-UNKNOWN-FILE",
            Self::ResourceWithoutAccount => "W-RESOURCE-NO-ACCOUNT",
            Self::ArchiveEntry => "W-ARCHIVE-ENTRY",
        }
    }
}

impl Finding {
    /// The finding's stable code: `E-…` for errors, `W-…` for warnings
    /// (docs/check.md lists them all).
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::PolicyWarning(w) => w.code(),
            Self::BundleWarning(w) => w.code(),
            Self::Attached { finding, .. } => finding.code(),
            Self::Policy(e) => e.code(),
            Self::Bundle(e) => e.code(),
        }
    }

    /// Whether the finding is only a suggestion (see [`Severity`]).
    pub(crate) fn is_suggestion(&self) -> bool {
        match self {
            Self::PolicyWarning(w) => w.is_suggestion(),
            Self::Attached { finding, .. } => finding.is_suggestion(),
            Self::BundleWarning(_) | Self::Policy(_) | Self::Bundle(_) => false,
        }
    }

    /// What was probably meant, when the finding is a likely typo of a
    /// known name.
    pub(crate) fn suggestion(&self) -> Option<&str> {
        match self {
            Self::PolicyWarning(w) => w.suggestion(),
            Self::Policy(e) => e.suggestion(),
            Self::Attached { finding, .. } => finding.suggestion(),
            Self::BundleWarning(_) | Self::Bundle(_) => None,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.severity.as_str())?;
        if !self.file.is_empty() {
            f.write_str(&self.file)?;
            if let Some(p) = self.position {
                write!(f, ":{}:{}", p.line, p.column)?;
            }
            f.write_str(": ")?;
        }
        if !self.pointer.is_empty() {
            write!(f, "{}: ", self.pointer)?;
        }
        write!(f, "{} [{}]", self.finding, self.finding.code())
    }
}

/// Why a bundle did not load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The path is missing, or neither a directory nor a `.tar.gz`.
    #[error("{path}: {reason}")]
    NotABundle {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The bundle was read and is invalid; every error found, plus warnings.
    #[error("bundle does not load: {} error(s)", count_errors(.0))]
    Invalid(Vec<Diagnostic>),
}

fn count_errors(d: &[Diagnostic]) -> usize {
    d.iter().filter(|d| d.severity == Severity::Error).count()
}

impl LoadError {
    /// Every diagnostic (errors and warnings) of an invalid bundle.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Self::NotABundle { .. } => &[],
            Self::Invalid(d) => d,
        }
    }
}

//! Bundles: a directory or `.tar.gz` holding policies and what they are
//! attached to, loaded whole or not at all (docs/bundle-format.md).
//!
//! [`load`] reads the files ([`source`]), parses them strictly ([`shape`]),
//! resolves every reference and validates every policy for each place it is
//! attached, and returns a [`Bundle`] or every error found.

pub(crate) mod archive;
pub(crate) mod err;
pub mod load;
pub(crate) mod model;
pub(crate) mod shape;
pub(crate) mod sign;
pub mod source;

pub(crate) use err::{Diagnostic, Finding, LoadError, Severity};
pub use load::{Loaded, SignatureState, load, load_raw};
pub use model::*;

/// Where a bundle comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleSource {
    /// A directory or `.tar.gz` on disk.
    Path(std::path::PathBuf),
    /// A `.tar.gz` fetched from an `https://` (or, when allowed, `http://`)
    /// URL. The URL may carry credentials in its query; it is shown only
    /// through [`BundleSource::address`].
    Http(String),
    /// An OCI artifact, `registry/repository:tag` or `…@sha256:…` (the
    /// `oci://` prefix removed).
    Oci(String),
    /// The example bundle compiled into the binary.
    Embedded,
}

impl BundleSource {
    /// What kind of source: `directory`, `archive`, `https`, `http`, `oci`
    /// or `embedded`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Path(p) if source::is_tar_gz(p) => "archive",
            Self::Path(_) => "directory",
            Self::Http(url) if url.starts_with("http://") => "http",
            Self::Http(_) => "https",
            Self::Oci(_) => "oci",
            Self::Embedded => "embedded",
        }
    }

    /// Whether it is fetched over the network (polled, persisted).
    pub fn is_remote(&self) -> bool {
        matches!(self, Self::Http(_) | Self::Oci(_))
    }

    /// The address as status and logs show it: a URL without its user
    /// information, query or fragment (where credentials travel).
    pub fn address(&self) -> String {
        match self {
            Self::Path(p) => p.display().to_string(),
            Self::Http(url) => redact_url(url),
            Self::Oci(reference) => format!("oci://{reference}"),
            Self::Embedded => "embedded:examples/bundles/kms".to_owned(),
        }
    }
}

/// `url` without user information, query or fragment (a query is shown
/// as `?…`).
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let query = u.query().is_some();
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            if query {
                format!("{u}?…")
            } else {
                u.to_string()
            }
        }
        Err(_) => "(an unparsable URL)".to_owned(),
    }
}

/// Input limits of a bundle (docs/bundle-format.md), each a configuration value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// One policy document as written (each `policies/` file, each inline document).
    pub max_policy_bytes: u64,
    /// Each of principals.json, resources.json, accounts.json, grants.json (and tests/ files).
    pub max_data_file_bytes: u64,
    /// One string value or pattern.
    pub max_string_bytes: usize,
    /// JSON nesting depth.
    pub max_depth: usize,
    /// Files in a bundle.
    pub max_files: usize,
    /// A `.tar.gz`, unpacked.
    pub max_unpacked_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_policy_bytes: 256 * 1024,
            max_data_file_bytes: 64 * 1024 * 1024,
            max_string_bytes: 8 * 1024,
            max_depth: 32,
            max_files: 100_000,
            max_unpacked_bytes: 512 * 1024 * 1024,
        }
    }
}

/// How to load.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Limits.
    pub limits: Limits,
    /// Keep `tests/` files (for `check` and `test`).
    pub with_tests: bool,
    /// When not empty, a bundle loads only if its `.signatures.json` holds
    /// a signature by one of these keys over exactly its files
    /// (`bundle_public_keys`).
    pub public_keys: Vec<ed25519_dalek::VerifyingKey>,
}

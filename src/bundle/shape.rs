//! serde shapes of the bundle's JSON files, exactly as written (strict:
//! unknown keys and repeated keys are errors). Policy references stay raw:
//! a string is an id, an object an inline document.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::policy::document::UniqueMap;

/// `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ManifestShape {
    /// Revision.
    pub revision: String,
    /// Name.
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// Serial: publishers increase it with each revision (callers may
    /// demand a minimum, `min_serial`).
    #[serde(default)]
    pub(crate) serial: Option<u64>,
}

/// `principals.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrincipalsShape<'a> {
    /// Groups by ARN.
    #[serde(default, borrow)]
    pub(crate) groups: UniqueMap<GroupShape<'a>>,
    /// Users and roles by ARN.
    #[serde(default, borrow)]
    pub(crate) principals: UniqueMap<IdentityShape<'a>>,
}

/// A group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupShape<'a> {
    /// Policies by id or inline.
    #[serde(default, borrow)]
    pub policies: Vec<&'a RawValue>,
}

/// A user or role.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdentityShape<'a> {
    /// Policies by id or inline.
    #[serde(default, borrow)]
    pub policies: Vec<&'a RawValue>,
    /// Group ARNs.
    #[serde(default)]
    pub(crate) groups: Vec<String>,
    /// Boundary by id or inline.
    #[serde(default, borrow)]
    pub(crate) boundary: Option<&'a RawValue>,
    /// Tags.
    #[serde(default)]
    pub(crate) tags: UniqueMap<String>,
    /// Unique id.
    #[serde(default)]
    pub(crate) unique_id: Option<String>,
}

/// A `resources.json` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResourceShape<'a> {
    /// Policy by id or inline.
    #[serde(default, borrow)]
    pub(crate) policy: Option<&'a RawValue>,
    /// Tags.
    #[serde(default)]
    pub(crate) tags: UniqueMap<String>,
    /// Owner account.
    #[serde(default)]
    pub(crate) account: Option<String>,
    /// Key state.
    #[serde(default)]
    pub(crate) state: Option<String>,
    /// Aliases.
    #[serde(default)]
    pub(crate) aliases: Option<Vec<String>>,
    /// Key spec.
    #[serde(default)]
    pub(crate) key_spec: Option<String>,
    /// Key usage.
    #[serde(default)]
    pub(crate) key_usage: Option<String>,
    /// Key origin.
    #[serde(default)]
    pub(crate) key_origin: Option<String>,
    /// AWS managed.
    #[serde(default)]
    pub(crate) aws_managed: Option<bool>,
}

/// An `accounts.json` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountShape<'a> {
    /// SCPs: a list, or a list of lists.
    #[serde(default, borrow)]
    pub(crate) scps: Option<&'a RawValue>,
    /// RCPs: a list, or a list of lists.
    #[serde(default, borrow)]
    pub(crate) rcps: Option<&'a RawValue>,
    /// Organization id.
    #[serde(default)]
    pub(crate) org_id: Option<String>,
    /// Organization paths.
    #[serde(default)]
    pub(crate) org_paths: Option<Vec<String>>,
}

/// A grant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantShape {
    /// Grant id.
    pub(crate) grant_id: String,
    /// Key ARN.
    pub(crate) key: String,
    /// Grantee.
    pub(crate) grantee: String,
    /// Operations.
    pub(crate) operations: Vec<String>,
    /// Constraints.
    #[serde(default)]
    pub(crate) constraints: Option<ConstraintsShape>,
    /// Retiring principal.
    #[serde(default)]
    pub(crate) retiring_principal: Option<String>,
}

/// Grant constraints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConstraintsShape {
    /// Exact encryption context.
    #[serde(default)]
    pub(crate) encryption_context_equals: Option<UniqueMap<String>>,
    /// Required encryption-context pairs.
    #[serde(default)]
    pub(crate) encryption_context_subset: Option<UniqueMap<String>>,
}

//! serde shapes of the bundle's JSON files, exactly as written (strict:
//! unknown keys and repeated keys are errors). Policy references stay raw:
//! a string is an id, an object an inline document.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::policy::document::UniqueMap;

/// `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestShape {
    /// Revision.
    pub revision: String,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
}

/// `principals.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalsShape<'a> {
    /// Groups by ARN.
    #[serde(default, borrow)]
    pub groups: UniqueMap<GroupShape<'a>>,
    /// Users and roles by ARN.
    #[serde(default, borrow)]
    pub principals: UniqueMap<IdentityShape<'a>>,
}

/// A group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupShape<'a> {
    /// Policies by id or inline.
    #[serde(default, borrow)]
    pub policies: Vec<&'a RawValue>,
}

/// A user or role.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityShape<'a> {
    /// Policies by id or inline.
    #[serde(default, borrow)]
    pub policies: Vec<&'a RawValue>,
    /// Group ARNs.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Boundary by id or inline.
    #[serde(default, borrow)]
    pub boundary: Option<&'a RawValue>,
    /// Tags.
    #[serde(default)]
    pub tags: UniqueMap<String>,
    /// Unique id.
    #[serde(default)]
    pub unique_id: Option<String>,
}

/// A `resources.json` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceShape<'a> {
    /// Policy by id or inline.
    #[serde(default, borrow)]
    pub policy: Option<&'a RawValue>,
    /// Tags.
    #[serde(default)]
    pub tags: UniqueMap<String>,
    /// Owner account.
    #[serde(default)]
    pub account: Option<String>,
    /// Key state.
    #[serde(default)]
    pub state: Option<String>,
    /// Aliases.
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
    /// Key spec.
    #[serde(default)]
    pub key_spec: Option<String>,
    /// Key usage.
    #[serde(default)]
    pub key_usage: Option<String>,
    /// Key origin.
    #[serde(default)]
    pub key_origin: Option<String>,
    /// AWS managed.
    #[serde(default)]
    pub aws_managed: Option<bool>,
}

/// An `accounts.json` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountShape<'a> {
    /// SCPs: a list, or a list of lists.
    #[serde(default, borrow)]
    pub scps: Option<&'a RawValue>,
    /// RCPs: a list, or a list of lists.
    #[serde(default, borrow)]
    pub rcps: Option<&'a RawValue>,
    /// Organization id.
    #[serde(default)]
    pub org_id: Option<String>,
    /// Organization paths.
    #[serde(default)]
    pub org_paths: Option<Vec<String>>,
}

/// A grant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantShape {
    /// Grant id.
    pub grant_id: String,
    /// Key ARN.
    pub key: String,
    /// Grantee.
    pub grantee: String,
    /// Operations.
    pub operations: Vec<String>,
    /// Constraints.
    #[serde(default)]
    pub constraints: Option<ConstraintsShape>,
    /// Retiring principal.
    #[serde(default)]
    pub retiring_principal: Option<String>,
}

/// Grant constraints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstraintsShape {
    /// Exact encryption context.
    #[serde(default)]
    pub encryption_context_equals: Option<UniqueMap<String>>,
    /// Required encryption-context pairs.
    #[serde(default)]
    pub encryption_context_subset: Option<UniqueMap<String>>,
}

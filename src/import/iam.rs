//! `aws iam get-account-authorization-details`: users, groups and
//! memberships, roles with their trust policies, inline and attached
//! managed policies (the default version), permissions boundaries, tags,
//! paths and unique ids.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::{ImportError, Out, document, json_files, read_json};

/// The policy id of a managed policy ARN:
/// `arn:aws:iam::aws:policy/service-role/X` → `aws/service-role/X`,
/// `arn:aws:iam::111122223333:policy/team/Y` → `111122223333/team/Y`.
pub(crate) fn managed_policy_id(arn: &str) -> Option<String> {
    let mut pieces = arn.splitn(6, ':');
    let (Some("arn"), Some(_), Some("iam"), Some(""), Some(account), Some(rest)) = (
        pieces.next(),
        pieces.next(),
        pieces.next(),
        pieces.next(),
        pieces.next(),
        pieces.next(),
    ) else {
        return None;
    };
    let path = rest.strip_prefix("policy/")?;
    let safe = |s: &str| {
        !s.is_empty()
            && s.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != ".."
                    && seg != "."
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
            })
    };
    (safe(account) && safe(path)).then(|| format!("{account}/{path}"))
}

/// One account's export file.
struct File<'a> {
    name: &'a str,
    root: &'a Value,
}

impl File<'_> {
    fn list(&self, key: &str) -> Result<&[Value], ImportError> {
        match self.root.get(key) {
            None => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(ImportError::Shape {
                file: self.name.to_owned(),
                pointer: format!("/{key}"),
                message: "expected a list".into(),
            }),
        }
    }
}

fn text<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

pub(crate) fn import(root: &Path, out: &mut Out) -> Result<(), ImportError> {
    for name in json_files(root, "iam")? {
        let value = read_json(root, &name)?;
        let file = File {
            name: &name,
            root: &value,
        };
        if file.root.get("IsTruncated").and_then(Value::as_bool) == Some(true) {
            out.note(
                &name,
                "/IsTruncated".into(),
                "the export is truncated (a page of a paginated call); what is on later pages is missing",
            );
        }
        managed_policies(&file, out)?;
        let group_arns = groups(&file, out)?;
        users(&file, &group_arns, out)?;
        roles(&file, out)?;
    }
    Ok(())
}

/// `Policies`: each managed policy's default version, as `policies/<id>`.
fn managed_policies(file: &File<'_>, out: &mut Out) -> Result<(), ImportError> {
    for (i, p) in file.list("Policies")?.iter().enumerate() {
        let ptr = format!("/Policies/{i}");
        let Some(id) = text(p, "Arn").and_then(managed_policy_id) else {
            out.note(
                file.name,
                ptr,
                "no managed policy ARN verdict can name; skipped",
            );
            continue;
        };
        let versions = p.get("PolicyVersionList").and_then(Value::as_array);
        let default = versions.and_then(|vs| {
            vs.iter()
                .position(|v| v.get("IsDefaultVersion").and_then(Value::as_bool) == Some(true))
        });
        let Some(vi) = default else {
            out.note(file.name, ptr, "no default version; skipped");
            continue;
        };
        let raw = versions
            .and_then(|vs| vs.get(vi))
            .and_then(|v| v.get("Document"));
        match raw.map(document) {
            Some(Ok(doc)) => {
                out.policies.insert(id, doc);
            }
            Some(Err(e)) => out.note(
                file.name,
                format!("{ptr}/PolicyVersionList/{vi}/Document"),
                format!("{e}; skipped"),
            ),
            None => out.note(
                file.name,
                ptr,
                "the default version has no document; skipped",
            ),
        }
    }
    Ok(())
}

/// An entity's policies: its inline documents (in name order), then its
/// attached managed policies (by id), each only if the export holds it.
fn attached(
    file: &File<'_>,
    entity: &Value,
    ptr: &str,
    inline_key: &str,
    out: &mut Out,
) -> Vec<Value> {
    let mut inline: Vec<(String, Value)> = Vec::new();
    if let Some(list) = entity.get(inline_key).and_then(Value::as_array) {
        for (i, p) in list.iter().enumerate() {
            let name = text(p, "PolicyName").unwrap_or_default().to_owned();
            match p.get("PolicyDocument").map(document) {
                Some(Ok(doc)) => inline.push((name, doc)),
                Some(Err(e)) => out.note(
                    file.name,
                    format!("{ptr}/{inline_key}/{i}/PolicyDocument"),
                    format!("{e}; skipped"),
                ),
                None => out.note(
                    file.name,
                    format!("{ptr}/{inline_key}/{i}"),
                    "an inline policy without a document; skipped",
                ),
            }
        }
    }
    inline.sort_by(|a, b| a.0.cmp(&b.0));
    let mut policies: Vec<Value> = inline.into_iter().map(|(_, d)| d).collect();
    let mut managed: Vec<String> = Vec::new();
    if let Some(list) = entity
        .get("AttachedManagedPolicies")
        .and_then(Value::as_array)
    {
        for (i, p) in list.iter().enumerate() {
            let arn = text(p, "PolicyArn").unwrap_or_default();
            match managed_policy_id(arn) {
                Some(id) if out.policies.contains_key(&id) => managed.push(id),
                _ => out.note(
                    file.name,
                    format!("{ptr}/AttachedManagedPolicies/{i}"),
                    format!(
                        "managed policy `{arn}` is not in the export's `Policies`; not attached"
                    ),
                ),
            }
        }
    }
    managed.sort();
    managed.dedup();
    policies.extend(managed.into_iter().map(Value::String));
    policies
}

/// The policy standing for a boundary the export does not hold.
const MISSING_BOUNDARY: &str = "import/missing-boundary";

/// A permissions boundary, as a policy id (one that allows nothing when
/// the export does not hold it).
fn boundary(file: &File<'_>, entity: &Value, ptr: &str, out: &mut Out) -> Option<Value> {
    let arn = entity
        .get("PermissionsBoundary")
        .and_then(|b| text(b, "PermissionsBoundaryArn"))?;
    match managed_policy_id(arn) {
        Some(id) if out.policies.contains_key(&id) => Some(Value::String(id)),
        _ => {
            // Fail closed: a boundary that allows nothing, never none.
            out.note(
                file.name,
                format!("{ptr}/PermissionsBoundary"),
                format!("boundary `{arn}` is not in the export's `Policies`; a boundary that allows nothing stands in for it"),
            );
            out.policies.insert(
                MISSING_BOUNDARY.into(),
                json!({"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "NotAction": "*", "Resource": "*"}]}),
            );
            Some(Value::String(MISSING_BOUNDARY.into()))
        }
    }
}

fn tags(entity: &Value) -> Option<Value> {
    let list = entity.get("Tags").and_then(Value::as_array)?;
    let map: BTreeMap<&str, &str> = list
        .iter()
        .filter_map(|t| Some((text(t, "Key")?, text(t, "Value")?)))
        .collect();
    (!map.is_empty()).then(|| json!(map))
}

/// `GroupDetailList`; returns group ARNs by name.
fn groups(file: &File<'_>, out: &mut Out) -> Result<BTreeMap<String, String>, ImportError> {
    let mut by_name = BTreeMap::new();
    for (i, g) in file.list("GroupDetailList")?.iter().enumerate() {
        let ptr = format!("/GroupDetailList/{i}");
        let (Some(arn), Some(name)) = (text(g, "Arn"), text(g, "GroupName")) else {
            out.note(
                file.name,
                ptr,
                "a group without `Arn` or `GroupName`; skipped",
            );
            continue;
        };
        let policies = attached(file, g, &ptr, "GroupPolicyList", out);
        out.groups
            .insert(arn.to_owned(), json!({ "policies": policies }));
        by_name.insert(name.to_owned(), arn.to_owned());
    }
    Ok(by_name)
}

fn users(
    file: &File<'_>,
    group_arns: &BTreeMap<String, String>,
    out: &mut Out,
) -> Result<(), ImportError> {
    for (i, u) in file.list("UserDetailList")?.iter().enumerate() {
        let ptr = format!("/UserDetailList/{i}");
        let Some(arn) = text(u, "Arn") else {
            out.note(file.name, ptr, "a user without `Arn`; skipped");
            continue;
        };
        let mut entry = serde_json::Map::new();
        entry.insert(
            "policies".into(),
            Value::Array(attached(file, u, &ptr, "UserPolicyList", out)),
        );
        let mut groups: Vec<String> = Vec::new();
        if let Some(list) = u.get("GroupList").and_then(Value::as_array) {
            for (gi, g) in list.iter().enumerate() {
                let name = g.as_str().unwrap_or_default();
                match group_arns.get(name) {
                    Some(arn) => groups.push(arn.clone()),
                    None => out.note(
                        file.name,
                        format!("{ptr}/GroupList/{gi}"),
                        format!("group `{name}` is not in the export's `GroupDetailList`; membership dropped"),
                    ),
                }
            }
        }
        groups.sort();
        if !groups.is_empty() {
            entry.insert("groups".into(), json!(groups));
        }
        if let Some(b) = boundary(file, u, &ptr, out) {
            entry.insert("boundary".into(), b);
        }
        if let Some(t) = tags(u) {
            entry.insert("tags".into(), t);
        }
        if let Some(id) = text(u, "UserId") {
            entry.insert("unique_id".into(), json!(id));
        }
        out.principals.insert(arn.to_owned(), Value::Object(entry));
    }
    Ok(())
}

/// `RoleDetailList`: each role's identity side in `principals.json`, its
/// trust policy in `resources.json` (U45).
fn roles(file: &File<'_>, out: &mut Out) -> Result<(), ImportError> {
    for (i, r) in file.list("RoleDetailList")?.iter().enumerate() {
        let ptr = format!("/RoleDetailList/{i}");
        let Some(arn) = text(r, "Arn") else {
            out.note(file.name, ptr, "a role without `Arn`; skipped");
            continue;
        };
        let mut entry = serde_json::Map::new();
        entry.insert(
            "policies".into(),
            Value::Array(attached(file, r, &ptr, "RolePolicyList", out)),
        );
        if let Some(b) = boundary(file, r, &ptr, out) {
            entry.insert("boundary".into(), b);
        }
        if let Some(t) = tags(r) {
            entry.insert("tags".into(), t);
        }
        if let Some(id) = text(r, "RoleId") {
            entry.insert("unique_id".into(), json!(id));
        }
        out.principals.insert(arn.to_owned(), Value::Object(entry));
        match r.get("AssumeRolePolicyDocument").map(document) {
            Some(Ok(trust)) => {
                out.resources
                    .insert(arn.to_owned(), json!({ "policy": trust }));
            }
            Some(Err(e)) => out.note(
                file.name,
                format!("{ptr}/AssumeRolePolicyDocument"),
                format!(
                    "{e}; the role is imported without a trust policy, so nobody can assume it"
                ),
            ),
            None => out.note(
                file.name,
                ptr,
                "no `AssumeRolePolicyDocument`; nobody can assume the role",
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_policy_ids() {
        assert_eq!(
            managed_policy_id("arn:aws:iam::aws:policy/service-role/AWSLambdaRole").as_deref(),
            Some("aws/service-role/AWSLambdaRole")
        );
        assert_eq!(
            managed_policy_id("arn:aws:iam::111122223333:policy/team/KeyUsers").as_deref(),
            Some("111122223333/team/KeyUsers")
        );
        assert_eq!(managed_policy_id("arn:aws:iam::1:policy/../x"), None);
        assert_eq!(managed_policy_id("arn:aws:iam::1:role/x"), None);
        assert_eq!(managed_policy_id("arn:aws:s3:::b"), None);
    }
}

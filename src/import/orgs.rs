//! AWS Organizations: the root/OU/account tree and the SCPs and RCPs
//! attached to its nodes, into `accounts.json` levels with the
//! organization id and each account's org path (so that
//! `aws:PrincipalOrgID` and `aws:PrincipalOrgPaths` are derived).
//!
//! Files under `organizations/`: `describe-organization.json`,
//! `roots.json` (`list-roots`), `children/<parent-id>/ous.json`
//! (`list-organizational-units-for-parent`) and
//! `children/<parent-id>/accounts.json` (`list-accounts-for-parent`),
//! `policies/<policy-id>/describe-policy.json` and
//! `policies/<policy-id>/targets.json` (`list-targets-for-policy`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};

use super::{ImportError, Out, document, read_json, subdirs};

const DIR: &str = "organizations";

/// A policy that allows nothing, standing for a node the export shows
/// without any policy of a kind that is in use (AWS never allows that, so
/// the export is incomplete): the level then allows nothing.
const NOTHING: &str = "org/none-attached";

fn text<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn list<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The policies of each kind attached to each node (root, OU or account).
#[derive(Default)]
struct Attached {
    scp: BTreeMap<String, BTreeSet<String>>,
    rcp: BTreeMap<String, BTreeSet<String>>,
}

pub(crate) fn import(root: &Path, out: &mut Out) -> Result<(), ImportError> {
    if !root.join(DIR).is_dir() {
        return Ok(());
    }
    let org = read_json(root, &format!("{DIR}/describe-organization.json"))?;
    let org = org.get("Organization").unwrap_or(&Value::Null);
    let (Some(org_id), management) = (text(org, "Id"), text(org, "MasterAccountId")) else {
        return Err(ImportError::Shape {
            file: format!("{DIR}/describe-organization.json"),
            pointer: "/Organization/Id".into(),
            message: "expected `describe-organization` output".into(),
        });
    };
    let attached = policies(root, out)?;
    let roots = read_json(root, &format!("{DIR}/roots.json"))?;
    for r in list(&roots, "Roots") {
        let Some(root_id) = text(r, "Id") else {
            continue;
        };
        let path = vec![root_id.to_owned()];
        walk(root, org_id, management, &attached, &path, out)?;
    }
    Ok(())
}

/// `policies/<id>/`: each SCP or RCP as `policies/org/<id>`, and the nodes
/// it is attached to.
fn policies(root: &Path, out: &mut Out) -> Result<Attached, ImportError> {
    let mut attached = Attached::default();
    let ids = subdirs(root, &format!("{DIR}/policies"))?;
    for id in ids {
        let file = format!("{DIR}/policies/{id}/describe-policy.json");
        let v = read_json(root, &file)?;
        let policy = v.get("Policy").unwrap_or(&Value::Null);
        let kind = policy
            .get("PolicySummary")
            .and_then(|s| text(s, "Type"))
            .unwrap_or_default();
        let slot = match kind {
            "SERVICE_CONTROL_POLICY" => &mut attached.scp,
            "RESOURCE_CONTROL_POLICY" => &mut attached.rcp,
            other => {
                out.note(
                    &file,
                    "/Policy/PolicySummary/Type".into(),
                    format!("policy type `{other}` is not an authorization policy verdict applies; skipped"),
                );
                continue;
            }
        };
        let safe = !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let doc = policy.get("Content").map(document);
        let doc = match (safe, doc) {
            (true, Some(Ok(doc))) => doc,
            (false, _) => {
                out.note(
                    &file,
                    String::new(),
                    "a policy id verdict cannot name; skipped",
                );
                continue;
            }
            (true, Some(Err(e))) => {
                out.note(&file, "/Policy/Content".into(), format!("{e}; skipped"));
                continue;
            }
            (true, None) => {
                out.note(&file, "/Policy".into(), "no `Content`; skipped");
                continue;
            }
        };
        let policy_id = format!("org/{id}");
        out.policies.insert(policy_id.clone(), doc);
        let targets = read_json(root, &format!("{DIR}/policies/{id}/targets.json"))?;
        for t in list(&targets, "Targets") {
            if let Some(node) = text(t, "TargetId") {
                slot.entry(node.to_owned())
                    .or_default()
                    .insert(policy_id.clone());
            }
        }
    }
    Ok(attached)
}

/// The accounts under the node at the end of `path` (root id first), then
/// its OUs, recursively.
fn walk(
    root: &Path,
    org_id: &str,
    management: Option<&str>,
    attached: &Attached,
    path: &[String],
    out: &mut Out,
) -> Result<(), ImportError> {
    let Some(node) = path.last() else {
        return Ok(());
    };
    if path.len() > 7 {
        // AWS allows five levels of OUs under the root.
        out.note(
            &format!("{DIR}/children/{node}"),
            String::new(),
            "the tree is deeper than AWS allows; stopped here",
        );
        return Ok(());
    }
    let children = format!("{DIR}/children/{node}");
    if root.join(&children).join("accounts.json").is_file() {
        let accounts = read_json(root, &format!("{children}/accounts.json"))?;
        for a in list(&accounts, "Accounts") {
            let Some(id) = text(a, "Id") else { continue };
            account(org_id, management, attached, path, id, out);
        }
    }
    if root.join(&children).join("ous.json").is_file() {
        let ous = read_json(root, &format!("{children}/ous.json"))?;
        for ou in list(&ous, "OrganizationalUnits") {
            let Some(id) = text(ou, "Id") else { continue };
            let mut deeper = path.to_vec();
            deeper.push(id.to_owned());
            walk(root, org_id, management, attached, &deeper, out)?;
        }
    }
    Ok(())
}

/// One account's `accounts.json` entry: one level per node from the root
/// to the account, for each kind in use.
fn account(
    org_id: &str,
    management: Option<&str>,
    attached: &Attached,
    path: &[String],
    id: &str,
    out: &mut Out,
) {
    let org_path = format!("{org_id}/{}/", path.join("/"));
    let mut entry = serde_json::Map::new();
    entry.insert("org_id".into(), json!(org_id));
    entry.insert("org_paths".into(), json!([org_path]));
    // SCPs and RCPs do not bind the management account.
    if management != Some(id) {
        let nodes: Vec<&str> = path.iter().map(String::as_str).chain([id]).collect();
        for (field, kind) in [("scps", &attached.scp), ("rcps", &attached.rcp)] {
            if kind.is_empty() {
                continue;
            }
            let mut levels = Vec::new();
            for node in &nodes {
                match kind.get(*node) {
                    Some(ids) => levels.push(json!(ids)),
                    None => {
                        out.note(
                            &format!("{DIR}/policies"),
                            String::new(),
                            format!("no {field} policy is attached to `{node}` (on the way to account {id}); that level allows nothing"),
                        );
                        out.policies.insert(
                            NOTHING.into(),
                            json!({"Version": "2012-10-17", "Statement": [
                                {"Effect": "Allow", "NotAction": "*", "Resource": "*"}]}),
                        );
                        levels.push(json!([NOTHING]));
                    }
                }
            }
            entry.insert(field.into(), Value::Array(levels));
        }
    }
    out.accounts.insert(id.to_owned(), Value::Object(entry));
}

//! KMS keys: `describe-key`, `get-key-policy --policy-name default`,
//! `list-grants` and `list-resource-tags` per key (`kms/<key-id>/`), and
//! `list-aliases` (`kms/aliases*.json`).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::{ImportError, Out, document, json_files, read_json, subdirs};

/// Key states the bundle format names (docs/bundle-format.md).
const STATES: &[&str] = &[
    "Enabled",
    "Disabled",
    "PendingDeletion",
    "PendingReplicaDeletion",
    "PendingImport",
    "Unavailable",
    "Creating",
    "Updating",
];

fn text<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

pub(crate) fn import(root: &Path, out: &mut Out) -> Result<(), ImportError> {
    let aliases = aliases(root, out)?;
    let keys = subdirs(root, "kms")?;
    for key in keys {
        one_key(root, &format!("kms/{key}"), &aliases, out)?;
    }
    Ok(())
}

/// Alias names by target key id.
fn aliases(root: &Path, out: &mut Out) -> Result<BTreeMap<String, Vec<String>>, ImportError> {
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in json_files(root, "kms")? {
        let file_name = name.rsplit('/').next().unwrap_or_default();
        if !file_name.starts_with("aliases") {
            continue;
        }
        let v = read_json(root, &name)?;
        let list =
            v.get("Aliases")
                .and_then(Value::as_array)
                .ok_or_else(|| ImportError::Shape {
                    file: name.clone(),
                    pointer: "/Aliases".into(),
                    message: "expected `list-aliases` output with an `Aliases` list".into(),
                })?;
        for (i, a) in list.iter().enumerate() {
            match (text(a, "AliasName"), text(a, "TargetKeyId")) {
                (Some(alias), Some(key)) => by_key
                    .entry(key.to_owned())
                    .or_default()
                    .push(alias.to_owned()),
                (Some(_), None) => {} // an alias with no key (AWS-reserved names)
                _ => out.note(
                    &name,
                    format!("/Aliases/{i}"),
                    "an alias without `AliasName`; skipped",
                ),
            }
        }
    }
    for list in by_key.values_mut() {
        list.sort();
        list.dedup();
    }
    Ok(by_key)
}

fn one_key(
    root: &Path,
    dir: &str,
    aliases: &BTreeMap<String, Vec<String>>,
    out: &mut Out,
) -> Result<(), ImportError> {
    let describe_file = format!("{dir}/describe-key.json");
    let describe = read_json(root, &describe_file)?;
    let meta = describe
        .get("KeyMetadata")
        .ok_or_else(|| ImportError::Shape {
            file: describe_file.clone(),
            pointer: "/KeyMetadata".into(),
            message: "expected `describe-key` output".into(),
        })?;
    let (Some(arn), Some(key_id)) = (text(meta, "Arn"), text(meta, "KeyId")) else {
        return Err(ImportError::Shape {
            file: describe_file,
            pointer: "/KeyMetadata".into(),
            message: "no `Arn` or `KeyId`".into(),
        });
    };
    let mut entry = serde_json::Map::new();
    let policy_file = format!("{dir}/key-policy.json");
    let policy = read_json(root, &policy_file)?;
    match policy.get("Policy").map(document) {
        Some(Ok(doc)) => {
            entry.insert("policy".into(), doc);
        }
        Some(Err(e)) => {
            out.note(
                &policy_file,
                "/Policy".into(),
                format!("{e}; the key is skipped"),
            );
            return Ok(());
        }
        None => {
            out.note(
                &policy_file,
                "/Policy".into(),
                "no key policy; the key is skipped",
            );
            return Ok(());
        }
    }
    match text(meta, "KeyState") {
        Some(s) if STATES.contains(&s) => {
            entry.insert("state".into(), json!(s));
        }
        Some(s) => {
            // Fail closed: an unknown state refuses what `Unavailable` does.
            out.note(
                &describe_file,
                "/KeyMetadata/KeyState".into(),
                format!("key state `{s}` is not one verdict knows; imported as Unavailable"),
            );
            entry.insert("state".into(), json!("Unavailable"));
        }
        None => {}
    }
    for (field, key) in [
        ("key_spec", "KeySpec"),
        ("key_usage", "KeyUsage"),
        ("key_origin", "Origin"),
    ] {
        if let Some(v) = text(meta, key) {
            entry.insert(field.into(), json!(v));
        }
    }
    if text(meta, "KeyManager") == Some("AWS") {
        entry.insert("aws_managed".into(), json!(true));
    }
    if let Some(list) = aliases.get(key_id) {
        entry.insert("aliases".into(), json!(list));
    }
    let tags_file = format!("{dir}/tags.json");
    if root.join(&tags_file).is_file() {
        let t = read_json(root, &tags_file)?;
        let map: BTreeMap<&str, &str> = t
            .get("Tags")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|t| Some((text(t, "TagKey")?, text(t, "TagValue")?)))
                    .collect()
            })
            .unwrap_or_default();
        if !map.is_empty() {
            entry.insert("tags".into(), json!(map));
        }
    }
    out.resources.insert(arn.to_owned(), Value::Object(entry));
    let grants_file = format!("{dir}/grants.json");
    if root.join(&grants_file).is_file() {
        grants(root, &grants_file, arn, out)?;
    }
    Ok(())
}

fn grants(root: &Path, file: &str, key_arn: &str, out: &mut Out) -> Result<(), ImportError> {
    let v = read_json(root, file)?;
    let Some(list) = v.get("Grants").and_then(Value::as_array) else {
        return Err(ImportError::Shape {
            file: file.to_owned(),
            pointer: "/Grants".into(),
            message: "expected `list-grants` output with a `Grants` list".into(),
        });
    };
    for (i, g) in list.iter().enumerate() {
        let ptr = format!("/Grants/{i}");
        let (Some(id), Some(grantee)) = (text(g, "GrantId"), text(g, "GranteePrincipal")) else {
            out.note(
                file,
                ptr,
                "a grant without `GrantId` or `GranteePrincipal`; skipped",
            );
            continue;
        };
        let operations: Vec<&str> = g
            .get("Operations")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut grant = serde_json::Map::new();
        grant.insert("grant_id".into(), json!(id));
        grant.insert("key".into(), json!(key_arn));
        grant.insert("grantee".into(), json!(grantee));
        grant.insert("operations".into(), json!(operations));
        if let Some(r) = text(g, "RetiringPrincipal") {
            grant.insert("retiring_principal".into(), json!(r));
        }
        if let Some(c) = g.get("Constraints") {
            let pairs = |k: &str| -> Option<BTreeMap<String, String>> {
                let m = c.get(k)?.as_object()?;
                Some(
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                        .collect(),
                )
            };
            match (
                pairs("EncryptionContextEquals"),
                pairs("EncryptionContextSubset"),
            ) {
                (Some(eq), None) => {
                    grant.insert(
                        "constraints".into(),
                        json!({ "encryption_context_equals": eq }),
                    );
                }
                (None, Some(sub)) => {
                    grant.insert(
                        "constraints".into(),
                        json!({ "encryption_context_subset": sub }),
                    );
                }
                (None, None) => {}
                (Some(_), Some(_)) => {
                    out.note(
                        file,
                        format!("{ptr}/Constraints"),
                        "a grant with both constraint kinds, which the bundle format cannot hold; skipped, so verdict allows less than AWS may",
                    );
                    continue;
                }
            }
        }
        out.grants.insert(id.to_owned(), Value::Object(grant));
    }
    Ok(())
}

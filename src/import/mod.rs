//! `verdict import`: a bundle built from what the AWS CLI prints, so that it
//! works on any account without verdict holding credentials.
//!
//! The export is a directory (docs/import.md):
//!
//! - `iam/*.json`: `aws iam get-account-authorization-details`, one file per
//!   account (documents as JSON objects, as the CLI prints them, or as
//!   URL-encoded strings, as the API returns them);
//! - `kms/<key-id>/describe-key.json`, `key-policy.json`
//!   (`get-key-policy --policy-name default`), `grants.json`
//!   (`list-grants`), `tags.json` (`list-resource-tags`), and
//!   `kms/aliases*.json` (`list-aliases`);
//! - `organizations/`: the organization, its tree, and its SCPs and RCPs
//!   with their targets (see `orgs`).
//!
//! The output is deterministic: the same export gives byte-identical files,
//! and the revision is a digest of them. What the bundle format cannot
//! express is a [`Note`] naming its source entry, never dropped silently.

mod iam;
mod kms;
mod orgs;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The largest export file read, in bytes.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Something of the export the bundle does not carry, or carries
/// differently, with the entry it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The export file.
    pub file: String,
    /// JSON pointer of the entry in it.
    pub pointer: String,
    /// What happened to it.
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "warning: {}: {}: {}",
            self.file, self.pointer, self.message
        )
    }
}

/// Why an export could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read.
    #[error("{file}: {message}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        message: String,
    },
    /// A file is not what the AWS CLI prints for it.
    #[error("{file}: {pointer}: {message}")]
    Shape {
        /// The file.
        file: String,
        /// Where in it.
        pointer: String,
        /// What is wrong.
        message: String,
    },
    /// The output could not be written.
    #[error("{0}")]
    Write(String),
}

/// The bundle being built: its files by path, as JSON values.
#[derive(Default)]
pub(crate) struct Out {
    /// `policies/<id>.json` documents by id.
    pub(crate) policies: BTreeMap<String, Value>,
    /// `principals.json` `principals`.
    pub(crate) principals: BTreeMap<String, Value>,
    /// `principals.json` `groups`.
    pub(crate) groups: BTreeMap<String, Value>,
    /// `resources.json` entries.
    pub(crate) resources: BTreeMap<String, Value>,
    /// `grants.json` entries by grant id.
    pub(crate) grants: BTreeMap<String, Value>,
    /// `accounts.json` entries by account id.
    pub(crate) accounts: BTreeMap<String, Value>,
    /// What the bundle does not carry.
    pub(crate) notes: Vec<Note>,
}

impl Out {
    pub(crate) fn note(&mut self, file: &str, pointer: String, message: impl Into<String>) {
        self.notes.push(Note {
            file: file.to_owned(),
            pointer,
            message: message.into(),
        });
    }
}

/// What an import wrote.
#[derive(Debug)]
pub struct Imported {
    /// The revision (a digest of the files).
    pub revision: String,
    /// Files written, relative to the output directory.
    pub files: Vec<String>,
    /// What the bundle does not carry.
    pub notes: Vec<Note>,
}

/// Read one export file as JSON.
pub(crate) fn read_json(root: &Path, rel: &str) -> Result<Value, ImportError> {
    let path = root.join(rel);
    let read = |message: String| ImportError::Read {
        file: rel.to_owned(),
        message,
    };
    let meta = std::fs::metadata(&path).map_err(|e| read(e.to_string()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(read(format!(
            "{} bytes, over the import limit of {MAX_FILE_BYTES}",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| read(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| ImportError::Shape {
        file: rel.to_owned(),
        pointer: String::new(),
        message: format!("not JSON: {e}"),
    })
}

/// The files of `dir` (relative to `root`) whose names end in `.json`,
/// sorted; none when the directory does not exist.
pub(crate) fn json_files(root: &Path, dir: &str) -> Result<Vec<String>, ImportError> {
    let path = root.join(dir);
    if !path.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&path).map_err(|e| ImportError::Read {
        file: dir.to_owned(),
        message: e.to_string(),
    })?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && e.path().is_file() {
            out.push(format!("{dir}/{name}"));
        }
    }
    out.sort();
    Ok(out)
}

/// The names of the directories in `dir` (relative to `root`), sorted;
/// none when it does not exist.
pub(crate) fn subdirs(root: &Path, dir: &str) -> Result<Vec<String>, ImportError> {
    let path = root.join(dir);
    if !path.is_dir() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(&path).map_err(|e| ImportError::Read {
        file: dir.to_owned(),
        message: e.to_string(),
    })?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// A policy document as the export holds it: a JSON object, or a string
/// holding one (URL-encoded, as the IAM API returns it, or plain, as
/// `get-key-policy` prints it).
pub(crate) fn document(v: &Value) -> Result<Value, String> {
    match v {
        Value::Object(_) => Ok(v.clone()),
        Value::String(s) => {
            let text = if s.trim_start().starts_with('{') {
                s.clone()
            } else {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map_err(|e| format!("URL-encoded document is not UTF-8: {e}"))?
                    .into_owned()
            };
            match serde_json::from_str::<Value>(&text) {
                Ok(d @ Value::Object(_)) => Ok(d),
                Ok(_) => Err("the document is not a JSON object".into()),
                Err(e) => Err(format!("the document is not JSON: {e}")),
            }
        }
        _ => Err("expected a policy document (an object or a string)".into()),
    }
}

/// Build the bundle of the export at `export` into `out`, which must not
/// exist or be empty.
pub fn run(export: &Path, out_dir: &Path) -> Result<Imported, ImportError> {
    if out_dir.exists() && std::fs::read_dir(out_dir).map_or(true, |mut d| d.next().is_some()) {
        return Err(ImportError::Write(format!(
            "{}: exists and is not empty; give a new directory",
            out_dir.display()
        )));
    }
    let mut out = Out::default();
    iam::import(export, &mut out)?;
    kms::import(export, &mut out)?;
    orgs::import(export, &mut out)?;
    write(out_dir, out)
}

/// Pretty JSON with a final newline (serde_json sorts nothing: every map
/// here is a `BTreeMap` or was built in a fixed order).
fn pretty(v: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(v).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

fn write(out_dir: &Path, out: Out) -> Result<Imported, ImportError> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (id, doc) in &out.policies {
        files.insert(format!("policies/{id}.json"), pretty(doc));
    }
    files.insert(
        "principals.json".into(),
        pretty(&serde_json::json!({
            "groups": out.groups,
            "principals": out.principals,
        })),
    );
    files.insert(
        "resources.json".into(),
        pretty(&Value::Object(out.resources.into_iter().collect())),
    );
    if !out.accounts.is_empty() {
        files.insert(
            "accounts.json".into(),
            pretty(&Value::Object(out.accounts.into_iter().collect())),
        );
    }
    if !out.grants.is_empty() {
        files.insert(
            "grants.json".into(),
            pretty(&Value::Array(out.grants.into_values().collect())),
        );
    }
    let mut digest = Sha256::new();
    for (path, bytes) in &files {
        digest.update(path.as_bytes());
        digest.update([0]);
        digest.update(u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_le_bytes());
        digest.update(bytes);
    }
    let digest = digest.finalize();
    let revision = format!(
        "import-{}",
        crate::bundle::sign::hex(digest.get(..8).unwrap_or(&digest))
    );
    files.insert(
        "manifest.json".into(),
        pretty(&serde_json::json!({ "revision": revision, "name": "imported" })),
    );
    for (rel, bytes) in &files {
        let path: PathBuf = out_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ImportError::Write(format!("{}: {e}", parent.display())))?;
        }
        std::fs::write(&path, bytes)
            .map_err(|e| ImportError::Write(format!("{}: {e}", path.display())))?;
    }
    Ok(Imported {
        revision,
        files: files.into_keys().collect(),
        notes: out.notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_come_as_objects_or_encoded_strings() {
        let object = serde_json::json!({"Statement": []});
        assert_eq!(document(&object).unwrap(), object);
        let encoded = Value::String("%7B%22Statement%22%3A%20%5B%5D%7D".into());
        assert_eq!(document(&encoded).unwrap(), object);
        let plain = Value::String("{\"Statement\": []}".into());
        assert_eq!(document(&plain).unwrap(), object);
        assert!(document(&Value::String("%5B%5D".into())).is_err());
        assert!(document(&Value::Null).is_err());
    }
}

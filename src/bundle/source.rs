//! Reading a bundle's files from a directory (a Kubernetes ConfigMap volume
//! included) or a `.tar.gz`, within the size limits, as one snapshot.
//!
//! A directory holding a `..data` entry is a ConfigMap volume: `..data` is
//! resolved once and every file is read under the resolved path, so one load
//! never mixes two versions. Entries whose names start with `..` are skipped.

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::Limits;
use super::err::{
    BundleErrorKind as B, BundleWarningKind as BW, Diagnostic, Finding, LoadError, Severity,
};

/// One file of a bundle.
#[derive(Debug)]
pub struct RawFile {
    /// Path inside the bundle, `/`-separated.
    pub path: String,
    /// Content.
    pub bytes: Vec<u8>,
}

/// All files of a bundle, as read.
#[derive(Debug)]
pub struct RawBundle {
    /// Where it came from (for status and messages).
    pub source: String,
    /// The files, sorted by path.
    pub files: Vec<RawFile>,
    /// What reading found (oversized files, odd archive entries, …).
    pub diagnostics: Vec<Diagnostic>,
}

/// Which size limit applies to a bundle path.
pub fn file_limit(path: &str, limits: &Limits) -> u64 {
    if path.starts_with("policies/") {
        limits.max_policy_bytes
    } else {
        limits.max_data_file_bytes
    }
}

fn too_large(path: &str, size: u64, limit: u64) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: path.to_owned(),
        pointer: String::new(),
        position: None,
        finding: Finding::Bundle(B::TooLarge {
            what: if path.starts_with("policies/") {
                "policy document"
            } else {
                "file"
            },
            size,
            limit,
        }),
    }
}

fn bundle_error(file: &str, kind: B) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: file.to_owned(),
        pointer: String::new(),
        position: None,
        finding: Finding::Bundle(kind),
    }
}

/// Read the bundle at `path`.
pub fn read(path: &Path, limits: &Limits) -> Result<RawBundle, LoadError> {
    let display = path.display().to_string();
    let meta = fs::metadata(path).map_err(|e| LoadError::NotABundle {
        path: display.clone(),
        reason: e.to_string(),
    })?;
    if meta.is_dir() {
        read_dir(path, &display, limits)
    } else if is_tar_gz(path) {
        read_tar_gz(path, &display, limits)
    } else {
        Err(LoadError::NotABundle {
            path: display,
            reason: "neither a directory nor a `.tar.gz` file".into(),
        })
    }
}

/// Whether the path names a gzip-compressed tar archive.
pub fn is_tar_gz(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

fn read_dir(path: &Path, display: &str, limits: &Limits) -> Result<RawBundle, LoadError> {
    let data = path.join("..data");
    let root: PathBuf = if fs::symlink_metadata(&data).is_ok() {
        fs::canonicalize(&data).map_err(|e| LoadError::NotABundle {
            path: display.to_owned(),
            reason: format!("cannot resolve `..data`: {e}"),
        })?
    } else {
        path.to_path_buf()
    };
    let mut out = RawBundle {
        source: display.to_owned(),
        files: Vec::new(),
        diagnostics: Vec::new(),
    };
    let mut count = 0usize;
    walk(&root, "", 0, limits, &mut out, &mut count);
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Directories nested deeper than this are not followed (symlink loops).
const MAX_DIR_DEPTH: usize = 32;

fn walk(
    dir: &Path,
    prefix: &str,
    depth: usize,
    limits: &Limits,
    out: &mut RawBundle,
    count: &mut usize,
) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            out.diagnostics
                .push(bundle_error(prefix, B::Io(e.to_string())));
            return;
        }
    };
    let mut names: Vec<_> = entries.filter_map(Result::ok).collect();
    names.sort_by_key(|e| e.file_name());
    for entry in names {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            out.diagnostics.push(bundle_error(
                prefix,
                B::Io("a file name is not UTF-8".into()),
            ));
            continue;
        };
        if name.starts_with("..") {
            continue;
        }
        let rel = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        let full = entry.path();
        let meta = match fs::metadata(&full) {
            Ok(m) => m,
            Err(e) => {
                out.diagnostics
                    .push(bundle_error(&rel, B::Io(e.to_string())));
                continue;
            }
        };
        if meta.is_dir() {
            if depth + 1 > MAX_DIR_DEPTH {
                out.diagnostics
                    .push(bundle_error(&rel, B::TooDeep(MAX_DIR_DEPTH)));
                continue;
            }
            walk(&full, &rel, depth + 1, limits, out, count);
            continue;
        }
        *count += 1;
        if *count > limits.max_files {
            if *count == limits.max_files + 1 {
                out.diagnostics
                    .push(bundle_error("", B::TooManyFiles(limits.max_files)));
            }
            continue;
        }
        if !is_bundle_file(&rel) {
            out.diagnostics.push(warning(&rel, BW::UnknownFile));
            continue;
        }
        let limit = file_limit(&rel, limits);
        if meta.len() > limit {
            out.diagnostics.push(too_large(&rel, meta.len(), limit));
            continue;
        }
        match fs::read(&full) {
            Ok(bytes) => out.files.push(RawFile { path: rel, bytes }),
            Err(e) => out
                .diagnostics
                .push(bundle_error(&rel, B::Io(e.to_string()))),
        }
    }
}

fn warning(file: &str, kind: BW) -> Diagnostic {
    Diagnostic {
        severity: Severity::Warning,
        file: file.to_owned(),
        pointer: String::new(),
        position: None,
        finding: Finding::BundleWarning(kind),
    }
}

/// Whether a bundle path is one of the names `bundle.md` defines.
pub fn is_bundle_file(path: &str) -> bool {
    matches!(
        path,
        "manifest.json" | "principals.json" | "resources.json" | "accounts.json" | "grants.json"
    ) || ((path.starts_with("policies/") || path.starts_with("tests/")) && path.ends_with(".json"))
}

fn read_tar_gz(path: &Path, display: &str, limits: &Limits) -> Result<RawBundle, LoadError> {
    let file = fs::File::open(path).map_err(|e| LoadError::NotABundle {
        path: display.to_owned(),
        reason: e.to_string(),
    })?;
    let mut out = RawBundle {
        source: display.to_owned(),
        files: Vec::new(),
        diagnostics: Vec::new(),
    };
    let decoder = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
    let mut archive = tar::Archive::new(decoder);
    let mut total: u64 = 0;
    let mut count = 0usize;
    let mut raw: Vec<RawFile> = Vec::new();
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            out.diagnostics.push(bundle_error("", B::Io(e.to_string())));
            return Ok(out);
        }
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                out.diagnostics
                    .push(bundle_error("", B::Io(format!("archive: {e}"))));
                break;
            }
        };
        let entry_path = match entry.path() {
            Ok(p) => p.into_owned(),
            Err(e) => {
                out.diagnostics
                    .push(bundle_error("", B::Io(format!("archive: {e}"))));
                continue;
            }
        };
        let Some(rel) = relative(&entry_path) else {
            out.diagnostics.push(bundle_error(
                "",
                B::ArchivePath(entry_path.display().to_string()),
            ));
            continue;
        };
        if rel.is_empty() || rel.split('/').any(|c| c.starts_with("..")) {
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            out.diagnostics.push(warning(&rel, BW::ArchiveEntry));
            continue;
        }
        count += 1;
        if count > limits.max_files {
            if count == limits.max_files + 1 {
                out.diagnostics
                    .push(bundle_error("", B::TooManyFiles(limits.max_files)));
            }
            continue;
        }
        let size = entry.header().size().unwrap_or(u64::MAX);
        total = total.saturating_add(size);
        if total > limits.max_unpacked_bytes {
            out.diagnostics.push(bundle_error(
                "",
                B::TooLarge {
                    what: "the unpacked archive",
                    size: total,
                    limit: limits.max_unpacked_bytes,
                },
            ));
            return Ok(out);
        }
        // Size against the per-file limit is checked once the top folder is known;
        // never read more than the largest limit.
        let cap = limits.max_data_file_bytes.max(limits.max_policy_bytes);
        if size > cap {
            out.diagnostics.push(too_large(&rel, size, cap));
            continue;
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        if let Err(e) = (&mut entry).take(cap + 1).read_to_end(&mut bytes) {
            out.diagnostics
                .push(bundle_error(&rel, B::Io(e.to_string())));
            continue;
        }
        raw.push(RawFile { path: rel, bytes });
    }
    // The archive's top level is the bundle, or a single folder holding it.
    let strip = if raw.iter().any(|f| f.path == "manifest.json") {
        None
    } else {
        let firsts: std::collections::BTreeSet<&str> = raw
            .iter()
            .map(|f| f.path.split('/').next().unwrap_or(""))
            .collect();
        match (firsts.len(), firsts.first()) {
            (1, Some(first)) if raw.iter().all(|f| f.path.contains('/')) => {
                Some(format!("{first}/"))
            }
            _ => None,
        }
    };
    for mut f in raw {
        if let Some(prefix) = &strip
            && let Some(rest) = f.path.strip_prefix(prefix.as_str())
        {
            f.path = rest.to_owned();
        }
        if !is_bundle_file(&f.path) {
            out.diagnostics.push(warning(&f.path, BW::UnknownFile));
            continue;
        }
        let limit = file_limit(&f.path, limits);
        let len = u64::try_from(f.bytes.len()).unwrap_or(u64::MAX);
        if len > limit {
            out.diagnostics.push(too_large(&f.path, len, limit));
            continue;
        }
        out.files.push(f);
    }
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// A relative, `/`-separated path with no `..` or root components.
fn relative(p: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_owned()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

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
pub(crate) fn file_limit(path: &str, limits: &Limits) -> u64 {
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
        finding: Finding::Bundle(if path.starts_with("policies/") {
            B::TooLarge {
                what: "policy document",
                size,
                limit,
                setting: "max_policy_bytes",
            }
        } else {
            B::TooLarge {
                what: "file",
                size,
                limit,
                setting: "max_data_file_bytes",
            }
        }),
    }
}

/// `what` (a whole bundle) is `size` bytes, over `max_unpacked_bytes`.
fn unpacked_too_large(what: &'static str, size: u64, limits: &Limits) -> Diagnostic {
    bundle_error(
        "",
        B::TooLarge {
            what,
            size,
            limit: limits.max_unpacked_bytes,
            setting: "max_unpacked_bytes",
        },
    )
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
pub(crate) fn read(path: &Path, limits: &Limits) -> Result<RawBundle, LoadError> {
    let display = path.display().to_string();
    let meta = fs::metadata(path).map_err(|e| LoadError::NotABundle {
        path: display.clone(),
        reason: io_reason(&e),
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
pub(crate) fn is_tar_gz(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

fn read_dir(path: &Path, display: &str, limits: &Limits) -> Result<RawBundle, LoadError> {
    let listing = scan(path, limits).map_err(|reason| LoadError::NotABundle {
        path: display.to_owned(),
        reason,
    })?;
    let mut out = RawBundle {
        source: display.to_owned(),
        files: Vec::new(),
        diagnostics: listing.diagnostics,
    };
    let mut total: u64 = 0;
    for entry in listing.entries {
        if !is_bundle_file(&entry.path) {
            out.diagnostics.push(warning(&entry.path, BW::UnknownFile));
            continue;
        }
        let limit = file_limit(&entry.path, limits);
        if entry.len > limit {
            out.diagnostics
                .push(too_large(&entry.path, entry.len, limit));
            continue;
        }
        match read_capped(&entry.full, limit) {
            Ok(bytes) => {
                let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
                if len > limit {
                    out.diagnostics.push(too_large(&entry.path, len, limit));
                    continue;
                }
                total = total.saturating_add(len);
                if total > limits.max_unpacked_bytes {
                    out.diagnostics
                        .push(unpacked_too_large("the bundle", total, limits));
                    break;
                }
                out.files.push(RawFile {
                    path: entry.path,
                    bytes,
                });
            }
            Err(e) => out
                .diagnostics
                .push(bundle_error(&entry.path, B::Io(io_reason(&e)))),
        }
    }
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// A regular file found under a bundle directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Entry {
    /// Path inside the bundle, `/`-separated.
    pub path: String,
    /// Where it is read from (symlinks resolved).
    pub(crate) full: PathBuf,
    /// Size when listed.
    pub(crate) len: u64,
    /// Modification time when listed.
    pub(crate) modified: Option<std::time::SystemTime>,
}

/// The regular files of a bundle directory, in path order, and what the
/// walk refused (special files, symlinks leading out of the bundle,
/// directories reached twice, more files than allowed).
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// The files.
    pub(crate) entries: Vec<Entry>,
    /// Errors and warnings of the walk.
    pub diagnostics: Vec<Diagnostic>,
}

/// List a bundle directory without reading any file. A ConfigMap volume's
/// `..data` link is resolved once. Only regular files are listed; a symlink
/// is followed only when its target stays inside the bundle directory, and
/// each directory is walked once (a symlink loop is reported, not followed).
/// Nothing is opened but directories, so a FIFO or a device never blocks.
pub(crate) fn scan(path: &Path, limits: &Limits) -> Result<Listing, String> {
    let inside = fs::canonicalize(path).map_err(|e| io_reason(&e))?;
    let data = inside.join("..data");
    let root = if fs::symlink_metadata(&data).is_ok() {
        let resolved = fs::canonicalize(&data)
            .map_err(|e| format!("cannot resolve `..data`: {}", io_reason(&e)))?;
        if !resolved.starts_with(&inside) {
            return Err("`..data` leads outside the bundle directory".into());
        }
        resolved
    } else {
        inside.clone()
    };
    let mut walk = Walk {
        inside,
        limits,
        visited: std::collections::HashSet::new(),
        out: Listing::default(),
        count: 0,
    };
    walk.dir(&root, "", 0);
    walk.out.entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(walk.out)
}

/// Directories nested deeper than this are not walked.
const MAX_DIR_DEPTH: usize = 32;

struct Walk<'l> {
    /// The canonical bundle directory: no symlink may lead out of it.
    inside: PathBuf,
    limits: &'l Limits,
    /// (device, inode) of every directory walked.
    visited: std::collections::HashSet<(u64, u64)>,
    out: Listing,
    count: usize,
}

impl Walk<'_> {
    fn error(&mut self, file: &str, kind: B) {
        self.out.diagnostics.push(bundle_error(file, kind));
    }

    fn dir(&mut self, dir: &Path, prefix: &str, depth: usize) {
        if let Ok(meta) = fs::metadata(dir)
            && !self.visited.insert(dev_ino(&meta))
        {
            self.error(prefix, B::DirectoryLoop);
            return;
        }
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => return self.error(prefix, B::Io(io_reason(&e))),
        };
        let mut names: Vec<_> = Vec::new();
        for e in entries {
            match e {
                Ok(e) => names.push(e),
                Err(e) => return self.error(prefix, B::Io(io_reason(&e))),
            }
            // Counting names bounds the listing of a huge directory too.
            if names.len() > self.limits.max_files {
                break;
            }
        }
        names.sort_by_key(fs::DirEntry::file_name);
        for entry in names {
            if self.count > self.limits.max_files {
                return;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                self.error(prefix, B::Io("a file name is not UTF-8".into()));
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
            self.entry(&entry.path(), rel, depth);
        }
    }

    fn entry(&mut self, full: &Path, rel: String, depth: usize) {
        self.count += 1;
        if self.count > self.limits.max_files {
            self.error("", B::TooManyFiles(self.limits.max_files));
            return;
        }
        let meta = match fs::symlink_metadata(full) {
            Ok(m) => m,
            Err(e) => return self.error(&rel, B::Io(io_reason(&e))),
        };
        let (full, meta) = if meta.file_type().is_symlink() {
            let target = match fs::canonicalize(full) {
                Ok(t) => t,
                Err(e) => return self.error(&rel, B::Io(format!("symlink: {}", io_reason(&e)))),
            };
            if !target.starts_with(&self.inside) {
                return self.error(&rel, B::SymlinkOutside);
            }
            match fs::metadata(&target) {
                Ok(m) => (target, m),
                Err(e) => return self.error(&rel, B::Io(io_reason(&e))),
            }
        } else {
            (full.to_path_buf(), meta)
        };
        if meta.is_dir() {
            if depth + 1 > MAX_DIR_DEPTH {
                return self.error(&rel, B::DirectoryTooDeep(MAX_DIR_DEPTH));
            }
            return self.dir(&full, &rel, depth + 1);
        }
        if !meta.is_file() {
            return self.error(&rel, B::NotRegularFile);
        }
        self.out.entries.push(Entry {
            path: rel,
            full,
            len: meta.len(),
            modified: meta.modified().ok(),
        });
    }
}

#[cfg(unix)]
fn dev_ino(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    (meta.dev(), meta.ino())
}

/// Read at most `limit + 1` bytes of a regular file: a file that grows while
/// it is read, or was replaced by something endless, is caught as too
/// large. The file is opened without blocking and must still be a regular
/// file once open (it may have been swapped since it was listed).
fn read_capped(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits().cast_signed())
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// An I/O error's reason, without the path (the diagnostic names the file).
fn io_reason(e: &std::io::Error) -> String {
    e.kind().to_string()
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

/// Whether a bundle path is one of the names docs/bundle-format.md lists.
pub(crate) fn is_bundle_file(path: &str) -> bool {
    matches!(
        path,
        "manifest.json"
            | "principals.json"
            | "resources.json"
            | "accounts.json"
            | "grants.json"
            | super::sign::SIGNATURES_FILE
    ) || ((path.starts_with("policies/") || path.starts_with("tests/")) && path.ends_with(".json"))
}

fn read_tar_gz(path: &Path, display: &str, limits: &Limits) -> Result<RawBundle, LoadError> {
    let file = fs::File::open(path).map_err(|e| LoadError::NotABundle {
        path: display.to_owned(),
        reason: io_reason(&e),
    })?;
    Ok(read_tar_gz_from(
        std::io::BufReader::new(file),
        display,
        limits,
    ))
}

/// Read a bundle from the bytes of a `.tar.gz` (named `display` in messages).
pub fn read_tar_gz_from(reader: impl Read, display: &str, limits: &Limits) -> RawBundle {
    let mut out = RawBundle {
        source: display.to_owned(),
        files: Vec::new(),
        diagnostics: Vec::new(),
    };
    let decoder = flate2::read::GzDecoder::new(reader);
    let mut archive = tar::Archive::new(decoder);
    let mut total: u64 = 0;
    let mut count = 0usize;
    let mut raw: Vec<RawFile> = Vec::new();
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            out.diagnostics.push(bundle_error("", B::Io(e.to_string())));
            return out;
        }
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                out.diagnostics.push(bundle_error(
                    "",
                    B::Io(format!("archive: {}", io_reason(&e))),
                ));
                break;
            }
        };
        // Every entry counts, whatever it is, before anything else is done
        // with it: an archive of millions of links or skipped names stops
        // at the file limit, and its declared sizes at the unpacked limit.
        count += 1;
        if count > limits.max_files {
            out.diagnostics
                .push(bundle_error("", B::TooManyFiles(limits.max_files)));
            return out;
        }
        let size = entry.header().size().unwrap_or(u64::MAX);
        total = total.saturating_add(size);
        if total > limits.max_unpacked_bytes {
            out.diagnostics
                .push(unpacked_too_large("the unpacked archive", total, limits));
            return out;
        }
        let entry_path = match entry.path() {
            Ok(p) => p.into_owned(),
            Err(e) => {
                out.diagnostics.push(bundle_error(
                    "",
                    B::Io(format!("archive: {}", io_reason(&e))),
                ));
                continue;
            }
        };
        let Some(rel) = relative(&entry_path) else {
            out.diagnostics.push(bundle_error(
                "",
                B::ArchivePath(crate::policy::err::cut(
                    &entry_path.display().to_string(),
                    128,
                )),
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
                .push(bundle_error(&rel, B::Io(io_reason(&e))));
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
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn bundle_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("policies/kms")).unwrap();
        fs::write(dir.path().join("manifest.json"), br#"{"revision":"r1"}"#).unwrap();
        fs::write(dir.path().join("policies/kms/p.json"), b"{}").unwrap();
        dir
    }

    fn errors(raw: &RawBundle) -> Vec<String> {
        raw.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_symlink_loop_is_reported_once_and_not_walked() {
        let dir = bundle_dir();
        symlink(".", dir.path().join("policies/l1")).unwrap();
        symlink(".", dir.path().join("policies/l2")).unwrap();
        let raw = read(dir.path(), &Limits::default()).unwrap();
        let errs = errors(&raw);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().all(|e| e.contains("symlink loop")), "{errs:?}");
        assert_eq!(raw.files.len(), 2);
    }

    #[test]
    fn a_fifo_is_never_opened() {
        let dir = bundle_dir();
        let fifo = dir.path().join("policies/kms/fifo.json");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let raw = read(dir.path(), &Limits::default()).unwrap();
        let errs = errors(&raw);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("policies/kms/fifo.json") && errs[0].contains("not a regular file")
        );
    }

    #[test]
    fn symlinks_out_of_the_bundle_are_refused_without_reading_them() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"\"TOP-SECRET-CONTENT\"").unwrap();
        let dir = bundle_dir();
        symlink(
            outside.path().join("secret"),
            dir.path().join("principals.json"),
        )
        .unwrap();
        symlink("/dev/zero", dir.path().join("policies/kms/zero.json")).unwrap();
        let raw = read(dir.path(), &Limits::default()).unwrap();
        let errs = errors(&raw);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().all(|e| e.contains("leads outside the bundle")));
        assert!(!format!("{raw:?}").contains("TOP-SECRET"));
    }

    #[test]
    fn symlinks_inside_the_bundle_are_followed() {
        let dir = bundle_dir();
        fs::create_dir(dir.path().join("real")).unwrap();
        fs::write(dir.path().join("real/q.json"), b"{}").unwrap();
        symlink("../../real/q.json", dir.path().join("policies/kms/q.json")).unwrap();
        let raw = read(dir.path(), &Limits::default()).unwrap();
        assert!(raw.files.iter().any(|f| f.path == "policies/kms/q.json"));
        assert!(errors(&raw).is_empty(), "{:?}", errors(&raw));
    }

    #[test]
    fn the_configmap_layout_reads_one_version() {
        let dir = tempfile::tempdir().unwrap();
        let version = dir.path().join("..2026_12_07");
        fs::create_dir_all(version.join("policies")).unwrap();
        fs::write(version.join("manifest.json"), b"{}").unwrap();
        fs::write(version.join("policies/p.json"), b"{}").unwrap();
        symlink("..2026_12_07", dir.path().join("..data")).unwrap();
        symlink("..data/manifest.json", dir.path().join("manifest.json")).unwrap();
        symlink("..data/policies", dir.path().join("policies")).unwrap();
        let raw = read(dir.path(), &Limits::default()).unwrap();
        let paths: Vec<&str> = raw.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["manifest.json", "policies/p.json"]);
        assert!(errors(&raw).is_empty(), "{:?}", errors(&raw));
    }

    #[test]
    fn reads_are_capped_whatever_the_listed_size() {
        let dir = bundle_dir();
        let path = dir.path().join("policies/kms/p.json");
        fs::write(&path, vec![b' '; 100]).unwrap();
        assert_eq!(read_capped(&path, 10).unwrap().len(), 11);
    }

    #[test]
    fn every_archive_entry_counts_against_the_file_limit() {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for i in 0..50 {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            builder
                .append_link(&mut h, format!("l{i}"), "/etc/passwd")
                .unwrap();
        }
        let bytes = builder.into_inner().unwrap().finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar.gz");
        fs::write(&path, bytes).unwrap();
        let limits = Limits {
            max_files: 10,
            ..Limits::default()
        };
        let raw = read(&path, &limits).unwrap();
        assert_eq!(raw.diagnostics.len(), 11, "{:?}", raw.diagnostics);
        assert!(errors(&raw)[0].contains("more than 10 files"));
    }
}

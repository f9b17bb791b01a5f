//! The last good remote bundle, kept in `bundle_cache_dir` for a cold start
//! while the source is unreachable.
//!
//! Two files: `bundle.tar.gz` (the exact bytes that loaded) and
//! `bundle.json` (the archive's SHA-256, its ETag or digest, a digest of the
//! source it came from, when it was written). Each is written to a
//! temporary file, synced and renamed, the archive first, so a crash leaves
//! either the old pair, the new pair, or a new archive with the old record,
//! which the SHA-256 exposes (the copy is then refused). A persisted copy
//! is loaded like any bundle: verified again when keys are configured.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

use crate::bundle::archive::write_atomic;
use crate::bundle::sign::hex;

const ARCHIVE: &str = "bundle.tar.gz";
const RECORD: &str = "bundle.json";
/// The largest `bundle.json` read.
const MAX_RECORD_BYTES: u64 = 64 * 1024;

/// What `bundle.json` says.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub(crate) struct Record {
    /// SHA-256 of `bundle.tar.gz`, hex.
    pub(crate) sha256: String,
    /// The ETag or manifest digest it was fetched with.
    pub(crate) tag: Option<String>,
    /// SHA-256 of the configured source (the full URL or reference), so a
    /// copy of another source is never served, and no credential in the
    /// URL is written down.
    pub(crate) source: String,
    /// When it was written (RFC 3339).
    pub(crate) written_at: String,
}

/// A persisted copy, read and checked against its record.
#[derive(Debug)]
pub(crate) struct Persisted {
    pub(crate) bytes: Vec<u8>,
    pub(crate) record: Record,
}

/// The digest of a source's full address, as the record keeps it.
pub(crate) fn source_digest(source: &str) -> String {
    hex(&Sha256::digest(source.as_bytes()))
}

/// The cache directory's files.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    dir: PathBuf,
}

impl Store {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Keep `bytes` (which loaded) and the tag they came with.
    pub(crate) fn write(
        &self,
        bytes: &[u8],
        tag: Option<&str>,
        source: &str,
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let record = Record {
            sha256: hex(&Sha256::digest(bytes)),
            tag: tag.map(str::to_owned),
            source: source_digest(source),
            written_at: super::rfc3339(SystemTime::now()),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
        write_atomic(&self.dir.join(ARCHIVE), bytes)?;
        write_atomic(&self.dir.join(RECORD), &json)?;
        // The renames themselves are durable once the directory is synced.
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// The persisted copy for `source`: `Ok(None)` when there is none,
    /// `Err` when there is one that must not be used (named why).
    pub(crate) fn read(&self, source: &str, max_bytes: u64) -> Result<Option<Persisted>, String> {
        let record_path = self.dir.join(RECORD);
        let archive_path = self.dir.join(ARCHIVE);
        if !record_path.exists() && !archive_path.exists() {
            return Ok(None);
        }
        let text = read_bounded(&record_path, MAX_RECORD_BYTES)?;
        let record: Record =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", record_path.display()))?;
        if record.source != source_digest(source) {
            return Err(format!(
                "{} holds a bundle of another source; it is not used",
                self.dir.display()
            ));
        }
        let bytes = read_bounded(&archive_path, max_bytes)?;
        let sha = hex(&Sha256::digest(&bytes));
        if sha != record.sha256 {
            return Err(format!(
                "{}: its SHA-256 is {sha}, not the {} recorded in {RECORD}; the copy was altered or half written",
                archive_path.display(),
                record.sha256
            ));
        }
        Ok(Some(Persisted { bytes, record }))
    }
}

fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(format!("{}: larger than {limit} bytes", path.display()));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let cache = dir.path().join("cache");
        let store = Store::new(cache.clone());
        assert!(store.read("https://a/b.tar.gz", 1 << 20)?.is_none());
        store.write(b"archive bytes", Some("\"e1\""), "https://a/b.tar.gz")?;
        let p = store.read("https://a/b.tar.gz", 1 << 20)?;
        let p = p.ok_or("no copy")?;
        assert_eq!(p.bytes, b"archive bytes");
        assert_eq!(p.record.tag.as_deref(), Some("\"e1\""));
        // Another source's copy is never used.
        let e = store.read("https://other/b.tar.gz", 1 << 20).err();
        assert!(e.is_some_and(|e| e.contains("another source")));
        // Over the limit.
        assert!(store.read("https://a/b.tar.gz", 4).is_err());
        // Altered.
        std::fs::write(cache.join(ARCHIVE), b"archive bytez")?;
        let e = store.read("https://a/b.tar.gz", 1 << 20).err();
        assert!(e.is_some_and(|e| e.contains("altered")));
        Ok(())
    }
}

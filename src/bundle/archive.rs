//! Writing a bundle as one deterministic `.tar.gz`: entries sorted by path,
//! every header the same apart from path and size (mode 0644, owner 0:0, no
//! owner names, time 0), and a gzip header without time or file name, so
//! the same files always give the same bytes (and the same digest to pin
//! or sign).

use std::io::Write as _;

use flate2::{Compression, GzBuilder};

use super::source::RawFile;

/// The `.tar.gz` of `files` (sorted by path here, whatever their order).
pub(crate) fn write_tar_gz(files: &[RawFile]) -> Result<Vec<u8>, String> {
    let mut sorted: Vec<&RawFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    for f in sorted {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(u64::try_from(f.bytes.len()).map_err(|e| e.to_string())?);
        tar.append_data(&mut header, &f.path, f.bytes.as_slice())
            .map_err(|e| format!("{}: {e}", f.path))?;
    }
    let mut gz = tar.into_inner().map_err(|e| e.to_string())?;
    gz.flush().map_err(|e| e.to_string())?;
    gz.finish().map_err(|e| e.to_string())
}

/// Write `bytes` to `path` whole or not at all: a file beside it, synced,
/// then renamed over it (a reader of `path` never sees half a file).
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::Limits;

    fn file(path: &str, text: &str) -> RawFile {
        RawFile {
            path: path.to_owned(),
            bytes: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_same_files_give_the_same_bytes_in_any_order_and_read_back() {
        let a = [
            file("policies/b.json", "{}"),
            file("manifest.json", "{\"revision\":\"r\"}"),
        ];
        let b = [
            file("manifest.json", "{\"revision\":\"r\"}"),
            file("policies/b.json", "{}"),
        ];
        let (x, y) = (write_tar_gz(&a).unwrap(), write_tar_gz(&b).unwrap());
        assert_eq!(x, y);
        let back = crate::bundle::source::read_tar_gz_from(x.as_slice(), "t", &Limits::default());
        let paths: Vec<&str> = back.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["manifest.json", "policies/b.json"]);
        assert!(back.diagnostics.is_empty(), "{:?}", back.diagnostics);
    }
}

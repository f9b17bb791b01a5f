//! The reference pages stay true to the code: every setting the
//! configuration reads is documented, and every setting documented is read.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::BTreeSet;
use std::path::PathBuf;

/// The names in backquotes in the first column of the page's settings table.
fn documented(page: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in page.lines().filter(|l| l.starts_with("| `")) {
        let first = line.split('|').nth(1).unwrap();
        for (i, part) in first.split('`').enumerate() {
            // Odd pieces are inside backquotes; flags start with `--`.
            if i % 2 == 1 && !part.starts_with("--") {
                names.insert(part.to_owned());
            }
        }
    }
    names
}

#[test]
fn every_setting_is_documented_and_every_documented_setting_exists() {
    let page = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let documented = documented(&page);
    let read: BTreeSet<String> = verdict::config::SETTINGS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let missing: Vec<_> = read.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&read).collect();
    assert!(
        missing.is_empty(),
        "not in docs/configuration.md: {missing:?}"
    );
    assert!(unknown.is_empty(), "documented but not read: {unknown:?}");
}

/// Every finding code in `src/` has a row in docs/check.md, and every row
/// names a code the code emits.
#[test]
fn every_finding_code_is_documented_and_every_documented_code_exists() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut in_code = BTreeSet::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split('"').skip(1).step_by(2) {
                    let is_code = (piece.starts_with("E-") || piece.starts_with("W-"))
                        && piece.len() > 2
                        && piece[2..]
                            .bytes()
                            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
                    if is_code {
                        in_code.insert(piece.to_owned());
                    }
                }
            }
        }
    }
    let page = std::fs::read_to_string(root.join("docs/check.md")).unwrap();
    let documented: BTreeSet<String> = documented(&page)
        .into_iter()
        .filter(|n| n.starts_with("E-") || n.starts_with("W-"))
        .collect();
    assert!(in_code.len() > 60, "{in_code:?}");
    let undocumented: Vec<_> = in_code.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&in_code).collect();
    assert!(
        undocumented.is_empty(),
        "codes missing from docs/check.md: {undocumented:?}"
    );
    assert!(
        stale.is_empty(),
        "docs/check.md lists codes the code never emits: {stale:?}"
    );
}
